#!/usr/bin/env bash
# make demo: runs ferry serve with the embedded default on LISTEN.
set -euo pipefail
bin=$1 listen=$2 data=$3 model=${4:-}
mkdir -p "$data"
args=(serve --listen "$listen" --data "$data")
[[ -n $model ]] && args+=(--model "$model")
echo "demo: $bin ${args[*]}  (Ctrl-C to stop)"
exec "$bin" "${args[@]}"
