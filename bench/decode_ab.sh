#!/usr/bin/env bash
# bench/decode_ab.sh — decode speed of two ferry binaries, alternated run by run.
#
# For each model: ROUNDS rounds of `ferry bench-model -p 1 -n N -t T --runs 3
# --no-copy --json` with BEFORE then AFTER (so both see the same minutes of a
# shared machine), then the median over rounds of decode tokens/s and of decode
# CPU milliseconds per token (all threads, spinning included). CPU per token is
# the figure that holds up under load; tokens/s only on a quiet machine.
# With PRIO=1 each run gets its own session with autogroup nice -10 (root only):
# with autogroup scheduling a plain `nice` does not win CPU from other sessions,
# and a loaded machine then measures the scheduler, not the engine. Keep such
# runs short: they take the CPUs from everything else while they run.
# Usage: bench/decode_ab.sh BEFORE AFTER MODEL.gguf [MODEL.gguf...]
#        (env ROUNDS=5 N=128 T=2 PRIO=0)
set -euo pipefail
[[ $# -ge 3 ]] || { echo "usage: $0 BEFORE AFTER MODEL.gguf..." >&2; exit 2; }
before=$1 after=$2
shift 2
rounds=${ROUNDS:-5} n=${N:-128} t=${T:-2} prio=${PRIO:-0}
run() {
    local cmd=("$1" bench-model -m "$2" -p 1 -n "$n" -t "$t" --runs 3 --no-copy --json)
    if [[ $prio == 1 ]]; then
        setsid -w sh -c 'echo -10 > /proc/self/autogroup && exec nice -n -10 "$@"' sh "${cmd[@]}"
    else
        "${cmd[@]}"
    fi
}
echo "# $(date -u +%FT%TZ) $(nproc) cores; -p 1 -n $n -t $t, $rounds rounds, PRIO=$prio"
echo "# before: $before"
echo "# after:  $after"
for m in "$@"; do
    tmp=$(mktemp)
    for r in $(seq "$rounds"); do
        for which in before after; do
            bin=$before
            [[ $which == after ]] && bin=$after
            j=$(run "$bin" "$m")
            echo "$which $j $(cut -d' ' -f1 /proc/loadavg)" >>"$tmp"
        done
    done
    /usr/bin/python3 - "$m" "$tmp" <<'PY'
import json, statistics as st, sys
m, path = sys.argv[1], sys.argv[2]
d = {"before": [], "after": []}
for line in open(path):
    which, rest = line.split(" ", 1)
    js, load = rest.rsplit(" ", 1)
    j = json.loads(js)
    d[which].append((j["decode_tok_s"], j["decode_cpu_ms_per_tok"], float(load)))
res = {}
for w in ("before", "after"):
    v = d[w]
    res[w] = (st.median(x[0] for x in v), st.median(x[1] for x in v))
    print("%-40s %-6s decode %7.2f tok/s  CPU %8.3f ms/token  (tok/s %s; load %s)" % (
        m.split("/")[-1], w, res[w][0], res[w][1], " ".join("%.1f" % x[0] for x in v),
        " ".join("%.1f" % x[2] for x in v)))
print("%-40s after/before: decode %.2fx, CPU per token %.2fx" % (
    m.split("/")[-1], res["after"][0] / res["before"][0], res["after"][1] / res["before"][1]))
PY
    rm -f "$tmp"
done
