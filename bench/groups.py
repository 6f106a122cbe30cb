#!/usr/bin/env python3
"""Consumer groups on __consumer_offsets (issue 14): offset commits per second, coordinator
failover time and the load time of a 1 GiB offsets partition, each started settled.

  /usr/bin/python3 bench/groups.py [--binary build/broker/spate] [--section 1|2|3|all]
      [--quick] [--seconds 30] [--members 10] [--partitions 100] [--runs 10]
      [--load-gib 1] [--load-batch 2000] [--session-timeout-ms 5000] [--idle-wait 120]
      [--work-dir /var/tmp/spate-groups-bench]

Machine state: each section and measured round starts settled (bench/replication.py's
settle(): sync, Dirty < 16 MiB, cpus < 25 % busy, at most --idle-wait s) and prints load,
Dirty/Writeback and cpu use, plus steal (over that second) and PSI (cpu/io some avg10).

 1. commits/s: one group, a topic of --partitions (100) partitions, --members (10)
    confluent_kafka Consumers, one process each, each committing its assigned partitions'
    explicit offsets every 100 ms (commit(asynchronous=False)); counted over --seconds
    (30) once the group is Stable with every member. Once on a single node (harness
    Broker, RF 1, __consumer_offsets RF 1) and once on 3 brokers (Cluster, topic RF 3,
    min.insync.replicas 2, __consumer_offsets RF 3 by default), each settled first.
    Reports commit requests/s and partition-offsets/s acknowledged, latency p50/p99/max
    of a commit call, and the errors commits returned. The paced load offers 100
    commits/s, so that rate is a ceiling; each setup then runs a second group "back to
    back" (each member commits again as soon as its last commit returns) for the
    capacity, which on 2 cpus is bounded by the 10 client processes as much as by the
    brokers.
 2. coordinator failover: 3 brokers, a 6-partition RF 3 topic, a group of 3 such members
    (commit every 100 ms), Stable. --runs (10) times: kill -9 the group's coordinator
    (the leader of __consumer_offsets partition abs(hashCode(group)) % 50 that
    FindCoordinator names); every 50 ms FindCoordinator + DescribeGroups on the live
    brokers; failover = kill -> the later of (Stable with 3 members on a live coordinator)
    and (first commit acknowledged after the kill); also when every member has committed
    again. The killed broker is restarted and in every ISR (the topic's and all 50 of
    __consumer_offsets) before the next run. ZooKeeper session timeout --session-timeout-ms
    (bench/replication.py's default, 5000: the controller notices a dead broker when its
    session expires). The members' session.timeout.ms is --consumer-session-ms (45000,
    Kafka's default): librdkafka drops its assignment and rejoins on its own once it has
    had no heartbeat answer for that long, so a value near the ~5 s the failover takes
    (e.g. the tests' 6000) turns some failovers into a full rebalance that waits out the
    old members' sessions (~11 s). Each run prints when FindCoordinator on every live
    broker first named the new coordinator.
 3. loading: a single node (RF 1); one group (generation -1, "simple" commits) fills its
    partition of __consumer_offsets with --load-gib GiB of commit records by raw
    OffsetCommit v2 of --load-batch partitions a request (metadata of 64 bytes: ~130 B a
    record; every key distinct -- topic load-<request>, partitions 0..N -- so compaction
    can remove nothing and the whole log is the group's state); then SIGTERM, start
    again, and time start -> first OffsetFetch not answered COORDINATOR_LOAD_IN_PROGRESS,
    next to the broker log's "groups: loaded ... in X ms". The answer is checked against
    the last commit. Broker RSS before and after.

--quick: 8 s windows, 2 failover runs, --load-gib 0.05 (unless given). Not a test:
nothing fails on the figures; exit 1 when the bench itself fails (a member process dies,
the group never gets Stable, a wrong OffsetFetch answer, ...). SPATE_KEEP_CLUSTER_DIR=1
keeps the directories (broker logs) under --work-dir.
"""
import argparse
import collections
import multiprocessing as mp
import os
import re
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import kafka_raw as kr  # noqa: E402
import replication as rep  # noqa: E402  (settle, machine, create_topic, isr_full, ...)
from replication import log, settle  # noqa: E402

OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 50
NONE = 0
COORDINATOR_LOAD_IN_PROGRESS = 14
MIB = 1024 * 1024
GIB = 1024 * MIB


# ---- group helpers (tests/cluster/groups_test.py's, imported lazily: it imports clients) ----

_GT = []


def gt():
    """tests/cluster/groups_test.py (not tests/integration's of the same name)."""
    if not _GT:
        import importlib.util
        path = os.path.join(HERE, "..", "tests", "cluster", "groups_test.py")
        spec = importlib.util.spec_from_file_location("cluster_groups_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _GT.append(module)
    return _GT[0]


# ---- machine state beyond replication.machine(): steal, PSI --------------------------------

def _cpu_times():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def psi(resource):
    try:
        with open("/proc/pressure/" + resource) as f:
            line = f.readline()
        return float(re.search(r"avg10=([\d.]+)", line).group(1))
    except (OSError, AttributeError):
        return float("nan")


def state_line(what):
    a = _cpu_times()
    time.sleep(1.0)
    b = _cpu_times()
    d = [y - x for x, y in zip(a, b)]
    steal = 100.0 * d[7] / max(1, sum(d[:8])) if len(d) > 7 else float("nan")
    busy = 100.0 * (1 - (d[3] + d[4]) / max(1, sum(d[:8])))
    return "  [%s] %s; steal %.1f%%; PSI some avg10 cpu %.2f io %.2f" % (
        what, rep.machine(busy), steal, psi("cpu"), psi("io"))


def settled(what):
    settle(what)
    log(state_line(what))


# ---- members: one process each ----------------------------------------------------------

def member_main(index, bootstrap, group, topic, interval, window, stop, acked, results, events,
                mark, first, session_ms):
    """A confluent_kafka consumer subscribed to `topic` in `group`; every `interval` s it
    commits explicit offsets of its assigned partitions synchronously. window[0..1] is
    the measured window (monotonic); acked[index] the monotonic time of its last
    acknowledged commit, first[index] that of its first acknowledged commit at or after
    mark.value. Sends its figures to `results` when `stop` is set, and each error
    (monotonic time, index, name) to `events` as it happens."""
    import logging
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    logger = logging.getLogger("member%d" % index)
    logger.propagate = False
    debug_dir = os.environ.get("SPATE_MEMBER_DEBUG_DIR")
    if debug_dir:  # librdkafka's group log of each member, wall-clock UTC stamped
        handler = logging.FileHandler(os.path.join(debug_dir, "member%d-%d.log" % (index, os.getpid())))
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logging.Formatter.converter = time.gmtime
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    else:
        logger.addHandler(logging.NullHandler())
    errors = collections.Counter()
    window_errors = collections.Counter()
    lat = []
    reqs = parts = 0
    assigned = []

    def on_assign(c, ps):
        assigned[:] = sorted(tp.partition for tp in ps)

    def on_revoke(c, ps):
        assigned[:] = []

    def note(name):
        errors[name] += 1
        try:
            events.put_nowait((time.monotonic(), index, name))
        except Exception:
            pass

    def on_error(err):
        note("client:" + (err.name() or str(err.code())))

    conf = {"bootstrap.servers": bootstrap, "group.id": group, "client.id": "m%d" % index,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": session_ms, "heartbeat.interval.ms": 1000,
            "socket.timeout.ms": 10000, "reconnect.backoff.max.ms": 1000,
            "topic.metadata.refresh.interval.ms": 5000, "logger": logger, "error_cb": on_error}
    if debug_dir:
        conf["debug"] = "cgrp,broker"
    try:
        c = Consumer(conf)
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        counter = 0
        next_at = time.monotonic()
        while not stop.is_set():
            c.poll(max(0.0, min(0.05, next_at - time.monotonic())))
            now = time.monotonic()
            if now < next_at:
                continue
            next_at += interval
            if next_at < now:
                next_at = now + interval
            if not assigned:
                continue
            counter += 1
            offsets = [TopicPartition(topic, p, counter) for p in assigned]
            sent = time.monotonic()
            in_window = window[0] > 0 and window[0] <= sent < window[1]
            try:
                got = c.commit(offsets=offsets, asynchronous=False)
                done = time.monotonic()
                bad = [tp for tp in (got or []) if tp.error is not None]
                for tp in bad:
                    name = "commit:" + (tp.error.name() or str(tp.error.code()))
                    note(name)
                    if in_window:
                        window_errors[name] += 1
                if not bad:
                    acked[index] = done
                    if done >= mark.value > first[index]:
                        first[index] = done
                if in_window:
                    reqs += 0 if bad else 1
                    parts += len(offsets) - len(bad)
                    lat.append(1000.0 * (done - sent))
            except KafkaException as e:
                err = e.args[0]
                name = "commit:" + (err.name() or str(err.code()))
                note(name)
                if in_window:
                    window_errors[name] += 1
                    lat.append(1000.0 * (time.monotonic() - sent))
        try:
            c.close()
        except Exception:
            pass
        results.put({"index": index, "reqs": reqs, "parts": parts, "lat": lat,
                     "errors": dict(errors), "window_errors": dict(window_errors), "fatal": None})
    except BaseException as e:  # noqa: BLE001 -- reported to the parent
        results.put({"index": index, "fatal": repr(e), "errors": dict(errors)})


class Members:
    def __init__(self, n, bootstrap, group, topic, interval=0.1, session_ms=45000):
        ctx = mp.get_context("spawn")
        self.n = n
        self.window = ctx.Array("d", [0.0, 0.0])
        self.acked = ctx.Array("d", [0.0] * n)
        self.mark = ctx.Value("d", 0.0)
        self.first = ctx.Array("d", [0.0] * n)
        self.stop_event = ctx.Event()
        self.results = ctx.Queue()
        self.events = ctx.Queue()
        self.seen = []  # (t, member, error name), drained from events
        self.procs = [ctx.Process(target=member_main, daemon=True,
                                  args=(i, bootstrap, group, topic, interval, self.window,
                                        self.stop_event, self.acked, self.results, self.events,
                                        self.mark, self.first, session_ms))
                      for i in range(n)]

    def start(self):
        for p in self.procs:
            p.start()
        return self

    def check_alive(self):
        dead = [i for i, p in enumerate(self.procs) if not p.is_alive()]
        if dead:
            raise RuntimeError("member process(es) %s exited (codes %s)"
                               % (dead, [self.procs[i].exitcode for i in dead]))

    def drain(self):
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except Exception:
                return self.seen

    def errors_between(self, a, b):
        return dict(collections.Counter(n for t, _, n in self.drain() if a <= t <= b))

    def set_mark(self, t):
        self.mark.value = t

    def firsts_since_mark(self):
        """Each member's first acknowledged commit at or after the mark (None if none yet)."""
        return [f if f >= self.mark.value > 0 else None for f in self.first[:]]

    def all_acked_since(self, t):
        return all(self.acked[i] >= t for i in range(self.n))

    def first_ack_since(self, t):
        times = [self.acked[i] for i in range(self.n) if self.acked[i] >= t]
        return min(times) if times else None

    def stop(self, timeout=30):
        self.stop_event.set()
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < self.n and time.monotonic() < deadline:
            try:
                out.append(self.results.get(timeout=1))
            except Exception:
                if not any(p.is_alive() for p in self.procs):
                    break
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        return out


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


# ---- a single node -------------------------------------------------------------------------

class SingleNode:
    """A harness.Broker (no ZooKeeper) in a directory of our own, offsets topic RF 1."""

    def __init__(self, base, shards=2):
        from harness import Broker
        self.base = base
        data = os.path.join(base, "node")
        os.makedirs(data, exist_ok=True)
        self.b = Broker(data_dir=data, shards=shards)
        self.address = ("127.0.0.1", self.b.port)

    def start(self):
        self.b.start()
        return self

    def stop(self, timeout=120):
        return self.b.stop(timeout=timeout)

    def rss_mib(self):
        try:
            with open("/proc/%d/status" % self.b.process.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except (OSError, AttributeError):
            pass
        return float("nan")


def wait_for(predicate, timeout, what, interval=0.1):
    from cluster import Cluster
    return Cluster.wait_for(predicate, timeout, what, interval)


def create_topic_single(address, name, partitions):
    code, message = kr.create_topics(address, [(name, partitions, 1, None, None)])[name]
    if code != 0:
        raise RuntimeError("CreateTopics %s: error %d %s" % (name, code, message))

    def served():
        t = kr.metadata_request(address, [name])["topics"].get(name)
        return t is not None and t["error"] == 0 and len(t["partitions"]) == partitions and all(
            p["leader"] >= 0 for p in t["partitions"].values())
    wait_for(served, 60, "topic %s served" % name)


def describe_single(address, group):
    try:
        d = gt().describe_group(address, group)
    except OSError:
        return None
    return d if d["error"] == NONE else None


# ---- section 1: commits per second ---------------------------------------------------------

def measure_commits(args, bootstrap, describe, group, topic, label, interval=0.1):
    """Starts the members, waits for Stable with all of them, measures the window."""
    m = Members(args.members, bootstrap, group, topic, interval, args.consumer_session_ms).start()
    figures = None
    try:
        def stable():
            m.check_alive()
            d = describe()
            return d is not None and d["state"] == "Stable" and len(d["members"]) == args.members
        began = time.monotonic()
        wait_for(stable, 120, "group %s Stable with %d members" % (group, args.members), 0.2)
        t_stable = time.monotonic()
        wait_for(lambda: m.all_acked_since(t_stable), 60, "every member committed once Stable", 0.1)
        log("    %s: group Stable with %d members %.1f s after the members started; measuring %.0f s"
            % (label, args.members, t_stable - began, args.seconds))
        t0 = time.monotonic() + 0.5
        m.window[0], m.window[1] = t0, t0 + args.seconds
        while time.monotonic() < t0 + args.seconds + 0.5:
            m.check_alive()
            time.sleep(0.5)
        d = describe()
        after = "Stable with %d members" % len(d["members"]) if d and d["state"] == "Stable" else (
            "state %s" % (d["state"] if d else "unknown"))
    finally:
        results = m.stop()
    fatal = [r for r in results if r.get("fatal")]
    if fatal or len(results) != args.members:
        raise RuntimeError("%s: member(s) failed: %s (%d of %d reported)"
                           % (label, fatal, len(results), args.members))
    lat = [x for r in results for x in r["lat"]]
    werr = collections.Counter()
    allerr = collections.Counter()
    for r in results:
        werr.update(r["window_errors"])
        allerr.update(r["errors"])
    figures = {"label": label, "reqs": sum(r["reqs"] for r in results) / args.seconds,
               "parts": sum(r["parts"] for r in results) / args.seconds,
               "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) if lat else float("nan"),
               "calls": len(lat), "errors": dict(werr), "all_errors": dict(allerr), "after": after}
    log("    %s: %.1f commits/s (%.0f partition-offsets/s), latency p50 %.2f ms p99 %.2f ms max %.2f ms, "
        "%d calls; errors in window %s; all errors %s; group after: %s"
        % (label, figures["reqs"], figures["parts"], figures["p50"], figures["p99"], figures["max"],
           figures["calls"], figures["errors"] or "none", figures["all_errors"] or "none", after))
    return figures


def section_commits(args, out):
    from cluster import Cluster
    log("section 1: offset commits/s: one group, %d partitions, %d members (one process each), "
        "commit every 100 ms, %.0f s" % (args.partitions, args.members, args.seconds))
    rows = []
    # single node
    base = tempfile.mkdtemp(prefix="single-")
    node = SingleNode(base).start()
    try:
        settled("section 1 single node start")
        topic = rep.topic_name("commits-rf1")
        create_topic_single(node.address, topic, args.partitions)
        for interval, label in ((0.1, "single node RF 1"), (0.0, "  back to back")):
            group = rep.topic_name("commits-group-rf1")
            settled("single node, %s, before members" % label.strip())
            rows.append(measure_commits(args, node.b.bootstrap,
                                        lambda: describe_single(node.address, group),
                                        group, topic, label, interval))
    except BaseException:
        log("--- single node log (tail) ---\n%s" % node.b.read_log())
        raise
    finally:
        node.stop()
        if not os.environ.get("SPATE_KEEP_CLUSTER_DIR"):
            shutil.rmtree(base, ignore_errors=True)
    # 3 brokers
    with Cluster(brokers=3, zk_nodes=1, session_timeout_ms=args.session_timeout_ms, shards=2) as c:
        try:
            settled("section 1 cluster start")
            topic = rep.topic_name("commits-rf3")
            rep.create_topic(c, topic, args.partitions, 3, 2)
            for interval, label in ((0.1, "3 brokers RF 3 (min ISR 2)"), (0.0, "  back to back")):
                group = rep.topic_name("commits-group-rf3")

                def describe():
                    got = gt().describe_on_coordinator(c, group)
                    return got[1] if got else None
                settled("cluster, %s, before members" % label.strip())
                rows.append(measure_commits(args, c.bootstrap, describe, group, topic, label, interval))
                part = gt().offsets_partition_of(group)
                log("    group %s: coordinator %s, %s-%d state %s" % (
                    group, gt().coordinator_of(c, group), OFFSETS_TOPIC, part,
                    c.partition_state(OFFSETS_TOPIC, part)))
        except BaseException:
            for i in c.ids:
                log("--- broker %d log (tail) ---\n%s" % (i, c.broker(i).read_log(3000)))
            raise
    for r in rows:
        out.append("commits  %-27s %7.1f commits/s  %8.0f offsets/s   latency p50 %6.2f ms  p99 %7.2f ms  "
                   "max %7.2f ms   errors %s" % (r["label"], r["reqs"], r["parts"], r["p50"], r["p99"],
                                                r["max"], r["errors"] or "none"))
    out.append("         (%d members x %d partitions each, every 100 ms: %.0f commits/s offered; \"back to back\": "
               "each member commits again as soon as the last returns; %.0f s windows)"
               % (args.members, args.partitions // max(1, args.members), args.members * 10, args.seconds))


# ---- section 2: coordinator failover -------------------------------------------------------

def section_failover(args, out):
    from cluster import Cluster
    g = gt()
    runs = args.runs
    log("section 2: coordinator failover: 3 brokers, 6-partition RF 3 topic, 3 members committing "
        "every 100 ms (session.timeout.ms %d, heartbeat.interval.ms 1000), kill -9 of the coordinator, "
        "%d runs, ZooKeeper session timeout %d ms" % (args.consumer_session_ms, runs, args.session_timeout_ms))
    times, stable_t, all_t, ack_t, victims = [], [], [], [], []
    with Cluster(brokers=3, zk_nodes=1, session_timeout_ms=args.session_timeout_ms, shards=2) as c:
        m = None
        try:
            settled("section 2 start")
            topic, group = rep.topic_name("failover"), rep.topic_name("failover-group")
            part = g.offsets_partition_of(group)
            rep.create_topic(c, topic, 6, 3, 2)
            m = Members(3, c.bootstrap, group, topic, 0.1, args.consumer_session_ms).start()

            def stable_with_all(since=None):
                m.check_alive()
                got = g.describe_on_coordinator(c, group)
                return got if (got and got[1]["state"] == "Stable" and len(got[1]["members"]) == 3) else None
            wait_for(stable_with_all, 120, "group Stable with 3 members", 0.2)
            for run in range(runs):
                wait_for(lambda: rep.isr_full(c, OFFSETS_TOPIC, OFFSETS_PARTITIONS) and rep.isr_full(c, topic, 6),
                         180, "every ISR full")
                # the coordinator where it will stay: FindCoordinator agrees with the leader of
                # the group's partition, the group is Stable and every member commits there
                wait_for(lambda: g.placement(c, group) is None, 60, "FindCoordinator = leader of %s-%d" % (OFFSETS_TOPIC, part))
                coord, _ = wait_for(stable_with_all, 60, "group Stable with 3 members", 0.2)
                mark = time.monotonic()
                wait_for(lambda: m.all_acked_since(mark), 60, "every member committed", 0.1)
                settle("run %d" % (run + 1))
                coord2, _ = wait_for(stable_with_all, 60, "group Stable with 3 members", 0.2)
                leader = c.leader_of(OFFSETS_TOPIC, part)
                if coord2 != leader:
                    raise RuntimeError("FindCoordinator names %s, leader of %s-%d is %s" % (coord2, OFFSETS_TOPIC, part, leader))
                victim = coord2
                t_kill = time.monotonic()
                m.set_mark(t_kill)
                c.kill(victim)
                t_stable = None
                named = {}  # live broker -> when its FindCoordinator first named a live broker
                deadline = t_kill + 120
                while time.monotonic() < deadline:
                    for i in c.live_ids():
                        if i in named:
                            continue
                        try:
                            error, node, _, _ = g.find_coordinator(rep.addr(c, i), group, timeout=1)
                        except (OSError, ValueError):
                            continue
                        if error == NONE and node != victim and node in c.live_ids():
                            named[i] = time.monotonic() - t_kill
                    try:
                        got = g.describe_on_coordinator(c, group)
                    except (OSError, ValueError):
                        got = None
                    if t_stable is None and got and got[0] != victim and got[1]["state"] == "Stable" \
                            and len(got[1]["members"]) == 3:
                        t_stable = time.monotonic()
                    firsts = m.firsts_since_mark()
                    if t_stable is not None and all(f is not None for f in firsts):
                        break
                    time.sleep(0.05)
                firsts = m.firsts_since_mark()
                first = min((f for f in firsts if f is not None), default=None)
                if t_stable is None or first is None:
                    raise RuntimeError("run %d: group not Stable with 3 members and committing within 120 s "
                                       "of killing broker %d (stable %s, first commit %s)"
                                       % (run + 1, victim, t_stable, first))
                every = max(firsts) if all(f is not None for f in firsts) else None
                fo = max(t_stable, first) - t_kill
                times.append(fo)
                stable_t.append(t_stable - t_kill)
                ack_t.append(first - t_kill)
                if every:
                    all_t.append(every - t_kill)
                new = g.coordinator_of(c, group)
                victims.append(victim)
                log("    run %2d: %s UTC killed broker %d (coordinator, leader of %s-%d); Stable with 3 members on "
                    "broker %s after %.3f s; first commit acknowledged after %.3f s; every member after %s; "
                    "failover %.3f s; FindCoordinator names it (per broker) after %s; errors members saw %s" % (
                        run + 1, g.wall(t_kill), victim, OFFSETS_TOPIC, part, new, t_stable - t_kill, first - t_kill,
                        "%.3f s" % (every - t_kill) if every else "-", fo,
                        ", ".join("b%d %.3f s" % (i, x) for i, x in sorted(named.items())) or "-",
                        m.errors_between(t_kill, time.monotonic()) or "none"))
                c.restart(victim)
            wait_for(lambda: rep.isr_full(c, OFFSETS_TOPIC, OFFSETS_PARTITIONS), 180, "every ISR full")
            results = m.stop()
            m = None
            errs = collections.Counter()
            for r in results:
                errs.update(r.get("errors") or {})
                if r.get("fatal"):
                    raise RuntimeError("member %s failed: %s" % (r["index"], r["fatal"]))
            log("    errors the members saw over all runs: %s" % (dict(errs) or "none"))
            loaded = []
            for i in c.ids:
                text = c.broker(i).read_log(0)
                loaded += [(i, int(x)) for x in re.findall(r"groups: loaded %s-%d \(offsets [^)]*\) in (\d+) ms"
                                                          % (OFFSETS_TOPIC, part), text)]
            log("    \"groups: loaded %s-%d\" lines (broker, ms): %s" % (OFFSETS_TOPIC, part, loaded))
            expired = []
            for i in c.ids:
                expired += ["b%d %s" % (i, line) for line in c.broker(i).read_log(0).splitlines()
                            if "group %s:" % group in line and "expired" in line]
            log("    members expired by a coordinator (session timeout): %d%s"
                % (len(expired), "".join("\n      " + x for x in expired)))
            sessions_expired = len(expired)
        except BaseException:
            for i in c.ids:
                log("--- broker %d log (tail) ---\n%s" % (i, c.broker(i).read_log(3000)))
            raise
        finally:
            if m is not None:
                m.stop()
    out.append("failover kill -9 coordinator -> Stable(3) + a commit: median %6.3f s  max %6.3f s  min %6.3f s  "
               "(%d runs, ZooKeeper session timeout %.1f s, consumers' session.timeout.ms %d)" % (
                   statistics.median(times), max(times), min(times), len(times),
                   args.session_timeout_ms / 1000.0, args.consumer_session_ms))
    out.append("         kill -> DescribeGroups Stable(3):  median %6.3f s  max %6.3f s;  kill -> first commit "
               "ok: median %6.3f s  max %6.3f s" % (statistics.median(stable_t), max(stable_t),
                                                   statistics.median(ack_t), max(ack_t)))
    if all_t:
        out.append("         kill -> every member committed:    median %6.3f s  max %6.3f s   (victims %s; errors %s; "
                   "members expired by the new coordinator: %d)"
                   % (statistics.median(all_t), max(all_t), victims, dict(errs) or "none", sessions_expired))


# ---- section 3: loading a big offsets partition ---------------------------------------------

class RawConn:
    """One kept connection for raw requests (kafka_raw's encoding, not a fresh socket each)."""

    def __init__(self, address, timeout=30):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.corr = 0

    def call(self, api_key, version, body):
        self.corr += 1
        header = struct.pack(">hhih", api_key, version, self.corr, len(kr.CLIENT_ID)) + kr.CLIENT_ID
        payload = header + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", kr._recv_exact(self.sock, 4))[0]
        r = kr.Reader(kr._recv_exact(self.sock, size))
        if r.int32() != self.corr:
            raise ValueError("wrong correlation id")
        return r

    def close(self):
        self.sock.close()


METADATA = "m" * 64


def commit_body(group, topic, n, offset):
    """OffsetCommit v2, generation -1, partitions 0..n-1 of `topic` at `offset`."""
    body = kr.string(group) + struct.pack(">i", -1) + kr.string("") + struct.pack(">q", -1)
    md = kr.string(METADATA)
    parts = b"".join(struct.pack(">iq", p, offset) + md for p in range(n))
    return body + struct.pack(">i", 1) + kr.string(topic) + struct.pack(">i", n) + parts


def partition_dirs(data_dir, name):
    return [os.path.join(root, d) for root, dirs, _ in os.walk(data_dir) for d in dirs if d == name]


def dir_bytes(paths):
    total = 0
    for p in paths:
        for root, _, files in os.walk(p):
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
    return total


def section_load(args, out):
    g = gt()
    target = int(args.load_gib * GIB)
    log("section 3: loading __consumer_offsets partition of %.2f GiB on a single node (%d partitions a "
        "commit, %d B metadata, every key distinct)" % (args.load_gib, args.load_batch, len(METADATA)))
    base = tempfile.mkdtemp(prefix="load-")
    node = SingleNode(base).start()
    try:
        settled("section 3 start")
        group = "load-group-%d" % (os.getpid() % 10000)
        part = g.offsets_partition_of(group)
        name = "%s-%d" % (OFFSETS_TOPIC, part)
        # first use creates __consumer_offsets
        wait_for(lambda: g.find_coordinator(node.address, group)[0] == NONE, 60, "FindCoordinator answers")
        dirs = wait_for(lambda: partition_dirs(node.b.data_dir, name), 30, "%s on disk" % name)
        stop = threading.Event()
        sent = [0]      # records acknowledged
        errors = collections.Counter()
        lock = threading.Lock()
        next_req = iter(range(1 << 40))
        last = {}

        def filler():
            conn = RawConn(node.address)
            try:
                while not stop.is_set():
                    with lock:
                        k = next(next_req)
                    topic = "load-%d" % k
                    r = conn.call(8, 2, commit_body(group, topic, args.load_batch, k + 1))
                    bad = 0
                    for _ in range(r.count()):
                        r.string()
                        for _ in range(r.count()):
                            r.int32()
                            e = r.int16()
                            if e != NONE:
                                bad += 1
                                errors[e] += 1
                    with lock:
                        sent[0] += args.load_batch - bad
                        if bad == 0:
                            last[k] = topic
            except Exception as e:  # noqa: BLE001
                errors["exception %r" % e] += 1
                stop.set()
            finally:
                conn.close()
        threads = [threading.Thread(target=filler, daemon=True) for _ in range(args.load_threads)]
        began = time.monotonic()
        for t in threads:
            t.start()
        size = 0
        next_log = began + 10
        while not stop.is_set():
            time.sleep(0.5)
            size = dir_bytes(dirs)
            if size >= target:
                break
            if time.monotonic() >= next_log:
                next_log += 10
                log("    filling: %.0f MiB on disk, %d records acknowledged, %.0f s, errors %s"
                    % (size / MIB, sent[0], time.monotonic() - began, dict(errors) or "none"))
        stop.set()
        for t in threads:
            t.join(60)
        fill_s = time.monotonic() - began
        if any(isinstance(k, str) for k in errors):
            raise RuntimeError("filling failed: %s" % dict(errors))
        size = dir_bytes(dirs)
        records = sent[0]
        check_k = max(last)
        log("    filled %.1f MiB (%d records acknowledged, %.0f B/record on disk) in %.1f s (%.0f records/s); "
            "errors %s; broker RSS %.0f MiB" % (size / MIB, records, size / max(1, records), fill_s,
                                               records / fill_s, dict(errors) or "none", node.rss_mib()))
        # restart
        t = time.monotonic()
        code = node.stop(timeout=300)
        log("    SIGTERM: exited %s after %.1f s" % (code, time.monotonic() - t))
        settled("section 3 before restart")
        log_size = os.path.getsize(node.b.log_path)
        size = dir_bytes(dirs)
        t_start = time.monotonic()
        node.start()
        t_listen = time.monotonic()
        answers = collections.Counter()
        probe = [0, 1, args.load_batch - 1]

        def served():
            try:
                error, offsets = g.offset_fetch(node.address, group, last[check_k], probe)
            except (OSError, ValueError):
                answers["no answer"] += 1
                return None
            answers[error] += 1
            if error == COORDINATOR_LOAD_IN_PROGRESS:
                return None
            return (error, offsets)
        error, offsets = wait_for(served, 1800, "OffsetFetch of %s without COORDINATOR_LOAD_IN_PROGRESS" % group, 0.05)
        t_served = time.monotonic()
        want = {p: (check_k + 1, NONE) for p in probe}
        if error != NONE or offsets != want:
            raise RuntimeError("OffsetFetch after the load: error %d %s, want %s" % (error, offsets, want))
        with open(node.b.log_path, "rb") as f:
            f.seek(log_size)
            text = f.read().decode(errors="replace")
        m = re.search(r"groups: loaded %s \(offsets (\d+)\.\.(\d+)\) in (\d+) ms" % re.escape(name), text)
        load_ms = int(m.group(3)) if m else None
        log("    restart: listening after %.3f s, OffsetFetch answered after %.3f s (answers %s); log: %s; "
            "broker RSS %.0f MiB" % (t_listen - t_start, t_served - t_start, dict(answers),
                                     m.group(0) if m else "no \"loaded %s\" line" % name, node.rss_mib()))
        if m is None:
            log("    broker log since restart:\n%s" % text[-3000:])
    except BaseException:
        log("--- single node log (tail) ---\n%s" % node.b.read_log())
        raise
    finally:
        node.stop(timeout=300)
        if not os.environ.get("SPATE_KEEP_CLUSTER_DIR"):
            shutil.rmtree(base, ignore_errors=True)
    served_s = t_served - t_start
    out.append("load     %s: %.1f MiB on disk, %d records (offsets %s..%s), fill %.0f records/s"
               % (name, size / MIB, records, m.group(1) if m else "?", m.group(2) if m else "?", records / fill_s))
    out.append("         start -> OffsetFetch served %.3f s (listening after %.3f s);  broker log: loaded in %s ms"
               "  = %s MB/s" % (served_s, t_listen - t_start, load_ms if load_ms is not None else "?",
                                "%.0f" % (size / 1e6 / (load_ms / 1000.0)) if load_ms else "?"))


# ---- main ----------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "build", "broker", "spate"))
    parser.add_argument("--section", choices=["1", "2", "3", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="a minute-scale run of everything")
    parser.add_argument("--seconds", type=float, default=None, help="section 1 window (default 30)")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--runs", type=int, default=None, help="section 2 kills (default 10)")
    parser.add_argument("--load-gib", type=float, default=None, help="section 3 size (default 1)")
    parser.add_argument("--load-batch", type=int, default=2000, help="partitions per OffsetCommit")
    parser.add_argument("--load-threads", type=int, default=3)
    parser.add_argument("--session-timeout-ms", type=int, default=5000)
    parser.add_argument("--idle-wait", type=float, default=120)
    parser.add_argument("--consumer-session-ms", type=int, default=45000,
                        help="the members' session.timeout.ms (default 45000, Kafka's)")
    parser.add_argument("--work-dir", default="/var/tmp/spate-groups-bench")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 8 if args.quick else 30
    if args.runs is None:
        args.runs = 2 if args.quick else 10
    if args.load_gib is None:
        args.load_gib = 0.05 if args.quick else 1.0
    if args.quick:
        args.idle_wait = min(args.idle_wait, 30)
    rep.IDLE_WAIT[0] = args.idle_wait
    args.binary = os.path.abspath(args.binary)
    for _ in range(60):  # the lead may be rebuilding it
        if os.access(args.binary, os.X_OK):
            break
        time.sleep(5)
    else:
        sys.exit("groups.py: %s is missing; build it first" % args.binary)
    os.environ["SPATE_BIN"] = args.binary
    os.makedirs(args.work_dir, exist_ok=True)
    tempfile.tempdir = tempfile.mkdtemp(prefix="run-", dir=args.work_dir)
    from cluster import install_sigterm_handler
    install_sigterm_handler()
    sections = ["1", "2", "3"] if args.section == "all" else [args.section]
    began = time.monotonic()
    load_before = os.getloadavg()
    out = []
    log("spate groups bench%s: %d cpus; %s" % (" (--quick)" if args.quick else "", os.cpu_count(), rep.machine()))
    failed = True
    try:
        for s in sections:
            {"1": section_commits, "2": section_failover, "3": section_load}[s](args, out)
        failed = False
    finally:
        if not os.environ.get("SPATE_KEEP_CLUSTER_DIR"):
            shutil.rmtree(tempfile.tempdir, ignore_errors=True)
        log("")
        log("spate groups: %d cpus shared with the clients; brokers 2 shards each; ZooKeeper session "
            "timeout %d ms; group_initial_rebalance_delay_ms default (3000)%s"
            % (os.cpu_count(), args.session_timeout_ms, " (INCOMPLETE: failed, see above)" if failed else ""))
        for line in out:
            log(line)
        log("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f; took %.0f s"
            % (load_before + os.getloadavg() + (time.monotonic() - began,)))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
