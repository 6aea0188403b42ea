"""RAG on chat and completions over real HTTP (ferry serve + stories260K):

a small corpus ingested with `ferry ingest`; the request extension
"ferry": {"collection", "top_k"} retrieves for the last user message; the answer
carries ferry.citations (chunk id, document id, score, offset/length, text) in the
JSON body and, streamed, as the last event before [DONE]; the citations are the
chunks the collection's own hybrid query ranks first, and their offsets point at
the cited text in the ingested file; the sources really reach the model (prompt
tokens grow); a route/model option (--rag) retrieves without the extension; a
custom template is used (--rag-template) and a template without {sources} is
refused at start; an unknown collection is a 404 naming it; bad ferry fields 400.
"""
import json
import os
import subprocess
import tempfile

from ferryserver import BIN, Server, error_of, skip

SHARED = os.environ.get("FERRY_SHARED") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                        "..", "shared")
MODEL = os.path.join(SHARED, "models", "stories260K", "stories260K.gguf")

DOCS = {
    "cats.md": "# Cats\n\nCats are small felines. A cat purrs when it is content.\n\n"
               "Cats sleep for most of the day.\n",
    "rust.txt": "Rust is a systems programming language. Its borrow checker prevents data "
                "races at compile time.\n",
    "tea.txt": "Green tea is steeped in water below boiling. Black tea is fully oxidised.\n",
}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def post(s, path, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    st, hd, data = s.request("POST", path, json.dumps(body), h, timeout=60)
    return st, data


def sse_events(data):
    out = []
    for block in data.decode().split("\n\n"):
        if block.startswith("data: "):
            out.append(block[6:])
    return out


def ingest(s, corpus):
    url = "http://127.0.0.1:%d/v1" % s.port
    r = subprocess.run([BIN, "ingest", "--url", url, "--collection", "kb", corpus],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "ferry ingest failed: %s %s" % (r.stdout, r.stderr))
    st, _, body = s.request("GET", "/v1/collections/kb")
    v = json.loads(body)
    check(st == 200 and v["documents"] == 3, (st, v))


def doc_text(corpus, doc_id):
    for name, text in DOCS.items():
        if doc_id.endswith(name):
            return text
    raise AssertionError("citation names an unknown document %r" % doc_id)


def check_citations(cites, corpus, want_doc, expect_ids):
    check(isinstance(cites, list) and cites, cites)
    check([c["index"] for c in cites] == list(range(1, len(cites) + 1)), cites)
    check(cites[0]["document_id"].endswith(want_doc), ("first source", cites[0], want_doc))
    check([c["chunk_id"] for c in cites] == expect_ids, ("same chunks as the query", cites,
                                                         expect_ids))
    for c in cites:
        text = doc_text(corpus, c["document_id"]).encode()
        span = text[c["offset"]:c["offset"] + c["length"]].decode()
        check(span == c["text"], ("offsets point at the cited text", c, span))
        check(c["score"] > 0, c)


def run(s, corpus):
    ingest(s, corpus)
    q = "What prevents data races in Rust?"
    st, _, body = s.request("POST", "/v1/collections/kb/query",
                            json.dumps({"query": q, "top_k": 2, "mode": "hybrid"}),
                            {"Content-Type": "application/json"})
    expect_ids = [r["chunk_id"] for r in json.loads(body)["data"]]
    check(st == 200 and len(expect_ids) == 2, body)

    base = {"model": "st", "messages": [{"role": "user", "content": q}], "max_tokens": 8,
            "temperature": 0}
    st, data = post(s, "/v1/chat/completions", base)
    plain = json.loads(data)
    check(st == 200 and "ferry" not in plain, plain)

    # non-streamed chat with the extension
    st, data = post(s, "/v1/chat/completions", dict(base, ferry={"collection": "kb", "top_k": 2}))
    v = json.loads(data)
    check(st == 200, v)
    check_citations(v["ferry"]["citations"], corpus, "rust.txt", expect_ids)
    check(v["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 20,
          ("the sources reach the model", v["usage"], plain["usage"]))
    non_stream = v["ferry"]["citations"]

    # streamed: citations as the last event before [DONE], the same as non-streamed
    st, data = post(s, "/v1/chat/completions",
                    dict(base, stream=True, ferry={"collection": "kb", "top_k": 2}))
    ev = sse_events(data)
    check(st == 200 and ev[-1] == "[DONE]", ev[-3:])
    last = json.loads(ev[-2])
    check(last["choices"] == [] and last["object"] == "chat.completion.chunk" and
          last["ferry"]["citations"] == non_stream, last)
    check(all("ferry" not in json.loads(e) for e in ev[:-2]), "citations only at the end")
    fin = json.loads(ev[-3])
    check(fin["choices"][0]["finish_reason"] in ("stop", "length"), fin)

    # completions: the prompt is the question
    st, data = post(s, "/v1/completions", {"model": "st", "prompt": "Why do cats purr?",
                                           "max_tokens": 4, "ferry": {"collection": "kb"}})
    v = json.loads(data)
    check(st == 200 and v["ferry"]["citations"][0]["document_id"].endswith("cats.md"), v)
    check(len(v["ferry"]["citations"]) <= 5, v)
    st, data = post(s, "/v1/completions", {"model": "st", "prompt": "Why do cats purr?",
                                           "max_tokens": 4, "stream": True,
                                           "ferry": {"collection": "kb", "top_k": 1}})
    ev = sse_events(data)
    last = json.loads(ev[-2])
    check(ev[-1] == "[DONE]" and len(last["ferry"]["citations"]) == 1 and
          last["object"] == "text_completion", ev[-2:])

    # unknown collection: 404 naming it; bad extension fields: 400 naming them
    st, data = post(s, "/v1/chat/completions", dict(base, ferry={"collection": "nope"}))
    e = error_of(data)
    check(st == 404 and "'nope'" in e["message"] and e["param"] == "ferry.collection" and
          e["code"] == "collection_not_found", (st, e))
    for bad, param in (({"collection": "kb", "top_k": 0}, "ferry.top_k"),
                       ({"collection": "kb", "top_k": 51}, "ferry.top_k"),
                       ({"collection": 3}, "ferry.collection"),
                       ({"colection": "kb"}, "ferry"), ("kb", "ferry")):
        st, data = post(s, "/v1/chat/completions", dict(base, ferry=bad))
        check(st == 400 and error_of(data)["param"] == param, (bad, st, data))
    st, data = post(s, "/v1/chat/completions",
                    dict(base, messages=[{"role": "system", "content": "hi"}],
                         ferry={"collection": "kb"}))
    check(st == 400 and error_of(data)["param"] == "messages", (st, data))
    check(s.healthy(), "healthz after the errors")


def run_options(corpus, data_dir):
    """rag (model-level and route-level) and rag_template from a YAML file, same data
    dir; the flags for bad values."""
    tdir = tempfile.mkdtemp(prefix="ferry-rag-")
    tmpl = os.path.join(tdir, "t.txt")
    with open(tmpl, "w") as f:
        f.write("{sources}\n{question}")
    conf = os.path.join(tdir, "ferry.yaml")
    with open(conf, "w") as f:
        f.write("rag: kbst=kb:1,/v1/completions=kb:2\nrag_template: %s\n" % tmpl)
    r = subprocess.run([BIN, "config", "check", conf], capture_output=True, text=True)
    check(r.returncode == 0, ("config check", r.stdout, r.stderr))
    s = Server("--model", "st=" + MODEL, "--model", "kbst=" + MODEL, "--data", data_dir,
               "--config", conf)
    try:
        q = "What prevents data races in Rust?"
        msgs = [{"role": "user", "content": q}]
        st, data = post(s, "/v1/chat/completions", {"model": "kbst", "messages": msgs,
                                                    "max_tokens": 2})
        v = json.loads(data)
        check(st == 200 and len(v["ferry"]["citations"]) == 1 and
              v["ferry"]["citations"][0]["document_id"].endswith("rust.txt"), v)
        with_tmpl = v["usage"]["prompt_tokens"]
        st, data = post(s, "/v1/chat/completions", {"model": "st", "messages": msgs,
                                                    "max_tokens": 2})
        v = json.loads(data)
        check(st == 200 and "ferry" not in v, ("no option for model st", v))
        # the short template: fewer prompt tokens than the default one over the same source
        st, data = post(s, "/v1/chat/completions", {"model": "st", "messages": msgs,
                                                    "max_tokens": 2,
                                                    "ferry": {"collection": "kb", "top_k": 1}})
        v = json.loads(data)
        check(v["usage"]["prompt_tokens"] == with_tmpl, (v["usage"], with_tmpl))
        st, data = post(s, "/v1/completions", {"model": "st", "prompt": q, "max_tokens": 2})
        v = json.loads(data)
        check(st == 200 and len(v["ferry"]["citations"]) == 2, ("route option", v))
    finally:
        s.stop()
    with open(tmpl, "w") as f:
        f.write("no placeholders here")
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--data", data_dir,
                        "--rag-template", tmpl], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "{sources}" in r.stderr, (r.returncode, r.stderr))
    r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--data", data_dir,
                        "--rag", "kbst"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "TARGET=COLLECTION" in r.stderr, (r.returncode, r.stderr))


def main():
    if not os.path.exists(MODEL):
        skip("stories260K not found under %s (set FERRY_SHARED)" % SHARED)
    corpus = tempfile.mkdtemp(prefix="ferry-corpus-")
    for name, text in DOCS.items():
        with open(os.path.join(corpus, name), "w") as f:
            f.write(text)
    s = Server("--model", "st=" + MODEL)
    keep = tempfile.mkdtemp(prefix="ferry-rag-data-")
    try:
        run(s, corpus)
        # reuse the persisted collection in a second server
        subprocess.run(["cp", "-r", s.data + "/.", keep], check=True)
    finally:
        s.stop()
    run_options(corpus, keep)
    print("ok")


if __name__ == "__main__":
    main()
