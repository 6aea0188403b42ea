#!/usr/bin/env python3
"""Deterministic input for bench/guard.sh: mixed English/Chinese text lines
with sparse PII, and a 10,000-term blocklist (half English, half Chinese).

usage: guard_gen.py OUT_DIR MEGABYTES
"""
import json
import os
import random
import sys

out, mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240607)
syll = ["ka", "lo", "mi", "ter", "ran", "spo", "vel", "qui", "dor", "ni", "sha", "pel", "tor",
        "gri", "ble", "mon", "sa", "ve", "ju", "xi"]
en_words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(5000)]
en_words += ("the of and to in is it that for on with as was at by this be from or have an are "
             "not but they which one you all we can her has there been if more when will would "
             "who so no system prompt rules order data please thank you report").split()
# Common CJK range, weighted toward the first 3000 characters like real text.
zh_chars = [chr(0x4E00 + rng.randint(0, 3000)) for _ in range(3000)]
zh_punct = ["，", "。", "、", "：", "？", "！"]


def zh_run(n):
    s = []
    for _ in range(n):
        s.append(rng.choice(zh_chars))
        if rng.random() < 0.08:
            s.append(rng.choice(zh_punct))
    return "".join(s)


def en_run(n):
    w = [rng.choice(en_words) for _ in range(n)]
    if rng.random() < 0.3:
        w[0] = w[0].capitalize()
    return " ".join(w) + rng.choice([".", ",", "", "!", "?"])


def pii():
    r = rng.random()
    if r < 0.25:
        return f"{rng.choice(en_words)}.{rng.choice(en_words)}@example.com"
    if r < 0.5:
        return f"1{rng.randint(3, 9)}{rng.randint(0, 999999999):09d}"
    if r < 0.7:
        return f"ORD-{rng.randint(20200101, 20251231)}-{rng.randint(0, 9999):04d}"
    if r < 0.85:
        return f"{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"v{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}"


# Terms: English ones from their own syllables (a blocklist names things that
# are rare in ordinary text), Chinese ones from the same characters as the text;
# a few are planted into the text below.
tsyll = ["zor", "vak", "quen", "blit", "drax", "wum", "flo", "grim", "hex", "yst"]
terms = set()
while len(terms) < 5000:
    terms.add(" ".join("".join(rng.choice(tsyll) for _ in range(rng.randint(2, 3)))
                       for _ in range(rng.randint(1, 2))))
while len(terms) < 10000:
    terms.add("".join(rng.choice(zh_chars) for _ in range(rng.randint(3, 4))))
terms = sorted(terms)
rng.shuffle(terms)
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "terms.txt"), "w") as f:
    f.write("\n".join(terms) + "\n")
with open(os.path.join(out, "policy.json"), "w") as f:
    json.dump({"id": "bench", "blocklist": {"files": ["terms.txt"]}}, f)
target = mb * 1024 * 1024
size = 0
with open(os.path.join(out, "text.txt"), "w") as f:
    while size < target:
        parts = []
        for _ in range(rng.randint(8, 24)):
            parts.append(en_run(rng.randint(4, 14)) if rng.random() < 0.5 else zh_run(rng.randint(8, 40)))
            if rng.random() < 0.15:
                parts.append(pii())
        if rng.random() < 0.05:
            parts.insert(rng.randint(0, len(parts)), rng.choice(terms))
        line = " ".join(parts) + "\n"
        f.write(line)
        size += len(line.encode())
