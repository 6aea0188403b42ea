#!/usr/bin/python3
"""Runs a benchmark program and adds its CPU time to every JSON line it prints.

  ann_cpu.py PROGRAM ARGS...

For each line the program writes to stdout (it must flush per line, as
../shared/ann/bench_hnswlib_native.cpp does), prints the line with one more
field, "cpu_s": the CPU time the program's threads spent since the previous
line (since start for the first). The time comes from /proc/PID/task/*/schedstat
(nanoseconds on CPU, as the scheduler accounts them), so it measures the work,
not how long a loaded machine made the program wait. The line is read as soon
as it is written; whatever CPU the program spends between writing a line and
the read is counted in the next line, so the error does not accumulate.
"""
import json
import os
import subprocess
import sys


def cpu_ns(pid):
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
    except OSError:
        pass
    return total


def main():
    if len(sys.argv) < 2:
        print("usage: ann_cpu.py PROGRAM ARGS...", file=sys.stderr)
        return 2
    p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True, bufsize=1)
    last = 0
    for line in p.stdout:
        now = cpu_ns(p.pid)
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            print(line, flush=True)
            continue
        if now >= last:
            rec["cpu_s"] = round((now - last) / 1e9, 6)
            last = now
        print(json.dumps(rec), flush=True)
    return p.wait()


if __name__ == "__main__":
    sys.exit(main())
