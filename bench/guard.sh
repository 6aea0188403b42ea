#!/usr/bin/env bash
# Guard throughput: every detector (PII + secrets candidate pass and validators,
# normalization + 10,000-term blocklist, injection rules with encoded-payload
# checks) over mixed English/Chinese text, one thread, through the real
# `ferry guard scan --lines` path. Reference in the same run: GNU grep -F with
# the same 10,000 terms (blocklist only, no normalization).
# Times are CPU seconds (user+sys), medians of `runs`.
# usage: bench/guard.sh [build/ferry] [MB=48] [runs=5]
set -euo pipefail
bin=${1:-build/ferry}
mb=${2:-48}
runs=${3:-5}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 "$(dirname "$0")/guard_gen.py" "$dir" "$mb"
bytes=$(stat -c %s "$dir/text.txt")
# CPU seconds (user + sys) of the command: the machine is shared, and one
# thread's CPU time is the per-core figure; wall time is printed beside it.
secs() { /usr/bin/time -f "%U %S %e" -o "$dir/t" "$@" >/dev/null || true; awk '{print $1 + $2}' "$dir/t"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Fixed cost (policy load: 10,000 terms compiled) measured on empty input.
fixed=$(for i in $(seq "$runs"); do secs "$bin" guard scan --json --lines --policy "$dir/policy.json" </dev/null; done | median)
scan=$(for i in $(seq "$runs"); do secs sh -c "\"$bin\" guard scan --json --lines --policy \"$dir/policy.json\" < \"$dir/text.txt\" || true"; done | median)
# grep writes its count to a file: with output to /dev/null GNU grep stops at
# the first match (it behaves like -q), which made the reference look ~70x
# faster than a full scan.
grepf=$(for i in $(seq "$runs"); do secs sh -c "LC_ALL=C grep -F -c -f \"$dir/terms.txt\" \"$dir/text.txt\" > \"$dir/grep.out\" || true"; done | median)
mbps() { echo "$bytes / 1048576 / $1" | bc -l; }
printf 'text: %.1f MiB, %s runs, medians\n' "$(echo "$bytes/1048576" | bc -l)" "$runs"
printf 'policy load (10,000 terms): %.3f s\n' "$fixed"
printf 'ferry guard scan (all detectors): %.1f MiB/s (%.3f s, load excluded)\n' \
    "$(mbps "$(echo "$scan - $fixed" | bc -l)")" "$(echo "$scan - $fixed" | bc -l)"
printf 'grep -F 10,000 terms (reference): %.1f MiB/s (%.3f s)\n' "$(mbps "$grepf")" "$grepf"
printf 'ratio guard/grep: %.2f\n' "$(echo "($grepf) / ($scan - $fixed)" | bc -l)"
