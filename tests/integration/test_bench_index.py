"""ferry bench-index: options, --json rows, recall computed against the truth file.

A seeded clustered data set (2,000 x 24 floats, 60 queries) with exact top-10
ground truth from numpy is written as .fvecs/.ivecs. bench-index must report,
per ef, a recall that matches the data (high at a large ef; about zero against
a truth file whose ids were shifted), queries/s, queries per CPU-second and
p50 <= p99 latency, plus build time and memory; --save then --load gives the
same recall without a build; l2, ip and cosine all run; text output has its
header; bad input (missing file, disagreeing files, bad metric, bad numbers)
exits 2 with one line on stderr.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("FERRY_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "ferry")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def write_fvecs(path, a):
    a = np.asarray(a, dtype="<f4")
    n, d = a.shape
    out = np.empty((n, d + 1), dtype="<i4")
    out[:, 0] = d
    out[:, 1:] = a.view("<i4")
    out.tofile(path)


def write_ivecs(path, a):
    a = np.asarray(a, dtype="<i4")
    n, d = a.shape
    out = np.empty((n, d + 1), dtype="<i4")
    out[:, 0] = d
    out[:, 1:] = a
    out.tofile(path)


def truth(base, q, metric, k=10):
    if metric == "l2":
        d = ((q[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    else:
        b, qq = base, q
        if metric == "cosine":
            b = base / np.linalg.norm(base, axis=1, keepdims=True)
            qq = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = -(qq @ b.T)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def run(args, expect=0):
    p = subprocess.run([BIN, "bench-index"] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    check(p.returncode == expect, "exit %d (want %d) for %s: %s" %
          (p.returncode, expect, args, p.stderr.decode()))
    return p.stdout.decode(), p.stderr.decode()


def rows(out):
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def main():
    if not os.access(BIN, os.X_OK):
        print("SKIP: no ferry binary at %s" % BIN)
        sys.exit(77)
    d = tempfile.mkdtemp(prefix="ferry-bidx-")
    try:
        body(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("ok")


def body(d):
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(20, 24))
    base = (centers[rng.integers(0, 20, 2000)] + 0.3 * rng.normal(size=(2000, 24))).astype("f4")
    q = (centers[rng.integers(0, 20, 60)] + 0.3 * rng.normal(size=(60, 24))).astype("f4")
    B, Q = os.path.join(d, "b.fvecs"), os.path.join(d, "q.fvecs")
    write_fvecs(B, base)
    write_fvecs(Q, q)
    for metric in ("l2", "ip", "cosine"):
        T = os.path.join(d, "t_%s.ivecs" % metric)
        write_ivecs(T, truth(base.astype("f8"), q.astype("f8"), metric))
        out, _ = run(["--base", B, "--queries", Q, "--truth", T, "--metric", metric, "--M", "8",
                      "--ef-construction", "64", "--ef", "10,128", "-k", "10", "--runs", "2",
                      "--json"])
        r = rows(out)
        check(len(r) == 3, r)
        h = r[0]
        check(h["n"] == 2000 and h["dim"] == 24 and h["queries"] == 60 and h["metric"] == metric
              and h["M"] == 8 and h["efc"] == 64, h)
        check(h["build_s"] > 0 and h["build_cpu_s"] > 0 and h["index_mib"] > 2000 * 24 * 4 / 2**20,
              h)
        e10, e128 = r[1], r[2]
        check(e10["ef"] == 10 and e128["ef"] == 128 and e128["k"] == 10, r)
        check(e128["recall"] >= 0.97, "recall at ef=128 with %s: %s" % (metric, e128))
        check(e10["recall"] <= e128["recall"], r)
        for e in (e10, e128):
            check(e["qps_median"] > 0 and e["qps_best"] >= e["qps_median"] and e["qps_cpu"] > 0, e)
            check(0 < e["p50_us"] <= e["p99_us"], e)

    # recall is computed against the file: shifted ids give (almost) nothing
    T = os.path.join(d, "t_l2.ivecs")
    W = os.path.join(d, "wrong.ivecs")
    write_ivecs(W, (truth(base.astype("f8"), q.astype("f8"), "l2") + 1000) % 2000)
    r = rows(run(["--base", B, "--queries", Q, "--truth", W, "--metric", "l2", "--ef", "64",
                  "--runs", "1", "--json"])[0])
    check(r[1]["recall"] < 0.2, r)

    # --save, then --load: same recall, no build; -t 2 spreads the queries
    S = os.path.join(d, "idx.hnsw")
    a = rows(run(["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--ef", "32",
                  "--runs", "1", "--save", S, "--json"])[0])
    check(os.path.getsize(S) > 2000 * 24 * 4, "saved index")
    b = rows(run(["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--ef", "32",
                  "--runs", "1", "-t", "2", "--load", S, "--json"])[0])
    check(a[1]["recall"] == b[1]["recall"] and b[1]["threads"] == 2, (a, b))

    # text output
    out, _ = run(["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--ef", "16",
                  "--runs", "1"])
    check("recall@k" in out and "queries/s" in out and "p50 us" in out, out)
    out, _ = run(["--help"])
    check("--ef-construction" in out and "--json" in out, out)

    # bad input: exit 2, one line
    Q2 = os.path.join(d, "q2.fvecs")
    write_fvecs(Q2, q[:, :12])
    bad = [
        (["--base", os.path.join(d, "none.fvecs"), "--queries", Q, "--truth", T, "--metric", "l2"],
         "cannot open"),
        (["--base", B, "--queries", Q2, "--truth", T, "--metric", "l2"], "disagree"),
        (["--base", B, "--queries", Q, "--truth", T, "--metric", "hamming"], "--metric"),
        (["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--M", "0"], "--M"),
        (["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--ef", "10,x"], "--ef"),
        (["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--M", "32",
          "--ef-construction", "16"], "below"),
        (["--base", B, "--queries", Q, "--truth", T], "required"),
        (["--base", B, "--queries", Q, "--truth", T, "--metric", "l2", "--bogus", "1"], "unknown"),
    ]
    trunc = os.path.join(d, "trunc.fvecs")
    with open(B, "rb") as f, open(trunc, "wb") as g:
        g.write(f.read()[:1010])  # 10 records of 100 bytes and a piece
    bad.append((["--base", trunc, "--queries", Q, "--truth", T, "--metric", "l2"], "trunc.fvecs"))
    for args, want in bad:
        _, err = run(args, expect=2)
        check(want in err and len(err.strip().splitlines()) == 1, (args, err))


if __name__ == "__main__":
    main()
