"""Helpers for the test_serving_*.py integration tests (python stdlib only).

Models are made by `ferry model init` (seeded random weights, built-in
tokenizer) in the server's temporary directory: `tiny` (context 512) and
`tiny-32k` (the same with context 32768, for requests slow enough to abort).
"""
import json
import os
import re
import socket
import subprocess
import threading
import time

from ferryserver import BIN, Server, skip


def make_model(path, shape="tiny", qtype="q8_0", seed=1):
    if not os.access(BIN, os.X_OK):
        skip("no ferry binary at %s (set FERRY_BIN)" % BIN)
    subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", shape, "--type", qtype,
                    "--seed", str(seed), "-o", path], check=True, stdout=subprocess.DEVNULL)
    return path


def model_dir():
    import tempfile
    return tempfile.mkdtemp(prefix="ferry-models-")


def post(srv, path, body, timeout=120):
    st, hd, data = srv.request("POST", path, json.dumps(body),
                               {"Content-Type": "application/json"}, timeout=timeout)
    return st, hd, data


def complete(srv, body, path="/v1/completions", timeout=120):
    st, hd, data = post(srv, path, body, timeout)
    assert st == 200, (st, data[:300])
    return json.loads(data)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def metrics(srv):
    """{(name, frozenset(labels.items())): value} from /metrics."""
    st, _, data = srv.request("GET", "/metrics")
    assert st == 200, st
    out = {}
    for line in data.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {}
        if m.group(2):
            for kv in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[kv[0]] = kv[1]
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(srv, name, **labels):
    """Value of one sample (0 when absent)."""
    return metrics(srv).get((name, frozenset(labels.items())), 0.0)


def wait_for(pred, timeout=20, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def run_concurrently(fns):
    """Runs every fn at once (released together by a barrier); returns results in order."""
    res = [None] * len(fns)
    errs = []
    bar = threading.Barrier(len(fns))

    def go(i, fn):
        try:
            bar.wait()
            res[i] = fn()
        except BaseException as e:  # noqa: B902 - reported below
            errs.append(e)

    ts = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return res


def raw_request(port, path, body):
    """Opens a socket and sends one POST; returns the socket (caller reads/closes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = json.dumps(body).encode()
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (path.encode(), len(data)) + data)
    return s


def words(n, seed=0):
    vocab = ("river stone cloud maple lantern harbor violet meadow copper falcon ember "
             "willow thunder saffron glacier orchard").split()
    return " ".join(vocab[(seed * 5 + i * 3 + i // 7) % len(vocab)] for i in range(n))


__all__ = ["Server", "skip", "make_model", "model_dir", "post", "complete", "metrics",
           "metric", "wait_for", "run_concurrently", "raw_request", "words"]
