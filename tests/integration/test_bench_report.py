"""The HTML reports of ferry bench and ferry bench compare in headless Chromium.

A small sweep against a local ferry serve (tiny synthetic model), a run whose
requests all fail (unknown model: the errors chart), and a compare of the two
are opened with tests/integration/browser.py: no console error, no exception,
no network request (self-contained), every chart rendered at a real size with
marks in it, and the screenshot shows chart colours (decoded PNG, not blank).
Skips (77) only when Chromium is not installed.
"""
import json
import os
import shutil
import subprocess
import tempfile

import browser
from ferryserver import BIN, Server


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def page_ok(path, r, kinds):
    check(not r["errors"], (path, r["errors"]))
    check(not r["requests"], (path, r["requests"]))
    got = [c["kind"] for c in r["charts"]]
    check(got == kinds, (path, got, kinds))
    for c in r["charts"]:
        check(c["w"] > 300 and c["h"] > 150 and c["marks"] > 0, (path, c))
    st = r["png"]
    check(st["nonwhite"] > 0.02 and st["colored"] > 0.003 and st["colors"] >= 3, (path, st))


def main():
    chrome = browser.find_or_skip()
    tmp = tempfile.mkdtemp(prefix="ferry-bench-html-")
    model_path = os.path.join(tmp, "tiny.gguf")
    subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", "tiny", "--type", "q8_0",
                    "--seed", "5", "-o", model_path], check=True, capture_output=True)
    s = Server("--model", "tiny=" + model_path)
    try:
        url = "http://127.0.0.1:%d/v1" % s.port
        a_json, a_html = os.path.join(tmp, "a.json"), os.path.join(tmp, "a.html")
        p = subprocess.run([BIN, "bench", "--url", url, "--model", "tiny", "--concurrency", "1,2,4",
                            "--num-requests", "6", "--input-len", "12", "--output-len", "6",
                            "--slo", "ttft=10s", "--price-in", "0.1", "--price-out", "0.4",
                            "--json", a_json, "--html", a_html],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, p)
        e_json, e_html = os.path.join(tmp, "e.json"), os.path.join(tmp, "e.html")
        p = subprocess.run([BIN, "bench", "--url", url, "--model", "no-such-model",
                            "--num-requests", "3", "--json", e_json, "--html", e_html],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 1, p)
        check(json.load(open(e_json))["points"][0]["http_status"] == {"404": 3}, "404s counted")
        c_html = os.path.join(tmp, "cmp.html")
        p = subprocess.run([BIN, "bench", "compare", a_json, e_json, "--html", c_html],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, p)
    finally:
        s.stop()
    # negative control: the checks do see errors, fetches and a blank page
    bad = os.path.join(tmp, "bad.html")
    with open(bad, "w") as f:
        f.write('<!DOCTYPE html><html><body><script>console.error("x"); nope();</script>'
                '<img src="http://192.0.2.1/x.png"></body></html>')
    ra, re_, rc, rb = browser.check_pages(chrome, [(a_html, a_html + ".png"), (e_html, None),
                                                   (c_html, c_html + ".png"), (bad, None)])
    check(len(rb["errors"]) >= 2 and rb["requests"] == ["http://192.0.2.1/x.png"] and
          rb["charts"] == [] and rb["png"]["nonwhite"] < 0.001, rb)
    page_ok(a_html, ra, ["line"] * 4 + ["hist"])
    page_ok(c_html, rc, ["line"] * 7 + ["hist"])
    # all requests failed: the latency charts say "no data", the errors chart has bars
    check(not re_["errors"] and not re_["requests"], re_)
    check([c["kind"] for c in re_["charts"]] == ["line"] * 4 + ["hist", "bar"], re_["charts"])
    check(re_["charts"][-1]["marks"] > 0, re_["charts"][-1])
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
