"""ferry eval against a local `ferry serve` with two seeded tiny llama models (a, b) and a
tiny bert embedder.

The models are random, so the test first asks the server directly (temperature 0, the
seed eval will use) what each model answers, then writes cases whose assertions are built
from those answers, so that every outcome is known before eval runs:

- every assertion type passes on one case and fails on another, with the failure detail
  checked (similar: cosine computed here from /v1/embeddings; json-valid/json-schema on an
  answer restricted to digits by the case's params.logit_bias);
- judge: the judge endpoint is a small rule-based OpenAI-compatible server in this file
  (no model small enough to run here can follow a rubric); it records every request so the
  test checks what eval sends (model, temperature 0, key, rubric, input, response,
  reference) and how it reads PASS/FAIL with the reason. A real tiny model as judge answers
  neither PASS nor FAIL, and that case must fail saying so;
- seeds: with --temperature 0.9 --seed 7 --repeat 2, run r of every target must equal a
  direct request with seed 7 + r at temperature 0.9; one model twice as two targets with
  different --params;
- paired statistics on 10 cases with a pattern fixed by construction (A passes 3, B passes
  8; B-only 6, A-only 1, both 2, neither 1): won/lost/tied, McNemar's exact p (hand:
  2 * (1 + 7) / 2^7 = 0.125), Wilson intervals (hand values in the unit test), per-tag
  numbers, cost from the token counts, and the bootstrap interval recomputed here from the
  documented algorithm (splitmix64 -> xoshiro256**, numpy linear quantiles);
- --repeat 3 at temperature 0 (repeats agree): the pass-rate interval, clustered by case,
  must stay Wilson over the 10 cases (n_eff 10), not Wilson(9, 30); per target and per tag
  it is recomputed here from the runs with the documented formula;
- gates: a failing gate exits 1 and names the gate and target; passing gates exit 0;
- a runs counter on a terminal (pty), nothing on stderr otherwise;
- SIGINT mid-run exits 130 and writes both reports, marked interrupted, covering the
  finished runs;
- a bad data line exits 2 naming file and line.
"""
import http.server
import json
import math
import os
import pty
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ferryserver import BIN, Server


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def post(s, path, body):
    st, _, data = s.request("POST", path, body=json.dumps(body),
                            headers={"Content-Type": "application/json"}, timeout=60)
    check(st == 200, (path, st, data))
    return json.loads(data)


def complete(s, model, prompt, seed=1, temperature=0.0, max_tokens=8, **extra):
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": temperature, "seed": seed}
    body.update(extra)
    v = post(s, "/v1/completions", body)
    return v["choices"][0]["text"], v["usage"]


def embed(s, texts):
    v = post(s, "/v1/embeddings", {"input": texts})
    return [d["embedding"] for d in sorted(v["data"], key=lambda d: d["index"])]


def cosine(x, y):
    dot = sum(a * b for a, b in zip(x, y))
    return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))


def run_eval(args, expect_rc=None):
    p = subprocess.run([BIN, "eval"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=300)
    out, err = p.stdout.decode(), p.stderr.decode()
    if expect_rc is not None and p.returncode != expect_rc:
        raise AssertionError("ferry eval %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s" %
                             (" ".join(args), p.returncode, expect_rc, out, err))
    return p.returncode, out, err


def write_jsonl(path, cases):
    with open(path, "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")


# ------------------------------------------------------------------ judge server

class Judge(http.server.ThreadingHTTPServer):
    """OpenAI-compatible chat endpoint applying a fixed rule: a rubric "must contain: X"
    passes when the text after "RESPONSE:" contains X. Records every request."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), JudgeHandler)
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/v1" % self.server_address[1]


class JudgeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        if body["model"] == "latin1":  # a proxy's error page, not UTF-8
            page = b"<html>Bad gateway \xe9t\xe9</html>"
            self.send_response(502)
            self.send_header("Content-Type", "text/html; charset=iso-8859-1")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        with self.server.lock:
            self.server.requests.append({"path": self.path, "body": body,
                                         "auth": self.headers.get("Authorization")})
        user = body["messages"][-1]["content"]
        rubric = user.split("RUBRIC:\n", 1)[1].split("\n\nINPUT:\n", 1)[0]
        response = user.split("\n\nRESPONSE:\n", 1)[1].split("\nREFERENCE:\n", 1)[0]
        want = rubric.split("must contain: ", 1)[1]
        if want in response:
            answer = "PASS: the response contains %s." % want
        else:
            answer = "**FAIL** - the response lacks %s." % want
        out = json.dumps({"id": "j", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": answer}}],
                          "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                    "total_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


# ------------------------------------------------------------------ bootstrap replica

MASK = (1 << 64) - 1


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Rng:
    def __init__(self, seed):
        x, self.s = seed, []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def next(self):
        s = self.s
        out = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return out

    def below(self, n):
        return min(int(((self.next() >> 11) * 2.0 ** -53) * n), n - 1)


def quantile(v, q):
    v = sorted(v)
    h = (len(v) - 1) * q
    i = int(math.floor(h))
    if i + 1 >= len(v):
        return v[-1]
    return v[i] + (h - i) * (v[i + 1] - v[i])


def bootstrap(a, b, resamples, seed):
    r, n, d = Rng(seed), len(a), []
    for _ in range(resamples):
        s = 0.0
        for _ in range(n):
            i = r.below(n)
            s += a[i] - b[i]
        d.append(s / n)
    return quantile(d, 0.025), quantile(d, 0.975)


# ------------------------------------------------------------------ intervals

Z95 = 1.959963984540054


def wilson(k, n, z=Z95):
    """Wilson score interval; n may be fractional (an effective sample size)."""
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def cluster_ci(runs, target):
    """docs/eval.md: Wilson with Kish's effective sample size from the between-case
    variance of the ratio estimator; n_eff = cases when p is 0 or 1."""
    per = {}
    for x in runs:
        if x["target"] == target:
            k, n = per.get(x["case"], (0, 0))
            per[x["case"]] = (k + (1 if x["pass"] else 0), n + 1)
    big_n = sum(n for _, n in per.values())
    p = sum(k for k, _ in per.values()) / big_n
    v = sum((k - p * n) ** 2 for k, n in per.values()) / big_n ** 2
    if p in (0.0, 1.0):
        ne = len(per)
    elif v <= 0 or p * (1 - p) / v > big_n:
        ne = big_n
    else:
        ne = max(1.0, p * (1 - p) / v)
    lo, hi = wilson(p * ne, ne)
    return lo, hi, ne


def cases_of(path):
    return [json.loads(line) for line in open(path) if line.strip()]


# ------------------------------------------------------------------ the test

PROMPTS = ["Hello", "The cat", "Once upon a time", "2+2=", "Tell me a story",
           "Why is the sky blue?", "abc", "xyz", "List three colors", "def f(x):"]


def main():
    work = tempfile.mkdtemp(prefix="ferry-eval-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("ok")


def run(work):
    models = {}
    for name, seed in (("a", 1), ("b", 2)):
        models[name] = os.path.join(work, name + ".gguf")
        subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", "tiny", "--type",
                        "f32", "--seed", str(seed), "-o", models[name]], check=True)
    bert = os.path.join(work, "bert.gguf")
    subprocess.run([BIN, "model", "init", "--arch", "bert", "--shape", "tiny", "--type", "f32",
                    "--seed", "5", "-o", bert], check=True)
    s = Server("--model", "a=" + models["a"], "--model", "b=" + models["b"],
               "--embedding-model", bert)
    judge = Judge()
    try:
        url = "http://127.0.0.1:%d/v1" % s.port
        assertions(s, url, judge, work)
        seeds(s, url, work)
        paired(s, url, work)
        interrupt(url, work)
        progress_tty(url, work)
        usage_errors(url, work)
    finally:
        judge.shutdown()
        s.stop()


def data2_path(work):
    path = os.path.join(work, "one.jsonl")
    write_jsonl(path, [{"id": "one", "prompt": "Hello"}])
    return path


def assertions(s, url, judge, work):
    out = {p: complete(s, "a", p)[0] for p in PROMPTS[:4]}
    o0, o1 = out["Hello"], out["The cat"]
    check(o0 != o1, "two prompts gave the same answer")
    letters = [ch for ch in o1 if ch.isascii() and ch.isalpha()]
    check(len(letters) >= 2, "no letters in %r" % o1)
    # a substring of o1 that is two ASCII letters in a row, for icontains
    sub2 = next(o1[i:i + 2] for i in range(len(o1) - 1)
                if o1[i:i + 2].isascii() and o1[i:i + 2].isalpha())
    digit_bias = {str(t): 100 for t in range(49, 58)}  # byte tokens "1".."9"
    digits, _ = complete(s, "a", "Hi", logit_bias=digit_bias)
    check(digits.isdigit() and digits[0] != "0", digits)
    try:
        json.loads(o0)
        raise AssertionError("the random answer %r is valid JSON" % o0)
    except ValueError:
        pass
    far = "a sentence about something else entirely"
    e0, ef = embed(s, [o0, far])
    cos_far = cosine(e0, ef)
    check(cos_far < 0.9999, cos_far)

    def case(cid, prompt, asrt, expect, **kw):
        c = {"id": cid, "prompt": prompt, "assert": [asrt], "tags": [asrt if isinstance(
            asrt, str) else asrt["type"]]}
        c.update(kw)
        c["_expect"] = expect
        return c

    P, F = True, False
    cases = [
        case("eq+", "Hello", {"type": "equals", "value": o0}, P),
        case("eq-", "Hello", {"type": "equals", "value": o0 + "!"}, F),
        case("co+", "Hello", {"type": "contains", "value": o0[1:4]}, P),
        case("co-", "Hello", {"type": "contains", "value": o1}, F),
        case("ic+", "The cat", {"type": "icontains", "value": sub2.swapcase()}, P),
        case("ic-", "The cat", {"type": "icontains", "value": "qqzzqq"}, F),
        case("nc+", "Hello", {"type": "not-contains", "value": "qqzzqq"}, P),
        case("nc-", "Hello", {"type": "not-contains", "value": o0[:2]}, F),
        case("re+", "Hello", {"type": "regex", "value": "^\\Q" + o0[:3] + "\\E"}, P),
        case("re-", "Hello", {"type": "regex", "value": "^\\Q" + o0[:3] + "\\E\\d{50}"}, F),
        case("jv+", "Hi", "json-valid", P, params={"logit_bias": digit_bias}),
        case("jv-", "Hello", "json-valid", F),
        case("js+", "Hi", {"type": "json-schema", "value": {"type": "integer"}}, P,
             params={"logit_bias": digit_bias}),
        case("js-", "Hi", {"type": "json-schema", "value": {"type": "string"}}, F,
             params={"logit_bias": digit_bias}),
        case("ml+", "Hello", {"type": "max-latency-ms", "value": 60000}, P),
        case("ml-", "Hello", {"type": "max-latency-ms", "value": 0}, F),
        case("mt+", "Hello", {"type": "max-tokens", "value": 8}, P),
        case("mt-", "Hello", {"type": "max-tokens", "value": 3}, F),
        case("si+", "Hello", {"type": "similar", "threshold": 0.9999}, P, reference=o0),
        case("si-", "Hello", {"type": "similar", "threshold": 0.9999, "value": far}, F),
        case("ju+", "Hello", {"type": "judge", "value": "must contain: " + o0[:3]}, P,
             reference="the reference"),
        case("ju-", "Hello", {"type": "judge", "value": "must contain: qqzzqq"}, F),
    ]
    expect = {c["id"]: c.pop("_expect") for c in cases}
    data = os.path.join(work, "assert.jsonl")
    write_jsonl(data, cases)
    rep = os.path.join(work, "assert.json")
    os.environ["EVAL_JUDGE_KEY"] = "judge-secret"
    rc, text, err = run_eval(["--data", data, "--target", "A=%s,a" % url, "--max-tokens", "8",
                              "--embed", "%s,bert" % url,
                              "--judge", "%s,judge-model,$EVAL_JUDGE_KEY" % judge.url,
                              "--concurrency", "3", "--json", rep], expect_rc=0)
    r = json.load(open(rep))
    runs = {x["case"]: x for x in r["runs"]}
    check(len(runs) == len(cases), runs.keys())
    for cid, want in expect.items():
        check(runs[cid]["pass"] == want, (cid, runs[cid]))
        check(runs[cid]["assertions"][0]["pass"] == want, (cid, runs[cid]))
    det = {cid: runs[cid]["assertions"][0].get("detail", "") for cid in runs}
    check(det["eq-"].startswith("expected exactly"), det["eq-"])
    check("did not find" in det["co-"], det["co-"])
    check("ignoring case" in det["ic-"], det["ic-"])
    check(det["nc-"].startswith("found"), det["nc-"])
    check("does not match" in det["re-"], det["re-"])
    check(det["jv-"].startswith("not valid JSON"), det["jv-"])
    check(det["js-"] == "$: expected string, got integer", det["js-"])
    check(det["ml-"].startswith("latency ") and det["ml-"].endswith("> 0 ms"), det["ml-"])
    check(det["mt-"] == "8 completion tokens > 3", det["mt-"])
    check(det["si-"].startswith("cosine "), det["si-"])
    check(abs(runs["si-"]["assertions"][0]["score"] - cos_far) < 1e-4,
          (runs["si-"]["assertions"][0], cos_far))
    check(runs["si+"]["assertions"][0]["score"] > 0.99999, runs["si+"])
    check(det["ju-"] == "judge: FAIL: the response lacks qqzzqq.", det["ju-"])
    check(runs["ju+"]["assertions"][0]["reason"].startswith("the response contains"),
          runs["ju+"])
    check(runs["eq+"]["output"] == o0 and runs["eq+"]["completion_tokens"] == 8, runs["eq+"])
    # the judge saw what it needs, with the key and temperature 0
    check(len(judge.requests) == 2, judge.requests)
    for q in judge.requests:
        b = q["body"]
        check(q["path"] == "/v1/chat/completions" and q["auth"] == "Bearer judge-secret", q)
        check(b["model"] == "judge-model" and b["temperature"] == 0, b)
        user = b["messages"][-1]["content"]
        check("INPUT:\nHello" in user and ("RESPONSE:\n" + o0) in user, user)
    check(any("REFERENCE:\nthe reference" in q["body"]["messages"][-1]["content"]
              for q in judge.requests), judge.requests)
    # the failing runs are listed with the assertion that failed
    check("failing runs (11)" in text, text)
    check("case ml- (line 16): max-latency-ms: latency" in text, text)
    # per-tag breakdown: one pass and one fail for each assertion type
    tags = r["targets"][0]["tags"]
    check(all(tags[t]["runs"] == 2 and tags[t]["passed"] == 1 for t in tags), tags)
    check(len(tags) == 11, tags)

    # an error page that is not UTF-8 (a proxy's) is reported, sanitized, not dropped
    rep3 = os.path.join(work, "latin1.json")
    rc, text, err = run_eval(["--data", data2_path(work), "--target", "L=%s,latin1" % judge.url,
                              "--json", rep3], expect_rc=0)
    r3 = json.load(open(rep3))
    check(r3["targets"][0]["runs"] == 1 and len(r3["runs"]) == 1, r3)
    check(r3["runs"][0]["failure"] == "HTTP 502: <html>Bad gateway ?t?</html>", r3["runs"][0])
    check("HTTP 502: <html>Bad gateway ?t?</html>" in text, text)

    # a real (tiny, random) model as judge answers neither PASS nor FAIL
    data2 = os.path.join(work, "judge2.jsonl")
    write_jsonl(data2, [{"id": "j", "prompt": "Hello",
                         "assert": [{"type": "judge", "value": "be correct"}]}])
    rep2 = os.path.join(work, "judge2.json")
    run_eval(["--data", data2, "--target", "A=%s,a" % url, "--max-tokens", "4",
              "--judge", "%s,b" % url, "--json", rep2, "--quiet"], expect_rc=0)
    a2 = json.load(open(rep2))["runs"][0]["assertions"][0]
    check(not a2["pass"] and a2["detail"].startswith("judge answered neither PASS nor FAIL"),
          a2)


def seeds(s, url, work):
    """Same seed (+ repeat index) and temperature on every target."""
    data = os.path.join(work, "seeds.jsonl")
    write_jsonl(data, [{"id": "s1", "prompt": "Once upon a time"},
                       {"id": "s2", "messages": [{"role": "user", "content": "Hi there"}]}])
    rep = os.path.join(work, "seeds.json")
    run_eval(["--data", data, "--target", "A=%s,a,sk-inline-secret" % url,
              "--target", "B=%s,b" % url, "--temperature", "0.9", "--seed", "7", "--repeat", "2", "--max-tokens", "6",
              "--json", rep, "--quiet"], expect_rc=0)
    r = json.load(open(rep))
    check(len(r["runs"]) == 8 and r["config"]["seed"] == 7, r["config"])
    # the API key given inline is not in the report
    check("sk-inline-secret" not in open(rep).read(), "key leaked into the JSON report")
    check("A=%s,a,<redacted>" % url in r["command"], r["command"])
    for x in r["runs"]:
        model = {"A": "a", "B": "b"}[x["target"]]
        body = {"model": model, "max_tokens": 6, "temperature": 0.9, "seed": 7 + x["repeat"]}
        if x["case"] == "s1":
            body["prompt"] = "Once upon a time"
            want = post(s, "/v1/completions", body)["choices"][0]["text"]
        else:
            body["messages"] = [{"role": "user", "content": "Hi there"}]
            want = post(s, "/v1/chat/completions", body)["choices"][0]["message"]["content"]
        check(x["output"] == want, (x, want))
    outs = {(x["case"], x["target"], x["repeat"]): x["output"] for x in r["runs"]}
    check(outs[("s1", "A", 0)] != outs[("s1", "A", 1)], outs)  # the seed moved with the repeat

    # one model twice with different params: --params NAME=JSON for one target, JSON for all
    rep2 = os.path.join(work, "params.json")
    run_eval(["--data", data, "--target", "A=%s,a" % url, "--target", "A3=%s,a" % url,
              "--max-tokens", "6", "--params", '{"temperature": 0}',
              "--params", 'A3={"max_tokens": 3}', "--json", rep2, "--quiet"], expect_rc=0)
    r2 = json.load(open(rep2))
    by = {(x["case"], x["target"]): x for x in r2["runs"]}
    for cid in ("s1", "s2"):
        check(by[(cid, "A")]["completion_tokens"] == 6, by[(cid, "A")])
        check(by[(cid, "A3")]["completion_tokens"] == 3, by[(cid, "A3")])
        # greedy on both (the shared params set temperature 0): A3's answer is A's cut short
        check(by[(cid, "A")]["output"].startswith(by[(cid, "A3")]["output"][:1]), by)


def paired(s, url, work):
    ans = {m: [complete(s, m, p)[0] for p in PROMPTS] for m in ("a", "b")}
    for i in range(len(PROMPTS)):
        check(ans["a"][i] != ans["b"][i], (i, ans))
    # pattern: 0-5 only B passes, 6 only A, 7-8 both, 9 neither
    cases = []
    for i, p in enumerate(PROMPTS):
        if i <= 5:
            a = {"type": "equals", "value": ans["b"][i]}
        elif i == 6:
            a = {"type": "equals", "value": ans["a"][i]}
        elif i <= 8:
            a = {"type": "not-contains", "value": "qqzzqq"}
        else:
            a = {"type": "equals", "value": "qqzzqq"}
        cases.append({"id": "p%d" % i, "prompt": p, "assert": [a],
                      "tags": ["even" if i % 2 == 0 else "odd"]})
    data = os.path.join(work, "paired.jsonl")
    write_jsonl(data, cases)
    rep = os.path.join(work, "paired.json")
    rc, text, err = run_eval(["--data", data, "--target", "A=%s,a" % url,
                              "--target", "B=%s,b" % url, "--max-tokens", "8",
                              "--concurrency", "4", "--price-in", "1", "--price-out", "2",
                              "--price", "B=0.5,4", "--bootstrap", "2000",
                              "--bootstrap-seed", "3", "--json", rep], expect_rc=0)
    r = json.load(open(rep))
    check(r["command"][r["command"].index("--target") + 1] == "A=%s,a" % url, r["command"])
    ta, tb = r["targets"]
    check(ta["name"] == "A" and ta["runs"] == 10 and ta["passed"] == 3, ta)
    check(tb["passed"] == 8 and tb["errors"] == 0, tb)
    # Wilson 95%: 3/10 and 8/10 (hand values as in tests/unit/test_cli_eval_stats.c)
    check(abs(ta["ci95"][0] - 0.107791) < 1e-5 and abs(ta["ci95"][1] - 0.603222) < 1e-5, ta)
    check(abs(tb["ci95"][0] - 0.490162) < 1e-5 and abs(tb["ci95"][1] - 0.943318) < 1e-5, tb)
    # per tag: even = cases 0 2 4 6 8 (A: 6, 8; B: 0 2 4 8), odd = 1 3 5 7 9 (A: 7; B: 1 3 5 7)
    check(ta["tags"]["even"]["passed"] == 2 and ta["tags"]["odd"]["passed"] == 1, ta["tags"])
    check(tb["tags"]["even"]["passed"] == 4 and tb["tags"]["odd"]["passed"] == 4, tb["tags"])
    # cost from token counts: A at 1/2 USD per 1M, B at 0.5/4
    for t, (pi, po) in ((ta, (1, 2)), (tb, (0.5, 4))):
        tok = t["tokens"]
        want = (tok["prompt"] * pi + tok["completion"] * po) / 1e6
        check(tok["completion"] == 80 and abs(t["cost"]["total"] - want) < 1e-12, t)
        check(abs(t["cost"]["per_1k"] - want * 1000 / 80) < 1e-12, t)
    # latency percentiles from the runs, numpy's linear rule
    lat = [x["latency_ms"] for x in r["runs"] if x["target"] == "A"]
    check(abs(ta["latency_ms"]["p50"] - quantile(lat, 0.5)) < 1e-6, ta["latency_ms"])
    check(abs(ta["latency_ms"]["p99"] - quantile(lat, 0.99)) < 1e-6, ta["latency_ms"])
    (c,) = r["comparisons"]
    check(c["a"] == "B" and c["b"] == "A" and c["cases"] == 10, c)
    check((c["won"], c["lost"], c["tied"]) == (6, 1, 3), c)
    check(c["mcnemar"]["only_a"] == 6 and c["mcnemar"]["only_b"] == 1, c)
    check(abs(c["mcnemar"]["p_value"] - 2 * 8 / 128) < 1e-12, c)
    check(abs(c["diff"] - 0.5) < 1e-12, c)
    sa = [1.0 if i <= 5 or i in (7, 8) else 0.0 for i in range(10)]
    sb = [1.0 if i in (6, 7, 8) else 0.0 for i in range(10)]
    lo, hi = bootstrap(sa, sb, 2000, 3)
    check(c["bootstrap"]["resamples"] == 2000 and c["bootstrap"]["seed"] == 3, c)
    check(abs(c["bootstrap"]["ci95"][0] - lo) < 1e-9 and abs(c["bootstrap"]["ci95"][1] - hi) <
          1e-9, (c["bootstrap"], lo, hi))
    check("won 6, lost 1, tied 3" in text and "McNemar exact p = 0.125" in text, text)

    # --repeat 3 at temperature 0: the repeats of a case agree, so they add no information
    # and the interval (clustered by case) must stay that of the 10 cases, not shrink to
    # Wilson(9, 30); recomputed here from the runs with the documented formula
    rep3 = os.path.join(work, "paired3.json")
    rc, text3, _ = run_eval(["--data", data, "--target", "A=%s,a" % url, "--max-tokens", "8",
                             "--repeat", "3", "--json", rep3, "--html", rep3 + ".html"],
                            expect_rc=0)
    check("95% CI clustered by case" in text3 and "effective sample size A 10.0 of 30 runs" in
          text3, text3)
    check("Wilson interval clustered by case" in open(rep3 + ".html").read(), "html note")
    r3 = json.load(open(rep3))
    t3 = r3["targets"][0]
    check(t3["runs"] == 30 and t3["passed"] == 9 and t3["ci95_method"] == "wilson-clustered", t3)
    check(abs(t3["ci95_n_eff"] - 10) < 1e-9, t3)
    check(abs(t3["ci95"][0] - 0.107791) < 1e-5 and abs(t3["ci95"][1] - 0.603222) < 1e-5, t3)
    naive = wilson(9, 30)
    check(t3["ci95"][0] < naive[0] - 0.05, (t3["ci95"], naive))
    lo, hi, ne = cluster_ci(r3["runs"], "A")
    check(abs(t3["ci95"][0] - lo) < 1e-9 and abs(t3["ci95"][1] - hi) < 1e-9, (t3, lo, hi))
    for tag in ("even", "odd"):
        g = t3["tags"][tag]
        cases = {c["id"] for c in cases_of(data) if tag in c["tags"]}
        lo, hi, ne = cluster_ci([x for x in r3["runs"] if x["case"] in cases], "A")
        check(abs(g["ci95"][0] - lo) < 1e-9 and abs(g["ci95_n_eff"] - ne) < 1e-9, (tag, g, lo))
    check(ta["ci95_method"] == "wilson" and abs(ta["ci95_n_eff"] - 10) < 1e-9, ta)

    # gates: failing ones exit 1 and are named with the target; passing ones exit 0
    rc, text, err = run_eval(["--data", data, "--target", "A=%s,a" % url,
                              "--target", "B=%s,b" % url, "--max-tokens", "8", "--quiet",
                              "--gate", "pass_rate>=0.5,p99_ms<=60000",
                              "--gate", "cost_per_1k<=0.001", "--price-out", "2"], expect_rc=1)
    check("gate failed: pass_rate>=0.5 on target A (0.3)" in err, err)
    check("on target B" not in err.split("cost_per_1k")[0], err)
    check("gate failed: cost_per_1k<=0.001 on target A (0.002)" in err, err)
    check("p99_ms" not in err, err)
    rc, text, err = run_eval(["--data", data, "--target", "B=%s,b" % url, "--max-tokens", "8",
                              "--gate", "pass_rate>=0.8,pass_rate_lo>=0.49,errors<=0"],
                             expect_rc=0)
    check("gates:" in text and "FAILED" not in text and err == "", (text, err))


def interrupt(url, work):
    """SIGINT mid-run: exit 130 within seconds, reports written, covering the finished
    runs only and marked interrupted; the pass-rate arithmetic holds on the partial set."""
    data = os.path.join(work, "long.jsonl")
    write_jsonl(data, [{"id": "l%d" % i, "prompt": "Story number %d:" % i,
                        "assert": [{"type": "not-contains", "value": "qqzzqq"}]}
                       for i in range(2000)])
    rep, html = os.path.join(work, "int.json"), os.path.join(work, "int.html")
    proc = subprocess.Popen([BIN, "eval", "--data", data, "--target", "A=%s,a" % url,
                             "--target", "B=%s,b" % url, "--max-tokens", "48",
                             "--concurrency", "2", "--json", rep, "--html", html],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    check(proc.poll() is None, "eval finished 4000 runs in 1.5 s: interrupt not exercised")
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    check(proc.returncode == 130 and time.time() - t0 < 10, (proc.returncode, out, err))
    check("INTERRUPTED" in out, out)
    r = json.load(open(rep))
    check(r["interrupted"] is True, r["interrupted"])
    done = len(r["runs"])
    check(0 < done < 4000, done)  # 800 of 800 were done by 1.5 s on a quiet machine
    for t in r["targets"]:
        mine = [x for x in r["runs"] if x["target"] == t["name"]]
        check(t["runs"] == len(mine) and t["passed"] == sum(x["pass"] for x in mine), t)
    check("INTERRUPTED" in open(html).read(), "the HTML report says interrupted")


def progress_tty(url, work):
    """On a terminal, stderr gets a live runs counter; off one, nothing (checked by the
    gates run above, whose stderr must be empty)."""
    data = os.path.join(work, "tty.jsonl")
    write_jsonl(data, [{"id": "t%d" % i, "prompt": "Hi %d" % i} for i in range(3)])
    master, slave = pty.openpty()
    proc = subprocess.Popen([BIN, "eval", "--data", data, "--target", "A=%s,a" % url,
                             "--max-tokens", "2"], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    proc.communicate(timeout=60)
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
    check(proc.returncode == 0 and b"\r1/3 runs" in tty and b"\r3/3 runs" in tty,
          (proc.returncode, tty))


def usage_errors(url, work):
    rc, text, _ = run_eval(["--help"], expect_rc=0)
    check(text.startswith("usage: ferry eval --data F.jsonl --target NAME=URL,MODEL"), text)
    rc, _, err = run_eval(["--data", "x.jsonl", "--target", "A=%s,a" % url, "--bogus", "1"],
                          expect_rc=2)
    check("unknown option --bogus" in err, err)
    rc, _, err = run_eval(["--data", "/nonexistent.jsonl", "--target", "A=%s,a" % url],
                          expect_rc=2)
    check("/nonexistent.jsonl" in err, err)
    rc, _, err = run_eval(["--data", "x.jsonl", "--target", "A=%s" % url], expect_rc=2)
    check("expected URL,MODEL[,KEY]" in err, err)
    bad = os.path.join(work, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"prompt": "a"}\n\n{"prompt": "b", "assert": [{"type": "regex", '
                '"value": "(unclosed"}]}\n')
    rc, _, err = run_eval(["--data", bad, "--target", "A=%s,a" % url], expect_rc=2)
    check("bad.jsonl:3: assertion 1: regex does not compile" in err, err)
    rc, _, err = run_eval(["--data", bad], expect_rc=2)
    check("--target" in err, err)
    ok = os.path.join(work, "ok.jsonl")
    write_jsonl(ok, [{"prompt": "a", "assert": [{"type": "similar", "threshold": 0.5,
                                                  "value": "x"}]}])
    rc, _, err = run_eval(["--data", ok, "--target", "A=%s,a" % url], expect_rc=2)
    check("ok.jsonl:1: a `similar` assertion needs --embed" in err, err)
    rc, _, err = run_eval(["--data", ok, "--target", "A=%s,a" % url, "--gate", "speed>=1"],
                          expect_rc=2)
    check("unknown metric \"speed\"" in err, err)
    # a target that does not exist: every run errors, reported, exit 0 without gates
    rc, text, err = run_eval(["--data", os.path.join(work, "seeds.jsonl"),
                              "--target", "X=%s,nope" % url, "--gate", "errors<=0"],
                             expect_rc=1)
    check("HTTP 404" in text and "gate failed: errors<=0 on target X (2)" in err, (text, err))


if __name__ == "__main__":
    main()
