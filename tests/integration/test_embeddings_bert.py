"""ferry serve --embedding-model with a seeded tiny `bert` model:

/v1/models lists the model and the lexical embedder; /v1/embeddings uses the model by
default (vectors equal to `ferry embed -m`, usage = the model's tokens incl. [CLS]/[SEP],
one batched call for an array), and the lexical one when asked; dimensions must equal the
model's; a collection created without "embedder" uses the model, answers queries, and
loads again after a restart with the model configured.
"""
import json
import os
import shutil
import subprocess
import tempfile

from ferryserver import BIN, Server


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def call(s, method, path, body=None):
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    st, _, data = s.request(method, path, body=json.dumps(body) if body is not None else None,
                            headers=hdr)
    return st, json.loads(data) if data else None


def metric(s, name):
    st, _, data = s.request("GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def concurrent(s, texts, want):
    """24 clients at once share the model's embedding queue (batched across requests):
    every answer is still its own texts' vectors, and the queue's metrics add up."""
    import threading
    before = metric(s, "ferry_embedding_texts_total") or 0
    results, errors = {}, []

    def one(i):
        try:
            pick = [texts[(i + k) % 3] for k in range(1 + i % 3)]
            st, v = call(s, "POST", "/v1/embeddings", {"input": pick})
            results[i] = (pick, st, v)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    th = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in th:
        t.start()
    for t in th:
        t.join(60)
    check(not errors and len(results) == 24, errors)
    n_texts = 0
    for i, (pick, st, v) in results.items():
        check(st == 200 and len(v["data"]) == len(pick), (i, st, v))
        for k, text in enumerate(pick):
            exp = want["data"][texts.index(text)]["embedding"]
            got = v["data"][k]["embedding"]
            check(max(abs(a - b) for a, b in zip(got, exp)) < 1e-6, (i, k))
        n_texts += len(pick)
    after = metric(s, "ferry_embedding_texts_total")
    check(after - before == n_texts, (before, after, n_texts))
    # every text went through exactly one batched forward call
    check(metric(s, "ferry_embedding_batch_texts_sum") == after, "batch histogram sum")
    check(metric(s, "ferry_embedding_waiting") == 0, "queue drained")


def main():
    work = tempfile.mkdtemp(prefix="ferry-bert-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("ok")


def run(work):
    model = os.path.join(work, "tiny-bert.gguf")
    subprocess.run([BIN, "model", "init", "--arch", "bert", "--shape", "tiny", "--type", "f32",
                    "--seed", "5", "-o", model], check=True)
    texts = ["the cat sat on the mat", "a dog in the house", "search the data file"]
    p = subprocess.run([BIN, "embed", "-m", model, "--json"] + texts, stdout=subprocess.PIPE,
                       check=True)
    want = json.loads(p.stdout)
    s = Server("--embedding-model", model)
    data = s.data
    try:
        st, v = call(s, "GET", "/v1/models")
        ids = {m["id"]: m for m in v["data"]}
        check("tiny-bert" in ids and ids["tiny-bert"]["dimensions"] == 64 and
              ids["tiny-bert"]["type"] == "embedding" and "ferry-lexical-384" in ids, v)
        st, v = call(s, "POST", "/v1/embeddings", {"input": texts})
        check(st == 200 and v["model"] == "tiny-bert" and len(v["data"]) == 3, v)
        for i in range(3):
            got, exp = v["data"][i]["embedding"], want["data"][i]["embedding"]
            check(len(got) == 64 and max(abs(a - b) for a, b in zip(got, exp)) < 1e-6, i)
        check(v["usage"]["prompt_tokens"] == sum(d["tokens"] for d in want["data"]), v["usage"])
        concurrent(s, texts, want)
        st, v = call(s, "POST", "/v1/embeddings", {"input": "x", "model": "ferry-lexical-384"})
        check(st == 200 and len(v["data"][0]["embedding"]) == 384, v)
        st, v = call(s, "POST", "/v1/embeddings", {"input": "x", "dimensions": 384})
        check(st == 400 and v["error"]["param"] == "dimensions", v)
        st, v = call(s, "POST", "/v1/embeddings", {"input": "x", "dimensions": 64})
        check(st == 200, v)
        st, v = call(s, "POST", "/v1/collections", {"name": "kb"})
        check(st == 201 and v["embedder"] == "tiny-bert" and v["dimensions"] == 64, v)
        st, v = call(s, "POST", "/v1/collections", {"name": "lex", "embedder": "ferry-lexical-384"})
        check(st == 201 and v["dimensions"] == 384, v)
        st, v = call(s, "POST", "/v1/collections/kb/documents",
                     {"documents": [{"id": "a", "text": "the cat sat on the mat"},
                                    {"id": "b", "text": "search the data file"}]})
        check(st == 200, v)
        # chunks of a model-embedded collection are counted in the model's tokens
        # ("sat", "mat" are word pieces in the built-in vocab: 10 tokens, not the estimate's 6)
        p = subprocess.run([BIN, "tokenize", "-m", model, "the cat sat on the mat"],
                           stdout=subprocess.PIPE, check=True)
        check(v["data"][0]["tokens"] == len(p.stdout.split()) == 10, (v, p.stdout))
        # the query's own text as a document is its nearest neighbour (cosine 1)
        st, v = call(s, "POST", "/v1/collections/kb/query", {"query": "search the data file",
                                                             "mode": "vector", "top_k": 1})
        check(st == 200 and v["data"][0]["document_id"] == "b" and
              abs(v["data"][0]["score"] - 1) < 1e-5, v)
        s.proc.send_signal(15)
        check(s.proc.wait(timeout=30) == 0, "no clean stop")
        s2 = Server("--embedding-model", model, "--data", data)
        try:
            st, v = call(s2, "GET", "/v1/collections")
            names = sorted((c["name"], c["embedder"]) for c in v["data"])
            check(names == [("kb", "tiny-bert"), ("lex", "ferry-lexical-384")], names)
            st, v = call(s2, "POST", "/v1/collections/kb/query", {"query": "the cat sat on the mat",
                                                                  "mode": "vector", "top_k": 1})
            check(st == 200 and v["data"][0]["document_id"] == "a", v)
        finally:
            s2.stop()
        # a bad model path is refused at start (exit 2)
        p = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--data",
                            os.path.join(work, "d2"), "--embedding-model",
                            os.path.join(work, "missing.gguf")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        check(p.returncode == 2 and b"missing.gguf" in p.stderr, (p.returncode, p.stderr))
    finally:
        s.stop()


if __name__ == "__main__":
    main()
