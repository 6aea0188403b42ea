#!/usr/bin/python3
"""ferry vs the numpy reference on `tiny` F32 models of both architectures.

For llama and qwen2 `tiny` models (ferry model init, seeded random weights,
the llama-spm vocab from ../shared when present, else the built-in one):
  - the logits of every position of a 32-token prompt agree with the reference's
    within 1e-4 of the reference's logit range (max - min over the row);
  - 64 greedy tokens are identical to the reference's free-running greedy ones;
  - the scalar kernels (FERRY_SIMD=scalar) give the same 64 greedy tokens.
The reference rounds K and V to F16 as the engine's KV cache stores them.
"""
import os
import sys

import numpy as np

import harness as H

TOL = 1e-4  # of the logit range


def main():
    H.ferry_bin()
    vocab = os.path.join(H.shared(), "tokenizer-tests", "ggml-vocab-llama-spm.gguf")
    vocab = vocab if os.path.exists(vocab) else None
    d = H.workdir()
    failures = 0
    for arch in ("llama", "qwen2"):
        path = os.path.join(d, "tiny-%s-f32.gguf" % arch)
        H.model_init(arch, "tiny", "f32", path, vocab=vocab, seed=11)
        ref = H.reference(path)
        ids = H.prompt_ids(ref.vocab, 32)
        res, rows = H.generate(path, ids=ids, n=64, dump=os.path.join(d, arch + ".logits"))
        got = res["tokens"]
        # logits of every prompt position
        want = ref.forward(ids)
        P = len(ids)
        worst = 0.0
        for i in range(P):
            rng = float(want[i].max() - want[i].min())
            err = float(np.abs(rows[i] - want[i]).max())
            worst = max(worst, err / rng)
        ok_logits = worst <= TOL
        # greedy: free-running reference continuation
        ref_greedy = ref.greedy(ids, 64)
        same = sum(1 for a, b in zip(got, ref_greedy) if a == b)
        ok_greedy = got == ref_greedy
        # scalar path
        res_s, _ = H.generate(path, ids=ids, n=64, env={"FERRY_SIMD": "scalar"})
        ok_scalar = res_s["tokens"] == got
        print("%-6s logits max err %.2e of range (limit %.0e) %s; greedy %d/64 %s; "
              "scalar==avx2 %s" % (arch, worst, TOL, "ok" if ok_logits else "FAIL", same,
                                   "ok" if ok_greedy else "FAIL",
                                   "ok" if ok_scalar else "FAIL"))
        failures += (not ok_logits) + (not ok_greedy) + (not ok_scalar)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
