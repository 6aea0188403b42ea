#!/usr/bin/python3
"""`ferry bench-model` reports what bench/model.sh and docs/BENCHMARKS.md read.

* --json carries prefill/decode tokens/s, decode CPU ms per token (all threads),
  weight bytes per token, and the copy-bandwidth probe as median, min and max of one
  probe per run, with roofline = bandwidth / weight bytes and share = decode / roofline.
* --no-copy skips the probe: bandwidth, roofline and share are 0, the rest is measured.
* Bad flags exit 2 with one line.
Uses a tiny `model init` file, so it runs in about a second.
"""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("FERRY_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FERRY_BIN", os.path.join(SRC, "build", "ferry"))
FAILS = []


def run(*args):
    p = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def expect(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)


def main():
    with tempfile.TemporaryDirectory() as d:
        m = os.path.join(d, "tiny-q8_0.gguf")
        rc, _, err = run("model", "init", "--arch", "llama", "--shape", "tiny", "--type", "q8_0",
                         "-o", m)
        if rc != 0:
            print("FAIL: model init: %s" % err)
            return 1
        rc, out, err = run("bench-model", "-m", m, "-p", "8", "-n", "4", "-t", "2", "--runs", "3",
                           "--json")
        expect(rc == 0, "bench-model --json: rc %d %s" % (rc, err))
        j = json.loads(out) if rc == 0 else {}
        for k in ("prefill_tok_s", "decode_tok_s", "decode_cpu_ms_per_tok",
                  "copy_bandwidth_gb_s", "copy_bandwidth_min_gb_s", "copy_bandwidth_max_gb_s",
                  "roofline_tok_s", "roofline_share", "weight_bytes_per_token"):
            expect(k in j and j[k] > 0, "%s missing or not positive: %r" % (k, j.get(k)))
        if j:
            expect(j["threads"] == 2 and j["runs"] == 3 and j["n_gen"] == 4, "echoed options %r" % j)
            expect(j["copy_bandwidth_min_gb_s"] <= j["copy_bandwidth_gb_s"]
                   <= j["copy_bandwidth_max_gb_s"], "median within min..max: %r" % j)
            roof = j["copy_bandwidth_gb_s"] * 1e9 / j["weight_bytes_per_token"]
            expect(abs(j["roofline_tok_s"] - roof) <= 0.01 * roof + 0.01,
                   "roofline %.2f != bandwidth / weight bytes %.2f" % (j["roofline_tok_s"], roof))
            expect(abs(j["roofline_share"] - j["decode_tok_s"] / j["roofline_tok_s"]) < 1e-3,
                   "share != decode / roofline: %r" % j)
            # CPU per token: at most 2 threads' worth of the wall time per token, plus slack
            expect(j["decode_cpu_ms_per_tok"] < 2 * 1000.0 / j["decode_tok_s"] * 1.5 + 1.0,
                   "decode CPU %.3f ms/token vs %.1f tok/s on 2 threads"
                   % (j["decode_cpu_ms_per_tok"], j["decode_tok_s"]))
        rc, out, err = run("bench-model", "-m", m, "-p", "4", "-n", "2", "-t", "1", "--runs", "1",
                           "--json", "--no-copy")
        expect(rc == 0, "--no-copy: rc %d %s" % (rc, err))
        j = json.loads(out) if rc == 0 else {}
        expect(j.get("copy_bandwidth_gb_s") == 0 and j.get("roofline_share") == 0,
               "--no-copy reports no bandwidth: %r" % j)
        expect(j.get("decode_tok_s", 0) > 0 and j.get("decode_cpu_ms_per_tok", 0) > 0,
               "--no-copy still measures decode: %r" % j)
        rc, out, _ = run("bench-model", "-m", m, "-p", "4", "-n", "2", "--runs", "1", "--no-copy")
        expect(rc == 0 and "decode CPU" in out and "ms/token" in out, "text output: %r" % out)
        for args in (("--runs", "0"), ("-n", "0"), ("-t", "0"), ("--frob",)):
            rc, _, err = run("bench-model", "-m", m, *args)
            expect(rc == 2 and len(err.strip().split("\n")) == 1, "%r: rc %d %r" % (args, rc, err))
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
