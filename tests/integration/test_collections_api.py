"""The knowledge-base API and /v1/embeddings over real HTTP (ferry serve):

collections create/list/get/delete (409 on a duplicate, 404 on unknown), document
upsert (single and batch, replacing on the same id), get/delete, queries in vector,
keyword and hybrid modes returning the right document and chunk span, metadata
filter, min_score, bad parameters answered 400 naming the param; persistence across
a restart (same data dir); /v1/embeddings with string and array input, float and
base64 (decoded and compared), usage, dimensions refused, unknown model 404.
"""
import base64
import json
import math
import os
import pty
import re
import struct
import subprocess
import tempfile

from ferryserver import BIN, Server, error_of


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def call(s, method, path, body=None):
    hdr = {"Content-Type": "application/json"} if body is not None else {}
    st, _, data = s.request(method, path, body=json.dumps(body) if body is not None else None,
                            headers=hdr)
    return st, json.loads(data) if data else None


DOCS = [
    {"id": "cats", "text": "# Cats\nCats are small felines. A cat purrs when it is content.\n\n"
                           "Cats sleep most of the day.", "metadata": {"topic": "animals"}},
    {"id": "rust", "text": "Rust is a systems programming language. Its borrow checker "
                           "prevents data races.", "metadata": {"topic": "code"}},
    {"id": "beijing", "text": "北京是中国的首都。北京秋天的天气很好。", "metadata": {"topic": "city"}},
]


def run(s):
    st, v = call(s, "POST", "/v1/collections", {"name": "kb", "chunk_tokens": 32,
                                                "chunk_overlap": 4})
    check(st == 201 and v["name"] == "kb" and v["embedder"] == "ferry-lexical-384" and
          v["dimensions"] == 384 and v["metric"] == "cosine", (st, v))
    st, v = call(s, "POST", "/v1/collections", {"name": "kb"})
    check(st == 409 and error_of(json.dumps(v).encode())["param"] == "name", (st, v))
    for bad, param in (({"name": "../x"}, "name"), ({}, "name"),
                       ({"name": "y", "metric": "manhattan"}, "metric"),
                       ({"name": "y", "embedder": "bge"}, "embedder"),
                       ({"name": "y", "chunk_tokens": 16, "chunk_overlap": 8}, "chunk_overlap")):
        st, v = call(s, "POST", "/v1/collections", bad)
        check(st == 400 and v["error"]["param"] == param, (bad, st, v))
    st, v = call(s, "GET", "/v1/collections/nope")
    check(st == 404, (st, v))

    st, v = call(s, "POST", "/v1/collections/kb/documents", {"documents": DOCS})
    check(st == 200 and [d["id"] for d in v["data"]] == ["cats", "rust", "beijing"] and
          all(d["chunks"] >= 1 for d in v["data"]) and v["usage"]["documents"] == 3, v)
    st, v = call(s, "POST", "/v1/collections/kb/documents", {"id": "tmp", "text": "temporary"})
    check(st == 200 and v["data"][0]["id"] == "tmp", v)
    st, v = call(s, "GET", "/v1/collections/kb")
    check(st == 200 and v["documents"] == 4 and v["chunks"] >= 4, v)
    st, v = call(s, "GET", "/v1/collections/kb/documents/rust")
    check(st == 200 and v["text"] == DOCS[1]["text"] and v["metadata"] == {"topic": "code"}, v)
    st, v = call(s, "DELETE", "/v1/collections/kb/documents/tmp")
    check(st == 200 and v["deleted"] is True, v)
    st, v = call(s, "GET", "/v1/collections/kb/documents/tmp")
    check(st == 404, v)
    st, v = call(s, "DELETE", "/v1/collections/kb/documents/tmp")
    check(st == 404, v)

    cases = [("why does a cat purr", "cats"), ("borrow checker data races", "rust"),
             ("北京的天气", "beijing")]
    for mode in ("vector", "keyword", "hybrid"):
        for q, want in cases:
            st, v = call(s, "POST", "/v1/collections/kb/query", {"query": q, "top_k": 2,
                                                                 "mode": mode})
            check(st == 200 and v["mode"] == mode and v["data"], (mode, q, st, v))
            top = v["data"][0]
            check(top["document_id"] == want, (mode, q, v))
            doc = next(d for d in DOCS if d["id"] == want)["text"].encode()
            check(doc[top["offset"]:top["offset"] + top["length"]].decode() == top["text"],
                  (mode, top))
            scores = [d["score"] for d in v["data"]]
            check(scores == sorted(scores, reverse=True), scores)
    # hybrid scores are reciprocal-rank sums (k = 60): at most 2/61
    st, v = call(s, "POST", "/v1/collections/kb/query", {"text": "cat", "mode": "hybrid"})
    check(0 < v["data"][0]["score"] <= 2 / 61 + 1e-12, v)
    # filter on metadata, min_score
    st, v = call(s, "POST", "/v1/collections/kb/query", {"query": "cat rust 北京", "top_k": 5,
                                                         "filter": {"topic": "code"}})
    check(st == 200 and {d["document_id"] for d in v["data"]} == {"rust"}, v)
    st, v = call(s, "POST", "/v1/collections/kb/query", {"query": "cat", "mode": "keyword",
                                                         "min_score": 1000})
    check(st == 200 and v["data"] == [], v)
    for bad, param in (({"query": "x", "top_k": 0}, "top_k"), ({"top_k": 3}, "query"),
                       ({"query": "x", "mode": "fuzzy"}, "mode"),
                       ({"query": "x", "filter": [1]}, "filter")):
        st, v = call(s, "POST", "/v1/collections/kb/query", bad)
        check(st == 400 and v["error"]["param"] == param, (bad, st, v))
    # upsert replaces
    st, v = call(s, "POST", "/v1/collections/kb/documents",
                 {"id": "rust", "text": "Rust is also iron oxide.", "metadata": {"topic": "chem"}})
    st, v = call(s, "POST", "/v1/collections/kb/query", {"query": "borrow checker",
                                                         "mode": "keyword"})
    check(st == 200 and v["data"] == [], v)


def embeddings(s):
    st, v = call(s, "GET", "/v1/models")
    lex = [m for m in v["data"] if m["id"] == "ferry-lexical-384"]
    check(st == 200 and len(lex) == 1 and lex[0]["type"] == "embedding" and
          lex[0]["dimensions"] == 384 and "lexical" in lex[0]["description"], v)
    st, v = call(s, "POST", "/v1/embeddings", {"input": "hello world",
                                               "model": "ferry-lexical-384"})
    check(st == 200 and v["object"] == "list" and len(v["data"]) == 1 and
          v["model"] == "ferry-lexical-384" and v["usage"]["prompt_tokens"] == 2 and
          v["usage"]["total_tokens"] == 2, v)
    e = v["data"][0]["embedding"]
    check(len(e) == 384 and abs(math.sqrt(sum(x * x for x in e)) - 1) < 1e-5, len(e))
    st, v2 = call(s, "POST", "/v1/embeddings", {"input": ["hello world", "你好"],
                                                "encoding_format": "base64"})
    check(st == 200 and [d["index"] for d in v2["data"]] == [0, 1], v2)
    dec = struct.unpack("<384f", base64.b64decode(v2["data"][0]["embedding"]))
    check(max(abs(a - b) for a, b in zip(dec, e)) < 1e-6, "base64 differs from float")
    st, v = call(s, "POST", "/v1/embeddings", {"input": "x", "dimensions": 64})
    check(st == 400 and v["error"]["param"] == "dimensions", v)
    st, v = call(s, "POST", "/v1/embeddings", {"input": "x", "dimensions": 384})
    check(st == 200, v)
    st, v = call(s, "POST", "/v1/embeddings", {"input": "x", "model": "bge-small"})
    check(st == 404 and v["error"]["code"] == "model_not_found", v)
    for bad in ({"input": []}, {"input": 5}, {"input": [1, 2]},
                {"input": "x", "encoding_format": "hex"}):
        st, v = call(s, "POST", "/v1/embeddings", bad)
        check(st == 400, (bad, v))


def ingest(s):
    """ferry ingest: .txt .md .html .jsonl (a directory walk), summary, created collection."""
    d = tempfile.mkdtemp(prefix="ferry-ingest-", dir=s.dir)
    files = {
        "a.txt": "Plain text about sailing boats. Boats float on water.",
        "sub/b.md": "# Ferries\nA ferry carries passengers across a river.\n\nFerries run daily.",
        "c.html": "<html><head><title>Trains</title><style>p{color:red}</style>"
                  "<script>var secret = 'zebra';</script></head><body><h1>Trains &amp; "
                  "rails</h1><p>Trains run on rails.</p><p>Fast&nbsp;trains exist.</p></body></html>",
        "d.jsonl": json.dumps({"id": "j1", "text": "Bicycles have two wheels.",
                               "metadata": {"kind": "bike"}}) + "\n\n" +
                   json.dumps({"text": "Unicycles have one wheel."}) + "\n",
        "skip.bin": "not ingested",
    }
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    url = "http://127.0.0.1:%d/v1" % s.port
    p = subprocess.run([BIN, "ingest", "--url", url, "--collection", "docs", "--batch", "2", d],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.decode()
    check(p.returncode == 0 and "ingested 5 documents" in out and "from 4 files" in out,
          (p.returncode, out, p.stderr.decode()))
    st, v = call(s, "GET", "/v1/collections/docs")
    check(st == 200 and v["documents"] == 5, v)
    # the summary: documents, chunks (as the collection counts them), tokens, time
    m = re.search(r"ingested 5 documents \((\d+) chunks, (\d+) tokens\) from 4 files into docs "
                  r"in (\d+\.\d+) s$", out.strip())
    check(m and int(m.group(1)) == v["chunks"] and int(m.group(2)) > 20 and
          float(m.group(3)) < 60, out)
    # the progress bar, when stderr is a terminal (a pty here): one bar per file, then full
    mfd, sfd = pty.openpty()
    p = subprocess.run([BIN, "ingest", "--url", url, "--collection", "docs2", d],
                       stdout=subprocess.PIPE, stderr=sfd)
    os.close(sfd)
    bar = b""
    while True:
        try:
            chunk = os.read(mfd, 65536)
        except OSError:  # EIO: the pty's other side is closed and drained
            break
        if not chunk:
            break
        bar += chunk
    os.close(mfd)
    bar = bar.decode()
    frames = [f for f in bar.replace("\n", "\r").split("\r") if f.strip()]
    check(p.returncode == 0 and len(frames) >= 4 and "1/4 files" in frames[0] and
          frames[-1].startswith("[" + "#" * 30 + "] 4/4 files, 5 documents,"), repr(bar))
    st, _ = call(s, "DELETE", "/v1/collections/docs2")
    check(st == 200, "delete docs2")
    st, v = call(s, "GET", "/v1/collections/docs/documents/j1")
    check(st == 200 and v["metadata"] == {"kind": "bike"}, v)
    html_id = os.path.join(d, "c.html")
    st, v = call(s, "POST", "/v1/collections/docs/query", {"query": "trains rails", "top_k": 1,
                                                           "mode": "keyword"})
    check(st == 200 and v["data"][0]["document_id"] == html_id, v)
    text = v["data"][0]["text"]
    check("zebra" not in text and "color" not in text and "# Trains & rails" in text and
          "Fast trains exist." in text, text)
    st, v = call(s, "POST", "/v1/collections/docs/query", {"query": "one wheel", "top_k": 1})
    check(v["data"][0]["document_id"] == os.path.join(d, "d.jsonl") + ":3", v)
    # usage errors
    p = subprocess.run([BIN, "ingest", "--collection", "docs", d], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    check(p.returncode == 2, p.stderr)
    p = subprocess.run([BIN, "ingest", "--url", url, "--collection", "bad/name", d],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode != 0, p.stdout)


def main():
    s = Server()
    data = s.data
    try:
        run(s)
        embeddings(s)
        ingest(s)
        s.proc.send_signal(15)
        check(s.proc.wait(timeout=30) == 0, "ferry did not stop cleanly")
        # persistence: a new server on the same data dir has the collection
        s2 = Server("--data", data)
        try:
            st, v = call(s2, "GET", "/v1/collections/kb")
            check(st == 200 and v["documents"] == 3, v)
            st, v = call(s2, "POST", "/v1/collections/kb/query", {"query": "北京的天气"})
            check(st == 200 and v["data"][0]["document_id"] == "beijing", v)
            st, v = call(s2, "DELETE", "/v1/collections/kb")
            check(st == 200 and v["deleted"] is True, v)
            st, v = call(s2, "GET", "/v1/collections")
            check(st == 200 and [c["name"] for c in v["data"]] == ["docs"], v)
            check(not os.path.exists(os.path.join(data, "collections", "kb.docs")), "file left")
        finally:
            s2.stop()
    finally:
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
