"""Deferred answers carry headers: a 429 answered from a pipeline worker (the
judge path: with guard_judge set, gw_submit runs off the HTTP threads and the
request is answered through http_async_respond_headers) keeps its
Retry-After, as the direct path does.

With max_seqs 1 and max_waiting 1, one request runs, one waits, and a third
is refused with 429 by the scheduler's admission, on the worker. The judge is
a URL nobody listens on: it is asked only for texts that look like prompt
injection, and these prompts do not.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from servingutil import (Server, make_model, metric, model_dir, post,  # noqa: E402
                         raw_request, wait_for, words)
from ferryserver import error_of  # noqa: E402

POLICY = {"id": "judged", "injection": {"threshold": 0.5, "judge_threshold": 0.2, "judge": True}}


def main():
    d = model_dir()
    socks = []
    srv = None
    try:
        path = make_model(os.path.join(d, "long.gguf"), shape="tiny-32k")
        pol = os.path.join(d, "policy.json")
        with open(pol, "w") as f:
            json.dump(POLICY, f)
        srv = Server("--model", "m=" + path, "--max-seqs", "1", "--max-waiting", "1",
                     "--kv-cache-mb", "4", "--shutdown-grace-s", "1", "--guard-policy", pol,
                     "--guard-judge", "http://127.0.0.1:9/v1", "--guard-judge-model", "j")
        long_req = {"model": "m", "prompt": words(200), "max_tokens": 30000,
                    "ignore_eos": True, "temperature": 0, "stream": True}
        socks.append(raw_request(srv.port, "/v1/completions", long_req))
        wait_for(lambda: metric(srv, "ferry_requests_running", model="m") == 1, 30,
                 "the first request to run")
        socks.append(raw_request(srv.port, "/v1/completions", long_req))
        wait_for(lambda: metric(srv, "ferry_requests_waiting", model="m") == 1, 30,
                 "the second request to wait")
        for path_ in ("/v1/completions", "/v1/chat/completions"):
            body = {"model": "m", "max_tokens": 4}
            if path_ == "/v1/completions":
                body["prompt"] = "one more"
            else:
                body["messages"] = [{"role": "user", "content": "one more"}]
            st, hd, data = post(srv, path_, body)
            assert st == 429, (path_, st, data)
            e = error_of(data)
            assert hd.get("retry-after") == "1", (path_, hd)
            print("%s from a pipeline worker: 429 with Retry-After %s (%s)"
                  % (path_, hd["retry-after"], e["message"]))
        workers = [ev for ev in srv.events() if "judge" in ev.get("msg", "")]
        assert workers, "the guard with a judge was configured (log line)"
    finally:
        for s in socks:
            s.close()
        if srv:
            srv.stop()
        shutil.rmtree(d, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
