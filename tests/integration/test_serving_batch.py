#!/usr/bin/python3
"""Batch invariance through the server: 16 concurrent requests (temperature 0,
and seeded sampling) give exactly the tokens, and the same logprob bits, that
each gives alone; and they really ran batched (fewer forward steps than tokens).
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servingutil import (Server, complete, make_model, metric, model_dir,  # noqa: E402
                         run_concurrently, wait_for, words)

N = 16
GEN = 24


def body(i):
    b = {"model": "tiny", "max_tokens": GEN, "ignore_eos": True, "logprobs": True,
         "top_logprobs": 2,
         "messages": [{"role": "system", "content": "You answer briefly."},
                      {"role": "user", "content": words(6 + 3 * i, seed=i)}]}
    if i % 4 == 3:
        b.update(temperature=0.9, top_p=0.95, seed=1000 + i)  # seeded sampling
    else:
        b["temperature"] = 0
    return b


def tokens_of(resp):
    ch = resp["choices"][0]
    lp = ch["logprobs"]["content"]
    return ch["message"]["content"], [(x["token"], x["logprob"], tuple(
        (t["token"], t["logprob"]) for t in x["top_logprobs"])) for x in lp]


def main():
    d = model_dir()
    path = make_model(os.path.join(d, "tiny.gguf"))
    srv = Server("--model", "tiny=" + path, "--max-seqs", "32")
    try:
        alone = [tokens_of(complete(srv, body(i), "/v1/chat/completions")) for i in range(N)]
        assert all(len(a[1]) == GEN for a in alone), [len(a[1]) for a in alone]
        assert len(set(a[0] for a in alone)) > 1, "prompts should give different answers"
        # the scheduler publishes its counters once per step, after the answers went out:
        # wait until they show the alone phase completely before taking the baseline
        gen_of = lambda: metric(srv, "ferry_generation_tokens_total", model="tiny")  # noqa: E731
        gen0 = wait_for(lambda: gen_of() == N * GEN and gen_of(), what="generation counter")
        steps0 = metric(srv, "ferry_scheduler_steps_total", model="tiny")
        together = run_concurrently(
            [lambda i=i: tokens_of(complete(srv, body(i), "/v1/chat/completions"))
             for i in range(N)])
        wait_for(lambda: gen_of() >= gen0 + N * GEN, what="generation counter")
        gen = gen_of() - gen0
        steps = metric(srv, "ferry_scheduler_steps_total", model="tiny") - steps0
        for i in range(N):
            assert together[i] == alone[i], "request %d differs batched:\n%r\n%r" % (
                i, together[i], alone[i])
        assert gen == N * GEN, gen
        # batched: requests shared forward steps (alone each would need GEN steps)
        assert steps < gen, "%d steps for %d tokens: nothing was batched" % (steps, gen)
        print("16 concurrent requests: identical tokens and logprobs to alone; "
              "%d steps for %d tokens" % (steps, gen))
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
