#!/usr/bin/env bash
# The cost of `ferry bench` itself: one client thread (libcurl multi) driving
# many streams. nginx answers every POST /v1/chat/completions at once with the
# same canned SSE stream (TOKENS content chunks plus a usage chunk), so the
# server costs almost nothing and what is measured is the client: its CPU time
# per request and per chunk (user+sys from /proc, and perf's cycles:u when
# perf works) at each concurrency, and its requests/s. Reference, same run,
# same endpoint and connections: wrk (no SSE parsing, no JSON, no statistics)
# posting the same body: ferry bench's requests/s as a share of wrk's.
#
# Usage: bench/bench_client.sh [FERRY_BIN] [REQUESTS] [TOKENS] [RUNS]
#   defaults: build/ferry 2000 128 3; concurrency levels: CONC="1 16 64 256"
# Prints one line per concurrency with medians over RUNS; needs nginx and wrk.
set -euo pipefail
bin=${1:-build/ferry}
nreq=${2:-2000}
tokens=${3:-128}
runs=${4:-3}
conc=${CONC:-1 16 64 256}
command -v nginx >/dev/null || { echo "nginx not installed"; exit 1; }
command -v wrk >/dev/null || { echo "wrk not installed"; exit 1; }
tmp=$(mktemp -d /tmp/ferry-bench-client-XXXXXX)
trap 'kill $(cat "$tmp/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$tmp"' EXIT

# the canned stream: role chunk, TOKENS one-word chunks, finish, usage, [DONE]
python3 - "$tmp/sse" "$tokens" <<'EOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
def ch(delta, fin=None):
    return "data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]}) + "\n\n"
out = [ch({"role": "assistant"})] + [ch({"content": "w%d " % i}) for i in range(n)]
out.append(ch({}, "length"))
out.append("data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m",
    "choices": [], "usage": {"prompt_tokens": 16, "completion_tokens": n,
                             "total_tokens": n + 16}}) + "\n\n")
out.append("data: [DONE]\n\n")
open(path, "w").write("".join(out))
EOF
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/www/v1/chat"
mv "$tmp/sse" "$tmp/www/v1/chat/completions"
echo '{"object":"list","data":[{"id":"m","object":"model"}]}' >"$tmp/www/v1/models"
# Static files answer GET; a POST gets 405, which error_page turns into an
# internal GET of the same file.
cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp;
    keepalive_requests 1000000;
    types { }
    default_type text/event-stream;
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $tmp/www;
        error_page 405 =200 \$uri;
    }
}
EOF
nginx -c "$tmp/nginx.conf" -p "$tmp" 2>/dev/null
url="http://127.0.0.1:$port/v1"
curl -sf -X POST -d '{}' "$url/chat/completions" | grep -q '\[DONE\]' || {
    echo "nginx does not serve the stream"; cat "$tmp/error.log"; exit 1; }

cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"the of and to in"}],"max_tokens":128,"stream":true}'
wrk.headers["Content-Type"] = "application/json"
EOF

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
jget() { python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["points"][0]
print(eval(sys.argv[2]))' "$@"; }
has_perf=0 # instructions:u where the machine counts them (not in every VM)
if perf stat -x, -e instructions:u -o "$tmp/p0" true >/dev/null 2>&1 &&
    awk -F, '/instructions/ {exit !($1 ~ /^[0-9]+$/)}' "$tmp/p0"; then
    has_perf=1
fi
echo "ferry bench client cost: $nreq requests x $tokens chunks per point, median of $runs runs"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), $(nproc) cores"
printf "%6s %10s %10s %7s %11s %10s %12s\n" conc "req/s" "wrk req/s" ratio "cpu us/req" \
    "ns/chunk" "instr/chunk"
for c in $conc; do
    rps=() wrps=() cpu=() ins=()
    for ((r = 0; r < runs; r++)); do
        j="$tmp/b.json"
        cmd=("$bin" bench --url "$url" --model m --concurrency "$c" --num-requests "$nreq"
             --input-len 5 --output-len "$tokens" --json "$j")
        if ((has_perf)); then
            perf stat -x, -e instructions:u -o "$tmp/perf" "${cmd[@]}" >/dev/null 2>&1
            ins+=("$(awk -F, '/instructions/ {print $1}' "$tmp/perf")")
        fi
        # user+sys CPU seconds of the run (getrusage of the child)
        cpu+=("$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "${cmd[@]}")")
        rps+=("$(jget "$j" 'p["requests_per_s"]')")
        ok=$(jget "$j" 'p["requests"]["ok"]')
        [[ $ok == "$nreq" ]] || { echo "only $ok of $nreq requests succeeded"; exit 1; }
        wrps+=("$(wrk -t1 -c"$c" -d2s -s "$tmp/post.lua" "$url/chat/completions" |
                  awk '/^Requests\/sec/ {print $2}')")
    done
    m_rps=$(printf '%s\n' "${rps[@]}" | median)
    m_w=$(printf '%s\n' "${wrps[@]}" | median)
    m_cpu=$(printf '%s\n' "${cpu[@]}" | median)
    m_ins=$( ((has_perf)) && printf '%s\n' "${ins[@]}" | median || echo 0)
    awk -v c="$c" -v r="$m_rps" -v w="$m_w" -v cpu="$m_cpu" -v n="$nreq" -v t="$tokens" \
        -v ins="$m_ins" 'BEGIN {printf "%6d %10.0f %10.0f %7.3f %11.1f %10.0f %12s\n", c, r, w,
        r / w, cpu / n * 1e6, cpu / (n * t) * 1e9, (ins > 0 ? sprintf("%.0f", ins / (n * t)) : "-")}'
done
