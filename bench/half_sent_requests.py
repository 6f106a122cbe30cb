#!/usr/bin/python3
"""Memory held by half-sent requests, and what it costs everyone else (issue 10, defect 5).

Starts a broker, measures another client's ApiVersions and Metadata round trips on an idle
broker (the baseline, same run), then opens CONNECTIONS connections that each announce a
CLAIM-byte request and send HALF of it as fast as the broker takes it, and measures the
same round trips again while they do. Reports the broker's peak RSS and the round-trip
p50/p99 of both phases. A guard stops pushing if the broker's RSS passes --rss-guard-mib,
so a broker without a bound cannot take the machine down.

Usage: bench/half_sent_requests.py [--binary build/broker/spate] [--connections 100]
       [--claim 100000000] [--fraction 0.5] [--seconds 20] [--shards 2] [--config FILE]
"""
import argparse
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def request(api_key, version, correlation_id, body=b""):
    client = b"bench"
    payload = struct.pack(">hhih", api_key, version, correlation_id, len(client)) + client + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock):
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    (size,) = struct.unpack(">i", data)
    body = b""
    while len(body) < size:
        chunk = sock.recv(size - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return body


class prober:
    """One connection alternating ApiVersions v0 and Metadata v1 (all topics)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation = 0
        self.samples = {"ApiVersions": [], "Metadata": []}
        self.failures = 0

    def probe(self):
        for name, frame in (("ApiVersions", request(18, 0, self.correlation)),
                            ("Metadata", request(3, 1, self.correlation, struct.pack(">i", -1)))):
            self.correlation += 1
            start = time.perf_counter()
            try:
                self.sock.sendall(frame)
                read_frame(self.sock)
            except OSError:
                self.failures += 1
                continue
            self.samples[name].append(time.perf_counter() - start)


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def report(phase, probe):
    for name, values in probe.samples.items():
        print("%-22s %-11s n=%-5d p50 %8.3f ms   p99 %8.3f ms" %
              (phase, name, len(values), percentile(values, 50) * 1e3,
               percentile(values, 99) * 1e3))
    if probe.failures:
        print("%-22s %d round trips failed" % (phase, probe.failures))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="build/broker/spate")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--claim", type=int, default=100_000_000)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--config")
    parser.add_argument("--rss-guard-mib", type=int, default=8000)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="spate-bench-")
    port = free_port()
    command = [args.binary, "--listen", "127.0.0.1:%d" % port, "--data-dir", data,
               "--shards", str(args.shards)]
    if args.config:
        command += ["--config", args.config]
    # Unpinned, as bench/e2e.py: the clients share the machine's cores.
    config = tempfile.NamedTemporaryFile("w", suffix=".toml")
    if not args.config:
        config.write("pin_shards = false\n")
        config.flush()
        command += ["--config", config.name]
    log = open(data + ".log", "wb")
    broker = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or broker.poll() is not None:
                    raise RuntimeError("broker did not start")
                time.sleep(0.05)
        probe = prober(port)
        start = time.time()
        while time.time() - start < 3:
            probe.probe()
        idle_rss = rss_bytes(broker.pid)
        print("broker %s, %d shards, %d connections x %d-byte claims, %.0f%% sent" %
              (args.binary, args.shards, args.connections, args.claim, args.fraction * 100))
        report("idle broker", probe)

        hogs = []
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(struct.pack(">i", args.claim))
            s.setblocking(False)
            hogs.append([s, 0])
        target = int(args.claim * args.fraction)
        chunk = b"\0" * (1 << 20)
        loaded = prober(port)
        peak = idle_rss
        guard_hit = False
        start = time.time()
        next_probe = start
        while time.time() - start < args.seconds:
            pushing = [h for h in hogs if h[1] < target]
            rss = rss_bytes(broker.pid)
            peak = max(peak, rss)
            if rss > args.rss_guard_mib << 20:
                guard_hit = True
                pushing = []
            if pushing:
                _, writable, _ = select.select([], [h[0] for h in pushing], [], 0.01)
                for hog in pushing:
                    if hog[0] in writable:
                        try:
                            hog[1] += hog[0].send(chunk[:min(len(chunk), target - hog[1])])
                        except (BlockingIOError, ConnectionError):
                            pass
            else:
                time.sleep(0.01)
            if time.time() >= next_probe:
                loaded.probe()
                next_probe = time.time() + 0.02
        peak = max(peak, rss_bytes(broker.pid))
        sent = sum(h[1] for h in hogs)
        report("during half-sent load", loaded)
        print("sent by the half-sent connections: %d MiB (goal %d MiB)%s" %
              (sent >> 20, (target * args.connections) >> 20,
               "; RSS guard hit, pushing stopped" if guard_hit else ""))
        print("broker RSS: idle %d MiB, peak under load %d MiB" % (idle_rss >> 20, peak >> 20))
        for hog in hogs:
            hog[0].close()
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
        os.unlink(data + ".log")


if __name__ == "__main__":
    main()
