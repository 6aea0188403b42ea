#!/usr/bin/env bash
# bench/http.sh — GET /healthz throughput and p99 of ferry vs nginx, same run.
#
#   bench/http.sh [FERRY_BIN] [ROUNDS]      (defaults: build/ferry, 3)
#
# Each round runs wrk (2 threads, 256 connections, 10 s, --latency) against
# ferry serve and against nginx serving the same small static 200 on another
# loopback port; the order alternates between rounds. Both servers get the
# same number of workers (the core count) and both write one access-log line
# per request to /dev/null. Prints every round, then the medians and the
# ferry/nginx ratio of requests/s, and each server's CPU time per request
# (utime + stime of its processes over the run, from /proc, divided by the
# requests wrk completed): on a shared, noisy machine the CPU cost per request
# is the steadier figure. Not a test: numbers go to docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/ferry}
rounds=${2:-3}
for t in wrk nginx; do
    command -v $t >/dev/null || [[ -x /usr/sbin/$t ]] || { echo "http.sh: $t is missing (make deps)"; exit 1; }
done
[[ -x $bin ]] || { echo "http.sh: no ferry binary at $bin (make)"; exit 1; }
ncpu=$(nproc)
tmp=$(mktemp -d /tmp/ferry-bench-http.XXXXXX)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
fport=$(free_port)
nport=$(free_port)

cat >"$tmp/nginx.conf" <<NGX
worker_processes $ncpu;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log /dev/null;
    server {
        listen 127.0.0.1:$nport reuseport backlog=1024;
        location = /healthz {
            default_type application/json;
            return 200 '{"status":"ok"}';
        }
    }
}
NGX

ferry_pid="" nginx_pid=""
cleanup() {
    [[ -n $ferry_pid ]] && kill "$ferry_pid" 2>/dev/null && wait "$ferry_pid" 2>/dev/null || true
    [[ -n $nginx_pid ]] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" serve --listen "127.0.0.1:$fport" --data "$tmp/data" --log-file /dev/null \
    --threads "$ncpu" &
ferry_pid=$!
/usr/sbin/nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
for url in "http://127.0.0.1:$fport/healthz" "http://127.0.0.1:$nport/healthz"; do
    for _ in $(seq 100); do
        curl -fs "$url" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

# CPU ticks (utime + stime) of the given processes and their threads
cpu_ticks() {
    local t=0 p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
hz=$(getconf CLK_TCK)

# run_wrk URL PIDS... -> "req_per_s p99_ms cpu_us_per_request"
run_wrk() {
    local url=$1
    shift
    local c0 c1
    c0=$(cpu_ticks "$@")
    wrk -t2 -c256 -d10s --latency "$url" >"$tmp/wrk.out"
    c1=$(cpu_ticks "$@")
    awk -v ticks=$((c1 - c0)) -v hz="$hz" '
        /requests in/ { reqs = $1 }
        /Requests\/sec:/ { rps = $2 }
        /^ +99%/ { v = $2; ms = v + 0;
                   if (v ~ /us$/) ms = ms / 1000; else if (v ~ /ms$/) ms = ms; else if (v ~ /s$/) ms = ms * 1000;
                   p99 = ms }
        END { printf "%.0f %.2f %.1f\n", rps, p99, reqs ? ticks * 1e6 / hz / reqs : 0 }' "$tmp/wrk.out"
}

nginx_pids=$(pgrep -P "$nginx_pid" | tr '\n' ' ')
declare -a f_rps f_p99 n_rps n_p99 f_cpu n_cpu
echo "round  server  req/s  p99_ms  cpu_us/req"
for r in $(seq "$rounds"); do
    if ((r % 2)); then order="ferry nginx"; else order="nginx ferry"; fi
    for who in $order; do
        if [[ $who == ferry ]]; then
            read -r rps p99 cpu < <(run_wrk "http://127.0.0.1:$fport/healthz" "$ferry_pid")
            f_rps+=("$rps"); f_p99+=("$p99"); f_cpu+=("$cpu")
        else
            # shellcheck disable=SC2086
            read -r rps p99 cpu < <(run_wrk "http://127.0.0.1:$nport/healthz" $nginx_pids "$nginx_pid")
            n_rps+=("$rps"); n_p99+=("$p99"); n_cpu+=("$cpu")
        fi
        echo "$r      $who  $rps  $p99  $cpu"
    done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
fr=$(median "${f_rps[@]}"); fp=$(median "${f_p99[@]}")
nr=$(median "${n_rps[@]}"); np=$(median "${n_p99[@]}")
ratio=$(awk -v a="$fr" -v b="$nr" 'BEGIN { printf "%.2f", a / b }')
fc=$(median "${f_cpu[@]}"); nc=$(median "${n_cpu[@]}")
echo "median ferry: $fr req/s, p99 $fp ms, $fc us CPU per request"
echo "median nginx: $nr req/s, p99 $np ms, $nc us CPU per request"
echo "ratio ferry/nginx req/s: $ratio (goal >= 0.8); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
