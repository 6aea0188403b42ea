"""ferry serve --embedding-model with a decoder (llama) GGUF: mean-pooled last hidden state.

A seeded tiny llama model (`ferry model init`) serves /v1/embeddings: /v1/models lists
it with pooling "last-mean" and its hidden size; vectors equal `ferry embed -m` for the
same texts (unit length, one per text, usage = the model's tokens incl. BOS when the
vocab adds one), arrays and concurrent requests give each text its own vector; a
collection embedded by it answers a query with the query's own document first.
"""
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading

from ferryserver import BIN, Server


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def call(s, method, path, body=None):
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    st, _, data = s.request(method, path, body=json.dumps(body) if body is not None else None,
                            headers=hdr, timeout=60)
    return st, json.loads(data) if data else None


def main():
    work = tempfile.mkdtemp(prefix="ferry-decemb-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("ok")


def run(work):
    model = os.path.join(work, "tiny-llama.gguf")
    subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", "tiny", "--type", "q8_0",
                    "--seed", "5", "-o", model], check=True)
    texts = ["the cat sat on the mat", "a dog in the house", "search the data file"]
    p = subprocess.run([BIN, "embed", "-m", model, "--json"] + texts, stdout=subprocess.PIPE,
                       check=True)
    want = json.loads(p.stdout)
    check(want["pooling"] == "last-mean" and want["arch"] == "llama" and want["dim"] == 64, want)
    for d in want["data"]:
        check(abs(math.sqrt(sum(x * x for x in d["embedding"])) - 1) < 1e-5, "unit length")
    s = Server("--embedding-model", model)
    try:
        st, v = call(s, "GET", "/v1/models")
        ids = {m["id"]: m for m in v["data"]}
        m = ids.get("tiny-llama", {})
        check(m.get("dimensions") == 64 and m.get("pooling") == "last-mean" and
              m.get("type") == "embedding" and "llama" in m.get("description", ""), v)
        st, v = call(s, "POST", "/v1/embeddings", {"input": texts})
        check(st == 200 and v["model"] == "tiny-llama" and len(v["data"]) == 3, v)
        for i in range(3):
            got, exp = v["data"][i]["embedding"], want["data"][i]["embedding"]
            check(len(got) == 64 and max(abs(a - b) for a, b in zip(got, exp)) < 1e-6, i)
        check(v["usage"]["prompt_tokens"] == sum(d["tokens"] for d in want["data"]), v["usage"])
        # concurrent requests: each text still gets its own vector
        results, errors = {}, []

        def one(i):
            try:
                results[i] = call(s, "POST", "/v1/embeddings", {"input": texts[i % 3]})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        th = [threading.Thread(target=one, args=(i,)) for i in range(9)]
        for t in th:
            t.start()
        for t in th:
            t.join(60)
        check(not errors and len(results) == 9, errors)
        for i, (st, v) in results.items():
            exp = want["data"][i % 3]["embedding"]
            check(st == 200 and max(abs(a - b) for a, b in
                                    zip(v["data"][0]["embedding"], exp)) < 1e-6, (i, st))
        st, v = call(s, "POST", "/v1/collections", {"name": "kb"})
        check(st == 201 and v["embedder"] == "tiny-llama" and v["dimensions"] == 64, v)
        st, v = call(s, "POST", "/v1/collections/kb/documents",
                     {"documents": [{"id": "a", "text": texts[0]}, {"id": "b", "text": texts[2]}]})
        check(st == 200, v)
        st, v = call(s, "POST", "/v1/collections/kb/query", {"query": texts[2], "mode": "vector",
                                                             "top_k": 1})
        check(st == 200 and v["data"][0]["document_id"] == "b" and
              abs(v["data"][0]["score"] - 1) < 1e-5, v)
    finally:
        s.stop()


if __name__ == "__main__":
    main()
