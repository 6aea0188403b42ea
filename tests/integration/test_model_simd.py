#!/usr/bin/python3
"""Scalar and AVX2 kernels give the same greedy tokens, and bitwise-equal logits, on
every test model: `tiny` llama and qwen2 at f32, f16, bf16, q8_0, q4_0 and q4_k
(`ferry model init`; at the tiny shape q4_k falls back to q4_0/q8_0 rows, so the
K-quant kernels are covered end to end by tests/unit/test_model_kern_simd.c, which
builds a model holding every type), and the real stories260K model in ../shared.

`ferry generate --temp 0` runs once with the default (AVX2 when the CPU has it) and
once with FERRY_SIMD=scalar; the generated ids must be identical and every dumped
logits row must be equal byte for byte (kern_int.h's float order contract).
Skips when the CPU has no AVX2 (both runs would be scalar).
"""
import json
import os
import subprocess
import sys
import tempfile

SRC = os.environ.get("FERRY_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FERRY_BIN", os.path.join(SRC, "build", "ferry"))
SHARED = os.environ.get("FERRY_SHARED", os.path.join(SRC, "..", "shared"))
N_GEN = 48


def run(args, env=None):
    e = dict(os.environ)
    e.pop("FERRY_SIMD", None)
    if env:
        e.update(env)
    p = subprocess.run([BIN] + args, capture_output=True, env=e, timeout=300)
    if p.returncode != 0:
        sys.exit("FAIL: ferry %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout


def gen(model, dump, scalar, prompt_args):
    out = run(["generate", "-m", model, "-n", str(N_GEN), "--temp", "0", "--json",
               "--ignore-eos", "-t", "2", "--dump-logits", dump] + prompt_args,
              env={"FERRY_SIMD": "scalar"} if scalar else None)
    with open(dump, "rb") as f:
        return json.loads(out.decode())["tokens"], f.read()


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: no ferry binary at " + BIN)
        sys.exit(77)
    if "avx2" not in open("/proc/cpuinfo").read():
        print("SKIP: the CPU has no AVX2, both paths would be scalar")
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="ferry-simd-")
    models = []
    for arch in ("llama", "qwen2"):
        for typ in ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"):
            path = os.path.join(d, "tiny-%s-%s.gguf" % (arch, typ))
            run(["model", "init", "--arch", arch, "--shape", "tiny", "--type", typ,
                 "--seed", "7", "-o", path])
            models.append((path, ["--ids", "1,5,9,200,31,77,4,150"]))
    stories = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")
    if os.path.exists(stories):
        models.append((stories, ["-p", "Once upon a time"]))
    else:
        print("note: %s not found, tiny models only" % stories)
    failures = 0
    for path, prompt in models:
        tv, lv = gen(path, path + ".avx2.logits", False, prompt)
        ts, ls = gen(path, path + ".scalar.logits", True, prompt)
        ok_t, ok_l = tv == ts, lv == ls and len(lv) > 0
        distinct = len(set(tv))
        print("%-28s tokens %s, logits %s (%d bytes), %d distinct tokens" % (
            os.path.basename(path), "same" if ok_t else "DIFFER", "bitwise equal" if ok_l
            else "DIFFER", len(lv), distinct))
        failures += (not ok_t) + (not ok_l)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
