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
