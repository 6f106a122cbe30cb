#!/usr/bin/env python3
"""What a Prometheus scrape of /metrics costs a broker with many partitions (issue goal: with
10,000 partitions, labels on, < 50 ms of shard time per scrape in total, and no shard held
up by more than 1 ms), measured from outside through the broker's own counters, plus what a
client sees of it.

  /usr/bin/python3 bench/metrics_scrape.py [--binary build/broker/spate]
      [--spatectl build/tools/spatectl] [--partitions 10000] [--topics 20] [--scrapes 20]
      [--interval-ms 250] [--idle-seconds 5] [--shards 2] [--idle-wait 20]
      [--work-dir /var/tmp/spate-scrape-bench]

One broker (--shards, pin_shards = false, partitions_max = --partitions + 1000, metrics_listen
on a free port, fresh data directory under --work-dir), --topics topics holding --partitions
partitions in all (`spatectl topics create`), 5,000 records of 100 B produced into each of
the first 10 topics (`spatectl perf produce`: a few hundred partitions get non-zero offsets
and sizes). Metric labels per partition are on (the default). Each phase starts settled
(bench/replication.py's settle(): sync, Dirty < 16 MiB, cpus < 25 % busy, at most
--idle-wait s) and prints the load.

Figures come from the broker's per-shard counters: spate_shard_busy_seconds_total (time the
loop worked, not waiting in the kernel) and the histogram spate_shard_turn_busy_seconds (how
long each loop turn worked before waiting: the longest a request arriving meanwhile waits).

 1. shard time. Idle: read /metrics (R0), wait --idle-seconds, read again (R1). Measured:
    --scrapes scrapes, one every --interval-ms from the client (each timed: wall time to the
    last byte, and its size), then a final read (R2). The reads are scrapes too; each read's
    work lands partly before its counter snapshot, partly after. So the idle window
    R0..R1 holds the idle work of W seconds plus one scrape's worth (the tail of R0 and the
    head of R1), and the measured window R1..R2 the idle work of T seconds plus N + 1
    scrapes' worth. Solving those two equations per shard for (idle rate, s) gives s, the
    shard time of one scrape; summed over the shards. (The naive figure, which charges the
    whole idle window to idle work and counts N scrapes, is printed next to it.) The turn
    histogram's change over each window gives the number of turns above 0.5 and 1 ms and the
    bucket of the longest turn ("<= X ms": it fell in the bucket ending at X); the idle
    window's figure includes its two reads' worth of scraping. Busy time is wall time
    between the loop's waits, so a turn preempted by another process counts its time off
    the cpu too; next to it, from the kernel, the shard threads' time on a cpu, time waiting
    for one and involuntary context switches per scrape (/proc/PID/task/TID/schedstat and
    status, read just before each read's request; solved the same way). The loop ends a
    turn's clock before it submits to io_uring, so the kernel's share of sending the answer
    (the copy of the text into the socket, inline in io_uring_enter) is in neither the turn
    histogram nor always in busy time: it shows in the threads' cpu time and in phase 2.
 2. client latency. One process sends ApiVersions v0 requests back to back, alternating over
    one connection per shard (which shard a connection landed on is read from
    spate_connections_open), and times each round trip: --idle-seconds without scrapes,
    then --scrapes scrapes at --interval-ms as in 1 while it runs. p50/p99/max per shard and
    in all, without and with scrapes, and of the round trips in flight while a scrape was
    (from the client's view). On a 2-cpu machine the broker's shards, the probe and the
    scraping client share the cores: the idle column is the floor of scheduling noise.

Prints the verdict against the goals (shard time < 50 ms per scrape; no turn > 1 ms while
scraping). Not a test: nothing fails on the figures; exit 1 when the bench itself fails.
The broker and its directory are removed at the end; SPATE_KEEP_BENCH_DIR=1 keeps them
(the broker log is broker.log there).
"""
import argparse
import array
import bisect
import http.client
import math
import multiprocessing as mp
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import replication as rep  # noqa: E402  (settle, machine, IDLE_WAIT)
from cluster import install_sigterm_handler  # noqa: E402
from harness import Broker  # noqa: E402
from replication import log, settle  # noqa: E402
from zookeeper import free_ports  # noqa: E402

BUSY = re.compile(rb'^spate_shard_busy_seconds_total\{shard="(\d+)"\} (\S+)$', re.M)
TURN = re.compile(rb'^spate_shard_turn_busy_seconds_bucket\{shard="(\d+)",le="([^"]+)"\} (\S+)$',
                  re.M)
CONNS = re.compile(rb'^spate_connections_open\{shard="(\d+)"\} (\S+)$', re.M)
PARTITION_ROWS = re.compile(rb'^spate_partition_leader\{', re.M)


# ---- scrapes -------------------------------------------------------------------------------

def scrape(port):
    """(body, monotonic start, monotonic end) of one GET /metrics on a fresh connection."""
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError("GET /metrics: HTTP %d" % answer.status)
    finally:
        conn.close()
    return body, began, time.monotonic()


def thread_times(pid):
    """{tid: (ns on a cpu, ns waiting on a run queue, involuntary context switches)} of the
    broker's threads but its main one (/proc/PID/task/TID/schedstat and status): the
    shards' threads, started in shard order."""
    out = {}
    if pid is None:
        return out
    for tid in os.listdir("/proc/%d/task" % pid):
        if int(tid) == pid:
            continue
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                fields = f.read().split()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                switches = re.search(r"^nonvoluntary_ctxt_switches:\s*(\d+)", f.read(), re.M)
            out[int(tid)] = (int(fields[0]), int(fields[1]), int(switches.group(1)))
        except (OSError, IndexError, ValueError):
            pass
    return out


class Reading:
    """One scrape with the counters this bench reads from it, and the broker threads' cpu
    times (schedstat) read just before it."""

    def __init__(self, port, pid=None):
        self.threads = thread_times(pid)
        body, self.t0, self.t1 = scrape(port)
        self.size = len(body)
        self.lines = body.count(b"\n")
        self.partition_rows = len(PARTITION_ROWS.findall(body))
        self.busy = {int(s): float(v) for s, v in BUSY.findall(body)}
        self.conns = {int(s): float(v) for s, v in CONNS.findall(body)}
        self.turns = {}
        for s, le, v in TURN.findall(body):
            bound = math.inf if le == b"+Inf" else float(le)
            self.turns.setdefault(int(s), []).append((bound, float(v)))
        for buckets in self.turns.values():
            buckets.sort()
        if not self.busy or not self.turns:
            raise RuntimeError("no spate_shard_busy_seconds_total / spate_shard_turn_busy_seconds "
                               "in the scrape (%d bytes)" % self.size)


def turn_delta(a, b):
    """{shard: {'turns', 'over_0.5ms', 'over_1ms', 'longest' (bucket bound, s)}} between readings."""
    out = {}
    for shard, after in b.turns.items():
        before = dict(a.turns.get(shard, []))
        cum = [(bound, v - before.get(bound, 0.0)) for bound, v in after]
        total = cum[-1][1]
        at = dict(cum)
        longest, previous = None, 0.0
        for bound, c in cum:
            if c > previous:
                longest = bound
            previous = c
        out[shard] = {"turns": total, "over_0.5ms": total - at.get(0.0005, 0.0),
                      "over_1ms": total - at.get(0.001, 0.0), "longest": longest}
    return out


def bound_text(seconds):
    if seconds is None:
        return "none"
    if seconds == math.inf:
        return "> 10 s"
    if seconds < 0.001:
        return "<= %g us" % round(seconds * 1e6, 3)
    return "<= %g ms" % round(seconds * 1e3, 3)


def turn_summary(delta):
    longest = max((d["longest"] for d in delta.values() if d["longest"] is not None), default=None)
    return (longest, sum(d["over_0.5ms"] for d in delta.values()),
            sum(d["over_1ms"] for d in delta.values()))


def turn_line(delta):
    parts = []
    for shard in sorted(delta):
        d = delta[shard]
        parts.append("shard %d: %d turns, longest %s, > 0.5 ms %d, > 1 ms %d"
                     % (shard, d["turns"], bound_text(d["longest"]), d["over_0.5ms"], d["over_1ms"]))
    return "; ".join(parts)


def scrape_series(port, count, interval, start):
    """`count` scrapes, the i-th started at start + (i + 1) * interval; [(t0, t1, bytes)]."""
    out = []
    for i in range(count):
        wait = start + (i + 1) * interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        body, t0, t1 = scrape(port)
        out.append((t0, t1, len(body)))
    wait = start + (count + 1) * interval - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    return out


# ---- the latency probe: ApiVersions v0 back to back ---------------------------------------------

CLIENT_ID = b"scrape-probe"


def api_versions_request(correlation):
    header = struct.pack(">hhih", 18, 0, correlation, len(CLIENT_ID)) + CLIENT_ID
    return struct.pack(">i", len(header)) + header


def recv_into_exact(sock, view):
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError("connection closed by the broker")
        got += n


def round_trip(sock, request, buf):
    sock.sendall(request)
    recv_into_exact(sock, memoryview(buf)[:4])
    size = struct.unpack(">i", bytes(buf[:4]))[0]
    if size > len(buf):
        buf.extend(bytes(size - len(buf)))
    recv_into_exact(sock, memoryview(buf)[:size])


def probe_main(socks, start, stop, path):
    """Forked: ApiVersions round trips alternating over `socks` from `start` until `stop`;
    writes (send time, round trip, socket index) triples as doubles to `path`."""
    requests = [api_versions_request(7) for _ in socks]
    buf = bytearray(4096)
    out = array.array("d")
    start.wait()
    i = 0
    n = len(socks)
    while True:
        if (i & 63) == 0 and stop.is_set():
            break
        k = i % n
        t0 = time.monotonic()
        round_trip(socks[k], requests[k], buf)
        out.extend((t0, time.monotonic() - t0, k))
        i += 1
    with open(path, "wb") as f:
        out.tofile(f)


def probe_sockets(port, metrics_port, shards):
    """{shard: connected socket}, one per shard, found by opening connections and watching
    spate_connections_open move (SO_REUSEPORT spreads connections by their address hash)."""
    found, extra = {}, []
    base = Reading(metrics_port).conns
    for _ in range(12 * shards):
        if len(found) == shards:
            break
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        round_trip(sock, api_versions_request(1), bytearray(4096))
        now = Reading(metrics_port).conns
        moved = {s: now.get(s, 0) - base.get(s, 0) for s in set(now) | set(base)}
        base = now
        grew = [s for s, d in moved.items() if d != 0]
        if len(grew) == 1 and moved[grew[0]] == 1 and grew[0] not in found:
            found[grew[0]] = sock
        else:
            extra.append(sock)
    for sock in extra:
        sock.close()
    return found


def percentiles(values):
    if not values:
        return "n/a"
    xs = sorted(values)
    def q(p):
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3
    return "p50 %7.3f  p99 %7.3f  max %7.3f ms  (%d, > 1 ms: %d)" % (
        q(0.5), q(0.99), xs[-1] * 1e3, len(xs), sum(1 for x in xs if x > 0.001))


# ---- the bench -------------------------------------------------------------------------------

def spatectl(args, bootstrap, *command, timeout=120):
    done = subprocess.run([args.spatectl, "--bootstrap-server", bootstrap] + list(command),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("spatectl %s exited %d: %s%s" % (" ".join(command), done.returncode,
                                                           done.stdout[-1000:], done.stderr[-1000:]))
    return done.stdout


def setup(args, broker, metrics_port):
    began = time.monotonic()
    base, extra = divmod(args.partitions, args.topics)
    topics = []
    for i in range(args.topics):
        name = "scrape-%02d" % i
        count = base + (1 if i < extra else 0)
        spatectl(args, broker.bootstrap, "topics", "create", "--topic", name,
                 "--partitions", str(count))
        topics.append(name)
    created = time.monotonic() - began
    produced_at = time.monotonic()
    for name in topics[:10]:
        spatectl(args, broker.bootstrap, "perf", "produce", "--topic", name, "--num-records", "5000",
                 "--record-size", "100", "--throughput", "-1")
    produced = time.monotonic() - produced_at
    deadline = time.monotonic() + 60
    while True:
        r = Reading(metrics_port)
        if r.partition_rows >= args.partitions:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the scrape shows %d partitions, not %d" % (r.partition_rows,
                                                                         args.partitions))
        time.sleep(0.5)
    log("setup: %d topics, %d partitions created in %.1f s; 5000 records x 100 B into each of "
        "%d topics in %.1f s; a scrape shows %d partitions"
        % (len(topics), args.partitions, created, min(10, len(topics)), produced, r.partition_rows))


def per_scrape(B, M, W, T, N):
    """B = i W + x, M = i T + (N + 1) x: x, the cost of one scrape, and i, the idle rate."""
    x = (M - B * T / W) / (N + 1 - T / W)
    return x, (B - x) / W


def phase_shard_time(args, metrics_port, pid, out):
    log("phase 1: shard time per scrape (idle %.0f s, then %d scrapes every %d ms)"
        % (args.idle_seconds, args.scrapes, args.interval_ms))
    settle("phase 1 start")
    r0 = Reading(metrics_port, pid)
    time.sleep(max(0.0, r0.t0 + args.idle_seconds - time.monotonic()))
    r1 = Reading(metrics_port, pid)
    series = scrape_series(metrics_port, args.scrapes, args.interval_ms / 1000.0, r1.t0)
    r2 = Reading(metrics_port, pid)
    W = r1.t0 - r0.t0
    T = r2.t0 - r1.t0
    N = args.scrapes
    shards = sorted(r2.busy)
    each, naive, idle_rate = {}, {}, {}
    for s in shards:
        B = r1.busy[s] - r0.busy[s]
        M = r2.busy[s] - r1.busy[s]
        x, idle_rate[s] = per_scrape(B, M, W, T, N)
        each[s] = x
        naive[s] = (M - B / W * T) / N
        log("  shard %d: busy %.2f ms over the idle window (%.2f s, 2 reads), %.2f ms over the "
            "measured one (%.2f s, %d scrapes + 2 reads) -> %.3f ms per scrape, idle %.3f ms/s"
            % (s, B * 1e3, W, M * 1e3, T, N, x * 1e3, idle_rate[s] * 1e3))
    idle_turns = turn_delta(r0, r1)
    scrape_turns = turn_delta(r1, r2)
    log("  turns, idle window:     " + turn_line(idle_turns))
    log("  turns, measured window: " + turn_line(scrape_turns))
    walls = [(t1 - t0) * 1e3 for t0, t1, _ in series]
    sizes = [b for _, _, b in series]
    total = sum(each.values()) * 1e3
    # The same from the kernel's side: cpu time of the shard threads (read just before each
    # read's request, so the idle window holds R0 whole, the measured one R1 and the N).
    tids = sorted(set(r0.threads) & set(r1.threads) & set(r2.threads))
    cpu = wait = preempted = 0.0
    for k, tid in enumerate(tids):
        def scrape_share(field, scale):
            return per_scrape((r1.threads[tid][field] - r0.threads[tid][field]) / scale,
                              (r2.threads[tid][field] - r1.threads[tid][field]) / scale,
                              W, T, N)[0]
        c, q, p = scrape_share(0, 1e9), scrape_share(1, 1e9), scrape_share(2, 1)
        cpu += c
        wait += q
        preempted += p
        log("  thread %d (shard %s by start order), per scrape: %.3f ms on a cpu, %.3f ms "
            "waiting for one, %.1f involuntary context switches"
            % (tid, k if len(tids) == len(shards) else "?", c * 1e3, q * 1e3, p))
    out["cpu_ms"] = (cpu * 1e3, wait * 1e3, preempted) if tids else None
    out["partitions"] = r2.partition_rows
    out["size"] = statistics.median(sizes)
    out["lines"] = r2.lines
    out["wall"] = (statistics.median(walls), max(walls))
    out["shard_ms"] = total
    out["shard_ms_each"] = {s: v * 1e3 for s, v in each.items()}
    out["shard_ms_naive"] = sum(naive.values()) * 1e3
    out["idle_turns"] = turn_summary(idle_turns)
    out["scrape_turns"] = turn_summary(scrape_turns)


def phase_probe(args, metrics_port, socks, work, out):
    shards = sorted(socks)
    log("phase 2: ApiVersions round trips back to back over %d connection(s) (shards %s), "
        "%.0f s idle, then %d scrapes every %d ms"
        % (len(shards), ",".join(map(str, shards)), args.idle_seconds, args.scrapes,
           args.interval_ms))
    settle("phase 2 start")
    ctx = mp.get_context("fork")
    start, stop = ctx.Event(), ctx.Event()
    path = os.path.join(work, "probe.bin")
    child = ctx.Process(target=probe_main, args=([socks[s] for s in shards], start, stop, path))
    child.start()
    try:
        r3 = Reading(metrics_port)
        start.set()
        time.sleep(max(0.0, r3.t1 + args.idle_seconds - time.monotonic()))
        r4 = Reading(metrics_port)
        series = scrape_series(metrics_port, args.scrapes, args.interval_ms / 1000.0, r4.t0)
        r5 = Reading(metrics_port)
    finally:
        stop.set()
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join()
    if child.exitcode != 0:
        raise RuntimeError("the probe process exited %s" % child.exitcode)
    samples = array.array("d")
    with open(path, "rb") as f:
        samples.frombytes(f.read())
    os.unlink(path)
    triples = [(samples[i], samples[i + 1], int(samples[i + 2])) for i in range(0, len(samples), 3)]
    scrapes = [(r4.t0, r4.t1)] + [(t0, t1) for t0, t1, _ in series] + [(r5.t0, r5.t1)]
    starts = [a for a, _ in scrapes]

    def during_scrape(t, rtt):
        i = bisect.bisect_right(starts, t + rtt) - 1  # the last scrape started before it ended
        return i >= 0 and scrapes[i][1] >= t

    idle = {s: [] for s in range(len(shards))}
    busy = {s: [] for s in range(len(shards))}
    overlap = {s: [] for s in range(len(shards))}
    for t, rtt, k in triples:
        if r3.t1 <= t and t + rtt <= r4.t0:
            idle[k].append(rtt)
        elif r4.t0 <= t <= r5.t1:
            busy[k].append(rtt)
            if during_scrape(t, rtt):
                overlap[k].append(rtt)
    for k, s in enumerate(shards):
        log("  shard %d  idle:             %s" % (s, percentiles(idle[k])))
        log("  shard %d  with scrapes:     %s" % (s, percentiles(busy[k])))
        log("  shard %d  during a scrape:  %s" % (s, percentiles(overlap[k])))
    log("  turns, probe alone:        " + turn_line(turn_delta(r3, r4)))
    log("  turns, probe with scrapes: " + turn_line(turn_delta(r4, r5)))
    out["probe_shards"] = shards
    out["probe_idle"] = percentiles([x for v in idle.values() for x in v])
    out["probe_busy"] = percentiles([x for v in busy.values() for x in v])
    out["probe_overlap"] = percentiles([x for v in overlap.values() for x in v])
    out["probe_turns"] = turn_summary(turn_delta(r4, r5))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "build", "broker", "spate"))
    parser.add_argument("--spatectl", default=os.path.join(HERE, "..", "build", "tools", "spatectl"))
    parser.add_argument("--partitions", type=int, default=10000)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--interval-ms", type=int, default=250)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--idle-wait", type=float, default=20.0)
    parser.add_argument("--work-dir", default="/var/tmp/spate-scrape-bench")
    args = parser.parse_args()
    rep.IDLE_WAIT[0] = args.idle_wait
    install_sigterm_handler()

    log("machine: %d cpus, %s" % (os.cpu_count(), rep.machine()))
    os.makedirs(args.work_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="run-", dir=args.work_dir)
    keep = os.environ.get("SPATE_KEEP_BENCH_DIR") == "1"
    listen_port, metrics_port = free_ports(2)
    config = os.path.join(work, "spate.toml")
    with open(config, "w") as f:
        f.write('metrics_listen = "127.0.0.1:%d"\npin_shards = false\npartitions_max = %d\n'
                % (metrics_port, args.partitions + 1000))
    broker = Broker(data_dir=os.path.join(work, "data"), port=listen_port, shards=args.shards,
                    extra=["--config", config])
    broker.binary = args.binary
    broker.log_path = os.path.join(work, "broker.log")
    out = {}
    try:
        broker.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                Reading(metrics_port)
                break
            except (OSError, RuntimeError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        log("broker: %d shards unpinned, listen %s, metrics 127.0.0.1:%d, data in %s"
            % (args.shards, broker.bootstrap, metrics_port, work))
        setup(args, broker, metrics_port)
        for _ in range(2):  # warm-up: the first scrapes grow buffers
            Reading(metrics_port)
        socks = probe_sockets(listen_port, metrics_port, args.shards)
        if len(socks) < args.shards:
            log("  probe: found connections on shards %s only" % sorted(socks))
        phase_shard_time(args, metrics_port, broker.process.pid, out)
        phase_probe(args, metrics_port, socks, work, out)
        for sock in socks.values():
            sock.close()
    except Exception:
        log("broker log (tail):\n" + broker.read_log())
        raise
    finally:
        code = broker.stop()
        if code not in (0, None):
            log("broker exited %d" % code)
        if keep:
            log("kept %s (SPATE_KEEP_BENCH_DIR=1)" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
            try:
                os.rmdir(args.work_dir)
            except OSError:
                pass

    longest, over_half, over_1 = out["scrape_turns"]
    idle_longest, idle_half, idle_1 = out["idle_turns"]
    log("")
    log("summary (%d cpus, load %.2f %.2f %.2f at the end, %d shards unpinned)"
        % ((os.cpu_count(),) + os.getloadavg() + (args.shards,)))
    log("  partitions in a scrape:           %d (labels on), %d topics" % (out["partitions"], args.topics))
    log("  scrape text:                      %.2f MB, %d lines" % (out["size"] / 1e6, out["lines"]))
    log("  wall time per scrape (client):    median %.1f ms, max %.1f ms (%d scrapes)"
        % (out["wall"] + (args.scrapes,)))
    log("  shard time per scrape:            %.2f ms in all (%s; naive, reads ignored: %.2f ms)"
        % (out["shard_ms"], ", ".join("shard %d %.2f" % kv for kv in sorted(out["shard_ms_each"].items())),
           out["shard_ms_naive"]))
    if out["cpu_ms"]:
        log("  shard threads' cpu per scrape:    %.2f ms on a cpu, %.2f ms waiting for one, %.1f "
            "preemptions (busy time counts a turn's preemption)" % out["cpu_ms"])
    log("  longest turn, scraping:           %s (> 0.5 ms: %d, > 1 ms: %d)"
        % (bound_text(longest), over_half, over_1))
    log("  longest turn, idle (2 reads):     %s (> 0.5 ms: %d, > 1 ms: %d)"
        % (bound_text(idle_longest), idle_half, idle_1))
    p_longest, p_half, p_1 = out["probe_turns"]
    log("  longest turn, probe + scrapes:    %s (> 0.5 ms: %d, > 1 ms: %d)"
        % (bound_text(p_longest), p_half, p_1))
    log("  ApiVersions RTT, idle:            %s" % out["probe_idle"])
    log("  ApiVersions RTT, with scrapes:    %s" % out["probe_busy"])
    log("  ApiVersions RTT, during a scrape: %s" % out["probe_overlap"])
    ok_time = out["shard_ms"] < 50
    ok_turn = over_1 == 0 and p_1 == 0
    log("verdict: shard time %.2f ms per scrape %s 50 ms: %s; longest turn while scraping %s, "
        "turns > 1 ms: %d: %s"
        % (out["shard_ms"], "<" if ok_time else ">=", "met" if ok_time else "NOT met",
           bound_text(max((x for x in (longest, p_longest) if x is not None), default=None)),
           over_1 + p_1, "met" if ok_turn else "NOT met"))


if __name__ == "__main__":
    main()
