"""The HTML report of ferry eval in headless Chromium.

A two-target eval (two seeded tiny llama models served by one local ferry serve, cases
with tags, one target missing a gate, one failing judge-free assertion per target) writes
--json and --html; the page is opened with tests/integration/browser.py: no console error,
no exception, no network request (self-contained), the three charts (pass rate by tag,
latency histogram, paired outcomes) rendered at a real size with marks in them, the
screenshot not blank and showing chart colours; the page shows the numbers of the JSON
report (pass counts, McNemar p, the failed gate). Skips (77) only when Chromium is absent.
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


def main():
    chrome = browser.find_or_skip()
    tmp = tempfile.mkdtemp(prefix="ferry-eval-html-")
    try:
        run(chrome, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok")


def run(chrome, tmp):
    models = []
    for name, seed in (("a", 1), ("b", 2)):
        path = os.path.join(tmp, name + ".gguf")
        subprocess.run([BIN, "model", "init", "--arch", "llama", "--shape", "tiny", "--type",
                        "f32", "--seed", str(seed), "-o", path], check=True, capture_output=True)
        models += ["--model", "%s=%s" % (name, path)]
    s = Server(*models)
    data, rep, html = (os.path.join(tmp, f) for f in ("d.jsonl", "r.json", "r.html"))
    with open(data, "w") as f:
        for i, p in enumerate(["Hello", "The cat", "Once upon a time", "2+2=", "abc", "xyz"]):
            asrt = [{"type": "not-contains", "value": "qqzzqq"},
                    {"type": "max-tokens", "value": 8}]
            if i % 3 == 0:
                asrt.append({"type": "contains", "value": "<never & \"quoted\">"})
            f.write(json.dumps({"id": "c%d <%d>" % (i, i), "prompt": p, "assert": asrt,
                                "tags": ["t%d" % (i % 2), "all-cases"]}) + "\n")
    try:
        url = "http://127.0.0.1:%d/v1" % s.port
        p = subprocess.run([BIN, "eval", "--data", data, "--target", "A=%s,a" % url,
                            "--target", "B=%s,b" % url, "--target", "C=%s,no-such-model" % url,
                            "--max-tokens", "6", "--price-in", "0.1", "--price-out", "0.4",
                            "--gate", "errors<=0", "--json", rep, "--html", html, "--quiet"],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 1, p)
        check("gate failed: errors<=0 on target C (6)" in p.stderr, p.stderr)
    finally:
        s.stop()
    r = json.load(open(rep))
    page = open(html, encoding="utf-8").read()
    check("<script" not in page and "http://" not in page.split("<pre")[0], "not self-contained")
    # data-derived text is escaped, numbers of the JSON report are on the page
    check("c0 &lt;0&gt;" in page and "&lt;never &amp; &quot;quoted&quot;&gt;" in page, "escaping")
    check("<never" not in page, "unescaped case text")
    for t in r["targets"]:
        check("%d / %d" % (t["passed"], t["runs"]) in page, t)
    for c in r["comparisons"]:
        check("%.4g" % c["mcnemar"]["p_value"] in page and "%s vs %s" % (c["a"], c["b"]) in page,
              c)
    check("Gates: FAILED" in page and "errors&lt;=0" in page, "gates section")
    check("Failing runs (%d)" % sum(not x["pass"] for x in r["runs"]) in page, "failures")
    png = html + ".png"
    res = browser.check_page(chrome, html, png=png)
    check(not res["errors"], res["errors"])
    check(not res["requests"], res["requests"])
    kinds = [c["kind"] for c in res["charts"]]
    check(kinds == ["bar", "hist", "bar"], kinds)
    for c in res["charts"]:
        check(c["w"] > 300 and c["h"] > 150 and c["marks"] > 0, c)
    st = res["png"]
    check(st["nonwhite"] > 0.02 and st["colored"] > 0.003 and st["colors"] >= 3, st)


if __name__ == "__main__":
    main()
