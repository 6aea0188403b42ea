"""ferry's own HTTP/1.1 connection engine: every error is JSON on every
request of a connection, however deep into a body it is, and HTTP/1.1
keeps working (pipelining, Expect: 100-continue, HTTP/1.0 keep-alive, HEAD,
streams, clients that leave mid-answer).

(A) of issue 2: chunked framing broken 100 KiB into a body (first request
and follow-up), broken in a follow-up body, a 200 KiB follow-up head, and
read_timeout_s on a follow-up body each get the server's JSON error (these
were libmicrohttpd's HTML pages or silent closes before)."""
import json
import socket
import time

from ferryserver import Server, error_of, read_all

TIMEOUT_S = 2
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
ECHO = b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def conn(s):
    return socket.create_connection(("127.0.0.1", s.port), timeout=10)


def read_response(c, timeout=10, out=b""):
    """(status, headers, body, bytes after it) of one Content-Length-framed
    answer; out: bytes already read past the previous answer."""
    c.settimeout(timeout)
    while b"\r\n\r\n" not in out:
        d = c.recv(65536)
        check(d, "closed before an answer: %r" % out[:300])
        out += d
    head, _, rest = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        d = c.recv(65536)
        check(d, "closed inside a body")
        rest += d
    return int(lines[0].split(" ")[1]), hdrs, rest[:n], rest[n:]


def json_error(raw, status, what):
    check(raw.startswith(b"HTTP/1.1 %d " % status), "%s: %r" % (what, raw[:300]))
    head, _, body = raw.partition(b"\r\n\r\n")
    check(b"content-type: application/json" in head.lower(), "%s: %r" % (what, head))
    check(b"x-request-id:" in head.lower(), "%s: no X-Request-Id" % what)
    e = error_of(body[:int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])])
    check(e["message"] and e["type"] and e["code"], (what, e))
    return e


def chunks_100k():
    return b"".join(b"400\r\n" + bytes([97 + i % 26]) * 1024 + b"\r\n" for i in range(100))


def served(c):
    c.sendall(HEALTHZ)
    st, _, body, _ = read_response(c)
    check(st == 200 and body == b'{"status":"ok"}', body)


def broken_deep_first(s):
    c = conn(s)
    c.sendall(ECHO + b"Transfer-Encoding: chunked\r\n\r\n" + chunks_100k() + b"4\r\nabcdXY")
    e = json_error(read_all(c), 400, "chunked broken 100 KiB into a first body")
    check("CRLF" in e["message"], e)
    c.close()
    print("chunked framing broken 100 KiB into a body: JSON 400:", e["message"])


def broken_follow_up(s):
    c = conn(s)
    served(c)
    c.sendall(ECHO + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n")
    json_error(read_all(c), 400, "chunked broken in a follow-up body")
    c.close()
    c = conn(s)
    served(c)
    c.sendall(ECHO + b"Transfer-Encoding: chunked\r\n\r\n" + chunks_100k() + b"zz\r\n")
    e = json_error(read_all(c), 400, "chunked broken 100 KiB into a follow-up body")
    check("hex" in e["message"], e)
    c.close()
    print("chunked framing broken in follow-up bodies (at once, 100 KiB in): JSON 400")


def big_follow_up_head(s):
    c = conn(s)
    served(c)
    try:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 << 10) +
                  b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    e = json_error(read_all(c), 431, "200 KiB follow-up head")
    c.close()
    print("200 KiB follow-up head: JSON 431:", e["message"])


def follow_up_body_deadline(s):
    c = conn(s)
    served(c)
    t0 = time.time()
    c.sendall(ECHO + b"Content-Length: 100\r\n\r\n{\"a\":")
    out = read_all(c, 8)
    took = time.time() - t0
    e = json_error(out, 408, "follow-up body not received in time")
    check("%d s" % TIMEOUT_S in e["message"], e)
    check(TIMEOUT_S - 0.2 <= took <= TIMEOUT_S + 2.5, "408 after %.2f s" % took)
    c.close()
    print("follow-up body stopped: JSON 408 after %.2f s" % took)


def pipelined(s):
    c = conn(s)
    body = b'{"x":1}'
    c.sendall(HEALTHZ + ECHO + b"Content-Length: %d\r\n\r\n" % len(body) + body + HEALTHZ +
              b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTHZ +
              b"GET /healthz HTTP/1.1\r\n\r\n" + HEALTHZ)  # no Host: 400, kept alive
    want = [200, 200, 200, 404, 200, 400, 200]
    got = []
    rest = b""
    for _ in want:
        st, h, b, rest = read_response(c, out=rest)
        got.append(st)
    check(got == want, got)
    c.close()
    print("7 pipelined requests answered in order on one connection (one without Host: 400)")


def expect_continue(s):
    c = conn(s)
    body = b'{"big":"' + b"x" * 5000 + b'"}'
    c.sendall(ECHO + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    c.settimeout(5)
    first = c.recv(4096)
    check(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first)
    c.sendall(body)
    rest = first[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    if rest:  # (the answer cannot come before the body)
        raise AssertionError(rest)
    st, _, b, _ = read_response(c)
    check(st == 200 and b'"big"' in b, b[:100])
    # a refused one gets no 100, just the error
    c2 = conn(s)
    c2.sendall(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    json_error(read_all(c2, 5), 415, "refused before the body")
    c.close()
    c2.close()
    print("Expect: 100-continue: 100 then the answer; refused: the error alone")


def http10(s):
    c = conn(s)
    c.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    st, h, b, _ = read_response(c)
    check(st == 200 and h.get("connection", "").lower() == "keep-alive", h)
    c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    st, h, b, _ = read_response(c)
    check(st == 200 and h.get("connection", "").lower() == "close", h)
    check(read_all(c, 5) == b"", "HTTP/1.0 without keep-alive closes")
    c.close()
    print("HTTP/1.0: keep-alive on request, close otherwise")


def head_and_close(s):
    c = conn(s)
    c.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    c.settimeout(5)
    out = b""
    while b"\r\n\r\n" not in out:
        out += c.recv(4096)
    check(b"Content-Length: 15" in out and out.endswith(b"\r\n\r\n"), out)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = read_all(c, 5)
    check(out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"status":"ok"}'), out)
    check(b"Connection: close" in out, out)
    c.close()
    print("HEAD: the head alone; Connection: close honoured")


def streams(s):
    c = conn(s)
    c.sendall(b"GET /debug/stream?n=5&ms=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    out = b""
    c.settimeout(10)
    while b"0\r\n\r\n" not in out:
        d = c.recv(65536)
        check(d, out)
        out += d
    check(b"Transfer-Encoding: chunked" in out and out.count(b"data: ") == 6, out)
    served(c)  # the connection goes on after a chunked stream
    c.close()
    # clients that leave mid-stream and mid-deferred answer: the server goes on
    for path in [b"/debug/stream?n=2000&ms=2", b"/debug/sleep?ms=300"]:
        for _ in range(20):
            c = conn(s)
            c.sendall((b"GET " if b"stream" in path else b"POST ") + path +
                      b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            if b"stream" in path:
                c.recv(100)
            c.close()
    time.sleep(0.5)
    check(s.healthy(), "healthz after clients left mid-answer")
    print("SSE stream chunked, keep-alive after it; 40 clients left mid-answer")


def main():
    s = Server("--debug-routes", "--read-timeout-s", str(TIMEOUT_S), "--threads", "2")
    try:
        for t in [broken_deep_first, broken_follow_up, big_follow_up_head,
                  follow_up_body_deadline, pipelined, expect_continue, http10, head_and_close,
                  streams]:
            t(s)
            check(s.healthy(), "healthz after " + t.__name__)
        st, _, body = s.request("GET", "/metrics")
        for code in [b'code="400"', b'code="408"', b'code="431"']:
            check(code in body, code)
        text = open(s.log_path, "rb").read()
        for line in text.splitlines():
            json.loads(line)  # every log line is one JSON object
    finally:
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
