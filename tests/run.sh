#!/bin/sh
# run.sh BUILD FUZZ_SECONDS SAN - what `scons test` runs: each fuzz target
# for FUZZ_SECONDS (when built), then the Check runner, whose summary line
# is last. Seeds: tests/fuzz/corpus (GGUF) and tests/fuzz/corpus-NAME; what
# a run adds stays in BUILD/fuzz-corpus-NAME, a finding in BUILD/fuzz-NAME-*.
set -e
build=$1
fuzz_seconds=$2
export TERN_BUILD="$build"
for name in gguf tokenizer chat options request; do
    bin="$build/tests/fuzz_$name"
    [ -x "$bin" ] && [ "$fuzz_seconds" -gt 0 ] || continue
    seeds=tests/fuzz/corpus-$name
    [ "$name" = gguf ] && seeds=tests/fuzz/corpus
    mkdir -p "$build/fuzz-corpus-$name"
    echo "fuzz: $name for ${fuzz_seconds}s"
    "$bin" -max_total_time="$fuzz_seconds" -print_final_stats=1 -artifact_prefix="$build/fuzz-$name-" \
        "$build/fuzz-corpus-$name" "$seeds" 2>"$build/fuzz-$name.log" || { tail -50 "$build/fuzz-$name.log"; exit 1; }
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "$build/fuzz-$name.log" || true
done
# under san=1, leaks of PoCL and its LLVM (the opencl tests) are theirs
if [ "$3" = 1 ]; then
    export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi
# tests never read the user's tuning records
export XDG_CACHE_HOME="$build/test-cache"
unset TERN_CACHE_DIR
exec "$build/tests/tern-check"
