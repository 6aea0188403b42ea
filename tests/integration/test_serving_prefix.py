#!/usr/bin/python3
"""Prefix cache through the server: a repeated system prompt is found in the
cache (ferry_prefix_cache_hits_total moves, usage reports cached_tokens), and an
answer computed over cached blocks is the same, token and logprob, as the one a
cold server computes from scratch. The shared prefix is reused up to the first
token that differs, inside a block too (those tokens are copied from the cached
block into one of the request's own), and a repeated request computes only its
last prompt token.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servingutil import Server, complete, make_model, metric, model_dir, words  # noqa: E402

SYSTEM = "You are a careful assistant. " + words(80, seed=3)


def chat(user):
    # 16 tokens out: the block holding the end of the prompt always fills up (and is
    # published) while the answer is generated, whatever the prompt's length
    return {"model": "tiny", "temperature": 0, "max_tokens": 16, "ignore_eos": True,
            "logprobs": True,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user}]}


def answer(r):
    ch = r["choices"][0]
    return ch["message"]["content"], [(x["token"], x["logprob"]) for x in ch["logprobs"]["content"]]


def main():
    d = model_dir()
    path = make_model(os.path.join(d, "tiny.gguf"))
    srv = Server("--model", "tiny=" + path)
    cold = None
    try:
        h0 = metric(srv, "ferry_prefix_cache_hits_total", model="tiny")
        q0 = metric(srv, "ferry_prefix_cache_queries_total", model="tiny")
        r1 = complete(srv, chat("first question " + words(5, 1)), "/v1/chat/completions")
        h1 = metric(srv, "ferry_prefix_cache_hits_total", model="tiny")
        q1 = metric(srv, "ferry_prefix_cache_queries_total", model="tiny")
        assert h1 == h0, "nothing was cached yet, hits moved %g -> %g" % (h0, h1)
        assert q1 - q0 == r1["usage"]["prompt_tokens"], (q0, q1, r1["usage"])
        assert r1["usage"]["prompt_tokens_details"]["cached_tokens"] == 0, r1["usage"]
        n_prompt = r1["usage"]["prompt_tokens"]
        assert n_prompt > 64, n_prompt

        r2 = complete(srv, chat("second question " + words(5, 2)), "/v1/chat/completions")
        h2 = metric(srv, "ferry_prefix_cache_hits_total", model="tiny")
        cached = r2["usage"]["prompt_tokens_details"]["cached_tokens"]
        # the shared system prompt and the template up to "first" / "second": whole
        # 16-token blocks and the first tokens of the next one
        assert 64 <= cached < r2["usage"]["prompt_tokens"], r2["usage"]
        assert h2 - h1 == cached, (h1, h2, cached)
        print("repeated system prompt: %d of %d prompt tokens from the prefix cache" % (
            cached, r2["usage"]["prompt_tokens"]))

        # the first request again: all but its last prompt token come from the cache
        # (the last one's logits start the answer), and the answer is the same
        r4 = complete(srv, chat("first question " + words(5, 1)), "/v1/chat/completions")
        assert r4["usage"]["prompt_tokens_details"]["cached_tokens"] == n_prompt - 1, r4["usage"]
        assert answer(r4) == answer(r1), "a repeated request answered differently"

        # the same request on a cold server computes everything: same answer
        cold = Server("--model", "tiny=" + path)
        r3 = complete(cold, chat("second question " + words(5, 2)), "/v1/chat/completions")
        assert r3["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        assert answer(r3) == answer(r2), "cached prefix changed the answer"
    finally:
        srv.stop()
        if cold:
            cold.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
