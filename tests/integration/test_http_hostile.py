"""Hostile clients: ferry keeps answering /healthz through 500 slowloris
connections, a 64 KiB header, a body declared at 1 GiB, invalid chunked
encoding, a chunked body past the cap, and 1,000 rapid connect/close cycles."""
import json
import resource
import socket
import threading
import time

from ferryserver import Server, error_of, read_all


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def status_of(raw):
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 and hard >= 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    # the server inherits the raised limit (it needs ~600 fds here)
    s = Server("--debug-routes", "--read-timeout-s", "3", "--threads", "2")
    try:
        run(s)
    finally:
        s.stop()
    print("ok")


def slowloris(s):
    socks = []
    for i in range(500):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        # half the crowd stalls inside the request line, half inside the headers
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"GET /heal")
        socks.append(c)
    check(s.healthy(), "healthz with 500 slowloris connections open")
    # keep trickling one header byte per connection for a while: the server
    # must keep serving others throughout
    t_end = time.time() + 2.0
    served = 0
    while time.time() < t_end:
        for c in socks[:100]:
            try:
                c.send(b"X")
            except OSError:
                pass
        check(s.healthy(), "healthz during slowloris trickle")
        served += 1
    check(served >= 5, "healthz answered %d times in 2 s" % served)
    # read_timeout_s (3 s) is a deadline for the whole request: every one of
    # them, trickling or silent, gets a JSON 408 and is closed
    time.sleep(2.5)
    got408 = other = 0
    for c in socks:
        c.settimeout(2)
        data = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                data += d
        except OSError:
            pass
        if data.startswith(b"HTTP/1.1 408 "):
            error_of(data.split(b"\r\n\r\n", 1)[1])
            got408 += 1
        else:
            other += 1
        c.close()
    check(got408 == len(socks), "408s: %d, other: %d" % (got408, other))
    check(s.healthy(), "healthz after slowloris")


def big_header(s):
    out = s.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n")
    check(status_of(out) == 431, out[:100])
    error_of(out.split(b"\r\n\r\n", 1)[1])
    # far past the input buffer too: refused, never crashes
    out = s.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    check(status_of(out) == 431, out[:100])
    error_of(out.split(b"\r\n\r\n", 1)[1])
    check(s.healthy(), "healthz after big headers")


def huge_body(s):
    t0 = time.time()
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1073741824\r\n\r\n{\"a\":")
    data = c.recv(4096)
    c.close()
    check(status_of(data) == 413, data[:100])
    check(time.time() - t0 < 2, "413 not immediate")
    check("1073741824" in error_of(data.split(b"\r\n\r\n", 1)[1])["message"], data)
    # a body that claims a length past 2^64 is refused too
    out = s.raw(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 99999999999999999999999\r\n\r\n")
    check(status_of(out) == 413, out[:100])
    error_of(out.split(b"\r\n\r\n", 1)[1])
    check(s.healthy(), "healthz after huge bodies")


def bad_chunked(s):
    for body in [b"zz\r\nhello\r\n0\r\n\r\n",             # not hex
                 b"5\r\nhelloXX0\r\n\r\n",                  # missing CRLF after data
                 b"fffffffffffffffffff\r\nx\r\n0\r\n\r\n",  # size overflow
                 b"-1\r\nx\r\n0\r\n\r\n"]:
        out = s.raw(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + body, timeout=5)
        check(status_of(out) in (400, 413), out[:100])
        error_of(out.split(b"\r\n\r\n", 1)[1])
        check(s.healthy(), "healthz after invalid chunked %r" % body[:10])
    # valid chunked is served
    out = s.raw(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")
    check(status_of(out) == 200 and b'"echo":{"a":1}' in out, out[-100:])
    # chunked past max_body_bytes (8 MiB): a JSON 413 mid-upload, then the
    # connection is closed; nothing past the cap is buffered
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
    try:
        for _ in range(12):
            c.sendall(chunk)
    except OSError:
        pass
    out = read_all(c, 5)
    c.close()
    check(status_of(out) == 413, "oversized chunked body: %r" % out[:200])
    error_of(out.split(b"\r\n\r\n", 1)[1])
    check(s.healthy(), "healthz after oversized chunked")


def rapid(s):
    t0 = time.time()
    for i in range(1000):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        if i % 3 == 1:
            c.sendall(b"GET /healthz HTTP/1.1\r\n")  # close mid-request
        elif i % 3 == 2:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        if i % 100 == 0:
            check(s.healthy(), "healthz during rapid connect/close")
    check(s.healthy(), "healthz after rapid connect/close")
    check(time.time() - t0 < 60, "1000 cycles too slow")


def in_flight(s):
    st, _, body = s.request("GET", "/metrics")
    ln = [x for x in body.decode().splitlines() if x.startswith("ferry_http_in_flight ")]
    return int(float(ln[0].split()[1]))


def run(s):
    check(s.healthy(), "healthz at start")
    for phase in [slowloris, big_header, huge_body, bad_chunked, rapid]:
        phase(s)
        time.sleep(0.3)
        print(phase.__name__, "in flight after:", in_flight(s))
    # the server still counts and answers normally; connections the clients
    # abandoned are all gone once read_timeout_s (3 s) has passed
    st, _, body = s.request("GET", "/metrics")
    check(st == 200 and b"ferry_http_requests_total" in body, st)
    deadline = time.time() + 6
    while in_flight(s) > 2 and time.time() < deadline:
        time.sleep(0.5)
    check(in_flight(s) <= 2, "requests still in flight: %d" % in_flight(s))
    for e in s.events():
        check(isinstance(e, dict), e)


if __name__ == "__main__":
    main()
