#!/usr/bin/python3
"""Several models in one server: `--model NAME=PATH` twice, each with its own
scheduler (its own metric series and steps), concurrent requests to both
answered as a one-model server answers them, the per-model chat_template
override in /v1/models, unknown model -> 404; and the serving keys from the
environment (FERRY_KV_CACHE_TYPE, FERRY_MAX_SEQS, ...) reach the schedulers.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servingutil import (Server, complete, make_model, metric, model_dir, post,  # noqa: E402
                         run_concurrently, words)
from ferryserver import error_of  # noqa: E402


def body(model, i):
    return {"model": model, "prompt": words(10, seed=i), "max_tokens": 16, "ignore_eos": True,
            "temperature": 0}


def main():
    d = model_dir()
    pa = make_model(os.path.join(d, "a.gguf"), seed=1)
    pb = make_model(os.path.join(d, "b.gguf"), seed=2)
    env = {"FERRY_KV_CACHE_TYPE": "q8_0", "FERRY_MAX_SEQS": "8", "FERRY_MAX_BATCH_TOKENS": "96",
           "FERRY_MAX_WAITING": "40", "FERRY_KV_CACHE_MB": "2"}
    srv = Server("--model", "a=" + pa, "--model", "b=" + pb, "--chat-template", "b=llama3",
                 env=env)
    solo = None
    try:
        import json
        st, _, data = srv.request("GET", "/v1/models")
        assert st == 200
        ms = {m["id"]: m for m in json.loads(data)["data"]}
        assert ms["a"]["chat_template"] == "chatml", ms  # the family model init writes
        assert ms["b"]["chat_template"] == "llama3" and "chat_template_warning" not in ms["b"]
        assert ms["a"]["quantization"] == "q8_0" and ms["a"]["owned_by"] == "ferry"

        # each model has its own scheduler, configured from the environment
        ev = [e for e in srv.events() if e.get("mod") == "sched" and "KV blocks" in e["msg"]]
        assert len(ev) == 2, ev
        for e in ev:
            assert "(q8_0," in e["msg"] and "max_seqs 8," in e["msg"], e
            assert "max_batch_tokens 96," in e["msg"] and "max_waiting 40" in e["msg"], e

        s0 = {m: metric(srv, "ferry_scheduler_steps_total", model=m) for m in "ab"}
        fns = [lambda i=i, m=m: complete(srv, body(m, i)) for i in range(8) for m in "ab"]
        res = run_concurrently(fns)
        got = {(m, i): res[k] for k, (i, m) in enumerate((i, m) for i in range(8) for m in "ab")}
        for m in "ab":
            assert metric(srv, "ferry_scheduler_steps_total", model=m) > s0[m], m
            assert metric(srv, "ferry_generation_tokens_total", model=m) >= 8 * 16, m
        for i in range(8):
            assert got[("a", i)]["model"] == "a" and got[("b", i)]["model"] == "b"
        assert any(got[("a", i)]["choices"][0]["text"] != got[("b", i)]["choices"][0]["text"]
                   for i in range(8)), "two different models answered alike"

        st, _, data = post(srv, "/v1/completions", {"model": "c", "prompt": "x"})
        assert st == 404, st
        e = error_of(data)
        assert e["code"] == "model_not_found" and e["param"] == "model", e

        # model a alone in its own server answers the same
        solo = Server("--model", "a=" + pa, env=env)
        for i in range(8):
            r = complete(solo, body("a", i))
            assert r["choices"][0]["text"] == got[("a", i)]["choices"][0]["text"], i
        print("two models, two schedulers: 16 concurrent requests answered as by one-model "
              "servers")
    finally:
        srv.stop()
        if solo:
            solo.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
