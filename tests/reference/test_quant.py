#!/usr/bin/python3
"""Quantized models (Q8_0, Q4_0, Q4_K, Q6_K) against the numpy reference.

The reference reads the same quantized file and dequantizes every weight itself
(ref_gguf.py). ferry also quantizes activations per block before each product with
a quantized weight (src/model/kern.h: 32-element blocks for Q8_0/Q4_0 weights, 256
for Q4_K/Q6_K, d = amax/127, q = round(x/d)); the reference runs twice: "plain"
(dequantized weights, activations in full precision: the model as written) and
"emulated" (the same activation quantization, computed in numpy from that
description: ref_model.py act_quant). Tolerances are fractions of the reference's
logit range (max - min of the row).

Why the emulation is not exact: a value that lands within float error of a .5
rounding boundary (x/d = k + 0.5) rounds one way in ferry and maybe the other way in
the reference, and moves the later rows by up to ~1e-2 of the range. Such ties are
rare for most types, but structural for Q4_0 token embeddings (a row of 16 levels
c*(q-8) with amax 8c puts every |q-8| = 4 element at exactly 63.5 after scaling).
So a flat-logit model's free-running greedy continuation can part at a near tie,
for two correct implementations as much as for ferry and the reference.

1. Trained models, free-running greedy (the issue's criterion). stories260K
   (../shared) quantized by `ferry model quantize` to q8_0 and q4_0, and the same
   model widened to hidden 256 / FFN 512 (widen.py: an exactly equivalent F32 file,
   checked to give stories260K's greedy ids) quantized to q4_k (Q4_K_M mix: Q4_K
   and Q6_K) and q6_k (all Q6_K), so the K-quant kernels run on a model with peaked
   logits. For each of the four reference prompts, ferry generates 64 greedy
   tokens; the emulated reference's own free-running continuation must agree at
   >= 60 of 64 positions, unless the two first part at a near tie (the
   reference's logits of its token and of ferry's differ by at most TIE of the
   range), which is printed. Likewise ferry's scalar kernels (FERRY_SIMD=scalar)
   against its AVX2 ones. Every logits row agrees with the emulated reference
   within TOL_EMUL and with the plain one within TOL_PLAIN[type].
2. Random-weight models (`ferry model init`: tiny llama/qwen2 at q8_0 and q4_0,
   small at q4_k and q6_k: every kernel on both architectures; flat logits).
   A 32-token prompt plus 64 greedy tokens agree with the plain reference within
   TOL_PLAIN[type] at every row. Against the emulated reference, on 12 prompts of
   4 tokens, all rows within TOL_EMUL and, except for Q4_0 (structural ties), at
   least MIN_EXACT of the 12 within EXACT at every row: an engine whose activation
   quantization differs from its description fails every prompt. Scalar vs AVX2
   greedy decisions over ferry's tokens (teacher-forced): every disagreement a near
   tie. Free-running agreement is printed for information.
3. The issue's criterion without any exception on the trained models: at each of the
   64 generated positions, the plain reference (dequantized weights, float64) given
   ferry's prefix picks ferry's token at least MIN_AGREE times of 64 (greedy
   decisions, teacher-forced, so one near tie costs one position, not the rest of
   the continuation). On the random-weight models (flat logits: the top two are
   often within 0.3% of the range) the same count is printed and must reach
   MIN_AGREE unless every disagreement is a near tie (<= TIE).
Measured figures: docs/reference.md.
"""
import json
import os
import sys

import numpy as np

import harness as H
import ref_model
import widen

MIN_AGREE = 60
TIE = 5e-3
TOL_EMUL = 3e-2
TOL_PLAIN = {"q8_0": 2e-2, "q4_0": 2e-2, "q4_k": 3e-2, "q6_k": 3e-2}
EXACT = 1e-4
MIN_EXACT = 6  # of 12 short prompts
FAILS = []


def expect(cond, msg):
    if not cond:
        FAILS.append(msg)
    return "ok" if cond else "FAIL"


def rel_err(rows, want):
    """Worst |ferry - reference| over each row, as a fraction of the reference row's range."""
    n = min(len(rows), len(want))
    return max(float(np.abs(rows[i] - want[i]).max() / (want[i].max() - want[i].min()))
               for i in range(n))


def free_agreement(ref, ids, toks):
    """Positions where the reference's own free-running greedy continuation of ids
    equals toks. Exact and cheap: that continuation equals toks up to the first
    position where the reference's argmax over ids + toks differs; from there the
    reference runs on alone. Returns (agreement, first difference, the reference's
    gap there between its token and toks' as a fraction of the range, reference rows)."""
    rows = ref.forward(list(ids) + list(toks[:-1]))
    P = len(ids)
    k = next((i for i, t in enumerate(toks) if int(np.argmax(rows[P - 1 + i])) != t), len(toks))
    if k == len(toks):
        return len(toks), k, 0.0, rows
    r = rows[P - 1 + k]
    gap = float(r.max() - r[toks[k]]) / float(r.max() - r.min())
    mine = list(toks[:k]) + ref.greedy(list(ids) + list(toks[:k]), len(toks) - k)
    return sum(1 for a, b in zip(mine, toks) if a == b), k, gap, rows


def decisions(rows, first, toks):
    """(agreements, worst relative gap of a disagreement) of argmax(rows[first+i]) vs toks."""
    agree, worst = 0, 0.0
    for i, t in enumerate(toks):
        row = rows[first + i]
        am = int(np.argmax(row))
        if am == t:
            agree += 1
        else:
            worst = max(worst, float(row[am] - row[t]) / float(row.max() - row.min()))
    return agree, worst


def trained(d, label, path, typ, prompts):
    emu = ref_model.Model(path, act_quant=True)
    plain = ref_model.Model(path)
    for n, prompt in enumerate(prompts):
        res, rows = H.generate(path, prompt=prompt, n=64, dump=os.path.join(d, "t.logits"))
        ids, toks = res["prompt_ids"], res["tokens"]
        agree, first, gap, want = free_agreement(emu, ids, toks)
        e_emu = rel_err(rows, want)
        prow = plain.forward(ids + toks[:-1])
        e_plain = rel_err(rows, prow)
        # the criterion, with no near-tie exception: at each of the 64 positions
        # the plain reference (dequantized weights, float64) given ferry's prefix picks
        # ferry's token
        dec_p, gap_p = decisions(prow, len(ids) - 1, toks)
        print("%-16s %-5s prompt %d: greedy decisions vs plain reference %d/64 (need %d, worst "
              "gap %.1e) %s" % (label, typ, n, dec_p, MIN_AGREE, gap_p, expect(
                  dec_p >= MIN_AGREE, "%s %s prompt %d: decisions vs plain %d/64" % (
                      label, typ, n, dec_p))))
        res_s, rows_s = H.generate(path, prompt=prompt, n=64, env={"FERRY_SIMD": "scalar"},
                                   dump=os.path.join(d, "ts.logits"))
        toks_s = res_s["tokens"]
        agree_s = sum(1 for a, b in zip(toks_s, toks) if a == b)
        k = next((i for i, (a, b) in enumerate(zip(toks_s, toks)) if a != b), 64)
        gap_s = 0.0
        if k < 64:  # the scalar path's own logits at the parting: how close its two tokens were
            r = rows_s[len(ids) - 1 + k]
            gap_s = float(r[toks_s[k]] - r[toks[k]]) / float(r.max() - r.min())
        ok = agree >= MIN_AGREE or gap <= TIE
        ok_s = agree_s >= MIN_AGREE or gap_s <= TIE
        print("%-16s %-5s prompt %d: free-running greedy %d/64 (first difference %d, gap %.1e) %s; "
              "scalar vs avx2 %d/64 (gap %.1e) %s; logits vs emulated %.1e %s, vs plain %.1e "
              "(limit %.0e) %s"
              % (label, typ, n, agree, first, gap,
                 expect(ok, "%s %s prompt %d: greedy %d/64, parting at a gap of %.1e" % (
                     label, typ, n, agree, gap)) + ("" if agree >= MIN_AGREE else " (near tie)"),
                 agree_s, gap_s, expect(ok_s, "%s %s prompt %d: scalar %d/64 gap %.1e" % (
                     label, typ, n, agree_s, gap_s)) + ("" if agree_s >= MIN_AGREE else
                                                        " (near tie)"),
                 e_emu, expect(e_emu <= TOL_EMUL, "%s %s: emulated %.1e" % (label, typ, e_emu)),
                 e_plain, TOL_PLAIN[typ],
                 expect(e_plain <= TOL_PLAIN[typ], "%s %s: plain %.1e" % (label, typ, e_plain))))
        if n == 0:
            print("    text: %r" % (prompt + res["text"])[:120])


def random_model(d, arch, shape, typ):
    path = os.path.join(d, "%s-%s-%s.gguf" % (arch, shape, typ))
    H.model_init(arch, shape, typ, path, seed=11)
    emu = ref_model.Model(path, act_quant=True)
    plain = ref_model.Model(path)
    ids = H.prompt_ids(emu.vocab, 32)
    res, rows = H.generate(path, ids=ids, n=64, dump=os.path.join(d, "r.logits"))
    toks = res["tokens"]
    prow = plain.forward(ids + toks[:-1])
    e_plain = rel_err(rows, prow)
    dec_p, gap_p = decisions(prow, len(ids) - 1, toks)
    free, _, _, _ = free_agreement(emu, ids, toks)
    # short prompts against the emulated reference
    exact, worst = 0, 0.0
    for s in range(12):
        short = H.prompt_ids(emu.vocab, 4, seed=100 + s)
        _, r = H.generate(path, ids=short, n=1, dump=os.path.join(d, "s.logits"))
        e = rel_err(r, emu.forward(short))
        exact += e <= EXACT
        worst = max(worst, e)
    # scalar kernels, teacher-forced on ferry's tokens
    _, rows_s = H.generate(path, ids=ids + toks[:-1], n=1, env={"FERRY_SIMD": "scalar"},
                           dump=os.path.join(d, "rs.logits"))
    agree_s, gap_s = decisions(rows_s, len(ids) - 1, toks)
    tag = "%s %s %s" % (arch, shape, typ)
    need = 0 if typ == "q4_0" else MIN_EXACT  # Q4_0 embeddings: ties by construction
    print("%-16s %-5s logits vs plain %.1e (limit %.0e) %s; short prompts exact vs emulated "
          "%d/12 (need %d, worst %.1e, limit %.0e) %s; scalar vs avx2 decisions %d/64 (worst gap "
          "%.1e) %s; greedy decisions vs plain %d/64 (need %d, worst gap %.1e) %s; "
          "free-running vs emulated %d/64 (information)" % (
              "%s %s" % (arch, shape), typ, e_plain, TOL_PLAIN[typ],
              expect(e_plain <= TOL_PLAIN[typ], "%s: plain %.1e" % (tag, e_plain)),
              exact, need, worst, TOL_EMUL,
              expect(exact >= need and worst <= TOL_EMUL, "%s: exact %d/12 worst %.1e" % (
                  tag, exact, worst)),
              agree_s, gap_s, expect(gap_s <= TIE, "%s: scalar decisions %d gap %.1e" % (
                  tag, agree_s, gap_s)),
              dec_p, MIN_AGREE, gap_p, expect(dec_p >= MIN_AGREE or gap_p <= TIE,
                                              "%s: decisions vs plain %d/64, gap %.1e" % (
                                                  tag, dec_p, gap_p)) + (
                  "" if dec_p >= MIN_AGREE else " (each a near tie: flat random logits)"),
              free))


def main():
    H.ferry_bin()
    d = H.workdir()
    base = os.path.join(H.shared(), "models", "stories260K")
    stories = os.path.join(base, "stories260K.gguf")
    if os.path.exists(stories):
        prompts = [c["prompt"] for c in
                   json.load(open(os.path.join(base, "greedy-reference.json")))["cases"]]
        wide = os.path.join(d, "stories-wide.gguf")
        widen.widen(stories, wide)
        # the widened F32 file is the same model: the same greedy ids as the original
        a, _ = H.generate(stories, prompt=prompts[0], n=64)
        b, _ = H.generate(wide, prompt=prompts[0], n=64)
        print("widened stories260K F32 == original: %s" % expect(
            a["tokens"] == b["tokens"], "widened model differs from stories260K"))
        for label, src, typ in (("stories260K", stories, "q8_0"), ("stories260K", stories, "q4_0"),
                                ("stories260K-w256", wide, "q4_k"),
                                ("stories260K-w256", wide, "q6_k")):
            q = os.path.join(d, "%s-%s.gguf" % (label, typ))
            H.run([H.ferry_bin(), "model", "quantize", src, q, typ])
            trained(d, label, q, typ, prompts)
    else:
        print("note: %s absent: trained-model checks skipped" % stories)
    for arch in ("llama", "qwen2"):
        for shape, typ in (("tiny", "q8_0"), ("tiny", "q4_0"), ("small", "q4_k"),
                           ("small", "q6_k")):
            random_model(d, arch, shape, typ)
    for f in FAILS:
        print("FAIL: " + f)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
