#!/usr/bin/env bash
# bench/model.sh — engine speed (ferry bench-model) on the smollm-135m and
# tinyllama-1.1b shapes at Q8_0 and Q4_0, 2 threads, prefill 512 / decode 128,
# median of 3 runs each. Models are made once with `ferry model init` (seeded
# random weights) into $OUT (default build/bench-models).
# Usage: bench/model.sh [FERRY_BIN] [OUT_DIR]
set -euo pipefail
bin=${1:-build/ferry}
out=${2:-build/bench-models}
mkdir -p "$out"
printf "%-16s %-5s %10s %10s %9s %10s %8s\n" shape type prefill/s decode/s "copy GB/s" roofline/s share
for shape in smollm-135m tinyllama-1.1b; do
    for type in q8_0 q4_0; do
        f="$out/$shape-$type.gguf"
        [[ -s $f ]] || "$bin" model init --arch llama --shape "$shape" --type "$type" --seed 1 -o "$f" >/dev/null
        j=$("$bin" bench-model -m "$f" -p 512 -n 128 -t 2 --runs 3 --json)
        /usr/bin/python3 -c '
import json, sys
shape, typ, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print("%-16s %-5s %10.1f %10.1f %9.2f %10.1f %7.0f%%" % (shape, typ, j["prefill_tok_s"],
      j["decode_tok_s"], j["copy_bandwidth_gb_s"], j["roofline_tok_s"], 100 * j["roofline_share"]))
' "$shape" "$type" "$j"
    done
done
