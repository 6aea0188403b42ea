"""Signals: SIGTERM with a request in flight (it completes, /readyz is 503 at
once, new connections are refused, exit 0); SIGINT the same; SIGHUP reopens the
log file; a request deferred past shutdown_grace_s is cut short with 503."""
import json
import os
import signal
import socket
import threading
import time

from ferryserver import Server, error_of


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def in_flight_sleep(s, ms, out):
    try:
        out.append(s.request("POST", "/debug/sleep?ms=%d" % ms, body=b"", timeout=30))
    except Exception as ex:  # noqa: BLE001 - asserted by the caller
        out.append(repr(ex))


def graceful(sig):
    s = Server("--debug-routes", "--shutdown-grace-s", "20")
    try:
        keep = s.conn()  # a keep-alive connection opened before the signal
        keep.request("GET", "/healthz")
        r = keep.getresponse()
        r.read()
        check(r.status == 200, r.status)
        out = []
        t = threading.Thread(target=in_flight_sleep, args=(s, 1500, out))
        t.start()
        time.sleep(0.3)
        t0 = time.time()
        s.signal(sig)
        time.sleep(0.2)
        # readyz turns 503 at once (on the open connection)
        keep.request("GET", "/readyz")
        r = keep.getresponse()
        body = r.read()
        check(r.status == 503, r.status)
        e = error_of(body)
        check("shutting down" in e["message"], e)
        # new connections are refused
        try:
            socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
            refused = False
        except OSError:
            refused = True
        check(refused, "listener still open while draining")
        t.join(30)
        check(out and out[0][0] == 200 and json.loads(out[0][2]) == {"slept_ms": 1500}, out)
        rc = s.wait(30)
        check(rc == 0, "exit %d" % rc)
        check(time.time() - t0 < 10, "drain took too long")
        evs = s.events()
        msgs = [e.get("msg") for e in evs]
        check("draining" in msgs and "stopped" in msgs, msgs)
        stopped = [e for e in evs if e.get("msg") == "stopped"][0]
        check(stopped["cut_short"] == 0, stopped)
    finally:
        s.kill()
        s.stop()


def grace_expires():
    s = Server("--debug-routes", "--shutdown-grace-s", "1")
    try:
        out = []
        t = threading.Thread(target=in_flight_sleep, args=(s, 20000, out))
        t.start()
        time.sleep(0.3)
        t0 = time.time()
        s.signal(signal.SIGTERM)
        t.join(30)
        check(out and out[0][0] == 503, out)
        check(error_of(out[0][2])["code"] == "shutting_down", out)
        rc = s.wait(30)
        check(rc == 0, "exit %d" % rc)
        check(time.time() - t0 < 6, "grace not honoured: %.1f s" % (time.time() - t0))
        stopped = [e for e in s.events() if e.get("msg") == "stopped"][0]
        check(stopped["cut_short"] == 1, stopped)
    finally:
        s.kill()
        s.stop()


def sighup():
    s = Server()
    try:
        check(s.healthy(), "healthz")
        rotated = s.log_path + ".1"
        os.rename(s.log_path, rotated)
        s.signal(signal.SIGHUP)
        deadline = time.time() + 5
        while not os.path.exists(s.log_path) and time.time() < deadline:
            time.sleep(0.05)
        check(os.path.exists(s.log_path), "log not reopened")
        s.request("GET", "/healthz", headers={"X-Request-Id": "after-hup"})
        time.sleep(0.1)
        ids = [e.get("request_id") for e in s.events()]
        check("after-hup" in ids, ids)
        with open(rotated) as f:
            check("after-hup" not in f.read(), "old file still written")
    finally:
        s.stop()


def main():
    graceful(signal.SIGTERM)
    graceful(signal.SIGINT)
    grace_expires()
    sighup()
    print("ok")


if __name__ == "__main__":
    main()
