"""Connection limits: per_ip_connections and max_connections count every open
connection (waiting for its head, or kept alive after a request); the extra
ones get a JSON 429 / 503 and are closed, other addresses are served, and
once connections close /healthz answers again from fresh ones."""
import json
import socket
import time

from ferryserver import Server, error_of

PER_IP = 4
MAX = 6


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def conn(s, src):
    return socket.create_connection(("127.0.0.1", s.port), timeout=5, source_address=(src, 0))


def get_keepalive(c):
    """One GET /healthz on c, leaving it open; returns the status."""
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    out = b""
    while b"\r\n\r\n" not in out or not out.endswith(b"}"):
        d = c.recv(4096)
        if not d:
            break
        out += d
    return int(out.split(b" ", 2)[1]) if out else 0


def refused(s, src, status):
    c = conn(s, src)
    c.settimeout(5)
    out = b""
    try:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        while True:
            d = c.recv(4096)
            if not d:
                break
            out += d
    except OSError:
        pass
    c.close()
    check(out.startswith(b"HTTP/1.1 %d " % status), "want %d, got %r" % (status, out[:200]))
    head, _, body = out.partition(b"\r\n\r\n")
    check(b"Content-Type: application/json" in head, head)
    return error_of(body)


def healthz_from(s, src):
    c = conn(s, src)
    try:
        return get_keepalive(c)
    finally:
        c.close()


def wait_until(pred, what, secs=5):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def main():
    s = Server("--per-ip-connections", str(PER_IP), "--max-connections", str(MAX),
               "--threads", "2", "--read-timeout-s", "10")
    try:
        # Up to the per-IP limit from 127.0.0.1: half kept alive after a
        # request (a worker's), half idle before any byte (the front's).
        held = []
        for i in range(PER_IP):
            c = conn(s, "127.0.0.1")
            if i % 2 == 0:
                check(get_keepalive(c) == 200, "request %d" % i)
            held.append(c)
        time.sleep(0.2)
        e = refused(s, "127.0.0.1", 429)
        check("address" in e["message"], e)
        # another address is still served, up to max_connections in total
        other = []
        for _ in range(MAX - PER_IP):
            c = conn(s, "127.0.0.2")
            check(get_keepalive(c) == 200, "127.0.0.2 under the total limit")
            other.append(c)
        time.sleep(0.2)
        refused(s, "127.0.0.3", 503)
        # once under the limits again, fresh connections are served
        for c in other:
            c.close()
        wait_until(lambda: healthz_from(s, "127.0.0.3") == 200, "served after others closed")
        held.pop(0).close()  # a kept-alive one: released by the worker's close
        wait_until(lambda: healthz_from(s, "127.0.0.1") == 200, "served after one closed")
        held.pop(0).close()  # an idle one: released by the front
        time.sleep(0.2)
        # two places free now for 127.0.0.1: both served, the next refused
        a, b = conn(s, "127.0.0.1"), conn(s, "127.0.0.1")
        check(get_keepalive(a) == 200 and get_keepalive(b) == 200, "two places")
        time.sleep(0.2)
        refused(s, "127.0.0.1", 429)
        for c in held + [a, b]:
            c.close()
        wait_until(lambda: healthz_from(s, "127.0.0.1") == 200, "served after all closed")
        ev = [x for x in s.events() if x.get("msg") == "request" and x.get("status") == 429]
        check(ev, "refusals are logged")
    finally:
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
