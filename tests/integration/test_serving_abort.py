#!/usr/bin/python3
"""A client that goes away frees its KV blocks: for a streamed request and for a
non-streamed (deferred) one, closing the socket mid-generation cancels the
request (ferry_requests_finished_total{reason="abort"} moves, far fewer tokens
than asked are generated) and ferry_kv_cache_usage_ratio returns to its idle
value 0; the server then answers normally.
"""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servingutil import (Server, complete, make_model, metric, model_dir,  # noqa: E402
                         raw_request, wait_for, words)

MAX = 30000  # tokens asked: tens of seconds of work at a 32k context


def usage(srv):
    return metric(srv, "ferry_kv_cache_usage_ratio", model="m")


def aborts(srv):
    return metric(srv, "ferry_requests_finished_total", model="m", reason="abort")


def gen_tokens(srv):
    return metric(srv, "ferry_generation_tokens_total", model="m")


def abort_one(srv, stream):
    a0, g0 = aborts(srv), gen_tokens(srv)
    assert usage(srv) == 0, "KV in use before the request"
    s = raw_request(srv.port, "/v1/completions",
                    {"model": "m", "prompt": words(300), "max_tokens": MAX,
                     "ignore_eos": True, "temperature": 0, "stream": stream})
    if stream:
        got = b""
        while b'"text":"' not in got.split(b"data: ", 2)[-1] or got.count(b"data: ") < 2:
            chunk = s.recv(4096)
            assert chunk, "stream closed early: %r" % got[:300]
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got[:200]
    # generating: blocks are referenced
    wait_for(lambda: usage(srv) > 0 and gen_tokens(srv) > g0 + 5, 30, "generation to start")
    t0 = time.time()
    s.close()
    wait_for(lambda: usage(srv) == 0, 10, "KV usage to return to 0 after the abort")
    dt = time.time() - t0
    wait_for(lambda: aborts(srv) == a0 + 1, 5, "the abort to be counted")
    n = gen_tokens(srv) - g0
    assert n < MAX / 2, "%d tokens generated: the request was not cancelled" % n
    print("%s request: client closed after %d tokens; blocks freed %.0f ms later" % (
        "streamed" if stream else "non-streamed", n, dt * 1e3))


def main():
    d = model_dir()
    path = make_model(os.path.join(d, "long.gguf"), shape="tiny-32k")
    srv = Server("--model", "m=" + path, "--kv-cache-mb", "64", "--shutdown-grace-s", "2")
    try:
        abort_one(srv, stream=True)
        abort_one(srv, stream=False)
        r = complete(srv, {"model": "m", "prompt": "after the aborts", "max_tokens": 8,
                           "temperature": 0, "ignore_eos": True})
        assert r["usage"]["completion_tokens"] == 8, r
        wait_for(lambda: usage(srv) == 0, 5, "KV usage back to idle")
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
