"""Starts build/ferry serve on a free loopback port for integration tests.

The server listens on port 0 and logs to a file; the port comes from the
"listening" log line, so there is no race for a port. Python stdlib only.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("FERRY_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "ferry")


def skip(reason):
    print("SKIP: " + reason)
    sys.exit(77)


class Server:
    def __init__(self, *args, env=None):
        if not os.access(BIN, os.X_OK):
            skip("no ferry binary at %s (set FERRY_BIN)" % BIN)
        self.dir = tempfile.mkdtemp(prefix="ferry-it-")
        self.log_path = os.path.join(self.dir, "ferry.log")
        self.data = os.path.join(self.dir, "data")
        cmd = [BIN, "serve", "--listen", "127.0.0.1:0", "--data", self.data,
               "--log-file", self.log_path] + list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=full_env)
        self.port = None
        deadline = time.time() + 15
        while time.time() < deadline and self.port is None:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise RuntimeError("ferry exited %d: %s" % (self.proc.returncode, err.decode()))
            for ev in self.events():
                if ev.get("msg") == "listening":
                    self.port = ev["port"]
            time.sleep(0.02)
        if self.port is None:
            self.kill()
            raise RuntimeError("ferry did not log its port")
        # wait for readiness (store open)
        while time.time() < deadline:
            st, _, _ = self.request("GET", "/readyz")
            if st == 200:
                return
            time.sleep(0.02)
        raise RuntimeError("ferry never became ready")

    def events(self):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for ln in lines:
            try:
                out.append(json.loads(ln))
            except ValueError:
                raise AssertionError("log line is not JSON: %r" % ln)
        return out

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()

    def raw(self, data, timeout=10, read=True):
        """Sends raw bytes, returns everything read until close or timeout."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            if not read:
                return b""
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    def healthy(self):
        st, _, body = self.request("GET", "/healthz", timeout=5)
        return st == 200 and json.loads(body) == {"status": "ok"}

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=60):
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("ferry did not stop on SIGTERM")
            assert rc == 0, "ferry exited %d on SIGTERM" % rc
        shutil.rmtree(self.dir, ignore_errors=True)


def read_all(c, timeout=10):
    """Everything the server sends on socket c until it closes, resets, or stays
    silent for timeout seconds (raw-socket tests of malformed input)."""
    c.settimeout(timeout)
    out = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except OSError:  # socket.timeout, a reset, or another end of the connection
        pass
    return out


def error_of(body):
    """Checks the OpenAI error shape and returns the inner object."""
    v = json.loads(body)
    assert set(v) == {"error"}, v
    e = v["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"], e
    assert isinstance(e["type"], str), e
    return e
