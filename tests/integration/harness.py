"""Starts a real spate broker for an integration test and stops it afterwards.

Used by every test in this folder: `with Broker() as b: ... b.bootstrap ...`. The
broker binary comes from the SPATE_BIN environment variable (meson passes it), listens
on a free loopback port and keeps its data in a fresh temporary directory unless one
is given (restart tests reuse it). `config` is TOML text for --config, written next to the
data directory and removed with the broker.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir=None, port=None, shards=2, extra=(), config=None):
        self.binary = os.environ.get("SPATE_BIN", "build/broker/spate")
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="spate-it-")
        self.port = port or free_port()
        self.shards = shards
        self.extra = list(extra)
        self.process = None
        self.log_path = os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) + ".log")
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(self.data_dir, "..",
                                            os.path.basename(self.data_dir) + ".toml")
            with open(self.config_path, "w") as f:
                f.write(config)
            self.extra += ["--config", self.config_path]

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary, "--listen", self.bootstrap, "--data-dir", self.data_dir,
             "--shards", str(self.shards)] + self.extra,
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("spate exited with %d:\n%s" % (self.process.returncode, self.read_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("spate did not start listening:\n" + self.read_log())

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RuntimeError("spate did not stop within %ds:\n%s" % (timeout, self.read_log()))
        code = self.process.returncode
        self.process = None
        self.log.close()
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
            if os.environ.get("SPATE_SHOW_LOG"):
                print(self.read_log())
        finally:
            if self.config_path:
                try:
                    os.unlink(self.config_path)
                except OSError:
                    pass
            if self.own_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                try:
                    os.unlink(self.log_path)
                except OSError:
                    pass


class Runner:
    """Runs test functions of a module, prints one line per test and a summary."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, tests):
        only = os.environ.get("ONLY")
        for test in tests:
            if only and only not in test.__name__:
                continue
            start = time.time()
            try:
                test()
                self.passed += 1
                print("ok   %s (%.1fs)" % (test.__name__, time.time() - start), flush=True)
            except Exception as failure:  # report and go on with the next test
                self.failed += 1
                print("FAIL %s: %r" % (test.__name__, failure), flush=True)
                import traceback
                traceback.print_exc()
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
