#!/bin/sh
# serve_bench.sh - throughput of tern serve's batched slots (a benchmark,
# not a test): C concurrent streaming clients x N tokens each, for C in 1,
# 2, 4, 8, interleaved over ROUNDS rounds on one server (same run, same
# machine state); aggregate decode tokens/s = all generated tokens / the
# wall time from the first request sent to the last one done. Then the
# time to first token of a request that arrives while 3 others decode.
#
#   tools/serve_bench.sh MODEL [THREADS] [N] [ROUNDS] [BUILD]
#   (defaults: 2 threads, 64 tokens, 2 rounds, build)
# A 2B4T-shaped file: build/bin/tern synth --preset bitnet-2b4t -o /tmp/2b4t.gguf
set -u
model=$1 threads=${2:-2} n=${3:-64} rounds=${4:-2} build=${5:-build}
dir=$(mktemp -d /tmp/tern-bench.XXXXXX)
"$build/bin/tern" serve -m "$model" --port 0 -np 8 -c 512 -t "$threads" 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for i in $(seq 1200); do grep -q "ready:" "$dir/log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$dir/log")
url=http://127.0.0.1:$port/v1/completions
now() { date +%s.%N; }
req() { # $1: output file, $2: tokens
    curl -sN -o "$1" -d "{\"prompt\":\"Once upon a time\",\"max_tokens\":$2,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "$url"
}
# `wait` alone would wait for the server too: wait for the clients by id
waitall() { for p in $pids; do wait "$p"; done; pids=; }
pids=
req "$dir/warm" 8 # graphs for the decode shapes get built on first use
for c in 1 2 3 4 5 6 7 8; do req "$dir/warm$c" 4 & pids="$pids $!"; done; waitall
echo "| clients | round | tokens | wall s | aggregate decode tok/s | per client tok/s |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
for r in $(seq "$rounds"); do
    for c in 1 2 4 8; do
        t0=$(now)
        for k in $(seq "$c"); do req "$dir/c$k" "$n" & pids="$pids $!"; done
        waitall
        t1=$(now)
        tokens=$(cat "$dir"/c* | grep -o '"completion_tokens":[0-9]*' | awk -F: '{ s += $2 } END { print s }')
        per=$(cat "$dir"/c* | grep -o '"predicted_per_second":[0-9.]*' | awk -F: '{ s += $2; k++ } END { printf "%.1f", s / k }')
        awk -v c="$c" -v r="$r" -v t="$tokens" -v a="$t0" -v b="$t1" -v p="$per" \
            'BEGIN { printf "| %d | %d | %d | %.2f | %.1f | %s |\n", c, r, t, b - a, t / (b - a), p }'
        rm -f "$dir"/c*
    done
done
# time to first token of a request arriving while three others decode
for k in 1 2 3; do req "$dir/bg$k" $((n * 3)) & pids="$pids $!"; done
sleep 1
req "$dir/late" "$n"
waitall
ttft=$(grep -o '"ttft_ms":[0-9.]*' "$dir/late" | cut -d: -f2)
alone_ttft=$(req "$dir/alone" 8; grep -o '"ttft_ms":[0-9.]*' "$dir/alone" | cut -d: -f2)
echo "time to first token: $ttft ms arriving while 3 others decode; $alone_ttft ms alone"
