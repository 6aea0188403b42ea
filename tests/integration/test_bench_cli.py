"""ferry bench against a local ferry serve with a tiny synthetic model.

- a closed-loop sweep of two points writes JSON whose request counts, token
  counts and percentiles agree with each other (recomputed here from the
  per-request log with numpy) and with the server's own /metrics counters
  (ferry_generation_tokens_total, ferry_prompt_tokens_total,
  ferry_requests_finished_total, ferry_http_requests_total);
- prompts are a function of --seed and the request index (same prompt tokens
  at every point); --ignore-eos gives exactly --output-len tokens; cost from
  --price-in/--price-out and --hourly-cost;
- goodput with a generous SLO equals throughput, with an impossible one is 0
  (open-loop sweep, Poisson arrivals);
- --no-stream, --prompts FILE.jsonl and --shared-prefix-len;
- SIGINT mid-run exits 130 and still writes both reports (marked interrupted);
- compare prints the runs side by side and writes one HTML;
- bad flags exit 2 with a one-line message; an unreachable server fails (exit 1)
  with connect errors counted.
"""
import json
import os
import pty
import shutil
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from ferryserver import BIN, Server


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def close(a, b, rel=1e-6, abs_=1e-6):
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


def bench(*args, timeout=120):
    p = subprocess.run([BIN, "bench"] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def metrics(s):
    st, _, body = s.request("GET", "/metrics")
    check(st == 200, st)
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, val = line.rsplit(" ", 1)
        out[name] = float(val)
    return out


def msum(m, prefix):
    return sum(v for k, v in m.items() if k.startswith(prefix))


def check_dist(d, values, what):
    v = np.array(values, dtype=float)
    check(d["n"] == len(v), (what, d["n"], len(v)))
    if len(v) == 0:
        check(d["p50"] is None and d["max"] is None, (what, d))
        return
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        check(close(d[key], float(np.percentile(v, q)), rel=1e-6, abs_=1e-6),
              (what, key, d[key], float(np.percentile(v, q))))
    check(close(d["mean"], float(v.mean())) and close(d["max"], float(v.max())) and
          close(d["min"], float(v.min())), (what, d))
    check(d["min"] <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"], (what, d))


def check_point(p, n_req):
    log = p["request_log"]
    ok = [r for r in log if r["error"] == "ok"]
    check(p["requests"]["total"] == len(log) == n_req, (p["requests"], len(log)))
    check(p["requests"]["ok"] == len(ok) == n_req and p["requests"]["failed"] == 0, p["requests"])
    check(sum(p["errors"].values()) == 0, p["errors"])
    check(p["tokens"]["source"] == "usage" and all(r["usage"] for r in ok), p["tokens"])
    check(p["tokens"]["output"] == sum(r["output_tokens"] for r in ok), p["tokens"])
    check(p["tokens"]["input"] == sum(r["prompt_tokens"] for r in ok), p["tokens"])
    check_dist(p["ttft_ms"], [r["ttft_ms"] for r in ok], "ttft")
    check_dist(p["e2e_ms"], [r["e2e_ms"] for r in ok], "e2e")
    check_dist(p["tpot_ms"], [r["tpot_ms"] for r in ok if r["tpot_ms"] is not None], "tpot")
    itl = [g for r in ok for g in r["itl_ms"]]
    check(p["itl_ms"]["n"] == sum(r["itl_n"] for r in ok), p["itl_ms"])
    check_dist(p["itl_ms"], itl, "itl")
    for r in ok:
        check(0 < r["ttft_ms"] <= r["e2e_ms"], r)
        # gaps between content chunks: one fewer than the chunks after the first
        check(r["itl_n"] == max(r["chunks"] - 1, 0) and len(r["itl_ms"]) == r["itl_n"], r)
        check(sum(r["itl_ms"]) <= r["e2e_ms"] - r["ttft_ms"] + 1e-6, r)
        if r["output_tokens"] >= 2 and r["tpot_ms"] is not None:
            check(close(r["tpot_ms"] * (r["output_tokens"] - 1), r["e2e_ms"] - r["ttft_ms"],
                        rel=1e-6, abs_=1e-3), r)
    d = p["duration_s"]
    check(d > 0 and close(p["requests_per_s"], len(ok) / d), p)
    check(close(p["output_tokens_per_s"], p["tokens"]["output"] / d), p)
    check(max(r["t_start_ms"] + r["e2e_ms"] for r in log) <= d * 1000 + 1, (d, log[-1]))


def run(s, model_path, tmp):
    url = "http://127.0.0.1:%d/v1" % s.port

    # ---- bad flags: exit 2 and one line
    for args in ([], ["--url", url], ["--model", "m"], ["--url", "ftp://x", "--model", "m"],
                 ["--url", url, "--model", "m", "--concurrency", "0"],
                 ["--url", url, "--model", "m", "--concurrency", "1.5"],
                 ["--url", url, "--model", "m", "--rate", "abc"],
                 ["--url", url, "--model", "m", "--rate", "1", "--concurrency", "2"],
                 ["--url", url, "--model", "m", "--slo", "ttft=fast"],
                 ["--url", url, "--model", "m", "--slo", "latency=1s"],
                 ["--url", url, "--model", "m", "--input-len", "0"],
                 ["--url", url, "--model", "m", "--output-len", "10:x"],
                 ["--url", url, "--model", "m", "--price-in", "1"],
                 ["--url", url, "--model", "m", "--price-in", "1", "--price-out", "1",
                  "--hourly-cost", "2"],
                 ["--url", url, "--model", "m", "--num-requests", "-3"],
                 ["--url", url, "--model", "m", "--duration", "soon"],
                 ["--url", url, "--model", "m", "--prompts", os.path.join(tmp, "missing.jsonl")],
                 ["--url", url, "--model", "m", "--bogus", "1"],
                 ["--url", url, "--model", "m", "--json"],
                 ["compare"], ["compare", os.path.join(tmp, "missing.json")],
                 ["compare", "--frobnicate"]):
        rc, out, err = bench(*args)
        check(rc == 2, (args, rc, out, err))
        lines = err.strip().splitlines()
        check(len(lines) == 1 and lines[0].startswith("ferry: "), (args, err))
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}]}\n{"nope": 1}\n')
    rc, _, err = bench("--url", url, "--model", "tiny", "--prompts", bad)
    check(rc == 2 and "bad.jsonl:2" in err, (rc, err))
    rc, out, _ = bench("--help")
    check(rc == 0 and "--concurrency" in out and "--slo" in out, out)

    # ---- closed-loop sweep of two points, consistent with /metrics
    before = metrics(s)
    j1 = os.path.join(tmp, "c.json")
    n_req = 10
    rc, out, err = bench("--url", url, "--model", "tiny", "--concurrency", "1,3",
                         "--num-requests", str(n_req), "--input-len", "24:6", "--output-len", "8",
                         "--ignore-eos", "--seed", "7", "--slo", "ttft=60s,tpot=60s,e2e=60s",
                         "--price-in", "1", "--price-out", "2", "--json", j1)
    check(rc == 0, (rc, out, err))
    check(err == "", err)  # not a TTY: no progress line
    check(re.search(r"^c=1 +10 +10 +0 ", out, re.M) and re.search(r"^c=3 +10 +10 +0 ", out, re.M),
          out)
    after = metrics(s)
    r = json.load(open(j1))
    check(r["ferry_bench"] == 1 and r["model"] == "tiny" and r["url"] == url, r.keys())
    check("--concurrency 1,3" in r["command"] and r["command"].startswith("ferry bench"), r)
    check(any(m["id"] == "tiny" for m in r["server_models"]["data"]), r["server_models"])
    check(r["config"]["loads"] == [1, 3] and r["config"]["mode"] == "closed", r["config"])
    check(r["interrupted"] is False and len(r["points"]) == 2, r)
    out_tok = in_tok = ok = 0
    for p, c in zip(r["points"], (1, 3)):
        check(p["mode"] == "closed" and p["concurrency"] == c and p["rate"] is None, p)
        check_point(p, n_req)
        check(all(q["output_tokens"] == 8 for q in p["request_log"]), "ignore_eos: 8 tokens each")
        check(all(q["tpot_ms"] is not None and q["tpot_ms"] >= 0 for q in p["request_log"]), p)
        check(p["goodput"]["requests"] == n_req and p["goodput"]["share"] == 1.0 and
              close(p["goodput"]["rate"], p["requests_per_s"]), p["goodput"])
        cost = (p["tokens"]["input"] * 1 + p["tokens"]["output"] * 2) / 1e6
        check(close(p["cost"]["total"], cost) and
              close(p["cost"]["per_request"], cost / n_req) and
              close(p["cost"]["per_1k_output_tokens"], cost / p["tokens"]["output"] * 1000),
              p["cost"])
        out_tok += p["tokens"]["output"]
        in_tok += p["tokens"]["input"]
        ok += p["requests"]["ok"]
    # the same seed gives the same prompts at every point
    pa = [q["prompt_tokens"] for q in r["points"][0]["request_log"]]
    pb = [q["prompt_tokens"] for q in r["points"][1]["request_log"]]
    check(pa == pb and len(set(pa)) > 1, (pa, pb))
    gen = 'ferry_generation_tokens_total{model="tiny"}'
    prm = 'ferry_prompt_tokens_total{model="tiny"}'
    check(after[gen] - before.get(gen, 0) == out_tok, (after[gen], before.get(gen), out_tok))
    check(after[prm] - before.get(prm, 0) == in_tok, (after[prm], before.get(prm), in_tok))
    fin = 'ferry_requests_finished_total{model="tiny"'
    check(msum(after, fin) - msum(before, fin) == ok, (msum(after, fin), msum(before, fin), ok))
    chat200 = 'ferry_http_requests_total{route="/v1/chat/completions",method="POST",code="200"}'
    check(after[chat200] - before.get(chat200, 0) == ok, (after[chat200], ok))

    # ---- open loop, impossible SLO: goodput 0; hourly cost; no stream
    j2 = os.path.join(tmp, "o.json")
    rc, out, err = bench("--url", url, "--model", "tiny", "--rate", "40,80", "--num-requests", "6",
                         "--input-len", "8", "--output-len", "4", "--ignore-eos",
                         "--slo", "ttft=1us", "--hourly-cost", "3.6", "--json", j2)
    check(rc == 0, (rc, out, err))
    r2 = json.load(open(j2))
    for p, rate in zip(r2["points"], (40, 80)):
        check(p["mode"] == "open" and p["rate"] == rate and p["concurrency"] is None, p)
        check_point(p, 6)
        check(p["goodput"]["requests"] == 0 and p["goodput"]["share"] == 0 and
              p["goodput"]["rate"] == 0, p["goodput"])
        check(close(p["cost"]["total"], 3.6 * p["duration_s"] / 3600), p["cost"])
        starts = [q["t_start_ms"] for q in p["request_log"]]
        check(starts == sorted(starts) and starts[0] < 50, starts)

    j3 = os.path.join(tmp, "n.json")
    rc, out, err = bench("--url", url, "--model", "tiny", "--num-requests", "3", "--no-stream",
                         "--input-len", "8", "--output-len", "5", "--ignore-eos", "--json", j3)
    check(rc == 0, (rc, out, err))
    p = json.load(open(j3))["points"][0]
    check_point(p, 3)
    for q in p["request_log"]:
        check(q["ttft_ms"] == q["e2e_ms"] and q["itl_n"] == 0 and q["tpot_ms"] is None and
              q["output_tokens"] == 5, q)
    check(p["cost"] is None and p["goodput"] is None, p)

    # ---- prompts file and shared prefix
    pf = os.path.join(tmp, "p.jsonl")
    with open(pf, "w") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "Say hello"}]}) + "\n")
        f.write(json.dumps({"prompt": "Count to three", "max_tokens": 3}) + "\n\n")
    j4 = os.path.join(tmp, "f.json")
    rc, out, err = bench("--url", url, "--model", "tiny", "--num-requests", "4", "--prompts", pf,
                         "--output-len", "6", "--ignore-eos", "--json", j4)
    check(rc == 0, (rc, out, err))
    log = json.load(open(j4))["points"][0]["request_log"]
    check([q["output_tokens"] for q in log] == [6, 3, 6, 3], log)
    check(log[0]["prompt_tokens"] == log[2]["prompt_tokens"] != log[1]["prompt_tokens"], log)
    j5 = os.path.join(tmp, "s.json")
    rc, out, err = bench("--url", url, "--model", "tiny", "--num-requests", "4", "--prompts", pf,
                         "--output-len", "2", "--shared-prefix-len", "40", "--json", j5)
    check(rc == 0, (rc, out, err))
    log5 = json.load(open(j5))["points"][0]["request_log"]
    for a, b in zip(log, log5):
        check(b["prompt_tokens"] >= a["prompt_tokens"] + 30, (a, b))  # ~40 words more each

    # ---- compare
    rc, out, err = bench("compare", j1, j2, j3, "--html", os.path.join(tmp, "cmp.html"))
    check(rc == 0, (rc, out, err))
    check("c.json" in out and "o.json" in out and "TTFT p50 ms" in out and "c=3" in out and
          "rate=80/s" in out, out)
    html = open(os.path.join(tmp, "cmp.html")).read()
    check(html.count('<figure class="chart"') == 8 and "c.json" in html, len(html))

    # ---- a terminal on stderr gets the live progress line
    master, slave = pty.openpty()
    proc = subprocess.Popen([BIN, "bench", "--url", url, "--model", "tiny", "--num-requests", "3",
                             "--input-len", "4", "--output-len", "2"],
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out, _ = proc.communicate(timeout=60)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    check(proc.returncode == 0 and re.search(rb"\[1/1 c=1\] 3/3 done, [0-9.]+ req/s, p50 TTFT [0-9]+ ms, 0 errors", tty),
          (proc.returncode, tty))

    # ---- unreachable server: every request a connect error, exit 1
    j6 = os.path.join(tmp, "down.json")
    rc, out, err = bench("--url", "http://127.0.0.1:1/v1", "--model", "tiny", "--num-requests",
                         "2", "--json", j6)
    check(rc == 1, (rc, out, err))
    p = json.load(open(j6))["points"][0]
    check(p["errors"]["connect"] == 2 and p["requests"]["failed"] == 2 and
          p["ttft_ms"]["n"] == 0 and p["requests_per_s"] == 0, p)

    # ---- SIGINT mid-run: exit 130, partial reports written
    j7, h7 = os.path.join(tmp, "int.json"), os.path.join(tmp, "int.html")
    proc = subprocess.Popen([BIN, "bench", "--url", url, "--model", "tiny", "--concurrency", "2,4",
                             "--duration", "60s", "--input-len", "16", "--output-len", "32",
                             "--json", j7, "--html", h7],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    check(proc.returncode == 130 and time.time() - t0 < 5, (proc.returncode, out, err))
    check("interrupted" in err, err)
    r7 = json.load(open(j7))
    check(r7["interrupted"] is True and len(r7["points"]) == 1, r7["interrupted"])
    p = r7["points"][0]
    check(p["interrupted"] is True and p["requests"]["ok"] > 0 and p["duration_s"] < 10, p)
    check(p["requests"]["total"] == p["requests"]["ok"] + p["requests"]["cancelled"], p["requests"])
    check(p["errors"]["cancelled"] == p["requests"]["cancelled"] <= 2, p["errors"])
    check_dist(p["ttft_ms"], [q["ttft_ms"] for q in p["request_log"] if q["error"] == "ok"], "ttft")
    check("INTERRUPTED" in open(h7).read(), "html marks the partial run")


def main():
    tmp = tempfile.mkdtemp(prefix="ferry-bench-")
    model_path = os.path.join(tmp, "tiny.gguf")
    subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", "tiny", "--type", "q8_0",
                    "--seed", "3", "-o", model_path], check=True, capture_output=True)
    s = Server("--model", "tiny=" + model_path)
    try:
        run(s, model_path, tmp)
    finally:
        s.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
