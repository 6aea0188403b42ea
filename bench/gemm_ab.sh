#!/usr/bin/env bash
# bench/gemm_ab.sh — A/B of the batched matmul (n activation rows) between two ferry
# binaries, in multiply-adds per CPU-second (the figure that holds up best on a shared
# machine), alternating the binaries round by round.
#
#   bench/gemm_ab.sh BEFORE AFTER [ROUNDS=7] [TYPES=q4_0,q8_0,q4_K,q6_K,f16] [N=64]
#
# Each round runs `ferry bench-kern -t 1 -n N --runs 3 --mib 16 --type TYPES` with
# each binary (the matmul is N rows x a 5632 x 2048 matrix; the matvec part is kept
# small with --mib 16). Prints, per type, the median and best GMAC per CPU-second of
# each binary and the ratio of the medians, and the load average before and after.
# A "before" binary: build with the kern_gemm_multi call in kern_matmul_multi disabled.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    sed -n '2,13p' "$0"
    exit 2
fi
before=$1 after=$2 rounds=${3:-7} types=${4:-q4_0,q8_0,q4_K,q6_K,f16} n=${5:-64}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 0; i < rounds; i++)); do
    for b in before after; do
        bin=$before
        [[ $b == after ]] && bin=$after
        "$bin" bench-kern -t 1 -n "$n" --runs 3 --mib 16 --type "$types" |
            awk -v b="$b" '/matmul/ {print b, $1, $(NF-3)}' >>"$out"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" "$n" <<'EOF'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    b, t, v = line.split()
    d[t, b].append(float(v))
print(f"matmul n={sys.argv[2]}, GMAC per CPU-second: type, before median (best), after median (best), after/before")
for t in sorted({t for t, _ in d}):
    mb, ma = statistics.median(d[t, "before"]), statistics.median(d[t, "after"])
    print(f"{t:5s} {mb:6.1f} ({max(d[t, 'before']):5.1f})  {ma:6.1f} ({max(d[t, 'after']):5.1f})  {ma / mb:5.2f}x")
EOF
