#!/bin/bash
# bench/ann.sh — ferry's HNSW index against hnswlib on the shared ANN data sets.
#
# Generates clustered-128 (L2) and embed-384 (IP) — 100,000 base vectors, 1,000
# queries, exact ground truth — with ../shared/ann/gen_dataset.py into a temporary
# directory, then in the same run, one thread, M=16, ef_construction=200:
#   ferry    `ferry bench-index` (our HNSW)
#   native   hnswlib 0.6.2 from Debian's libhnswlib-dev headers compiled with
#            -O3 -march=native (AVX2) from ../shared/ann/bench_hnswlib_native.cpp
#   python   Debian's python3-hnswlib through ../shared/ann/bench_ann.py (SSE)
# RUNS rounds (default 3), the three interleaved in each round so machine noise
# hits them alike; prints medians per ef (recall@10, queries/s) plus build time and
# memory, and the ratios ferry/native at the first ef reaching recall@10 >= 0.95.
#
# Wall-clock queries/s swing with the load of a shared machine; the median
# single-query latency (p50) hardly does (a 100 us query is rarely preempted), so
# the summary also gives the ratio of p50 latencies at the same ef.
#
# usage: bench/ann.sh [RUNS]          measure, then summarize
#        bench/ann.sh --summary DIR   summarize DIR/results of an earlier run (ANN_DIR)
#   env: FERRY_BIN (default build/ferry), FERRY_SHARED (default ../shared),
#        ANN_DIR (keep data here and reuse it; default a temporary dir, removed),
#        DATASETS (default "clustered-128 embed-384"), SKIP_PYTHON=1,
#        ROUND_START (number of the first round, to add rounds to an ANN_DIR)
# needs: apt-get install python3-numpy python3-hnswlib python3-faiss libhnswlib-dev g++
#        (bench_ann.py imports faiss even for hnswlib)
set -euo pipefail
cd "$(dirname "$0")/.."
SUMMARY_ONLY=
if [ "${1:-}" = "--summary" ]; then SUMMARY_ONLY=${2:?usage: ann.sh --summary DIR}; fi
RUNS=${1:-3}
[ -n "$SUMMARY_ONLY" ] && RUNS=0
BIN=${FERRY_BIN:-build/ferry}
SHARED=${FERRY_SHARED:-../shared}
DATASETS=${DATASETS:-"clustered-128 embed-384"}
PY=/usr/bin/python3
[ -n "$SUMMARY_ONLY" ] || [ -x "$BIN" ] || { echo "ann.sh: $BIN not built (make build)" >&2; exit 2; }
[ -f "$SHARED/ann/gen_dataset.py" ] || { echo "ann.sh: $SHARED/ann missing" >&2; exit 2; }
if [ -n "$SUMMARY_ONLY" ]; then D=$SUMMARY_ONLY
elif [ -n "${ANN_DIR:-}" ]; then D=$ANN_DIR; mkdir -p "$D"; else
  D=$(mktemp -d /tmp/ferry-ann.XXXXXX); trap 'rm -rf "$D"' EXIT; fi
OUT=$D/results; mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

[ -z "$SUMMARY_ONLY" ] && for ds in $DATASETS; do
  [ -f "$D/${ds}_groundtruth.ivecs" ] || $PY "$SHARED/ann/gen_dataset.py" "$D" --only "$ds" >&2
done
NATIVE=$D/bench_hnswlib_avx2
[ -n "$SUMMARY_ONLY" ] || [ -x "$NATIVE" ] || g++ -O3 -march=native -DNDEBUG -o "$NATIVE" \
  "$SHARED/ann/bench_hnswlib_native.cpp" -lpthread

[ -z "$SUMMARY_ONLY" ] && echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) on $(getconf _NPROCESSORS_ONLN) cores" >&2
run_ferry() {
  echo "round $r $ds: ferry" >&2
  "$BIN" bench-index --base "$D/${ds}_base.fvecs" --queries "$D/${ds}_query.fvecs" \
    --truth "$D/${ds}_groundtruth.ivecs" --metric $m --M 16 --ef-construction 200 \
    --ef 10,16,32,64,128,256 -k 10 --runs 5 --json > "$OUT/ferry_${ds}_$r.jsonl"
}
run_native() {
  echo "round $r $ds: hnswlib native avx2" >&2
  local f="$OUT/native_${ds}_$r.jsonl" pid t
  "$NATIVE" "$D" "$ds" 16 200 1 0 1 > "$f" &
  pid=$!
  # Its build CPU time: user+system ticks of the process when its first line
  # (the build record) appears, polled every 0.1 s.
  while kill -0 $pid 2>/dev/null && [ ! -s "$f" ]; do
    t=$(awk '{print $14 + $15}' /proc/$pid/stat 2>/dev/null || echo 0); sleep 0.1; done
  echo "{\"build_cpu_s\":$(awk -v t="${t:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN{print t/hz}')}" \
    > "$OUT/nativecpu_${ds}_$r.json"
  wait $pid
}
run_python() {
  [ -n "${SKIP_PYTHON:-}" ] && return 0
  echo "round $r $ds: hnswlib python" >&2
  $PY "$SHARED/ann/bench_ann.py" "$D" "$ds" hnswlib --M 16 --efc 200 \
    > "$OUT/python_${ds}_$r.jsonl" 2>/dev/null
}
# Rounds are numbered from ROUND_START (default 1) so a later call can add rounds;
# the order rotates each round so a change of machine load does not favour one side.
R0=${ROUND_START:-1}
for i in $(seq 1 "$RUNS"); do
  r=$((R0 + i - 1))
  for ds in $DATASETS; do
    case $ds in clustered*) m=l2 ;; *) m=ip ;; esac
    case $((r % 3)) in
      1) run_ferry; run_native; run_python ;;
      2) run_native; run_python; run_ferry ;;
      0) run_python; run_ferry; run_native ;;
    esac
  done
done
[ -z "$SUMMARY_ONLY" ] && echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)" >&2

$PY - "$OUT" $DATASETS <<'PYEOF'
import glob, json, os, statistics as st, sys
out, sets = sys.argv[1], sys.argv[2:]
med = lambda v: st.median(v) if v else float("nan")

def load(impl, ds):
    runs, cpus = [], []
    for p in sorted(glob.glob(os.path.join(out, f"{impl}_{ds}_*.jsonl"))):
        rows = [json.loads(l) for l in open(p) if l.strip()]
        if not rows:
            continue
        build, mem, sweep = None, None, {}
        if impl == "ferry":
            build, mem = rows[0]["build_s"], rows[0]["index_rss_mib"]
            for x in rows[1:]:
                sweep[x["ef"]] = (x["recall"], x["qps_median"], x["p50_us"])
        elif impl == "native":
            build, mem = rows[0]["build_s"], rows[0]["index_rss_mib"]
            for x in rows[1:]:
                if "ef" in x:
                    sweep[x["ef"]] = (x["recall10"], x["qps_median"], x["p50_us"])
        else:
            build, mem = rows[-1]["build_s"], rows[-1]["index_rss_mib"]
            for x in rows[-1]["sweep"]:
                sweep[x["ef"]] = (x["recall10"], x["batch_qps_median"], x["single_p50_us"])
        cpu = None
        if impl == "ferry":
            cpu = rows[0].get("build_cpu_s")
        elif impl == "native":
            cp = p.replace("native_", "nativecpu_").replace(".jsonl", ".json")
            if os.path.exists(cp):
                cpu = json.load(open(cp))["build_cpu_s"]
        cpus.append(cpu)
        runs.append((build, mem, sweep))
    if not runs:
        return None
    efs = sorted(set.intersection(*[set(s) for _, _, s in runs]))
    return dict(n=len(runs), build=med([b for b, _, _ in runs]), mem=med([m for _, m, _ in runs]),
                build_all=[b for b, _, _ in runs],
                build_cpu=med([c for c in cpus if c is not None]),
                sweep={ef: (med([s[ef][0] for _, _, s in runs]), med([s[ef][1] for _, _, s in runs]),
                            [s[ef][1] for _, _, s in runs], med([s[ef][2] for _, _, s in runs]))
                       for ef in efs})

def at95(r):
    for ef, (rec, qps, _, _) in sorted(r["sweep"].items()):
        if ef <= 256 and rec >= 0.95:
            return ef, rec, qps
    return None, None, None

for ds in sets:
    res = {i: load(i, ds) for i in ("ferry", "native", "python")}
    print(f"\n{ds}  (medians of {res['ferry']['n'] if res['ferry'] else 0} rounds, one thread, M=16, efc=200)")
    print("per ef: recall@10 / queries/s (wall, median) / p50 us")
    print(f"{'impl':8} {'build s':>8} {'RSS MiB':>8}   " + "  ".join(f"{'ef=' + str(ef):>22}" for ef in (10, 16, 32, 64, 128, 256)))
    for impl, r in res.items():
        if not r:
            continue
        cells = []
        for ef in (10, 16, 32, 64, 128, 256):
            if ef in r["sweep"]:
                rec, qps, _, p50 = r["sweep"][ef]
                cells.append(f"{rec:.4f} {qps:7.0f} {p50:6.1f}")
            else:
                cells.append(" " * 22)
        print(f"{impl:8} {r['build']:8.1f} {r['mem']:8.1f}   " + "  ".join(cells))
        print(f"{'':8} build runs (wall s): {', '.join(f'{b:.1f}' for b in r['build_all'])}; build CPU s (median): {r['build_cpu']:.1f}")
    f, nat = res["ferry"], res["native"]
    if f and nat:
        fe, frec, fq = at95(f)
        ne, nrec, nq = at95(nat)
        print(f"recall@10 >= 0.95: ferry ef={fe} {frec:.4f} {fq:.0f} q/s (runs {', '.join(f'{q:.0f}' for q in f['sweep'][fe][2])}); "
              f"native ef={ne} {nrec:.4f} {nq:.0f} q/s (runs {', '.join(f'{q:.0f}' for q in nat['sweep'][ne][2])})")
        print(f"ratios ferry/native: q/s at recall>=0.95 {fq / nq:.2f}x (goal >= 1), build {f['build'] / nat['build']:.2f}x (goal <= 1.2), "
              f"memory {f['mem'] / nat['mem']:.2f}x (goal <= 1)")
        same = [ef for ef in f["sweep"] if ef in nat["sweep"]]
        print("q/s ratio at equal ef (wall): " + ", ".join(f"ef={ef} {f['sweep'][ef][1] / nat['sweep'][ef][1]:.2f}x" for ef in sorted(same)))
        print("speed ratio at equal ef from p50 latency (native p50 / ferry p50): " + ", ".join(f"ef={ef} {nat['sweep'][ef][3] / f['sweep'][ef][3]:.2f}x" for ef in sorted(same)))
        print(f"build by CPU time: ferry {f['build_cpu']:.1f} s, native {nat['build_cpu']:.1f} s -> {f['build_cpu'] / nat['build_cpu']:.2f}x")
        print(f"at recall>=0.95 by p50: ferry ef={fe} {f['sweep'][fe][3]:.1f} us, native ef={ne} {nat['sweep'][ne][3]:.1f} us -> {nat['sweep'][ne][3] / f['sweep'][fe][3]:.2f}x")
PYEOF
