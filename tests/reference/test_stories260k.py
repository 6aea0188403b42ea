#!/usr/bin/python3
"""stories260K (a real trained llama model in ../shared): ferry's greedy
continuation of each reference prompt is identical to greedy-reference.json
(prompt ids included, so the tokenizer is checked too) and to this folder's
numpy reference; the text is the fluent English of the reference; the scalar
kernels give the same ids. Sampling with a seed is reproducible.
"""
import json
import os
import sys

import harness as H


def main():
    H.ferry_bin()
    base = os.path.join(H.shared(), "models", "stories260K")
    model = os.path.join(base, "stories260K.gguf")
    if not os.path.exists(model):
        H.skip(model + " not found")
    ref_json = json.load(open(os.path.join(base, "greedy-reference.json")))
    ref = H.reference(model)
    failures = 0
    for case in ref_json["cases"]:
        want = case["greedy_ids_incl_prompt"]
        n = len(want) - len(case["prompt_ids"])
        res, _ = H.generate(model, prompt=case["prompt"], n=n)
        got = res["prompt_ids"] + res["tokens"]
        res_s, _ = H.generate(model, prompt=case["prompt"], n=n, env={"FERRY_SIMD": "scalar"})
        ok = [got == want, res_s["tokens"] == res["tokens"]]
        if case["prompt"] == "Once upon a time":
            mine = case["prompt_ids"] + ref.greedy(case["prompt_ids"], n)
            ok.append(mine == want)
            text = case["prompt"] + res["text"]
            ok.append(text.startswith(case["text"][:150]))
            print("text: " + repr(text[:200]))
        print("%-22r ids %s; scalar==avx2 %s%s" % (
            case["prompt"], "ok" if ok[0] else "FAIL (got %s)" % got[:20],
            "ok" if ok[1] else "FAIL",
            "" if len(ok) < 3 else "; numpy reference %s; text %s" % (
                "ok" if ok[2] else "FAIL", "ok" if ok[3] else "FAIL")))
        failures += ok.count(False)
    # seeded sampling: the same seed gives the same text, another seed another text
    runs = []
    for seed in (5, 5, 6):
        p = H.run([H.ferry_bin(), "generate", "-m", model, "-p", "Once upon a time", "-n", "40",
                   "--temp", "1.0", "--top-k", "0", "--top-p", "0.95", "--seed", str(seed),
                   "--json", "-t", "2"])
        runs.append(json.loads(p.stdout.decode())["tokens"])
    ok = runs[0] == runs[1] and runs[0] != runs[2]
    print("seeded sampling reproducible %s" % ("ok" if ok else "FAIL"))
    failures += not ok
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
