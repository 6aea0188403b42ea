"""read_timeout_s is a total deadline for follow-up requests on a kept-alive
connection too, counted from the end of the previous request:

* a follow-up whose head trickles in (a header line every 0.4 s, so an
  inactivity timeout never fires) gets a JSON 408 at the deadline and the
  connection closes;
* a follow-up that stops inside its request line gets the JSON 408 as well;
* a kept-alive connection that sends nothing is closed quietly;
* a follow-up sent in time is served, and the connection goes on.
read_timeout_s is 2; the 408 must come between 1.8 and 4.5 s after the
previous answer (the trickle goes on for 8 s).
"""
import json
import socket
import time

from ferryserver import Server, error_of

REQ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
TIMEOUT_S = 2


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def read_response(c, deadline):
    """One whole response (Content-Length framed) or what came before close/deadline."""
    out = b""
    while time.time() < deadline:
        c.settimeout(max(0.01, min(0.2, deadline - time.time())))
        try:
            d = c.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not d:
            break
        out += d
        if b"\r\n\r\n" in out:
            head, body = out.split(b"\r\n\r\n", 1)
            for ln in head.split(b"\r\n"):
                if ln.lower().startswith(b"content-length:"):
                    if len(body) >= int(ln.split(b":")[1]):
                        return out
    return out


def served_once(s):
    c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    c.sendall(REQ)
    out = read_response(c, time.time() + 5)
    check(out.startswith(b"HTTP/1.1 200") and out.endswith(b'{"status":"ok"}'), out)
    return c, time.time()


def expect_408(out, t_answer, t0, what):
    took = t_answer - t0
    check(out.startswith(b"HTTP/1.1 408"), (what, out[:200]))
    body = out.split(b"\r\n\r\n", 1)[1]
    e = error_of(body)
    check("2 s" in e["message"], e)
    check(1.8 <= took <= 4.5, "%s: 408 after %.2f s" % (what, took))
    print("%s: JSON 408 %.2f s after the previous answer: %s" % (what, took, e["message"]))


def trickle(s):
    c, t0 = served_once(s)
    c.sendall(b"GET /healthz HTTP/1.1\r\n")
    out = b""
    end = t0 + 8
    c.settimeout(0.4)
    while time.time() < end and not out:
        try:
            c.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            out = c.recv(65536)
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
    t = time.time()
    if out:
        out += read_response(c, t + 2)
    expect_408(out, t, t0, "trickled follow-up head")
    c.close()


def partial_line(s):
    c, t0 = served_once(s)
    c.sendall(b"GET /heal")
    out = read_response(c, t0 + 8)
    expect_408(out, time.time(), t0, "follow-up stopped in its request line")
    c.close()


def silent(s):
    c, t0 = served_once(s)
    c.settimeout(8)
    try:
        d = c.recv(65536)
    except ConnectionResetError:
        d = b""
    took = time.time() - t0
    check(d == b"" and took < 5, ("a silent kept-alive connection closes quietly", d, took))
    print("silent kept-alive connection: closed without an answer after %.2f s" % took)
    c.close()


def in_time(s):
    c, t0 = served_once(s)
    time.sleep(1.0)
    c.sendall(REQ)
    out = read_response(c, time.time() + 5)
    check(out.startswith(b"HTTP/1.1 200"), out[:100])
    c.sendall(REQ)  # and the connection goes on, its deadline restarted
    out = read_response(c, time.time() + 5)
    check(out.startswith(b"HTTP/1.1 200"), out[:100])
    c.close()
    print("follow-ups sent in time: served on the same connection")


def main():
    s = Server("--read-timeout-s", str(TIMEOUT_S))
    try:
        in_time(s)
        trickle(s)
        partial_line(s)
        silent(s)
        check(s.healthy(), "healthz")
        st, _, body = s.request("GET", "/metrics")
        check(b'code="408"' in body, "408s counted")
    finally:
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
