#!/bin/sh
# run.sh BUILD FUZZ_SECONDS SAN - what `scons test` runs: the fuzz run (when
# its target was built), then the Check runner, whose summary line is last.
set -e
build=$1
fuzz_seconds=$2
export TERN_BUILD="$build"
if [ -x "$build/tests/fuzz_gguf" ] && [ "$fuzz_seconds" -gt 0 ]; then
    mkdir -p "$build/fuzz-corpus"
    echo "fuzz: gguf reader for ${fuzz_seconds}s"
    "$build/tests/fuzz_gguf" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
        "$build/fuzz-corpus" tests/fuzz/corpus 2>"$build/fuzz.log" || { tail -50 "$build/fuzz.log"; exit 1; }
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" "$build/fuzz.log" || true
fi
# tests never read the user's tuning records
export XDG_CACHE_HOME="$build/test-cache"
unset TERN_CACHE_DIR
exec "$build/tests/tern-check"
