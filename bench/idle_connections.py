#!/usr/bin/env python3
"""Idle connections: the broker's resident set size before and after N clients connect,
each sends one ApiVersions request and reads its answer, and then all sit idle; per
connection (goal < 4 KiB). Also the kernel's socket memory for the run (both ends of each
connection live on this machine, so that figure is the pair's) and whether every
connection is still served after the idle period (one more ApiVersions round trip each).

  /usr/bin/python3 bench/idle_connections.py [--build build] [--connections 5000]
      [--idle-seconds 5] [--shards 2]

max_connections_per_ip is lifted for the run (every client is 127.0.0.1); connections_max is
raised to fit. The bench raises its own descriptor limit to the hard limit."""
import argparse
import os
import resource
import socket
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import brokers  # noqa: E402
import machine  # noqa: E402
from half_sent_requests import read_frame, request  # noqa: E402


def read_answer(sock, correlation_id):
    body = read_frame(sock)
    (got,) = struct.unpack(">i", body[:4])
    (error,) = struct.unpack(">h", body[4:6])
    if got != correlation_id or error != 0:
        raise RuntimeError("ApiVersions answered %d with error %d" % (got, error))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def socket_memory_kib():
    """The kernel's TCP memory in use (pages, from /proc/net/sockstat) and the slab's
    unreclaimable part, in KiB."""
    tcp_pages = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()
                tcp_pages = int(fields[fields.index("mem") + 1])
    return tcp_pages * 4 + machine.meminfo("SUnreclaim")["SUnreclaim"] // 1024


def round_trip_all(conns, base):
    """One ApiVersions round trip on every connection: all sent first, then all read."""
    for i, s in enumerate(conns):
        s.sendall(request(18, 0, base + i))
    for i, s in enumerate(conns):
        read_answer(s, base + i)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 256
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit("the descriptor limit (hard %d) is below %d connections" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

    print("idle connections: %d, %d shards; %s" % (args.connections, args.shards,
                                                    machine.state()), flush=True)
    work = tempfile.mkdtemp(prefix="spate-idle-conn-")
    config = "shards = %d\nmax_connections_per_ip = 0\nconnections_max = %d\n" % (
        args.shards, args.connections + 1000)
    broker = brokers.Spate(args.build, work, False, "spate", config)
    conns = []
    try:
        # A first client and answer, so the broker's own start-up allocations are done.
        warm = socket.create_connection(("127.0.0.1", broker.port))
        round_trip_all([warm], 1)
        time.sleep(0.5)
        before_rss, before_kernel = rss_kib(broker.pid), socket_memory_kib()
        start = time.monotonic()
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", broker.port), timeout=60)
            conns.append(s)
        round_trip_all(conns, 1000)
        opened = time.monotonic() - start
        time.sleep(args.idle_seconds)
        after_rss, after_kernel = rss_kib(broker.pid), socket_memory_kib()
        # Still served after the idle period, each one.
        round_trip_all(conns, 1000 + args.connections)
        n = args.connections
        per_conn = (after_rss - before_rss) * 1024 / n
        print("opened and answered %d connections in %.2f s" % (n, opened))
        print("broker RSS: %d -> %d KiB" % (before_rss, after_rss))
        print("memory per idle connection: %.0f bytes of broker RSS (goal < 4096)" % per_conn)
        print("kernel TCP + unreclaimable slab per connection pair (both ends on this machine): "
              "%.0f bytes" % ((after_kernel - before_kernel) * 1024 / n))
        print("every connection answered again after %.1f s idle" % args.idle_seconds)
        warm.close()
    finally:
        for s in conns:
            s.close()
        broker.stop()


if __name__ == "__main__":
    main()
