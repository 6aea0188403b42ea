#!/usr/bin/env bash
# bench/pipeline.sh — what the request pipeline's stages cost end to end:
# /v1/chat/completions requests/s through ferry serve (stories260K, so the model
# itself is cheap and the pipeline's share shows) in three configurations,
# measured in the same run:
#
#   plain   no guard_policy (the pipeline with no guard stage: the reference)
#   guard   guard_policy = the default policy plus a 1,000-term blocklist:
#           input check of the message (an e-mail address gets redacted) and the
#           output stream filter on every token (hold-back window 256)
#   rag     the same guard plus "ferry": {"collection": "kb", "top_k": 2} over
#           200 documents of 12 words (stories260K has a 512-token context): hybrid retrieval, chunk guard, template (the prompt
#           grows by the sources, so the model's prefill grows too)
#
#   bench/pipeline.sh [FERRY_BIN] [ROUNDS] [SECONDS]   (defaults: build/ferry, 3, 5)
#
# Both requests/s and the server's CPU time per request (user + system from
# /proc/PID/stat over the run, divided by the requests wrk completed) are
# reported; on a shared, loaded machine the CPU time per request is the steadier
# figure. wrk: 2 threads, 8 connections, max_tokens 16 with ignore_eos (every answer is 16
# tokens whatever the prompt), temperature 0. Each round runs
# the three in turn (order rotated per round). Prints each run, then medians and
# the ratio of each to plain. Not a test: figures go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/ferry}
rounds=${2:-3}
secs=${3:-5}
shared=${FERRY_SHARED:-../shared}
model=$shared/models/stories260K/stories260K.gguf
command -v wrk >/dev/null || { echo "pipeline.sh: wrk is missing (make deps)"; exit 1; }
[[ -x $bin ]] || { echo "pipeline.sh: no ferry binary at $bin (make)"; exit 1; }
[[ -f $model ]] || { echo "pipeline.sh: $model not found (set FERRY_SHARED)"; exit 1; }
tmp=$(mktemp -d /tmp/ferry-bench-pipeline.XXXXXX)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
pa=$(free_port)
pb=$(free_port)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

python3 - "$tmp" <<'PY'
import json, sys, random
d = sys.argv[1]
rnd = random.Random(7)
terms = ["forbidden%04d" % i for i in range(1000)]
json.dump({"id": "bench", "blocklist": {"terms": terms}}, open(d + "/policy.json", "w"))
words = ("refund order shipping invoice account password delivery warranty battery screen "
         "subscription cancel upgrade support ticket payment card address label return").split()
docs = []
for i in range(200):
    body = " ".join(rnd.choice(words) for _ in range(12))
    docs.append({"id": "doc%03d" % i, "text": "# Topic %d\n\n%s." % (i, body)})
json.dump({"documents": docs}, open(d + "/docs.json", "w"))
msg = ("Hello, my order has not arrived and I would like a refund to my card. You can reach "
       "me at jane.doe@example.com about the delivery of the invoice and the return label.")
base = {"model": "st", "messages": [{"role": "user", "content": msg}], "max_tokens": 16,
        "ignore_eos": True,
        "temperature": 0}
for name, body in (("plain", base), ("guard", base),
                   ("rag", dict(base, ferry={"collection": "kb", "top_k": 2}))):
    lua = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n' \
          'wrk.body = [[%s]]\n' % json.dumps(body)
    open("%s/%s.lua" % (d, name), "w").write(lua)
PY

"$bin" serve --listen "127.0.0.1:$pa" --data "$tmp/a" --log-file /dev/null \
    --model "st=$model" &
pids+=($!)
"$bin" serve --listen "127.0.0.1:$pb" --data "$tmp/b" --log-file /dev/null \
    --model "st=$model" --guard-policy "$tmp/policy.json" &
pids+=($!)
for p in $pa $pb; do
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
done
curl -fs "http://127.0.0.1:$pb/v1/collections" -H 'Content-Type: application/json' \
    -d '{"name":"kb"}' >/dev/null
curl -fs "http://127.0.0.1:$pb/v1/collections/kb/documents" -H 'Content-Type: application/json' \
    --data-binary "@$tmp/docs.json" >/dev/null

declare -A res cpu
# server CPU seconds (user + system) of a process, from /proc
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
configs=(plain guard rag)
for r in $(seq "$rounds"); do
    for k in 0 1 2; do
        name=${configs[$(( (k + r) % 3 ))]}
        port=$pb
        [[ $name == plain ]] && port=$pa
        pid=${pids[1]}
        [[ $name == plain ]] && pid=${pids[0]}
        c0=$(cpu_s "$pid")
        out=$(wrk -t2 -c8 -d"${secs}s" -s "$tmp/$name.lua" "http://127.0.0.1:$port/v1/chat/completions")
        c1=$(cpu_s "$pid")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
        nreq=$(awk '/requests in/ {print $1}' <<<"$out")
        non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
        [[ -z $non2xx ]] || { echo "pipeline.sh: $name: $non2xx non-2xx answers"; exit 1; }
        cpr=$(awk -v a="$c0" -v b="$c1" -v n="$nreq" 'BEGIN {printf "%.3f", (b - a) * 1000 / n}')
        echo "round $r $name: $rps req/s, $cpr server CPU ms/request"
        res[$name]+="$rps "
        cpu[$name]+="$cpr "
    done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mp=$(median "${res[plain]}")
cp=$(median "${cpu[plain]}")
for name in "${configs[@]}"; do
    m=$(median "${res[$name]}")
    c=$(median "${cpu[$name]}")
    awk -v n="$name" -v m="$m" -v p="$mp" -v c="$c" -v q="$cp" 'BEGIN {printf "%-6s median %8.1f req/s (x%.3f of plain)  %7.3f CPU ms/request (x%.3f of plain)\n", n, m, m / p, c, c / q}'
done
