#!/usr/bin/python3
"""Serving under pressure:
  - preemption: 16 concurrent requests that need about twice the KV pool
    (kv_cache_mb 1) all complete, each with exactly the tokens it gives alone,
    and ferry_preemptions_total > 0;
  - admission: with max_seqs 1 and max_waiting 1, a third request gets 429 with
    Retry-After while one runs and one waits;
  - a prompt that can never fit the KV pool gets 400 naming kv_cache_mb, and one
    past the context length 400 naming it.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servingutil import (Server, complete, make_model, metric, model_dir, post,  # noqa: E402
                         raw_request, run_concurrently, wait_for, words)
from ferryserver import error_of  # noqa: E402

N = 16
GEN = 300


def body(i):
    return {"model": "tiny", "prompt": words(30, seed=i), "max_tokens": GEN,
            "ignore_eos": True, "temperature": 0}


def preemption(path):
    srv = Server("--model", "tiny=" + path, "--kv-cache-mb", "1", "--kv-cache-type", "f16")
    try:
        alone = [complete(srv, body(i)) for i in range(N)]
        for r in alone:
            assert r["usage"]["completion_tokens"] == GEN, r["usage"]
        need = sum(r["usage"]["prompt_tokens"] + GEN for r in alone)
        p0 = metric(srv, "ferry_preemptions_total", model="tiny")
        together = run_concurrently([lambda i=i: complete(srv, body(i)) for i in range(N)])
        pre = metric(srv, "ferry_preemptions_total", model="tiny") - p0
        for i in range(N):
            assert together[i]["choices"][0]["text"] == alone[i]["choices"][0]["text"], i
            assert together[i]["usage"]["completion_tokens"] == GEN
            assert together[i]["choices"][0]["finish_reason"] == "length"
        assert pre > 0, "no preemption with %d tokens over a 4096-token pool" % need
        wait_for(lambda: metric(srv, "ferry_kv_cache_usage_ratio", model="tiny") == 0, 5,
                 "KV usage back to idle")
        print("preemption: %d requests needing %d tokens over a 4096-token pool: %d "
              "preemptions, every answer as alone" % (N, need, pre))
    finally:
        srv.stop()


def admission_and_fit(path):
    srv = Server("--model", "m=" + path, "--max-seqs", "1", "--max-waiting", "1",
                 "--kv-cache-mb", "4", "--shutdown-grace-s", "1")
    socks = []
    try:
        long_req = {"model": "m", "prompt": words(200), "max_tokens": 30000,
                    "ignore_eos": True, "temperature": 0, "stream": True}
        socks.append(raw_request(srv.port, "/v1/completions", long_req))
        wait_for(lambda: metric(srv, "ferry_requests_running", model="m") == 1, 30,
                 "the first request to run")
        socks.append(raw_request(srv.port, "/v1/completions", long_req))
        wait_for(lambda: metric(srv, "ferry_requests_waiting", model="m") == 1, 30,
                 "the second request to wait")
        st, hd, data = post(srv, "/v1/completions",
                            {"model": "m", "prompt": "one more", "max_tokens": 4})
        assert st == 429, (st, data)
        assert hd.get("retry-after") == "1", hd
        e = error_of(data)
        assert e["type"] == "rate_limit_error" or e["code"], e
        print("queue full: 429 with Retry-After %s: %s" % (hd["retry-after"], e["message"]))
        for s in socks:
            s.close()
        socks = []
        wait_for(lambda: metric(srv, "ferry_kv_cache_usage_ratio", model="m") == 0, 10,
                 "the aborted requests to free their blocks")

        # 4 MiB of f16 KV = 16384 tokens; ~19k prompt tokens fit the 32k context only
        st, _, data = post(srv, "/v1/completions",
                           {"model": "m", "prompt": words(4000), "max_tokens": 4})
        assert st == 400, (st, data[:300])
        e = error_of(data)
        assert "kv_cache_mb = 4" in e["message"] and "blocks" in e["message"], e
        assert e["param"] == "prompt", e
        print("never fits the pool: 400: %s" % e["message"])
        st, _, data = post(srv, "/v1/chat/completions",
                           {"model": "m", "messages": [{"role": "user",
                                                        "content": words(8000)}]})
        assert st == 400, (st, data[:300])
        e = error_of(data)
        assert "context length is 32768" in e["message"] or "32768 tokens" in e["message"], e
        assert e["param"] == "messages", e
        print("past the context: 400: %s" % e["message"])
        r = complete(srv, {"model": "m", "prompt": "still serving", "max_tokens": 3,
                           "ignore_eos": True})
        assert r["usage"]["completion_tokens"] == 3
    finally:
        for s in socks:
            s.close()
        srv.stop()


def main():
    d = model_dir()
    try:
        preemption(make_model(os.path.join(d, "tiny.gguf")))
        admission_and_fit(make_model(os.path.join(d, "long.gguf"), shape="tiny-32k"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
