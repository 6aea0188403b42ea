#!/usr/bin/python3
"""ferry's bert encoder vs the numpy reference (ref_bert.py).

Seeded random `bert` models from `ferry model init --arch bert`:
  - tiny, F32, the bert-bge WordPiece vocab from ../shared (else the built-in
    one), mean pooling; tiny F32 with CLS pooling; tiny Q8_0 (the reference
    dequantizes the same blocks); minilm (all-MiniLM-L6-v2 shape) F16;
  - for each, several texts are embedded in ONE `ferry embed` call (one batch)
    and each must have cosine >= 0.9999 with the reference's embedding of the
    same token ids (ids from `ferry tokenize --bos`, i.e. [CLS] ... [SEP]);
  - the scalar kernels (FERRY_SIMD=scalar) agree with the default ones (cosine);
  - the embeddings are unit vectors, and a text embedded alone gives the same
    vector as inside the batch (batch invariance, max abs diff <= 1e-6).
"""
import json
import os
import sys

import numpy as np

import harness as H
import ref_bert

COS_MIN = 0.9999
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It was a sunny day in the city!",
    "a",
    "Embeddings of several texts are computed in one batch; attention stays within a text.",
    "numbers 3.14 and 42, punctuation: (yes) [no] {maybe}",
]


def embed(model, texts, env=None):
    p = H.run([H.ferry_bin(), "embed", "-m", model, "--json", "-t", "2"] + texts, env=env)
    res = json.loads(p.stdout.decode())
    return res, np.array([d["embedding"] for d in res["data"]], dtype=np.float64)


def token_ids(model, text):
    p = H.run([H.ferry_bin(), "tokenize", "-m", model, "--bos", text])
    return [int(x) for x in p.stdout.split()]


def check(label, path, texts):
    ref = ref_bert.Bert(path)
    res, got = embed(path, texts)
    fails = 0
    worst = 1.0
    for i, t in enumerate(texts):
        ids = token_ids(path, t)
        if res["data"][i]["tokens"] != len(ids):
            print("  %s text %d: ferry used %d tokens, tokenize gives %d" %
                  (label, i, res["data"][i]["tokens"], len(ids)))
            fails += 1
        want = ref.embed(ids)
        cos = float(got[i] @ want / (np.linalg.norm(got[i]) * np.linalg.norm(want)))
        worst = min(worst, cos)
        if not (abs(np.linalg.norm(got[i]) - 1.0) < 1e-5):
            print("  %s text %d: norm %.7f is not 1" % (label, i, np.linalg.norm(got[i])))
            fails += 1
    scalar = embed(path, texts, env={"FERRY_SIMD": "scalar"})[1]
    sc_cos = float(min((scalar * got).sum(axis=1)))
    if sc_cos < COS_MIN:
        print("  %s: scalar kernels vs default: min cosine %.7f" % (label, sc_cos))
        fails += 1
    alone = embed(path, [texts[1]])[1][0]
    diff = float(np.abs(alone - got[1]).max())
    ok = worst >= COS_MIN and diff <= 1e-6 and fails == 0
    # how far apart different texts are (so agreement above is not trivial)
    pair = float(got[0] @ got[1])
    print("%-22s min cosine %.9f (1-cos %.1e, limit %.4f), alone-vs-batch max diff %.1e, "
          "cos(text0, text1) %.3f %s" % (label, worst, 1 - worst, COS_MIN, diff, pair,
                                         "ok" if ok else "FAIL"))
    return 0 if ok else 1


def main():
    H.ferry_bin()
    d = H.workdir()
    vocab = os.path.join(H.shared(), "tokenizer-tests", "ggml-vocab-bert-bge.gguf")
    if not os.path.exists(vocab):
        print("note: %s absent, using the built-in WordPiece vocab" % vocab)
        vocab = None
    fails = 0
    cases = [("tiny-f32-mean", "tiny", "f32", []), ("tiny-f32-cls", "tiny", "f32",
                                                       ["--pooling", "cls"]),
             ("tiny-q8_0", "tiny", "q8_0", []), ("minilm-f16", "minilm", "f16", [])]
    for label, shape, typ, extra in cases:
        path = os.path.join(d, label + ".gguf")
        args = [H.ferry_bin(), "model", "init", "--arch", "bert", "--shape", shape, "--type", typ,
                "--seed", "7", "-o", path] + extra
        if vocab:
            args += ["--vocab", vocab]
        H.run(args)
        fails += check(label, path, TEXTS)
    # the built-in vocab path too (no --vocab)
    path = os.path.join(d, "tiny-builtin.gguf")
    H.run([H.ferry_bin(), "model", "init", "--arch", "bert", "--shape", "tiny", "--type", "f32",
           "--seed", "3", "-o", path])
    fails += check("tiny-builtin-vocab", path, [t.lower() for t in TEXTS])
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
