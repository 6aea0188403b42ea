"""Opens an HTML file in headless Chromium and reports what a person would see.

Used by the report tests of ferry bench and ferry eval:

    import browser
    chrome = browser.find_or_skip()          # exit 77 with a clear message if absent
    r = browser.check_page(chrome, "/tmp/report.html", png="/tmp/report.png")
    # several pages in one Chromium: browser.check_pages(chrome, [(path, png), ...])
    assert not r["errors"], r["errors"]      # console errors, exceptions, failed loads
    assert not r["requests"], r["requests"]  # anything fetched besides the file itself
    assert len(r["charts"]) == 3 and all(c["w"] > 100 and c["h"] > 100 for c in r["charts"])
    assert r["png"]["colored"] > 0.01        # the screenshot shows coloured chart ink

How: Chromium runs with --headless --no-sandbox --remote-debugging-pipe and is
driven over the DevTools protocol (JSON messages ended by NUL on fds 3 and 4),
stdlib only. Console errors come from Runtime.consoleAPICalled (error, assert),
Runtime.exceptionThrown and Log.entryAdded (level error: failed loads, CSP,
bad SVG attributes ...); network requests from Network.requestWillBeSent. The
screenshot (Page.captureScreenshot of the whole page, scaled down) is decoded
here with zlib (PNG unfiltering in Python, numpy for the easy rows) to measure
how much of it is not white and how much is saturated colour (chart ink: text
and table borders are grey).
"""
import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

try:
    import numpy as np
except ImportError:  # the PNG check then runs in pure Python (slower)
    np = None

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find():
    """Path of a Chromium binary (env FERRY_CHROMIUM first), or None."""
    env = os.environ.get("FERRY_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


def find_or_skip():
    p = find()
    if not p:
        print("SKIP: headless Chromium not found (install the Debian package 'chromium', "
              "listed in tools/debian-packages.txt, or set FERRY_CHROMIUM)")
        sys.exit(77)
    return p


class _Pipe:
    """The DevTools protocol over --remote-debugging-pipe (fd 3: to Chrome, fd 4: from it)."""

    def __init__(self, chrome, user_dir):
        to_r, to_w = os.pipe()      # we write, Chrome reads on its fd 3
        from_r, from_w = os.pipe()  # Chrome writes on its fd 4, we read
        args = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--remote-debugging-pipe", "--user-data-dir=" + user_dir,
                "about:blank"]

        def fds():
            # Move both ends above 4 first: dup2 onto itself would keep close-on-exec.
            a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        with open(os.path.join(user_dir, "stderr"), "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         close_fds=False, preexec_fn=fds)
        # close_fds=False: the dup2'd fds 3 and 4 must survive; Python's own fds
        # are close-on-exec anyway (PEP 446).
        os.close(to_r)
        os.close(from_w)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.w, data)
            data = data[n:]
        return self.next_id

    def _read_one(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe (exit %s)" %
                                       self.proc.poll())
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None, timeout=30):
        i = self.send(method, params, session)
        deadline = time.time() + timeout
        while True:
            m = self._read_one(deadline)
            if m.get("id") == i:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, name, timeout=30):
        deadline = time.time() + timeout
        for k, m in enumerate(self.events):
            if m["method"] == name:
                return self.events.pop(k)
        while True:
            m = self._read_one(deadline)
            if m.get("method") == name:
                return m
            if "method" in m:
                self.events.append(m)

    def pump(self, seconds):
        """Collects events for a while (late console messages)."""
        deadline = time.time() + seconds
        try:
            while True:
                m = self._read_one(deadline)
                if "method" in m:
                    self.events.append(m)
        except TimeoutError:
            pass

    def close(self):
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)


CHARTS_JS = """(() => {
  const out = [];
  for (const f of document.querySelectorAll('figure.chart')) {
    const s = f.querySelector('svg');
    const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};
    out.push({kind: f.dataset.kind || '', w: r.width, h: r.height,
              marks: s ? s.querySelectorAll('path,circle,rect[fill]:not([fill="#fff"]):not([fill="none"])').length : 0,
              title: s && s.querySelector('title') ? s.querySelector('title').textContent : ''});
  }
  return JSON.stringify({charts: out, height: document.documentElement.scrollHeight,
                         width: document.documentElement.scrollWidth,
                         text: document.body ? document.body.innerText.length : 0});
})()"""


def check_page(chrome, path, png=None, **kw):
    """Loads file `path`; returns {errors, requests, charts, height, text_chars, png: {...}}."""
    return check_pages(chrome, [(path, png)], **kw)[0]


def check_pages(chrome, pages, width=1200, max_height=6000, scale=0.25, timeout=60):
    """check_page for each (path, png or None) of pages, in one Chromium (one tab each)."""
    user_dir = tempfile.mkdtemp(prefix="ferry-chrome-")
    p = _Pipe(chrome, user_dir)
    out = []
    try:
        for path, png in pages:
            out.append(_one_page(p, path, png, width, max_height, scale, timeout))
    finally:
        p.close()
        shutil.rmtree(user_dir, ignore_errors=True)
    return out


def _one_page(p, path, png, width, max_height, scale, timeout):
    url = "file://" + os.path.abspath(path)
    tid = p.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
    sid = p.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
    for m in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
        p.call(m, session=sid)
    p.call("Emulation.setDeviceMetricsOverride",
           {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
           session=sid)
    p.events.clear()
    p.call("Page.navigate", {"url": url}, session=sid, timeout=timeout)
    p.wait_event("Page.loadEventFired", timeout=timeout)
    p.pump(0.3)
    res = p.call("Runtime.evaluate", {"expression": CHARTS_JS, "returnByValue": True},
                 session=sid)
    info = json.loads(res["result"]["value"])
    h = min(info["height"], max_height)
    shot = p.call("Page.captureScreenshot",
                  {"format": "png", "captureBeyondViewport": True,
                   "clip": {"x": 0, "y": 0, "width": width, "height": h, "scale": scale}},
                  session=sid, timeout=timeout)
    data = base64.b64decode(shot["data"])
    p.pump(0.1)
    errors, requests = [], []
    for ev in p.events:
        if ev.get("sessionId") not in (None, sid):
            continue
        m, prm = ev["method"], ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and prm.get("type") in ("error", "assert"):
            errors.append("console.%s: %s" % (prm["type"], " ".join(
                str(a.get("value", a.get("description", ""))) for a in prm.get("args", []))))
        elif m == "Runtime.exceptionThrown":
            d = prm.get("exceptionDetails", {})
            errors.append("exception: %s" % (d.get("exception", {}).get("description") or
                                            d.get("text")))
        elif m == "Log.entryAdded" and prm.get("entry", {}).get("level") == "error":
            errors.append("log: %s" % prm["entry"].get("text"))
        elif m == "Network.requestWillBeSent":
            u = prm.get("request", {}).get("url", "")
            if u != url and not u.startswith("data:"):
                requests.append(u)
    p.call("Target.closeTarget", {"targetId": tid})
    if png:
        with open(png, "wb") as f:
            f.write(data)
    return {"errors": errors, "requests": requests, "charts": info["charts"],
            "height": info["height"], "text_chars": info["text"], "png": png_stats(data)}


# --------------------------------------------------------------------- PNG --

def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_decode(data):
    """Decodes an 8-bit RGB/RGBA/grey PNG (no interlace) -> (w, h, channels, rows of bytes)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("PNG chunk %r: bad CRC" % kind)
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    ch = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or ch is None or interlace:
        raise ValueError("unsupported PNG (depth %d, colour type %d, interlace %d)" %
                         (depth, ctype, interlace))
    raw = zlib.decompress(b"".join(idat))
    stride = w * ch
    if len(raw) != h * (stride + 1):
        raise ValueError("PNG data has %d bytes, expected %d" % (len(raw), h * (stride + 1)))
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 0:
            pass
        elif f == 2 and np is not None:
            line = bytearray(((np.frombuffer(line, np.uint8).astype(np.uint16) +
                               np.frombuffer(prev, np.uint8)) & 255).astype(np.uint8).tobytes())
        elif f == 1 and np is not None:
            a = np.frombuffer(line, np.uint8).reshape(w, ch).astype(np.uint32)
            line = bytearray((np.cumsum(a, axis=0) & 255).astype(np.uint8).tobytes())
        else:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                if f == 1:
                    line[i] = (line[i] + a) & 255
                elif f == 2:
                    line[i] = (line[i] + b) & 255
                elif f == 3:
                    line[i] = (line[i] + ((a + b) >> 1)) & 255
                elif f == 4:
                    line[i] = (line[i] + _paeth(a, b, c)) & 255
                else:
                    raise ValueError("PNG filter type %d" % f)
        rows.append(line)
        prev = line
    return w, h, ch, rows


def png_stats(data):
    """{w, h, nonwhite, colored, colors}: shares of pixels not white and strongly coloured."""
    w, h, ch, rows = png_decode(data)
    nonwhite = colored = 0
    colors = set()
    for line in rows:
        for x in range(0, w * ch, ch):
            px = line[x:x + 3] if ch >= 3 else line[x:x + 1] * 3
            r, g, b = px[0], px[1], px[2]
            if r < 245 or g < 245 or b < 245:
                nonwhite += 1
            if max(r, g, b) - min(r, g, b) > 80:
                colored += 1
                if len(colors) < 4096:
                    colors.add((r >> 4, g >> 4, b >> 4))
    n = max(w * h, 1)
    return {"w": w, "h": h, "nonwhite": nonwhite / n, "colored": colored / n,
            "colors": len(colors)}


if __name__ == "__main__":
    chrome = find_or_skip()
    print(json.dumps(check_pages(chrome, [(a, None) for a in sys.argv[1:]]), indent=1))
