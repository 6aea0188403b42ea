"""Shared helpers of the reference tests: running ferry and the numpy reference.

Not a test itself (ctest runs only test_*.py). Environment, as set by ctest:
FERRY_BIN (the ferry binary), FERRY_SHARED (../shared), FERRY_BUILD (scratch space).
Exit code 77 means "skipped" to ctest.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_model  # noqa: E402

SKIP = 77


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


def ferry_bin():
    b = os.environ.get("FERRY_BIN")
    if not b or not os.access(b, os.X_OK):
        skip("FERRY_BIN is not set to an executable ferry")
    return b


def shared():
    return os.environ.get("FERRY_SHARED") or os.path.join(HERE, "..", "..", "..", "shared")


def workdir():
    base = os.environ.get("FERRY_BUILD") or tempfile.gettempdir()
    d = tempfile.mkdtemp(prefix="ferry-ref-", dir=base)
    if not os.environ.get("FERRY_KEEP"):  # FERRY_KEEP=1 keeps the models and dumps
        atexit.register(shutil.rmtree, d, True)
    return d


def run(args, env=None, check=True):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    if check and p.returncode != 0:
        raise SystemExit("command failed (%d): %s\n%s" % (p.returncode, " ".join(args),
                                                          p.stderr.decode(errors="replace")))
    return p


def model_init(arch, shape, typ, out, vocab=None, seed=1):
    args = [ferry_bin(), "model", "init", "--arch", arch, "--shape", shape, "--type", typ,
            "--seed", str(seed), "-o", out]
    if vocab:
        args += ["--vocab", vocab]
    p = run(args, check=False)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace")
        if "unknown command" in err:
            skip("ferry model init is not available: " + err.strip())
        raise SystemExit("model init failed: " + err)


def generate(model, ids=None, prompt=None, n=64, dump=None, env=None, extra=()):
    """Runs ferry generate greedily; returns (json result, logits rows or None)."""
    args = [ferry_bin(), "generate", "-m", model, "-n", str(n), "--temp", "0", "--json",
            "--ignore-eos",
            "-t", "2"]
    if ids is not None:
        args += ["--ids", ",".join(str(i) for i in ids)]
    if prompt is not None:
        args += ["-p", prompt]
    if dump:
        args += ["--dump-logits", dump]
    args += list(extra)
    p = run(args, env=env)
    res = json.loads(p.stdout.decode())
    rows = None
    if dump:
        rows = np.fromfile(dump, dtype="<f4").reshape(-1, res["n_vocab"])
    return res, rows


def reference(model, f32=False):
    return ref_model.Model(model, dtype=np.float32 if f32 else np.float64, kv_f16=True)


def prompt_ids(n_vocab, n, seed=3):
    """n deterministic token ids in [3, n_vocab) (skipping the usual specials 0-2)."""
    rng = np.random.RandomState(seed)
    return [int(x) for x in rng.randint(3, n_vocab, size=n)]


def greedy_free(ref, ids, n):
    """Free-running greedy continuation of ids by the reference (n tokens)."""
    return ref.greedy(ids, n)
