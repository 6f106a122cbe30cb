#!/usr/bin/env python3
"""What replication costs: throughput, latency and failover of a 3-broker spate cluster on
one ZooKeeper (tests/cluster/cluster.py), each next to a baseline measured in the same run.

  /usr/bin/python3 bench/replication.py [--binary build/broker/spate]
      [--spatectl build/tools/spatectl] [--phase 1|2|3|all] [--runs N] [--seconds S]
      [--volume-mib 1024] [--record-size 1024] [--partitions 1] [--rf 3] [--min-isr 2]
      [--rate 10000] [--session-timeout-ms 5000] [--pin-shards] [--shards 2] [--idle-wait 120]
      [--broker-config KEY=VALUE ...]
      [--work-dir /var/tmp/spate-replication-bench] [--kafka KAFKA_DIR]

All phases run against the same 3 brokers (--shards each, default 2, unpinned: the client shares
the machine's cores with them). Each phase, and each measured round, starts settled:
`sync`, then until Dirty in /proc/meminfo is below 16 MiB, then until the cpus are less
than 25 % busy over a second (at most --idle-wait s; if not, the busiest processes are
named). The load average, Dirty, Writeback and cpu use are printed there, and Dirty and
Writeback again after each measured produce.

 1. throughput: `spatectl perf produce` of --volume-mib (default 1 GiB) of --record-size
    records, unthrottled (bench/e2e.py's batch 256 KiB, linger 1 ms, 8 in flight), into a
    fresh topic of --partitions partitions: RF 1 with acks=1 and RF --rf
    (min.insync.replicas --min-isr) with acks=all, alternating, --runs rounds each
    (default 3); the topic is deleted after each round. Prints each round, the medians
    and RF3/RF1. Right before each round, as bench/e2e.py does, memory for the page cache
    it fills (RF n writes n copies) is touched through /dev/shm (this VM backs guest pages
    lazily; a first touch costs a hypervisor fault), so RF 1 and RF n rounds write into
    memory in the same state. RF 3 writes 3 GiB a round: past the
    kernel's background writeback threshold here (10 % of ~23 GiB), so writeback runs
    during those rounds (see the Dirty/Writeback printed after each).
 2. latency: `sockperf ping-pong --tcp` on loopback (--full-rtt, messages of --record-size
    bytes, back to back, --seconds), then `spatectl perf produce --acks all` at --rate
    records/s for --seconds into an RF --rf topic (one partition, min.insync.replicas
    --min-isr; spatectl's default batching: linger 0). Prints p50/p99/p99.9 of both and
    produce p99 / round-trip p99, and the leader's own share (its Produce latency
    histogram on /metrics, frame received -> answer queued, as bucket bounds: what is
    not in it is the network, wake-ups and the client); then, as context, the same
    produce unreplicated (RF 1, acks=1).
 3. failover: one partition, RF --rf, min.insync.replicas --min-isr; a confluent_kafka
    producer (acks=all, not idempotent, linger.ms 0, librdkafka's default metadata
    refresh) sends a record to partition 0 every 5 ms from its own thread and notes each
    delivery. --runs times (default 10): kill -9 the partition's leader; failover = the
    delivery time of the first record acknowledged that was sent after the kill, minus
    the kill time. Also printed: when ZooKeeper's state node named a new leader, and when
    a raw acks=all Produce (kafka_raw, sent every 10 ms to each surviving broker) was
    first acknowledged: the broker side without the client's metadata refresh. The
    killed broker is restarted and the ISR is full again before the next run. Median and
    max next to the session timeout (a killed broker's registration stays until its
    ZooKeeper session expires).

--kafka KAFKA_DIR (a folder as bench/vs_kafka.py takes, e.g. ../shared/kafka) then runs
phases 1 and 2 again, the same way with the same client, against 3 Apache Kafka 1.0.2 brokers
(Kafka's defaults, 1 GiB heap each; bench/kafka_cluster.py) on a ZooKeeper of their own, once
spate's brokers have stopped, and prints Kafka's figures and spate / Kafka. Phase 3 is spate's
only (its probe speaks Produce versions Kafka 1.0.2 does not).

--runs sets both phase 1's rounds per RF and phase 3's runs (defaults 3 and 10).
--rf 1 --min-isr 1 runs the mechanics without replication (phase 3 then restarts the
killed broker at once: there is no other replica). The cluster directory is made under
--work-dir, not /tmp; SPATE_KEEP_CLUSTER_DIR=1 keeps it (each broker's log is b<id>.log
there). Not a test: the goals (phase 1 >= 0.4, phase 2 <= 6) are printed next to the
figures, nothing fails on them.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import kafka_raw as kr  # noqa: E402
from cluster import Cluster, install_sigterm_handler  # noqa: E402

sys.path.insert(0, HERE)
import baselines  # noqa: E402
import machine  # noqa: E402
from kafka_cluster import KafkaCluster  # noqa: E402

MIB = 1024 * 1024
DIRTY_SETTLED = 16 * MIB

PERF_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, ([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, "
    r"([\d.]+) ms 99\.9th")


def log(text):
    print(text, flush=True)


# ---- the machine ---------------------------------------------------------------------------

IDLE_WAIT = [120.0]  # --idle-wait


def settle(what, timeout=300):
    """bench/machine.py's settle with this bench's --idle-wait."""
    machine.settle(what, dirty_mib=DIRTY_SETTLED // MIB, timeout=timeout, idle_wait=IDLE_WAIT[0],
                   log=log)


def warm_memory(mib):
    """Touches (and frees) `mib` MiB through tmpfs, as bench/e2e.py does, if there is room."""
    began = time.monotonic()
    if machine.reuse_memory(mib, log=log):
        log("  memory warm-up: %d MiB touched through /dev/shm in %.1f s" % (mib, time.monotonic() - began))


# ---- topics --------------------------------------------------------------------------------

_names = iter(range(1, 1 << 30))


def topic_name(prefix):
    return "%s-%d-%d" % (prefix, os.getpid() % 10000, next(_names))


def addr(c, node_id):
    return ("127.0.0.1", c.broker(node_id).port)


def create_topic(c, name, partitions, rf, min_isr):
    """Through the controller; waits until every live broker serves every partition with
    a leader and ZooKeeper's state shows a full ISR."""
    via = c.controller_id() or c.live_ids()[0]
    spec = (name, partitions, rf, None, {"min.insync.replicas": str(min_isr)})
    code, message = kr.create_topics(addr(c, via), [spec],
                                     version=c.create_topics_version)[name]
    if code != 0:
        raise RuntimeError("CreateTopics %s (RF %d, min.insync.replicas %d) through broker %d: "
                           "error %d %s" % (name, rf, min_isr, via, code, message))
    wait_isr_full(c, name, partitions, timeout=60)

    def served():
        for i in c.live_ids():
            t = c.metadata(i, [name])["topics"].get(name)
            if t is None or t["error"] != 0 or len(t["partitions"]) != partitions:
                return False
            if any(p["error"] != 0 or p["leader"] < 0 for p in t["partitions"].values()):
                return False
        return True
    c.wait_for(served, 60, "every broker serves %s" % name)


def isr_full(c, name, partitions):
    node, _ = c.zk_json("/brokers/topics/" + name)
    if node is None:
        return False
    for p in range(partitions):
        s = c.partition_state(name, p)
        replicas = node["partitions"][str(p)]
        if s is None or s["leader"] not in replicas or sorted(s["isr"]) != sorted(replicas):
            return False
    return True


def wait_isr_full(c, name, partitions, timeout):
    c.wait_for(lambda: isr_full(c, name, partitions), timeout,
               "ISR of every partition of %s full" % name)


def delete_topic(c, name):
    via = c.controller_id() or c.live_ids()[0]
    code = kr.delete_topics(addr(c, via), [name],
                            version=c.delete_topics_version)[name]
    if code != 0:
        log("  DeleteTopics %s: error %d (left in place)" % (name, code))
        return
    c.wait_for(lambda: all(name not in c.metadata(i, [])["topics"] for i in c.live_ids()), 60,
               "%s gone from every broker" % name)


# ---- spatectl perf produce -------------------------------------------------------------------

def perf_produce(args, c, topic, records, acks, throughput, timeout):
    command = [args.spatectl, "--bootstrap-server", c.bootstrap, "--timeout", "30000",
               "perf", "produce", "--topic", topic, "--num-records", str(records),
               "--record-size", str(args.record_size), "--throughput", str(throughput),
               "--acks", str(acks)]
    if throughput < 0:  # the settings bench/e2e.py uses for its unthrottled runs
        command += ["--batch-size", "262144", "--linger-ms", "1", "--max-in-flight", "8"]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout)
    lines = done.stdout.strip().splitlines()
    match = PERF_LINE.search(lines[-1]) if lines else None
    if done.returncode != 0 or match is None:
        raise RuntimeError("spatectl perf produce (%s) exited %d:\n%s\n%s"
                           % (" ".join(command[3:]), done.returncode, done.stdout[-2000:],
                              done.stderr[-2000:]))
    g = match.groups()
    return {"records": int(g[0]), "mbs": float(g[2]), "avg_ms": float(g[3]), "max_ms": float(g[4]),
            "p50_ms": float(g[5]), "p95_ms": float(g[6]), "p99_ms": float(g[7]),
            "p999_ms": float(g[8]), "line": lines[-1]}


# ---- phase 1: throughput -----------------------------------------------------------------------

def phase_throughput(args, c, out):
    rounds = args.runs or 3
    records = args.volume_mib * MIB // args.record_size
    log("phase 1: produce throughput, %d MiB of %d B records (%d records) per round, %d "
        "partition(s), unthrottled, RF 1 acks=1 vs RF %d acks=all min.insync.replicas %d, %d "
        "rounds each" % (args.volume_mib, args.record_size, records, args.partitions, args.rf,
                         args.min_isr, rounds))
    settle("phase 1 start")
    results = {"base": [], "replicated": []}
    for r in range(rounds):
        for kind, rf, acks, min_isr in (("base", 1, 1, 1), ("replicated", args.rf, -1, args.min_isr)):
            topic = topic_name("tput-rf%d" % rf)
            create_topic(c, topic, args.partitions, rf, min_isr)
            settle("round %d RF %d" % (r + 1, rf))
            # Both kinds of round write into memory the guest holds: RF n writes n copies.
            warm_memory(args.volume_mib * max(args.rf, 1) * 3 // 2)
            try:
                res = perf_produce(args, c, topic, records, acks, -1, timeout=900)
            except RuntimeError as e:
                # The client gave up (no acknowledgement for 30 s: Kafka 1.0.2 stalls so
                # here now and then): said, and left out of the median.
                log("    RF %d acks=%-3s round %d: FAILED: %s" % (rf, "all" if acks == -1 else acks,
                                                             r + 1, str(e).strip()[-600:]))
                results[kind].append(None)
                delete_topic(c, topic)
                continue
            results[kind].append(res)
            log("    RF %d acks=%-3s round %d: %8.1f MB/s   p99 %.3f ms   [%s]  (after: %s)"
                % (rf, "all" if acks == -1 else acks, r + 1, res["mbs"], res["p99_ms"], res["line"],
                   machine.state()))
            delete_topic(c, topic)

    def summary(kind):
        done = [x["mbs"] for x in results[kind] if x is not None]
        rounds = " ".join("failed" if x is None else "%.1f" % x["mbs"] for x in results[kind])
        return (statistics.median(done) if done else None), rounds

    rf1, rf1_rounds = summary("base")
    rfn, rfn_rounds = summary("replicated")
    if rf1 is None or rfn is None:
        out.append("RF 1 acks=1 rounds: %s; RF %d acks=all rounds: %s (no ratio: every round of "
                   "one kind failed)" % (rf1_rounds, args.rf, rfn_rounds))
        return {}
    out.append("RF 1 acks=1 produce:                 %8.1f MB/s median   [rounds: %s]"
               % (rf1, rf1_rounds))
    out.append("RF %d acks=all (min ISR %d) produce:   %8.1f MB/s median   [rounds: %s]"
               % (args.rf, args.min_isr, rfn, rfn_rounds))
    out.append("ratio RF%d acks=all / RF1 acks=1:     %8.3f   (goal >= 0.4)" % (args.rf, rfn / rf1))
    return {"rf1_mbs": rf1, "rfn_mbs": rfn}


# ---- phase 2: latency ----------------------------------------------------------------------------

def produce_buckets(c, node):
    """Broker `node`'s Produce latency histogram (frame received -> answer queued, its
    /metrics): {bucket bound in s: cumulative count}, or None where there is none (Kafka)."""
    try:
        import metrics_test  # tests/cluster: the scrape its tests use
        samples = metrics_test.scrape(c.broker(node))
    except Exception:
        return None
    out = {}
    for (name, labels), count in samples.items():
        labels = dict(labels)
        if name == "spate_request_latency_seconds_bucket" and labels.get("request") == "Produce":
            out[float(labels["le"])] = count
    return out


def bucket_percentiles(before, after, quantiles):
    """The bucket bound (us) each quantile falls in, over what was counted between two
    produce_buckets() readings."""
    delta = sorted((le, n - before.get(le, 0)) for le, n in after.items())
    total = delta[-1][1] if delta else 0
    return {q: next((le * 1e6 for le, n in delta if total and n >= q / 100 * total), None)
            for q in quantiles}


def phase_latency(args, c, out):
    seconds = args.seconds
    records = int(args.rate * seconds)
    log("phase 2: acks=all produce latency at %d records/s for %.0f s (%d B records, RF %d, "
        "min.insync.replicas %d, 1 partition) vs sockperf TCP round trip (%d B messages)"
        % (args.rate, seconds, args.record_size, args.rf, args.min_isr, args.record_size))
    settle("phase 2 start")
    topic = topic_name("latency")
    create_topic(c, topic, 1, args.rf, args.min_isr)
    settle("sockperf")
    sp = baselines.sockperf_rtt(seconds, args.record_size)
    log("    sockperf TCP round trip (%d B, back to back, %d round trips): p50 %.1f us, p99 %.1f us, "
        "p99.9 %.1f us, max %.1f us" % (args.record_size, sp.get("count", -1), sp[50.0], sp[99.0],
                                        sp[99.9], sp.get("max", -1)))
    settle("produce at %d/s" % args.rate)
    leader = c.leader_of(topic, 0)
    before = produce_buckets(c, leader) if leader is not None else None
    try:
        res = perf_produce(args, c, topic, records, -1, args.rate, timeout=seconds * 3 + 120)
    except RuntimeError as e:  # as in phase 1: said, no ratio
        log("    acks=all produce at %d/s: FAILED: %s" % (args.rate, str(e).strip()[-600:]))
        out.append("sockperf TCP round trip (%d B):     p50 %8.1f us   p99 %8.1f us" % (
            args.record_size, sp[50.0], sp[99.0]))
        out.append("acks=all produce at %d/s (RF %d):  FAILED (the client gave up, see above)"
                   % (args.rate, args.rf))
        delete_topic(c, topic)
        return {}
    log("    [%s]  (after: %s)" % (res["line"], machine.state()))
    after = produce_buckets(c, leader) if before is not None else None
    inside = bucket_percentiles(before, after, (50, 99, 99.9)) if after else None
    delete_topic(c, topic)
    # Context, not the goal: the same run unreplicated (RF 1, acks=1, as bench/e2e.py's
    # latency figure), so a bad ratio shows whether it is replication or the machine.
    base_topic = topic_name("latency-rf1")
    create_topic(c, base_topic, 1, 1, 1)
    settle("RF 1 acks=1 produce at %d/s" % args.rate)
    base = perf_produce(args, c, base_topic, records, 1, args.rate, timeout=seconds * 3 + 120)
    log("    [%s]  (after: %s)" % (base["line"], machine.state()))
    delete_topic(c, base_topic)
    p = {k: 1000 * res[k] for k in ("p50_ms", "p99_ms", "p999_ms")}
    b1 = {k: 1000 * base[k] for k in ("p50_ms", "p99_ms", "p999_ms")}
    out.append("sockperf TCP round trip (%d B):     p50 %8.1f us   p99 %8.1f us   p99.9 %8.1f us"
               % (args.record_size, sp[50.0], sp[99.0], sp[99.9]))
    out.append("acks=all produce at %d/s (RF %d):  p50 %8.1f us   p99 %8.1f us   p99.9 %8.1f us   (%.0f s)"
               % (args.rate, args.rf, p["p50_ms"], p["p99_ms"], p["p999_ms"], seconds))
    out.append("ratio produce p99 / round-trip p99:   %8.2f   (goal <= 6)" % (p["p99_ms"] / sp[99.0]))
    if inside:
        # Where the client's time goes: inside the leader (waiting for the followers
        # included), or outside it (the network, wake-ups, the client).
        out.append("  in the leader (broker %d: frame received -> answer queued, /metrics bucket "
                   "bounds): p50 <= %s us   p99 <= %s us   p99.9 <= %s us"
                   % (leader, *("%g" % inside[q] if inside[q] is not None else "?" for q in (50, 99, 99.9))))
    out.append("  context: RF 1 acks=1 at %d/s:      p50 %8.1f us   p99 %8.1f us   p99.9 %8.1f us   "
               "(ratio %.2f)" % (args.rate, b1["p50_ms"], b1["p99_ms"], b1["p999_ms"],
                                 b1["p99_ms"] / sp[99.0]))
    return {"p50_us": p["p50_ms"], "p99_us": p["p99_ms"], "rtt_p99_us": sp[99.0]}


# ---- phase 3: failover -------------------------------------------------------------------------

class PacedProducer:
    """A confluent_kafka producer sending one record to partition 0 every `interval` s from
    its own thread; notes (sent, delivered, error name or None) of every record, monotonic."""

    def __init__(self, bootstrap, topic, interval=0.005):
        from confluent_kafka import Producer
        self.topic = topic
        self.interval = interval
        self.deliveries = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.config = {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 0,
            "message.timeout.ms": 120000,
            "retries": 1000000,
            "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
            "log_level": 2,  # a killed leader's refused connections are expected, not news
        }
        self._producer = Producer(self.config)
        self._thread = threading.Thread(target=self._loop, name="failover-producer", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _loop(self):
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_at:
                sent = now

                def delivered(err, msg, sent=sent):
                    name = None if err is None else (err.name() or str(err.code()))
                    with self._lock:
                        self.deliveries.append((sent, time.monotonic(), name))
                try:
                    self._producer.produce(self.topic, b"x" * 100, partition=0, on_delivery=delivered)
                    self.sent += 1
                except BufferError:
                    pass
                next_at += self.interval
                if next_at < now:  # fell behind (a long poll): no burst to catch up
                    next_at = now + self.interval
            self._producer.poll(max(0.0, min(next_at - time.monotonic(), self.interval)))

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._producer.flush(30)

    def first_ack_sent_after(self, t):
        """Delivery time of the first successful record sent after t, or None."""
        with self._lock:
            times = [d for s, d, e in self.deliveries if s > t and e is None]
        return min(times) if times else None

    def errors_between(self, a, b):
        with self._lock:
            out = {}
            for s, d, e in self.deliveries:
                if e is not None and a <= d <= b:
                    out[e] = out.get(e, 0) + 1
            return out

    def acked_since(self, t):
        with self._lock:
            return sum(1 for s, d, e in self.deliveries if d > t and e is None)


class WriteProbe:
    """The broker side of a failover, without a client's metadata refreshes and backoffs:
    one thread per surviving broker sends a raw acks=all Produce of one record to
    partition 0 every 10 ms (a fresh connection each) until one is acknowledged; `acked`
    is when that answer arrived (monotonic), `by` the broker that gave it."""

    def __init__(self, c, topic, brokers):
        self.acked = None
        self.by = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.topic = topic
        self._threads = [threading.Thread(target=self._loop, args=(addr(c, i), i), daemon=True)
                         for i in brokers]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def _loop(self, address, node_id):
        while not self._done.is_set():
            try:
                code, _ = kr.produce(address, self.topic, 0, [b"probe"], acks=-1)
            except Exception:  # refused, reset, timed out: not yet
                code = None
            if code == 0:
                with self._lock:
                    if self.acked is None:
                        self.acked, self.by = time.monotonic(), node_id
                self._done.set()
                return
            self._done.wait(0.01)

    def stop(self):
        self._done.set()
        for t in self._threads:
            t.join(15)


def phase_failover(args, c, out):
    runs = args.runs or 10
    session_s = args.session_timeout_ms / 1000.0
    log("phase 3: failover, kill -9 of partition 0's leader (RF %d, min.insync.replicas %d), "
        "a record every 5 ms with acks=all, %d runs, session timeout %.1f s"
        % (args.rf, args.min_isr, runs, session_s))
    settle("phase 3 start")
    topic = topic_name("failover")
    create_topic(c, topic, 1, args.rf, args.min_isr)
    p = PacedProducer(c.bootstrap, topic).start()
    log("    producer: %s" % {k: v for k, v in p.config.items() if k != "bootstrap.servers"})
    failover, elected, probed = [], [], []
    try:
        c.wait_for(lambda: p.acked_since(0) >= 200, 60, "200 records acknowledged before the first kill")
        for run in range(runs):
            before = c.partition_state(topic, 0)
            victim = before["leader"]
            began = time.monotonic()
            c.kill(victim)
            t_kill = began  # the signal is sent at `began`; kill() also reaps the process
            probe = WriteProbe(c, topic, [i for i in c.ids if i != victim]).start()
            if args.rf < 2:  # no other replica to take over: the mechanics, with a restart
                c.restart(victim, wait=False)
            new_leader, t_elected = None, None
            deadline = t_kill + 120
            first = None
            while time.monotonic() < deadline:
                if t_elected is None:
                    s = c.partition_state(topic, 0)
                    if s is not None and s["leader"] >= 0 and (
                            s["leader"] != victim if args.rf >= 2
                            else s["leader_epoch"] > before["leader_epoch"]):
                        new_leader, t_elected = s["leader"], time.monotonic()
                first = p.first_ack_sent_after(t_kill)
                if first is not None and t_elected is not None:
                    break
                time.sleep(0.01)
            probe_deadline = time.monotonic() + 30
            while probe.acked is None and time.monotonic() < probe_deadline:
                time.sleep(0.01)
            probe.stop()
            if probe.acked is not None:
                probed.append(probe.acked - t_kill)
            if first is None:
                raise RuntimeError("run %d: no record sent after killing broker %d acknowledged within "
                                   "120 s (ZooKeeper state %s)" % (run + 1, victim,
                                                                   c.partition_state(topic, 0)))
            failover.append(first - t_kill)
            if t_elected is not None:
                elected.append(t_elected - t_kill)
            errors = p.errors_between(t_kill, first)
            log("    run %2d: killed broker %d (leader epoch %s); new leader %s in ZooKeeper after %s; "
                "raw acks=all Produce acknowledged (by %s) after %s; client's first acknowledged "
                "write after %.3f s%s"
                % (run + 1, victim, before.get("leader_epoch"), new_leader,
                   "%.3f s" % (t_elected - t_kill) if t_elected else "-", probe.by,
                   "%.3f s" % (probe.acked - t_kill) if probe.acked else "-", first - t_kill,
                   "; failed deliveries %s" % errors if errors else ""))
            if args.rf >= 2:
                c.restart(victim)
            else:
                c.wait_ready(60)
            wait_isr_full(c, topic, 1, timeout=120)
            mark = time.monotonic()
            c.wait_for(lambda: p.acked_since(mark) >= 100, 60, "100 records acknowledged after the restart")
    finally:
        p.stop()
    out.append("failover (kill -9 leader -> first ack): median %6.3f s   max %6.3f s   min %6.3f s   "
               "(session timeout %.1f s, %d runs)" % (statistics.median(failover), max(failover),
                                                     min(failover), session_s, len(failover)))
    if elected:
        out.append("  kill -9 -> new leader in ZooKeeper:   median %6.3f s   max %6.3f s"
                   % (statistics.median(elected), max(elected)))
    if probed:
        out.append("  kill -9 -> raw acks=all Produce ok:   median %6.3f s   max %6.3f s   (no client "
                   "metadata refresh or backoff; %d runs)" % (statistics.median(probed), max(probed),
                                                               len(probed)))


# ---- main ------------------------------------------------------------------------------------

def run_phases(args, c, phases, out, figures):
    try:
        for phase in phases:
            got = {"1": phase_throughput, "2": phase_latency, "3": phase_failover}[phase](args, c, out)
            figures.update(got or {})
    except BaseException:
        for i in c.ids:
            log("--- broker %d log (tail) ---\n%s" % (i, c.broker(i).read_log(3000)))
        raise


def compare(figures):
    """spate against Kafka on what both runs measured."""
    s, k = figures.get("spate", {}), figures.get("kafka", {})
    if not s or not k:
        return
    log("spate / Kafka:")
    if "rfn_mbs" in s and "rfn_mbs" in k:
        log("  RF 1 acks=1 MB/s:       %6.2f x" % (s["rf1_mbs"] / k["rf1_mbs"]))
        log("  RF 3 acks=all MB/s:     %6.2f x" % (s["rfn_mbs"] / k["rfn_mbs"]))
        log("  RF3/RF1 ratio:          spate %.3f, Kafka %.3f"
            % (s["rfn_mbs"] / s["rf1_mbs"], k["rfn_mbs"] / k["rf1_mbs"]))
    if "p99_us" in s and "p99_us" in k:
        log("  acks=all p99 (Kafka / spate): %.2f   (p99 / round trip p99: spate %.2f, Kafka %.2f)"
            % (k["p99_us"] / s["p99_us"], s["p99_us"] / s["rtt_p99_us"],
               k["p99_us"] / k["rtt_p99_us"]))

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "build", "broker", "spate"))
    parser.add_argument("--spatectl", default=os.path.join(HERE, "..", "build", "tools", "spatectl"))
    parser.add_argument("--phase", choices=["1", "2", "3", "all"], default="all")
    parser.add_argument("--runs", type=int, default=0,
                        help="phase 1 rounds per RF (default 3), phase 3 kills (default 10)")
    parser.add_argument("--seconds", type=float, default=30, help="phase 2 duration (default 30)")
    parser.add_argument("--volume-mib", type=int, default=1024, help="phase 1 volume per round")
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=1, help="phase 1 partitions")
    parser.add_argument("--rf", type=int, default=3)
    parser.add_argument("--min-isr", type=int, default=2)
    parser.add_argument("--rate", type=int, default=10000, help="phase 2 records/s")
    parser.add_argument("--session-timeout-ms", type=int, default=5000)
    parser.add_argument("--pin-shards", action="store_true", help="pin broker shards to cores")
    parser.add_argument("--shards", type=int, default=2,
                        help="shards per broker (default 2: 6 shard threads on this machine's "
                             "2 cpus; 1 gives each broker one thread, 3 in all)")
    parser.add_argument("--broker-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a line added to every broker's config (TOML), e.g. "
                             "connection_move_requests=0; repeatable")
    parser.add_argument("--idle-wait", type=float, default=120,
                        help="at most this long (s) before each phase and round for the cpus to "
                             "be < 25%% busy (default 120)")
    parser.add_argument("--kafka", metavar="KAFKA_DIR",
                        help="also run phases 1 and 2 against 3 Apache Kafka 1.0.2 brokers from "
                             "KAFKA_DIR (as for bench/vs_kafka.py, e.g. ../shared/kafka), after "
                             "spate's, and print spate / Kafka")
    parser.add_argument("--kafka-only", action="store_true",
                        help="with --kafka: Kafka's runs alone (no spate, no spate / Kafka)")
    parser.add_argument("--work-dir", default="/var/tmp/spate-replication-bench",
                        help="the cluster directory goes in a new run-* directory here "
                             "(default /var/tmp/spate-replication-bench)")
    args = parser.parse_args()
    IDLE_WAIT[0] = args.idle_wait
    args.binary = os.path.abspath(args.binary)
    args.spatectl = os.path.abspath(args.spatectl)
    for path in (args.binary, args.spatectl):
        if not os.access(path, os.X_OK):
            sys.exit("replication.py: %s is missing; build it first" % path)
    if args.phase in ("2", "all") and shutil.which("sockperf") is None:
        sys.exit("replication.py: sockperf is not installed")
    os.environ["SPATE_BIN"] = args.binary
    # The cluster's directory (ZooKeeper, data, logs) under a parent of our own, not
    # /tmp/spate-cluster-*: a clean-up of leftover test clusters there once removed the
    # data directories under the running brokers (KAFKA_STORAGE_ERROR mid-round).
    os.makedirs(args.work_dir, exist_ok=True)
    tempfile.tempdir = tempfile.mkdtemp(prefix="run-", dir=args.work_dir)
    if args.kafka_only and not args.kafka:
        sys.exit("replication.py: --kafka-only needs --kafka KAFKA_DIR")
    install_sigterm_handler()
    phases = ["1", "2", "3"] if args.phase == "all" else [args.phase]

    began = time.monotonic()
    load_before = os.getloadavg()
    out = []
    extra = "pin_shards = %s\n" % ("true" if args.pin_shards else "false")
    extra += 'metrics_listen = "127.0.0.1:0"\n'  # phase 2 reads the leader's own Produce time
    for line in args.broker_config:
        extra += line + "\n"
    log("spate replication bench: 3 brokers (%d shards, pin_shards %s), 1 ZooKeeper, %d cpus; %s"
        % (args.shards, "true" if args.pin_shards else "false", os.cpu_count(), machine.state()))
    failed = True
    figures = {}
    kafka_out = []
    try:
        if not args.kafka_only:
            with Cluster(brokers=3, zk_nodes=1, session_timeout_ms=args.session_timeout_ms,
                         shards=args.shards, extra_config=extra) as c:
                log("  cluster up in %s" % c.base_dir)
                run_phases(args, c, phases, out, figures.setdefault("spate", {}))
        if args.kafka:
            # The same phases, client and settings against Kafka 1.0.2, after spate's
            # brokers have stopped (failover: spate only, it probes with spate's
            # Produce version).
            log("Apache Kafka 1.0.2: 3 brokers (Kafka's defaults, 1 GiB heap each), 1 ZooKeeper")
            with KafkaCluster(args.kafka, brokers=3) as k:
                log("  cluster up in %s" % k.base_dir)
                run_phases(args, k, [p for p in phases if p != "3"], kafka_out,
                           figures.setdefault("kafka", {}))
        failed = False
    finally:
        if not os.environ.get("SPATE_KEEP_CLUSTER_DIR"):
            shutil.rmtree(tempfile.tempdir, ignore_errors=True)
        log("")
        if not args.kafka_only:
            log("spate replication: 3 brokers, 1 ZooKeeper, %d cpus shared with the client, record "
                "size %d B%s" % (os.cpu_count(), args.record_size,
                                 " (INCOMPLETE: failed, see above)" if failed else ""))
        for line in out:
            log(line)
        if kafka_out:
            log("")
            log("Apache Kafka 1.0.2, the same 3-broker layout, client and settings (same run):")
            for line in kafka_out:
                log(line)
            compare(figures)
        log("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f; took %.0f s"
            % (load_before + os.getloadavg() + (time.monotonic() - began,)))


if __name__ == "__main__":
    main()
