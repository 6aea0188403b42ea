"""Malformed requests get the server's JSON error with the right status, never
an HTML page nor a silent close: garbage request lines, bad versions,
bad header lines, oversized heads (first and follow-up requests), bad
Content-Length / Transfer-Encoding, invalid chunked framing, chunked bodies
past max_body_bytes (seen by the front, and past its view by the server),
and read_timeout_s as a total deadline (dribbled head, dribbled body, a body
that stops). /healthz answers throughout."""
import json
import socket
import time

from ferryserver import Server, error_of, read_all

TIMEOUT_S = 2


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def split(raw):
    """(status, headers dict, body) of one raw HTTP/1.1 answer."""
    check(raw.startswith(b"HTTP/1.1 "), "not an HTTP answer: %r" % raw[:200])
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", len(body)))
    return int(lines[0].split(" ")[1]), hdrs, body[:n]


def expect_json_error(raw, status, what):
    st, hdrs, body = split(raw)
    check(st == status, "%s: status %d, want %d: %r" % (what, st, status, raw[:300]))
    check(hdrs.get("content-type") == "application/json", "%s: %r" % (what, hdrs))
    check(hdrs.get("x-request-id"), "%s: no X-Request-Id" % what)
    return error_of(body)


def conn(s, src="127.0.0.1"):
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=(src, 0))
    return c


POST = (b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
CHUNKED = POST + b"Transfer-Encoding: chunked\r\n\r\n"

CASES = [
    ("garbage line", b"HELLO\r\n\r\n", 400),
    ("TLS hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    ("binary", b"\x00\x01\x02\x03\r\n\r\n", 400),
    ("bad version", b"GET /healthz HTTP/9.x\r\nHost: x\r\n\r\n", 400),
    ("HTTP/2.0", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("no colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nbadheader\r\n\r\n", 400),
    ("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("control char", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\x01c\r\n\r\n", 400),
    ("length not a number", POST + b"Content-Length: 12x\r\n\r\n", 400),
    ("length past 2^64", POST + b"Content-Length: 99999999999999999999999\r\n\r\n", 413),
    ("two lengths", POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
    ("gzip coding", POST + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    ("length and chunked", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("chunk size not hex", CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n", 400),
    ("no CRLF after data", CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400),
    ("chunk size overflow", CHUNKED + b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n", 413),
    ("negative chunk", CHUNKED + b"-1\r\nx\r\n0\r\n\r\n", 400),
    ("bad trailer", CHUNKED + b"1\r\nx\r\n0\r\nno colon\r\n\r\n", 400),
    ("chunks past the limit", CHUNKED + b"186a1\r\n", 413),  # 100001 > 100000
    ("64 KiB header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n",
     431),
    ("1 MiB header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) +
     b"\r\n\r\n", 431),
    ("1 MiB request line", b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    ("20000 header lines", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 20000 +
     b"\r\n", 431),
]


def malformed(s):
    for what, data, status in CASES:
        t0 = time.time()
        e = expect_json_error(s.raw(data, timeout=5), status, what)
        check(time.time() - t0 < 1.5, "%s: answered after %.1f s" % (what, time.time() - t0))
        check(e["code"], what)
        check(s.healthy(), "healthz after " + what)
    # X-Request-Id of a refused request is kept
    raw = s.raw(b"GET /x HTTP/1.1\r\nX-Request-Id: abc-123\r\nbad\r\n\r\n")
    check(split(raw)[1].get("x-request-id") == "abc-123", raw[:300])
    # a head cut short by the client's half-close
    c = conn(s)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    c.shutdown(socket.SHUT_WR)
    expect_json_error(read_all(c), 400, "half-closed head")
    c.close()
    # valid requests still pass, chunked included
    st, _, body = split(s.raw(POST + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                              b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"))
    check(st == 200 and b'"echo":{"a":1}' in body, body)


def follow_up(s):
    """A follow-up request on a kept-alive connection (the worker's, not
    the front's) with a 64 KiB header still gets the JSON 431."""
    c = conn(s)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while b'{"status":"ok"}' not in first:
        d = c.recv(4096)
        check(d, "closed after the first request")
        first += d
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
    expect_json_error(read_all(c), 431, "follow-up 64 KiB header")
    c.close()


def chunked_past_view(s):
    """Chunks that stay within the front's view until the limit is passed
    deep in the body: the server answers 413 JSON mid-upload and closes."""
    c = conn(s)
    c.sendall(CHUNKED)
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"  # 16 KiB each; limit 100000
    got = b""
    try:
        for _ in range(40):
            c.sendall(chunk)
            time.sleep(0.005)
    except OSError:
        pass
    got = read_all(c)
    c.close()
    e = expect_json_error(got, 413, "chunked body past the limit")
    check("100000" in e["message"], e)


def deadline(s):
    """read_timeout_s bounds the whole request, not each silence."""
    # head dribbled on a fresh connection, one byte every 0.25 s
    c = conn(s)
    t0 = time.time()
    c.sendall(b"GET /healthz HTTP/1.1\r\n")
    out = b""
    c.settimeout(0.05)
    for b in b"X-Slow: " + b"a" * 100:
        try:
            c.send(bytes([b]))
        except OSError:
            break
        try:
            out = c.recv(4096)  # an answer, or b"" when closed
            break
        except socket.timeout:
            pass
        time.sleep(0.25)
    out += read_all(c, 5)
    took = time.time() - t0
    c.close()
    expect_json_error(out, 408, "dribbled head")
    check(TIMEOUT_S - 0.2 <= took <= TIMEOUT_S + 1.5, "dribbled head cut after %.2f s" % took)

    # body dribbled, one byte every 0.25 s
    c = conn(s)
    t0 = time.time()
    c.sendall(POST + b"Content-Length: 100\r\n\r\n")
    out = b""
    c.settimeout(0.05)
    for _ in range(100):
        try:
            c.send(b" ")
        except OSError:
            break
        try:
            out = c.recv(4096)
            break
        except socket.timeout:
            pass
        time.sleep(0.25)
    out += read_all(c, 5)
    took = time.time() - t0
    c.close()
    expect_json_error(out, 408, "dribbled body")
    check(TIMEOUT_S - 0.2 <= took <= TIMEOUT_S + 1.5, "dribbled body cut after %.2f s" % took)

    # part of the body, then silence
    c = conn(s)
    t0 = time.time()
    c.sendall(POST + b"Content-Length: 100\r\n\r\n{\"a\":")
    out = read_all(c, 6)
    took = time.time() - t0
    c.close()
    expect_json_error(out, 408, "stalled body")
    check(took <= TIMEOUT_S + 1.5, "stalled body cut after %.2f s" % took)

    # a connection that never sends anything is closed without an answer
    c = conn(s)
    t0 = time.time()
    out = read_all(c, 6)
    c.close()
    check(out == b"" and time.time() - t0 <= TIMEOUT_S + 1.5, out[:100])


def declared_too_large(s):
    """A declared body over the limit is refused before it is read (no
    100 Continue, the answer arrives with no body byte sent)."""
    c = conn(s)
    c.sendall(POST + b"Content-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n")
    out = read_all(c, 3)
    c.close()
    check(b"100 Continue" not in out, out[:200])
    e = expect_json_error(out, 413, "declared 1 GiB")
    check("1073741824" in e["message"], e)


def logged(s):
    ev = [e for e in s.events() if e.get("msg") == "request" and e.get("route") == "unmatched"]
    statuses = {e["status"] for e in ev}
    for st in (400, 408, 413, 431, 501, 505):
        check(st in statuses, "no request log line with status %d: %s" % (st, statuses))
    for e in ev:
        for k in ("ts", "level", "request_id", "method", "status", "bytes", "duration_ms",
                  "client"):
            check(k in e, "log line without %s: %s" % (k, e))
    st, _, body = s.request("GET", "/metrics")
    check(b'ferry_http_requests_total{route="unmatched",method="-",code="400"}' in body or
          b'code="400"' in body, "refused requests not counted")


def main():
    s = Server("--debug-routes", "--read-timeout-s", str(TIMEOUT_S), "--max-body-bytes",
               "100000", "--threads", "2")
    try:
        check(s.healthy(), "healthz at start")
        for phase in (malformed, follow_up, chunked_past_view, deadline, declared_too_large,
                      logged):
            phase(s)
            check(s.healthy(), "healthz after " + phase.__name__)
            print(phase.__name__, "ok")
    finally:
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
