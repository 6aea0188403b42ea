#!/usr/bin/python3
"""Decoder embeddings (`ferry embed -m` with a llama/qwen2 model) vs the numpy reference.

The vector is the mean over the text's tokens of the last hidden state (after the final
RMSNorm, what the output matrix reads), scaled to unit length (ref_model.Model.embed).
Models: tiny llama and qwen2 at F32 (ferry model init, the llama-spm vocab when present)
and stories260K (../shared, F32). Several texts go through one `ferry embed` call; each
vector must have cosine >= 0.9999 with the reference's for the same ids (`ferry tokenize
--bos`: BOS as the vocab says), unit length; the scalar kernels agree; different texts
give clearly different vectors (so the agreement is not trivial).
"""
import json
import os
import sys

import numpy as np

import harness as H

COS_MIN = 0.9999
TEXTS = ["Once upon a time", "The quick brown fox jumps over the lazy dog.",
         "a", "Lily and Tom went to the park to play with a big red ball."]


def embed(model, texts, env=None):
    p = H.run([H.ferry_bin(), "embed", "-m", model, "--json", "-t", "2"] + texts, env=env)
    res = json.loads(p.stdout.decode())
    return res, np.array([d["embedding"] for d in res["data"]], dtype=np.float64)


def token_ids(model, text):
    p = H.run([H.ferry_bin(), "tokenize", "-m", model, "--bos", text])
    return [int(x) for x in p.stdout.split()]


def check(label, path):
    ref = H.reference(path)
    res, got = embed(path, TEXTS)
    fails, worst = 0, 1.0
    if res["pooling"] != "last-mean" or res["dim"] != ref.dim:
        print("  %s: pooling %r dim %r" % (label, res["pooling"], res["dim"]))
        fails += 1
    for i, t in enumerate(TEXTS):
        ids = token_ids(path, t)
        if res["data"][i]["tokens"] != len(ids):
            print("  %s text %d: ferry used %d tokens, tokenize gives %d" % (
                label, i, res["data"][i]["tokens"], len(ids)))
            fails += 1
        want = ref.embed(ids)
        worst = min(worst, float(got[i] @ want / np.linalg.norm(got[i])))
        if abs(np.linalg.norm(got[i]) - 1.0) > 1e-5:
            print("  %s text %d: norm %.7f" % (label, i, np.linalg.norm(got[i])))
            fails += 1
    scalar = embed(path, TEXTS, env={"FERRY_SIMD": "scalar"})[1]
    sc = float(min((scalar * got).sum(axis=1)))
    pair = float(got[0] @ got[1])
    ok = worst >= COS_MIN and sc >= COS_MIN and pair < 0.999 and fails == 0
    print("%-18s min cosine vs reference %.9f (limit %.4f), scalar vs avx2 %.9f, "
          "cos(text0, text1) %.3f %s" % (label, worst, COS_MIN, sc, pair, "ok" if ok else "FAIL"))
    return 0 if ok else 1


def main():
    H.ferry_bin()
    d = H.workdir()
    vocab = os.path.join(H.shared(), "tokenizer-tests", "ggml-vocab-llama-spm.gguf")
    vocab = vocab if os.path.exists(vocab) else None
    fails = 0
    for arch in ("llama", "qwen2"):
        path = os.path.join(d, "tiny-%s-f32.gguf" % arch)
        H.model_init(arch, "tiny", "f32", path, vocab=vocab, seed=11)
        fails += check("tiny-%s-f32" % arch, path)
    stories = os.path.join(H.shared(), "models", "stories260K", "stories260K.gguf")
    if os.path.exists(stories):
        fails += check("stories260K", stories)
    else:
        print("note: %s absent" % stories)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
