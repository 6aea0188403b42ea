"""The loading phase of `ferry serve`: the HTTP server is up before the models
and stores load.

* While a model loads (FERRY_TEST_LOAD_DELAY_MS stretches the loader's first
  step so a tiny model's load can be watched; the 503 logic is the real one):
  /healthz 200, /metrics 200, /readyz 503 naming the step ("models: loading
  tiny"), and every model-dependent route (/v1/models, chat, completions,
  embeddings, collections) 503 {"error":{..."code":"model_loading"}} with
  Retry-After, a POST before its body is read. Then /readyz 200 and the same
  routes answer (chat 200, /v1/models lists the model).
* A model that fails to load: exit 2, one line on stderr naming the file, the
  server had been listening, and the log says why ("load failed: ...").
* SIGTERM while loading: the loader stops after its step, exit 0.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from ferryserver import BIN, error_of, skip

DELAY_MS = 2500


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Proc:
    """ferry serve without waiting for readiness (ferryserver.Server waits)."""

    def __init__(self, d, args, env):
        self.log = os.path.join(d, "ferry.log")
        full = dict(os.environ)
        full.update(env)
        self.p = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--data",
                                   os.path.join(d, "data"), "--log-file", self.log] + args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full)
        self.port = None
        deadline = time.time() + 15
        while self.port is None and time.time() < deadline:
            for ev in self.events():
                if ev.get("msg") == "listening":
                    self.port = ev["port"]
            if self.port is None and self.p.poll() is not None:
                break
            time.sleep(0.01)

    def events(self):
        try:
            with open(self.log) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def request(self, method, path, body=None, headers=None):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()


JSON = {"Content-Type": "application/json"}
CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 2})
GATED = [("GET", "/v1/models", None),
         ("POST", "/v1/chat/completions", CHAT),
         ("POST", "/v1/completions", json.dumps({"model": "tiny", "prompt": "hi"})),
         ("POST", "/v1/embeddings", json.dumps({"model": "x", "input": "hi"})),
         ("GET", "/v1/collections", None),
         ("POST", "/v1/collections/kb/query", json.dumps({"query": "hi"}))]


def loading_window(d, model):
    t0 = time.time()
    s = Proc(d, ["--model", "tiny=" + model], {"FERRY_TEST_LOAD_DELAY_MS": str(DELAY_MS)})
    check(s.port, "no listening line")
    try:
        st, _, body = s.request("GET", "/readyz")
        check(time.time() - t0 < DELAY_MS / 1000.0, "too slow to see the window")
        check(st == 503, (st, body))
        e = error_of(body)
        check(e["code"] == "not_ready" and "models: loading tiny" in e["message"], e)
        st, _, body = s.request("GET", "/healthz")
        check(st == 200 and json.loads(body) == {"status": "ok"}, (st, body))
        st, _, body = s.request("GET", "/metrics")
        check(st == 200 and b"ferry_http_requests_total" in body, st)
        for method, path, payload in GATED:
            st, hd, body = s.request(method, path, payload, JSON if payload else None)
            check(st == 503, (path, st, body))
            e = error_of(body)
            check(e["code"] == "model_loading" and e["type"] == "server_error", (path, e))
            check(hd.get("retry-after") == "1", (path, hd))
        check(time.time() - t0 < DELAY_MS / 1000.0, "the window closed before the checks ended")
        print("loading: readyz 503 \"%s\"; %d model routes 503 model_loading with Retry-After"
              % (json.loads(s.request("GET", "/readyz")[2])["error"]["message"], len(GATED)))
        deadline = time.time() + 30
        while time.time() < deadline:
            st, _, body = s.request("GET", "/readyz")
            if st == 200:
                break
            time.sleep(0.05)
        check(st == 200 and json.loads(body) == {"status": "ready"}, (st, body))
        waited = time.time() - t0
        check(waited >= DELAY_MS / 1000.0, "ready before the loader's delay: %.2f s" % waited)
        st, _, body = s.request("GET", "/v1/models")
        check(st == 200 and "tiny" in [m["id"] for m in json.loads(body)["data"]], (st, body))
        st, _, body = s.request("POST", "/v1/chat/completions", CHAT, JSON)
        check(st == 200 and json.loads(body)["object"] == "chat.completion", (st, body))
        ready = [ev for ev in s.events() if ev.get("msg") == "ready"]
        check(len(ready) == 1 and ready[0]["load_ms"] >= DELAY_MS, ready)
        print("ready after %.2f s (load_ms %.0f): /v1/models and chat answer 200"
              % (waited, ready[0]["load_ms"]))
        s.p.send_signal(signal.SIGTERM)
        check(s.p.wait(timeout=30) == 0, "exit code on SIGTERM")
    finally:
        if s.p.poll() is None:
            s.p.kill()
            s.p.wait()


def load_failure(d):
    bad = os.path.join(d, "broken.gguf")
    with open(bad, "wb") as f:
        f.write(b"GGUF" + b"\x00" * 60)
    for path in (bad, os.path.join(d, "missing.gguf")):
        sub = tempfile.mkdtemp(dir=d)
        s = Proc(sub, ["--model", "m=" + path], {})
        rc = s.p.wait(timeout=60)
        err = s.p.stderr.read().decode()
        check(rc == 2, (path, rc, err))
        lines = err.strip().splitlines()
        check(len(lines) == 1 and os.path.basename(path) in lines[0], (path, err))
        msgs = [ev.get("msg", "") for ev in s.events()]
        if path == bad:
            # read by the loader, after the server was up
            check("listening" in msgs, ("the server was up first", msgs))
            check(any(m.startswith("load failed: ") and "broken.gguf" in m for m in msgs), msgs)
        else:
            # a file that cannot be opened is refused before the server starts
            check("listening" not in msgs, msgs)
        print("load failure: exit 2, %r" % lines[0])


def stop_while_loading(d, model):
    s = Proc(d, ["--model", "tiny=" + model], {"FERRY_TEST_LOAD_DELAY_MS": "20000"})
    check(s.port, "no listening line")
    try:
        t0 = time.time()
        s.p.send_signal(signal.SIGTERM)
        rc = s.p.wait(timeout=15)
        check(rc == 0, rc)
        check(time.time() - t0 < 5, "SIGTERM waited for the whole load delay")
        print("SIGTERM while loading: exit 0 after %.2f s" % (time.time() - t0))
    finally:
        if s.p.poll() is None:
            s.p.kill()
            s.p.wait()


def main():
    if not os.access(BIN, os.X_OK):
        skip("no ferry binary at %s (set FERRY_BIN)" % BIN)
    d = tempfile.mkdtemp(prefix="ferry-loading-")
    try:
        model = os.path.join(d, "tiny.gguf")
        subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", "tiny", "--type",
                        "q8_0", "--seed", "1", "-o", model], check=True,
                       stdout=subprocess.DEVNULL)
        loading_window(tempfile.mkdtemp(dir=d), model)
        load_failure(d)
        stop_while_loading(tempfile.mkdtemp(dir=d), model)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
