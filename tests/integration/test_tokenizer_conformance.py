#!/usr/bin/python3
"""Tokenizer conformance: `ferry tokenize --cases` against llama.cpp's vectors.

For every vocab in $FERRY_SHARED/tokenizer-tests that has the .gguf, the .inp
and the .out (llama-spm, phi-3, gpt-2, deepseek-coder, deepseek-llm, falcon,
mpt, refact, starcoder, bert-bge), the output must equal the .out file byte
for byte, and case by case after stripping (which names the failing case).
Also checks the bad-input paths of the command (exit 2, one line).
Exit 77 (skip) when FERRY_SHARED is absent.
"""
import os
import subprocess
import sys

EXPECTED = ["llama-spm", "phi-3", "gpt-2", "deepseek-coder", "deepseek-llm", "falcon",
            "mpt", "refact", "starcoder", "bert-bge"]
SEP = "\n__ggml_vocab_test__\n"


def main():
    ferry = os.environ.get("FERRY_BIN", "build/ferry")
    shared = os.environ.get("FERRY_SHARED", "")
    d = os.path.join(shared, "tokenizer-tests")
    if not shared or not os.path.isdir(d):
        print("SKIP: FERRY_SHARED/tokenizer-tests not present (set FERRY_SHARED=../shared)")
        return 77
    vocabs = sorted(f[len("ggml-vocab-"):-len(".gguf")] for f in os.listdir(d)
                    if f.startswith("ggml-vocab-") and f.endswith(".gguf")
                    and os.path.exists(os.path.join(d, f + ".inp"))
                    and os.path.exists(os.path.join(d, f + ".out")))
    missing = [v for v in EXPECTED if v not in vocabs]
    if missing:
        print("FAIL: expected vocab files missing: %s" % ", ".join(missing))
        return 1
    failed = 0
    for v in vocabs:
        g = os.path.join(d, "ggml-vocab-%s.gguf" % v)
        inp = open(g + ".inp", "rb").read().decode("utf-8")
        want = open(g + ".out", "rb").read()
        cases = inp.split(SEP)
        if cases and cases[-1] == "":
            cases.pop()
        r = subprocess.run([ferry, "tokenize", "-m", g, "--cases", g + ".inp"],
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            print("FAIL %s: exit %d: %s" % (v, r.returncode, r.stderr.decode(errors="replace")))
            failed += 1
            continue
        got_lines = r.stdout.decode().split("\n")
        want_lines = want.decode().split("\n")
        bad = []
        for i, case in enumerate(cases):
            g_ids = got_lines[i].split() if i < len(got_lines) else None
            w_ids = want_lines[i].split()
            if g_ids != w_ids:
                bad.append((i, case, w_ids, g_ids))
        if len(got_lines) != len(want_lines):
            bad.append((-1, "(line count)", len(want_lines), len(got_lines)))
        if r.stdout != want and not bad:
            bad.append((-1, "(bytes differ: spacing or line ends)", None, None))
        if bad:
            failed += 1
            print("FAIL %s: %d case(s) differ" % (v, len(bad)))
            for i, case, w, g_ in bad[:5]:
                print("  case %d %r\n    want %s\n    got  %s" % (i, case[:60], w, g_))
        else:
            print("ok   %s: %d cases" % (v, len(cases)))

    # Bad input: a missing file, a file that is not GGUF, no -m.
    spm = os.path.join(d, "ggml-vocab-llama-spm.gguf")
    for args in (["-m", "/nonexistent.gguf", "x"], ["-m", spm + ".inp", "x"], ["x"],
                 ["-m", spm, "--cases", "/nonexistent.inp"], ["-m", spm, "a", "b"]):
        r = subprocess.run([ferry, "tokenize"] + args, capture_output=True, timeout=60)
        err = r.stderr.decode(errors="replace").strip()
        if r.returncode != 2 or not err or "\n" in err:
            print("FAIL bad input %r: exit %d, stderr %r" % (args, r.returncode, err))
            failed += 1
    # BOS and special-token parsing on request.
    r = subprocess.run([ferry, "tokenize", "-m", spm, "--bos", "Hello"], capture_output=True)
    if r.returncode != 0 or r.stdout.split() != [b"1", b"15043"]:
        print("FAIL --bos on llama-spm: %r" % r.stdout)
        failed += 1
    r = subprocess.run([ferry, "tokenize", "-m", spm, "--special", "<s>a</s>"],
                       capture_output=True)
    if r.returncode != 0 or r.stdout.split() != [b"1", b"263", b"2"]:
        print("FAIL --special on llama-spm: %r" % r.stdout)
        failed += 1
    print("%d failure(s)" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
