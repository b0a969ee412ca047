#!/bin/sh
# serve_soak.sh - a soak of tern serve on loopback: 200 requests, mixed
# (whole and streamed completions and chats, streams the client cancels
# mid-way, oversized bodies, malformed JSON, wrong keys), every one of
# which must be answered (or, when the client hung up on purpose, leave
# the server fine); the server must not crash, and its resident memory
# must grow by less than 5% from request 20 to request 200.
#
#   tools/serve_soak.sh [BUILD_DIR] [MODEL] [N]     (defaults: build, the embedded model, 200)
# Prints one line per 20 requests and a summary; exits 1 on a failure.
set -u
build=${1:-build}
model=${2:-$build/share/tern/models/tiny-bitnet.gguf}
total=${3:-200}
dir=$(mktemp -d /tmp/tern-soak.XXXXXX)
key=soak-key
"$build/bin/tern" serve -m "$model" --port 0 -np 4 -t 2 --api-key $key 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for i in $(seq 300); do grep -q "ready:" "$dir/log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$dir/log")
[ -n "$port" ] || { echo "soak: the server did not start: $(cat "$dir/log")"; exit 1; }
url=http://127.0.0.1:$port
head -c 5000000 /dev/zero | tr '\000' ' ' > "$dir/big.json"
rss() { awk '/^VmRSS/ { print $2 }' /proc/$pid/status; }
fail=0 rss20=0
# request i of kind i % 8; prints the HTTP status (000 for a cancelled stream)
one() {
    auth="Authorization: Bearer $key"
    case $(($1 % 8)) in
    0) curl -s -o "$dir/out" -w '%{http_code}' -H "$auth" -d '{"prompt":"Once upon a time","max_tokens":32}' "$url/v1/completions" ;;
    1) curl -sN -o "$dir/out" -w '%{http_code}' -H "$auth" -d '{"prompt":"The dog","max_tokens":32,"stream":true}' "$url/v1/completions" ;;
    2) curl -s -o "$dir/out" -w '%{http_code}' -H "$auth" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":24}' "$url/v1/chat/completions" ;;
    3) curl -sN -o "$dir/out" -w '%{http_code}' --max-time 0.15 -H "$auth" \
           -d '{"prompt":"Once","max_tokens":400,"ignore_eos":true,"stream":true}' "$url/v1/completions"; true ;;
    4) curl -s -o "$dir/out" -w '%{http_code}' -H "$auth" --data-binary @"$dir/big.json" "$url/v1/completions" ;;
    5) curl -s -o "$dir/out" -w '%{http_code}' -H "$auth" -d '{"prompt": "unclosed' "$url/v1/completions" ;;
    6) curl -s -o "$dir/out" -w '%{http_code}' -H "Authorization: Bearer wrong" -d '{"prompt":"x"}' "$url/v1/completions" ;;
    7) curl -sN -o "$dir/out" -w '%{http_code}' -H "$auth" \
           -d '{"messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":48,"stream":true}' "$url/v1/chat/completions" ;;
    esac
}
want() { case $(($1 % 8)) in 0|1|2|7) echo 200 ;; 3) echo "200 000" ;; 4) echo 413 ;; 5) echo 400 ;; 6) echo 401 ;; esac; }
for i in $(seq 1 "$total"); do
    code=$(one "$i")
    case " $(want "$i") " in *" $code "*) ;; *) echo "soak: request $i (kind $((i % 8))): HTTP $code, expected $(want "$i"): $(head -c 300 "$dir/out")"; fail=1 ;; esac
    kill -0 $pid 2>/dev/null || { echo "soak: the server died at request $i: $(tail -5 "$dir/log")"; exit 1; }
    [ "$i" = 20 ] && rss20=$(rss)
    [ $((i % 20)) = 0 ] && echo "soak: $i requests, RSS $(rss) kB"
done
rss_end=$(rss)
metrics=$(curl -s -H "Authorization: Bearer $key" "$url/metrics" | grep -E '^tern_(requests_total|request_errors_total|generated_tokens_total|slots_busy) ')
echo "$metrics" | sed 's/^/soak: /'
growth=$(awk -v a="$rss20" -v b="$rss_end" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
echo "soak: RSS at request 20: $rss20 kB, at request $total: $rss_end kB, growth $growth%"
awk -v g="$growth" 'BEGIN { exit !(g < 5) }' || { echo "soak: RSS grew by $growth% (limit 5%)"; fail=1; }
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 0 ] || { echo "soak: the server exited with $rc after SIGTERM"; fail=1; }
[ $fail = 0 ] && echo "soak: ok" || echo "soak: FAILED"
exit $fail
