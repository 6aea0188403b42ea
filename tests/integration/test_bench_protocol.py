"""ferry bench against endpoints that behave unlike ferry serve.

test_bench_cli.py drives a real `ferry serve`, which always streams `usage` and never
fails. Other OpenAI-compatible servers differ, and bench's definitions depend on it
(docs/bench.md), so this test runs bench against a small scripted endpoint in this file
(stdlib http.server; the behaviour is picked by the request's model name) and checks:

- token counts: no `usage` in the stream -> output tokens are the counted content chunks
  (role-only and empty chunks do not count), input tokens 0, `tokens.source` "chunks";
  usage on some requests only -> "mixed"; usage always -> "usage", and usage wins over the
  chunk count (a server whose chunks are not one token each);
- errors by kind: HTTP 500 -> `http` with `http_status` {"500": n}; an error object inside
  the stream -> `stream_error`; a data line that is not JSON -> `parse`; no answer within
  --timeout -> `timeout`; failed requests are in no latency statistic;
- the requests themselves: synthetic prompt and max_tokens lengths follow --input-len /
  --output-len MEAN:SD, the shared prefix is one identical system message, the same flags
  and seed send the same prompts and another seed others; --temperature, --ignore-eos,
  stream_options, the API key (starred out in the report), --no-stream;
- --duration: no request starts after it;
- open loop: the requests start on the Poisson schedule documented in docs/bench.md (gaps
  -ln(u)/R from splitmix64 seeded with seed ^ 0xA5A5A5A5DEADBEEF), recomputed here: never
  early, and late by no more than the loop's scheduling slack; the schedule's gaps have
  mean 1/R and pass a Kolmogorov-Smirnov test against the exponential distribution.
"""
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from ferryserver import BIN, skip


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def chunk(delta=None, usage=None, choices=True):
    o = {"id": "x", "object": "chat.completion.chunk", "model": "m"}
    o["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": None}] if choices else []
    if usage:
        o["usage"] = usage
    return "data: " + json.dumps(o) + "\n\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.send(200, json.dumps({"object": "list", "data": [{"id": "fake"}]}))

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, n = body["model"], body["max_tokens"]
        with self.server.lock:
            self.server.seen.append({"path": self.path, "body": body,
                                     "auth": self.headers.get("Authorization")})
        if not body.get("stream"):
            usage = {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": n + 11}
            return self.send(200, json.dumps({
                "id": "x", "object": "chat.completion", "model": model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "w " * n}}]}))
        if model == "http500":
            return self.send(500, json.dumps({"error": {"message": "boom"}}))
        if model == "slow":
            time.sleep(2.0)
            return self.send(200, "{}")
        events = [chunk({"role": "assistant"}), chunk({"content": ""})]
        if model == "streamerr":
            events += [chunk({"content": "a"}), "data: " + json.dumps(
                {"error": {"message": "engine failed", "type": "server_error"}}) + "\n\n"]
        elif model == "garbage":
            events += [chunk({"content": "a"}), "data: this is not json\n\n"]
        else:
            events += [chunk({"content": "w%d " % i}) for i in range(n)]
            events.append(chunk({}, None))
            with_usage = {"usage": True, "nousage": False, "instant": True,
                          "mixed": n % 2 == 0}[model]
            if with_usage:
                events.append(chunk(usage={"prompt_tokens": 11, "completion_tokens": n + 2,
                                           "total_tokens": n + 13}, choices=False))
            events.append("data: [DONE]\n\n")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for ev in events:
            data = ev.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if model != "instant":
                time.sleep(0.003)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Fake(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.seen = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/v1" % self.server_address[1]

    def handle_error(self, request, client_address):
        pass  # bench hung up (timeouts, parse errors): expected here


def bench(tmp, name, *args):
    path = os.path.join(tmp, name + ".json")
    p = subprocess.run([BIN, "bench"] + list(args) + ["--json", path], capture_output=True,
                       text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr, (json.load(open(path)) if os.path.exists(path)
                                              else None)


MASK = (1 << 64) - 1


class SplitMix:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return ((self.next() >> 11) + 0.5) / 9007199254740992.0


def schedule_ms(seed, rate, n):
    """docs/bench.md: the first request at 0, then gaps -ln(u)/R seconds (whole ns)."""
    g = SplitMix(seed ^ 0xA5A5A5A5DEADBEEF)
    t, out = 0, []
    for _ in range(n):
        out.append(t / 1e6)
        t += int(-math.log(g.uniform()) / rate * 1e9)
    return out


def ks_exponential(gaps, rate):
    """Kolmogorov-Smirnov distance between the sample and Exp(rate)."""
    x = sorted(gaps)
    n = len(x)
    d = 0.0
    for i, v in enumerate(x):
        f = 1 - math.exp(-rate * v)
        d = max(d, (i + 1) / n - f, f - i / n)
    return d


def take(fake):
    with fake.lock:
        out, fake.seen = fake.seen, []
    return out


def requests_sent(tmp, fake, url):
    """What bench puts in its requests, from the endpoint's side."""
    take(fake)
    rc, out, err, r = bench(tmp, "sent", "--url", url, "--model", "usage", "--concurrency", "3",
                            "--num-requests", "60", "--input-len", "40:10", "--output-len",
                            "12:4", "--seed", "9", "--shared-prefix-len", "25",
                            "--temperature", "0.7", "--ignore-eos", "--api-key", "sk-secret-1")
    check(rc == 0, (rc, out, err))
    seen = take(fake)
    check(len(seen) == 60 and all(q["path"] == "/v1/chat/completions" for q in seen), seen[:1])
    check("sk-secret-1" not in r["command"] and "--api-key" in r["command"], r["command"])
    words, outs, systems = [], [], set()
    for q in seen:
        b = q["body"]
        check(q["auth"] == "Bearer sk-secret-1", q["auth"])
        check(b["stream"] is True and b["stream_options"] == {"include_usage": True} and
              b["ignore_eos"] is True and b["temperature"] == 0.7 and b["model"] == "usage", b)
        sysm, user = b["messages"]
        check(sysm["role"] == "system" and user["role"] == "user", b["messages"])
        systems.add(sysm["content"])
        check(len(sysm["content"].split(" ")) == 25, sysm)
        words.append(len(user["content"].split(" ")))
        outs.append(b["max_tokens"])
    check(len(systems) == 1, "the shared prefix differs between requests")

    def mean_sd(v):
        m = sum(v) / len(v)
        return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))

    # lengths drawn from normal(mean, sd), rounded, at least 1: 60 draws
    m, sd = mean_sd(words)
    check(abs(m - 40) < 4 and 6 < sd < 14 and min(words) >= 1, (m, sd, words))
    m, sd = mean_sd(outs)
    check(abs(m - 12) < 2 and 2 < sd < 6 and min(outs) >= 1, (m, sd, outs))
    # the server's usage is what the report counts
    p = r["points"][0]
    check(p["tokens"]["output"] == sum(o + 2 for o in outs), p["tokens"])
    # the same flags send the same requests (prompt and max_tokens by request index, in
    # whatever order they complete); another seed sends other prompts
    bench(tmp, "sent2", "--url", url, "--model", "usage", "--concurrency", "6",
          "--num-requests", "60", "--input-len", "40:10", "--output-len", "12:4", "--seed", "9",
          "--shared-prefix-len", "25", "--temperature", "0.7", "--ignore-eos")
    again = take(fake)

    def sig(q):
        return json.dumps([q["body"]["messages"], q["body"]["max_tokens"]])

    check(sorted(map(sig, again)) == sorted(map(sig, seen)), "not a function of the seed")
    bench(tmp, "sent3", "--url", url, "--model", "usage", "--num-requests", "5",
          "--input-len", "40:10", "--output-len", "2", "--seed", "10")
    other = {q["body"]["messages"][-1]["content"] for q in take(fake)}
    check(len(other) == 5 and not other & {q["body"]["messages"][-1]["content"] for q in seen},
          "seed ignored")

    # --no-stream: a plain request; TTFT is the whole answer
    rc, out, err, r = bench(tmp, "plain", "--url", url, "--model", "usage", "--num-requests",
                            "3", "--no-stream", "--output-len", "4")
    seen = take(fake)
    check(rc == 0 and all(q["body"]["stream"] is False and "stream_options" not in q["body"]
                          for q in seen), seen)
    p = r["points"][0]
    check(p["tokens"]["output"] == 12 and p["itl_ms"]["n"] == 0, p)

    # --duration bounds the submitting: nothing starts after it, the point ends when the
    # requests in flight have finished
    rc, out, err, r = bench(tmp, "dur", "--url", url, "--model", "instant", "--concurrency",
                            "2", "--duration", "700ms", "--output-len", "1", "--input-len", "2")
    check(rc == 0, (rc, out, err))
    p = r["points"][0]
    starts = [q["t_start_ms"] for q in p["request_log"]]
    check(len(starts) >= 10 and max(starts) < 700, (len(starts), max(starts)))
    check(0.7 <= p["duration_s"] < 0.7 + 2, p["duration_s"])
    check(r["config"]["duration_s"] == 0.7 and r["config"]["num_requests"] is None, r["config"])
    take(fake)


def run(tmp, url):
    common = ["--url", url, "--num-requests", "6", "--concurrency", "2", "--input-len", "5"]

    # ---- tokens from chunks, from usage, mixed
    rc, out, err, r = bench(tmp, "nousage", *common, "--model", "nousage", "--output-len", "7")
    check(rc == 0, (rc, out, err))
    p = r["points"][0]
    check(p["tokens"]["source"] == "chunks" and p["tokens"]["output"] == 42 and
          p["tokens"]["input"] == 0, p["tokens"])
    for q in p["request_log"]:
        check(q["usage"] is False and q["chunks"] == 7 and q["output_tokens"] == 7 and
              q["itl_n"] == 6, q)
        check(abs(q["tpot_ms"] * 6 - (q["e2e_ms"] - q["ttft_ms"])) < 1e-6, q)
    rc, out, err, r = bench(tmp, "usage", *common, "--model", "usage", "--output-len", "7")
    p = r["points"][0]
    check(rc == 0 and p["tokens"]["source"] == "usage", (rc, err, p["tokens"]))
    check(p["tokens"]["output"] == 6 * 9 and p["tokens"]["input"] == 6 * 11, p["tokens"])
    check(all(q["chunks"] == 7 and q["output_tokens"] == 9 for q in p["request_log"]), p)
    pf = os.path.join(tmp, "p.jsonl")
    with open(pf, "w") as f:
        f.write('{"prompt": "a", "max_tokens": 3}\n{"prompt": "b", "max_tokens": 4}\n')
    rc, out, err, r = bench(tmp, "mixed", *common, "--model", "mixed", "--prompts", pf)
    p = r["points"][0]
    check(rc == 0 and p["tokens"]["source"] == "mixed", (rc, err, p["tokens"]))
    check(p["tokens"]["output"] == 3 * 3 + 3 * 6, p["tokens"])  # odd: 3 chunks; even: usage 6

    # ---- error kinds
    for model, kind, extra in (("http500", "http", []), ("streamerr", "stream_error", []),
                               ("garbage", "parse", []), ("slow", "timeout",
                                                          ["--timeout", "500ms"])):
        rc, out, err, r = bench(tmp, model, *common, "--model", model, "--output-len", "3",
                                *extra)
        check(rc == 1, (model, rc, out, err))  # no request succeeded
        p = r["points"][0]
        check(p["requests"] == {"total": 6, "ok": 0, "failed": 6, "cancelled": 0},
              (model, p["requests"]))
        check(p["errors"][kind] == 6 and sum(p["errors"].values()) == 6, (model, p["errors"]))
        check(all(q["error"] == kind for q in p["request_log"]), (model, p["request_log"]))
        check(p["ttft_ms"]["n"] == 0 and p["e2e_ms"]["n"] == 0 and p["requests_per_s"] == 0,
              (model, p))
        if model == "http500":
            check(p["http_status"] == {"500": 6}, p["http_status"])
        check(re.search(r"%s=6" % kind, out), (model, out))

    # ---- Poisson arrivals on the documented schedule
    rate, n = 40.0, 80
    rc, out, err, r = bench(tmp, "poisson", "--url", url, "--model", "instant", "--rate",
                            "%g" % rate, "--num-requests", str(n), "--seed", "5",
                            "--input-len", "3", "--output-len", "1")
    check(rc == 0, (rc, out, err))
    p = r["points"][0]
    check(p["requests"]["ok"] == n, p["requests"])
    starts = [q["t_start_ms"] for q in p["request_log"]]
    sched = schedule_ms(5, rate, n)
    late = [s - t for s, t in zip(starts, sched)]
    check(min(late) >= -0.5, ("a request started before its arrival time", late))
    late.sort()
    # the loop sleeps until the next arrival (ms granularity) and sends every overdue
    # arrival at once, so lateness does not accumulate; bounds allow a loaded machine
    # (ctest -j, other helpers' builds)
    check(late[n // 2] < 50 and late[n * 9 // 10] < 250, ("late arrivals", late))
    gaps = [b - a for a, b in zip(sched, sched[1:])]
    mean = sum(gaps) / len(gaps) / 1000
    check(abs(mean - 1 / rate) < 0.3 / rate, (mean, 1 / rate))
    d = ks_exponential([g / 1000 for g in gaps], rate)
    check(d < 1.63 / math.sqrt(len(gaps)), ("not exponential", d))  # KS at the 1% level
    # a different seed gives a different schedule
    check(schedule_ms(6, rate, 5) != sched[:5], "seed ignored")


def main():
    if not os.access(BIN, os.X_OK):
        skip("no ferry binary at %s (set FERRY_BIN)" % BIN)
    tmp = tempfile.mkdtemp(prefix="ferry-benchp-")
    fake = Fake()
    try:
        run(tmp, fake.url)
        requests_sent(tmp, fake, fake.url)
    finally:
        fake.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
