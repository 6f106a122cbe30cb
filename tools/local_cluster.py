#!/usr/bin/env python3
"""A local cluster in one command: `tools/dev.sh cluster [N]` runs this.

Starts a ZooKeeper (Debian's `zookeeper` package, through tests/cluster/zookeeper.py)
and N spate brokers (default 3) on loopback, ports 9092, 9093, … (SPATE_CLUSTER_PORT
moves the first), with everything under one directory (SPATE_CLUSTER_DIR, default
./cluster-data; it is kept, so a second run finds its topics again). Prints the
bootstrap list, and stops the brokers (cleanly, SIGTERM) and ZooKeeper on Ctrl-C.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "tests", "cluster"))
from zookeeper import ZooKeeper  # noqa: E402


def wait_listening(port, process, log_path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            with open(log_path, errors="replace") as log:
                raise RuntimeError("broker on port %d exited:\n%s" % (port, log.read()[-3000:]))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker on port %d did not start listening" % port)


def main(argv):
    count = int(argv[1]) if len(argv) > 1 else 3
    if count < 1 or count > 20:
        print("usage: tools/dev.sh cluster [N]   (1 to 20 brokers)", file=sys.stderr)
        return 2
    base = os.path.abspath(os.environ.get("SPATE_CLUSTER_DIR", "cluster-data"))
    first_port = int(os.environ.get("SPATE_CLUSTER_PORT", "9092"))
    binary = os.environ.get("SPATE_BIN", os.path.join(root, "build", "broker", "spate"))
    os.makedirs(base, exist_ok=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    brokers = []
    with ZooKeeper(1, base_dir=os.path.join(base, "zookeeper")) as zk:
        try:
            for node in range(1, count + 1):
                port = first_port + node - 1
                log_path = os.path.join(base, "broker-%d.log" % node)
                log = open(log_path, "ab")
                # One shard each, not pinned: N brokers share this machine's cores.
                config = os.path.join(base, "broker-%d.toml" % node)
                with open(config, "w") as f:
                    f.write("pin_shards = false\nzookeeper_session_timeout_ms = 10000\n")
                process = subprocess.Popen(
                    [binary, "--config", config, "--listen", "127.0.0.1:%d" % port,
                     "--data-dir", os.path.join(base, "broker-%d" % node), "--shards", "1",
                     "--node-id", str(node), "--zookeeper", zk.connect_string],
                    stdout=log, stderr=log, start_new_session=True)
                brokers.append((node, port, process))
                wait_listening(port, process, log_path)
            bootstrap = ",".join("127.0.0.1:%d" % port for _, port, _ in brokers)
            print("ZooKeeper at %s; %d brokers, data and logs in %s" % (zk.connect_string, count, base))
            print("bootstrap: %s" % bootstrap, flush=True)
            print("Ctrl-C stops everything.", flush=True)
            while not done.wait(0.5):
                for node, port, process in brokers:
                    if process.poll() is not None:
                        print("broker %d exited with %d (see broker-%d.log)"
                              % (node, process.returncode, node), file=sys.stderr)
                        done.set()
        finally:
            for _, _, process in brokers:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for _, _, process in brokers:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
