"""An I/O worker with many connections ready at once serves them all at once.

(libmicrohttpd 0.9.75's epoll loop, which ferry used before its own engine,
called epoll_wait again with the full timeout after a call that returned
exactly 128 events, so a worker whose ready connections numbered a multiple of
128 slept with them unserved; the engine's loop takes up to 256 events a turn
and must not stall at any count.)

The condition is made for real: one worker (--threads 1), N kept-alive
connections (each served once, so the worker holds them), the server
stopped with SIGSTOP, one request written on every connection, SIGCONT: the
worker wakes with exactly N ready connections. N = 128 and 256 (the second
epoll_wait returns 128 too). Every answer must arrive within 3 s; the
connection timeout is 20 s, so a stalled worker fails the test.
"""
import os
import select
import signal
import socket
import time

from ferryserver import Server

REQ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
LIMIT_S = 3.0


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def read_answers(socks, timeout):
    """Reads one whole /healthz answer from every socket; returns how many came."""
    bufs = {s.fileno(): b"" for s in socks}
    by_fd = {s.fileno(): s for s in socks}
    done = set()
    deadline = time.time() + timeout
    while len(done) < len(socks) and time.time() < deadline:
        r, _, _ = select.select([by_fd[f] for f in bufs if f not in done], [], [],
                                max(0.0, deadline - time.time()))
        for s in r:
            d = s.recv(65536)
            f = s.fileno()
            if not d:
                done.add(f)
                continue
            bufs[f] += d
            if bufs[f].endswith(b'{"status":"ok"}'):
                done.add(f)
    return sum(1 for f in done if bufs[f].endswith(b'{"status":"ok"}'))


def main():
    s = Server("--threads", "1", "--read-timeout-s", "20", "--max-connections", "600")
    socks = []
    try:
        for n in (128, 256):
            while len(socks) < n:
                c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                socks.append(c)
            for c in socks:
                c.sendall(REQ)
            check(read_answers(socks, 20) == n, "warm-up answers")
            time.sleep(0.2)  # the worker goes back to waiting
            s.signal(signal.SIGSTOP)
            try:
                for c in socks:
                    c.sendall(REQ)
                time.sleep(0.2)  # every request is in the kernel's buffers
            finally:
                s.signal(signal.SIGCONT)
            t0 = time.time()
            got = read_answers(socks, LIMIT_S)
            took = time.time() - t0
            check(got == n, "%d of %d ready connections answered within %.0f s (stalled worker)"
                  % (got, n, LIMIT_S))
            print("%d connections ready at once on one worker: all answered in %.3f s"
                  % (n, took))
        check(s.healthy(), "healthz")
    finally:
        for c in socks:
            c.close()
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
