#!/usr/bin/python3
"""bench/embed.py — /v1/embeddings throughput of `ferry serve --embedding-model`.

  bench/embed.py [--bin build/ferry] [--bin-before OTHER/ferry] [--models DIR]
                 [--requests 4] [--texts 16] [--clients 2] [--runs 3] [--only NAME]

Makes two seeded models once (in --models, default /tmp/ferry-embed-models):
  decoder  `ferry model init --arch llama --shape smollm-135m --type q8_0`
  bert     `ferry model init --arch bert --shape minilm --type f16` with the
           bert-bge WordPiece vocab of ../shared/tokenizer-tests (else built-in)
and uses ../shared/models/stories260K (a tiny trained llama) when present,
then for each binary (--bin, and --bin-before when given, alternated run by
run so load changes hit both alike) and each model starts `ferry serve
--embedding-model M`, warms it up, and sends `--requests` POST /v1/embeddings of
`--texts` short sentences each from `--clients` threads at once. It reports
texts per CPU-second of the server process (user+system time of all its
threads from /proc, which a busy machine does not inflate much) and texts per
second of wall time, the median of --runs, and the ratio after/before.

Python stdlib only. The sentences are fixed (seeded), 8-20 words each.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import ferryserver  # noqa: E402

WORDS = ("the a cat dog house river mountain data search index vector model query answer "
         "document server request token batch memory cache graph layer weight table file "
         "runs finds keeps reads writes sends gets makes uses quick small large blue old new "
         "under over with from into after before").split()


def sentences(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) + "."
            for _ in range(n)]


def cpu_s(pid):
    """User + system CPU seconds of all threads of pid."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(srv, texts):
    st, _, data = srv.request("POST", "/v1/embeddings", body=json.dumps({"input": texts}),
                              headers={"Content-Type": "application/json"}, timeout=600)
    if st != 200:
        raise RuntimeError("HTTP %d: %s" % (st, data[:200]))
    v = json.loads(data)
    if len(v["data"]) != len(texts):
        raise RuntimeError("wrong number of vectors")
    return v


def measure(binary, model, a):
    ferryserver.BIN = binary
    srv = ferryserver.Server("--embedding-model", model)
    try:
        post(srv, sentences(a.texts, 0))  # warm-up (page in the weights)
        batches = [sentences(a.texts, 1000 + i) for i in range(a.requests)]
        nxt = [0]
        lock = threading.Lock()
        errors = []

        def client():
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(batches):
                    return
                try:
                    post(srv, batches[i])
                except Exception as ex:  # reported after the run
                    errors.append(str(ex))
                    return

        c0, t0 = cpu_s(srv.proc.pid), time.monotonic()
        ts = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall, cpu = time.monotonic() - t0, cpu_s(srv.proc.pid) - c0
        if errors:
            raise RuntimeError(errors[0])
        n = a.requests * a.texts
        return n / cpu, n / wall
    finally:
        srv.stop()


def make_models(binary, d):
    os.makedirs(d, exist_ok=True)
    dec = os.path.join(d, "smollm-135m-q8_0.gguf")
    bert = os.path.join(d, "minilm-f16.gguf")
    if not os.path.exists(dec):
        subprocess.run([binary, "model", "init", "--arch", "llama", "--shape", "smollm-135m",
                        "--type", "q8_0", "--seed", "1", "-o", dec], check=True)
    if not os.path.exists(bert):
        shared = os.environ.get("FERRY_SHARED", os.path.join(HERE, "..", "..", "shared"))
        vocab = os.path.join(shared, "tokenizer-tests", "ggml-vocab-bert-bge.gguf")
        extra = ["--vocab", vocab] if os.path.exists(vocab) else []
        subprocess.run([binary, "model", "init", "--arch", "bert", "--shape", "minilm",
                        "--type", "f16", "--seed", "1", "-o", bert] + extra, check=True)
    models = {"decoder smollm-135m q8_0": dec, "bert minilm f16": bert}
    shared = os.environ.get("FERRY_SHARED", os.path.join(HERE, "..", "..", "shared"))
    s260 = os.path.join(shared, "models", "stories260K", "stories260K.gguf")
    if os.path.exists(s260):  # a tiny real decoder: per-step overhead, not FLOPs
        models["decoder stories260K f32"] = s260
    return models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "ferry"))
    ap.add_argument("--bin-before")
    ap.add_argument("--models", default="/tmp/ferry-embed-models")
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--texts", type=int, default=16)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", help="substring of the model names to run")
    a = ap.parse_args()
    models = make_models(a.bin, a.models)
    bins = [("after", a.bin)] + ([("before", a.bin_before)] if a.bin_before else [])
    print("load: %s (1/5/15 min) on %d cores" % (" ".join(open("/proc/loadavg").read().split()[:3]),
                                                  os.cpu_count()), file=sys.stderr)
    res = {}
    for r in range(a.runs):
        order = bins if r % 2 == 0 else bins[::-1]
        for name, path in models.items():
            if a.only and a.only not in name:
                continue
            for tag, b in order:
                cpu, wall = measure(b, path, a)
                res.setdefault((name, tag), []).append((cpu, wall))
                print(f"run {r + 1} {name} {tag}: {cpu:.1f} texts/CPU-s, {wall:.1f} texts/s",
                      file=sys.stderr)
    print("load: %s (1/5/15 min)" % " ".join(open("/proc/loadavg").read().split()[:3]),
          file=sys.stderr)
    print(f"{a.requests} requests x {a.texts} texts from {a.clients} clients, median of {a.runs}")
    for name in models:
        row = {}
        for tag, _ in bins:
            v = res.get((name, tag))
            if v:
                row[tag] = (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
                print(f"{name:26} {tag:6}: {row[tag][0]:8.1f} texts/CPU-s {row[tag][1]:8.1f} texts/s wall")
        if "before" in row and "after" in row:
            print(f"{name:26} after/before: {row['after'][0] / row['before'][0]:.2f}x per CPU-s, "
                  f"{row['after'][1] / row['before'][1]:.2f}x wall")


if __name__ == "__main__":
    main()
