#!/usr/bin/env bash
# make demo: runs ferry serve with the embedded default (SQLite under DATA) on
# LISTEN and serves MODEL, or, when none is given, a small model that
# `ferry model init` writes once into DATA (random weights, real llama layout).
set -euo pipefail
bin=$1 listen=$2 data=$3 model=${4:-}
mkdir -p "$data"
if [[ -z $model ]]; then
    model="$data/demo-llama-tiny-q8_0.gguf"
    if [[ ! -f $model ]]; then
        echo "demo: no MODEL= given; creating $model with ferry model init"
        "$bin" model init --arch llama --shape tiny --type q8_0 --seed 1 -o "$model"
    fi
    model="demo=$model"
fi
args=(serve --listen "$listen" --data "$data" --model "$model")
echo "demo: $bin ${args[*]}  (Ctrl-C to stop)"
exec "$bin" "${args[@]}"
