"""ferry serve configuration end to end: --help, ferry config check, a bad
file refused at start with file:line:column and key, precedence flag > env >
file, --model refused (engine not landed), --data created."""
import os
import subprocess
import tempfile

from ferryserver import BIN, Server, skip


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=30, env=e)
    return p.returncode, p.stdout, p.stderr


def main():
    if not os.access(BIN, os.X_OK):
        skip("no ferry binary")
    rc, out, _ = run("serve", "--help")
    check(rc == 0 and "--shutdown-grace-s" in out and "FERRY_HTTP_MAX_BODY_BYTES" in out, out)
    rc, out, _ = run("--version")
    check(rc == 0 and out.startswith("ferry "), out)
    d = tempfile.mkdtemp(prefix="ferry-cfg-")
    good = os.path.join(d, "good.yaml")
    with open(good, "w") as f:
        f.write("listen: 127.0.0.1:0\nhttp:\n  read_timeout_s: 5\n  shutdown_grace_s: 2\n"
                "log:\n  level: info\n")
    bad = os.path.join(d, "bad.yaml")
    with open(bad, "w") as f:
        f.write("listen: 127.0.0.1:0\nhttp:\n  max_body_bytes: lots\n")
    rc, out, err = run("config", "check", good)
    check(rc == 0 and out.strip() == good + ": ok", (rc, out, err))
    rc, out, err = run("config", "check", bad)
    check(rc == 1 and (bad + ":3:3: key http.max_body_bytes") in err, (rc, err))
    rc, out, err = run("config", "check", os.path.join(d, "missing.yaml"))
    check(rc == 1 and "missing.yaml" in err, (rc, err))
    rc, out, err = run("config")
    check(rc == 2, rc)
    # a bad file is refused at start with file, line, column and key
    rc, out, err = run("serve", "--config", bad, "--data", os.path.join(d, "x"))
    check(rc == 2 and (bad + ":3:3: key http.max_body_bytes") in err, (rc, err))
    rc, out, err = run("serve", "--bogus", "1")
    check(rc == 2 and "--bogus" in err, err)
    rc, out, err = run("serve", "--threads", "lots")
    check(rc == 2 and "--threads" in err, err)
    # a model file that does not exist: a one-line message naming it, exit 2
    rc, out, err = run("serve", "--model", "no-such-model.gguf", "--data", os.path.join(d, "m"))
    check(rc == 2 and "no-such-model.gguf" in err and err.count("\n") == 1, (rc, err))
    # a data directory that cannot be created: refused at start, exit 1
    rc, out, err = run("serve", "--listen", "127.0.0.1:0", "--data", "/proc/ferry-no/data",
                       "--log-file", os.path.join(d, "start.log"))
    check(rc == 1 and "cannot create data directory" in err, (rc, err))
    # precedence: flag > env > file > default (max_body_bytes and read timeout)
    cfg = os.path.join(d, "p.yaml")
    with open(cfg, "w") as f:
        f.write("http:\n  max_body_bytes: 100\n  max_connections: 50\n  debug_routes: true\n")
    s = Server("--config", cfg, "--max-body-bytes", "300",
               env={"FERRY_HTTP_MAX_BODY_BYTES": "200", "FERRY_HTTP_MAX_CONNECTIONS": "60"})
    try:
        def status_for(n):
            out = s.raw(b"POST /debug/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                        b"\r\nContent-Length: %d\r\n\r\n" % n, timeout=3)
            return int(out.split(b" ", 2)[1]) if out else 0
        # the flag (300) wins over env (200) and file (100)
        check(status_for(301) == 413, "flag beats env")
        st, _, _ = s.request("POST", "/debug/echo", body=b'{"a":"' + b"x" * 240 + b'"}',
                             headers={"Content-Type": "application/json"})
        check(st == 200, "250-byte body accepted under flag limit 300: %d" % st)
        listening = [e for e in s.events() if e.get("msg") == "listening"][0]
        check(listening["max_connections"] == 60, listening)  # env beats file
        check(listening["debug_routes"] is True, listening)    # file beats default
        check(os.path.isfile(os.path.join(s.data, "ferry.db")), "--data created with the db")
    finally:
        s.stop()
    print("ok")


if __name__ == "__main__":
    main()
