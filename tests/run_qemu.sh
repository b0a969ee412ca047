#!/bin/sh
# run_qemu.sh BUILD ARCH - what `scons arch=aarch64 test` runs: the cross
# build's Check runner under qemu user-mode emulation (qemu-ARCH-static),
# on several CPU models so that every path of the arm backend runs:
#   sve128, sve512  -cpu max (SVE2, i8mm, dotprod) at VL 128 / 512
#   sve256          the same at VL 256, where every forced kernel runs too
#   a76             Cortex-A76: NEON + dotprod, no SVE
#   a53             Cortex-A53: NEON only, no dotprod
#   a64fx           A64FX: SVE at VL 512 without SVE2 or dotprod
# On each: `tern info` must list arm as runnable; the conformance suite's
# backends case (arm against scalar over every op, plus the forced arm
# kernels whose code depends on that model: the NEON ones are the same
# instructions at every VL, so they run on sve256 and a76 only); the arm
# suite (every forced kernel bit-exact against scalar, 1..3 threads); the
# executor's kernel_errors case (bad ids and positions reported through
# node_error); the kernels suite (every generated NEON/SVE variant the
# model runs, called through the kernel ABI, bit-exact against scalar: the
# SVE ones at VL 128, 256 and 512, the NEON ones on every model with
# dotprod). The pack cache's main case (packed weights written, then
# mapped, bit-identical; stale and damaged files rebuilt) on sve256 (MAD
# tiles) and a53 (LUT tiles). The e2e backend cases on the shared trained
# models, one prompt each (a prompt costs about a minute under qemu; the
# integer paths are bit-exact on every tier and the float ops are the same
# NEON code on all of them): logits against the PyTorch references on sve256
# (SVE MAD), greedy tokens against scalar on a76 (NEON MAD). The library
# suites (core, chat, loader, sampler, tokenizer, gguf) once, on sve256,
# with the tern command they start run under qemu too ($TERN_TEST_EXEC). Not
# under qemu, because qemu emulates floating point in software and they test
# nothing ISA-specific: the e2e scalar cases, cli and spec (whole
# generations through the tern command), hostile, fault and install (tern
# started as a native program, signals, thousands of injected failures), the
# simulated device, the pack cache's 700m RSS case, and the fuzz runs (the
# host's clang).
# Two lanes run side by side (2 cores); the last line sums every run in
# Check's format.
set -u
build=$1
arch=$2
qemu=qemu-$arch-static
if ! command -v "$qemu" >/dev/null; then
    echo "run_qemu.sh: $qemu not found; run tools/setup.sh" >&2
    exit 1
fi
# The arm64 libc and libraries are Debian's multiarch packages (libc6:arm64
# and the -dev:arm64 ones tools/setup.sh installs), which qemu finds at
# their real paths. No QEMU_LD_PREFIX: with the cross toolchain's libc
# (/usr/aarch64-linux-gnu) pthread_create hangs under qemu 7.2.
unset QEMU_LD_PREFIX
if [ ! -e /lib/ld-linux-aarch64.so.1 ]; then
    echo "run_qemu.sh: no arm64 libc (/lib/ld-linux-aarch64.so.1); run tools/setup.sh" >&2
    exit 1
fi
export TERN_BUILD="$build"
export TERN_TEST_SLOWDOWN=50 # timing assertions scale by this under emulation
cpu_of() {
    case $1 in
    sve128) echo "max,sve-default-vector-length=16" ;;
    sve256) echo "max,sve-default-vector-length=32" ;;
    sve512) echo "max,sve-default-vector-length=64" ;;
    a76) echo cortex-a76 ;;
    a53) echo cortex-a53 ;;
    a64fx) echo a64fx ;;
    esac
}

# The forced arm kernels conformance adds as columns on a CPU model.
kernels_of() {
    case $1 in
    sve256) echo "arm:mad-dotprod arm:mad-sve arm:lut-neon arm:lut-sve2 arm:auto-neon" ;;
    sve128 | sve512) echo "arm:lut-sve2" ;;
    a76) echo "arm:lut-neon" ;;
    *) echo "" ;;
    esac
}

# run LANE MODEL SUITE [CASE [ENV=VALUE]]: one Check run; appends a result
# line to the lane's file; the log stays in BUILD/qemu/.
run() {
    lane=$1 model=$2 suite=$3 case=${4:-} extra=${5:-}
    cpu=$(cpu_of "$model")
    log="$build/qemu/$model-$suite${case:+-$case}.log"
    t0=$(date +%s)
    env CK_RUN_SUITE="$suite" ${case:+CK_RUN_CASE="$case"} TERN_CONFORMANCE_KERNELS="$(kernels_of "$model")" \
        TERN_TEST_EXEC="$qemu -cpu $cpu" $extra \
        "$qemu" -cpu "$cpu" "$build/tests/tern-check" >"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    summary=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -1)
    [ -n "$summary" ] || summary="0%: Checks: 1, Failures: 0, Errors: 1 (no summary, exit $rc)"
    printf '%-7s %-22s %5ds  %s\n' "$model" "$suite${case:+/$case}" $((t1 - t0)) "$summary" >>"$build/qemu/lane$lane.txt"
    if [ $rc -ne 0 ]; then
        grep -E '^(tests/|FAIL )' "$log" >>"$build/qemu/lane$lane.txt"
        echo "        (log: $log)" >>"$build/qemu/lane$lane.txt"
    fi
}

# info LANE MODEL: `tern info` lists arm, runnable, with what it found.
info() {
    line=$("$qemu" -cpu "$(cpu_of "$2")" "$build/bin/tern" info 2>&1 | grep -E '^  arm +runnable')
    if [ -n "$line" ]; then
        printf '%-7s %-22s %5ds  100%%: Checks: 1, Failures: 0, Errors: 0 |%s\n' "$2" "tern info" 0 \
            "$(echo "$line" | sed 's/^  arm *runnable,//')" >>"$build/qemu/lane$1.txt"
    else
        printf '%-7s %-22s %5ds  0%%: Checks: 1, Failures: 1, Errors: 0 (arm not runnable)\n' "$2" "tern info" 0 \
            >>"$build/qemu/lane$1.txt"
    fi
}

model_runs() { # LANE MODEL
    info "$1" "$2"
    run "$1" "$2" conformance backends
    run "$1" "$2" arm
    run "$1" "$2" executor kernel_errors
    run "$1" "$2" kernels
}

rm -rf "$build/qemu"
mkdir -p "$build/qemu"
echo "qemu: $($qemu --version | head -1); lanes in $build/qemu/"
start=$(date +%s)
(
    model_runs 1 sve256
    run 1 sve256 packcache packcache
    run 1 sve256 e2e backends_logits TERN_E2E_PROMPT=1
    for s in core chat loader sampler; do run 1 sve256 "$s"; done
) &
(
    model_runs 2 a76
    run 2 a76 e2e backends_greedy TERN_E2E_PROMPT=0
    model_runs 2 sve128
    model_runs 2 sve512
    model_runs 2 a53
    run 2 a53 packcache packcache
    model_runs 2 a64fx
    for s in tokenizer gguf; do run 2 sve256 "$s"; done # the lanes' halves even out
) &
wait
end=$(date +%s)
echo "qemu: CPU time (user, system) of the shell, then of every run:"
times
cat "$build/qemu/lane1.txt" "$build/qemu/lane2.txt"
awk -v secs=$((end - start)) '
    /Checks:/ { runs++ }
    { for (i = 1; i <= NF; i++) {
        if ($i == "Checks:") checks += $(i + 1) + 0
        if ($i == "Failures:") fails += $(i + 1) + 0
        if ($i == "Errors:") errs += $(i + 1) + 0 } }
    END { printf "qemu: %d runs in %d s\n", runs, secs
          pct = checks ? int(100 * (checks - fails - errs) / checks) : 0
          printf "%d%%: Checks: %d, Failures: %d, Errors: %d\n", pct, checks, fails, errs
          exit (fails + errs) ? 1 : 0 }' "$build/qemu/lane1.txt" "$build/qemu/lane2.txt"
