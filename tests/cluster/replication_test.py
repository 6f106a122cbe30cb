"""The replication suite: 3 spate brokers on a real ZooKeeper, a topic with replication
factor 3 and min.insync.replicas 2 (a topic config set at creation), an idempotent
acks=all producer (checker.Producer, 1000 records/s) running while brokers are killed
(-9), stopped (SIGTERM), paused (SIGSTOP) and wiped; at the end everything is consumed
and checker.check() demands that nothing acknowledged is lost, moved, reordered or
duplicated. CLUSTER.md "Replication" and "Tests that prove it".

    /usr/bin/python3 tests/cluster/replication_test.py [names...] [--rf 3] [--min-isr 2]
        [--partitions 3] [--rate 1000] [--list]

Cases: the checker's self-test; sanity (5000 records, RF/ISR in every broker's
Metadata); hard bounce of partition 0's leader x5; clean (SIGTERM) rolling bounce;
controller kill; follower SIGSTOPped past replica_lag_time_max_ms (3000) -> out of the
ISR -> back; two of three killed -> NOT_ENOUGH_REPLICAS, nothing acknowledged -> both
back; leader and controller killed together; a wiped broker re-replicates, rejoins,
then serves alone; a leader paused past its session (fenced, truncates); no unclean
election while the last ISR member is down. Every case ends with all records consumed
and checked, and (replicated) every replica's log bytes identical.

names are substrings of the test names (ONLY=substring works too). Each case starts a
cluster of its own, prints one summary line (acked, consumed, errors by kind, time),
then "ok"/"FAIL"; on failure the producer's status, ZooKeeper's and every broker's view
of the topic, and the tail of every broker's log. Ends with "N passed, N failed".
--rf 1 --min-isr 1 runs the mechanics on an unreplicated topic (the checker must pass
there too); assertions that need replicas are then skipped and so are the cases that
need replicas. SPATE_KEEP_CLUSTER_DIR=1 keeps the cluster directories;
SPATE_PRODUCER_DEBUG=msg,topic,... with SPATE_PRODUCER_LOG=path writes the producer's
librdkafka log; SPATE_PRODUCER_UNSTICK=0 turns off the stuck-client watchdog (see
checker.Producer._watchdog: librdkafka 2.0.2 can strand a partition after a failover).
"""
import argparse
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as cluster_module  # noqa: E402
import kafka_raw as kr  # noqa: E402
from checker import Producer, check, checker_selftest, consume_all  # noqa: E402
from cluster import Cluster, install_sigterm_handler  # noqa: E402

NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20


class Options:
    rf = 3
    min_isr = 2
    partitions = 3
    rate = 1000
    session_ms = 5000
    brokers = 3


O = Options()


Skip = cluster_module.Skip


# ---- what a case starts; main() stops it, printing logs first when the case failed ----------

_clusters = []
_producers = []


def start_cluster(extra_config="", session_ms=None):
    # SPATE_EXTRA_CONFIG: lines added to every broker's config (e.g. to rerun a scenario with
    # a setting changed: SPATE_EXTRA_CONFIG=$'connection_move_requests = 0\n').
    c = Cluster(brokers=O.brokers, zk_nodes=1, session_timeout_ms=session_ms or O.session_ms,
                shards=2, extra_config=extra_config + os.environ.get("SPATE_EXTRA_CONFIG", ""))
    _clusters.append(c)
    return c.start()


def start_producer(c, topic, **kwargs):
    """checker.Producer at O.rate. SPATE_PRODUCER_DEBUG=eos,topic,msg,... and
    SPATE_PRODUCER_LOG=path write librdkafka's debug log to a file (evidence)."""
    kwargs.setdefault("rate", O.rate)
    if os.environ.get("SPATE_PRODUCER_LOG"):
        kwargs.setdefault("log_path", os.environ["SPATE_PRODUCER_LOG"])
    if os.environ.get("SPATE_PRODUCER_DEBUG"):
        kwargs.setdefault("debug", os.environ["SPATE_PRODUCER_DEBUG"])
    p = Producer(c.bootstrap, topic, O.partitions, **kwargs).start()
    _producers.append(p)
    return p


def cleanup(failed):
    for p in _producers:
        if failed:
            print("     " + p.status())
        p.abort()
    _producers.clear()
    for c in _clusters:
        if failed:
            for topic in getattr(c, "test_topics", []):
                print(views(c, topic))
            for i in c.ids:
                print("--- broker %d log (tail) ---\n%s" % (i, c.broker(i).read_log(4000)))
        c.stop()
    _clusters.clear()


# ---- helpers ---------------------------------------------------------------------------------

_names = iter(range(1, 1 << 30))


def topic_name(prefix):
    return "%s-%d-%d" % (prefix, os.getpid() % 1000, next(_names))


def addr(c, node_id):
    return ("127.0.0.1", c.broker(node_id).port)


def replicated():
    return O.rf > 1


def create_topic(c, name, assignment=None):
    """Creates the topic through the controller (RF O.rf, O.partitions partitions,
    min.insync.replicas O.min_isr) and waits until every live broker serves it, each
    partition led by a live broker, and its ISR is full."""
    via = c.controller_id() or c.live_ids()[0]
    spec = (name, O.partitions, O.rf, assignment, {"min.insync.replicas": str(O.min_isr)})
    c.test_topics = getattr(c, "test_topics", []) + [name]
    code, message = kr.create_topics(addr(c, via), [spec])[name]
    assert code == 0, "CreateTopics %s (RF %d, min.insync.replicas %d) through broker %d: error %d %s" % (
        name, O.rf, O.min_isr, via, code, message)
    wait_served(c, name)
    wait_isr_full(c, name, timeout=30)


def views(c, topic):
    """What ZooKeeper and every running broker's Metadata say of the topic: evidence."""
    lines = ["--- %s: leader/epoch/isr per partition ---" % topic]
    try:
        lines.append("  zookeeper: %s" % {p: (s["leader"], s["leader_epoch"], s["isr"]) if s else None
                                           for p, s in states(c, topic).items()})
    except Exception as e:
        lines.append("  zookeeper: %r" % e)
    for i in c.ids:
        if not c.broker(i).running() or c.broker(i).paused:
            lines.append("  broker %d: %s" % (i, "paused" if c.broker(i).paused else "down"))
            continue
        try:
            t = c.metadata(i, [topic], timeout=3)["topics"].get(topic)
            lines.append("  broker %d: %s" % (i, t and {p: (s["leader"], s["leader_epoch"], s["isr"]) if s["error"] == 0
                                                         else "error %d" % s["error"]
                                                         for p, s in sorted(t["partitions"].items())}))
        except Exception as e:
            lines.append("  broker %d: %r" % (i, e))
    return "\n".join(lines)


def assigned(c, topic):
    """{partition: [replicas]} from /brokers/topics/<t>."""
    node, _ = c.zk_json("/brokers/topics/" + topic)
    return {int(p): r for p, r in node["partitions"].items()}


def states(c, topic):
    return {p: c.partition_state(topic, p) for p in range(O.partitions)}


def wait_served(c, topic, timeout=30, exclude=()):
    """Every live broker's Metadata lists every partition with a live leader not in
    `exclude`, and agrees with ZooKeeper's state node on it. Returns {partition: leader}."""
    live = c.live_ids()

    def served():
        zk = states(c, topic)
        leaders = {}
        for p, s in zk.items():
            if s is None or s["leader"] not in live or s["leader"] in exclude:
                return None
            leaders[p] = s["leader"]
        for i in live:
            t = c.metadata(i, [topic])["topics"].get(topic)
            if t is None or t["error"] != 0 or len(t["partitions"]) != O.partitions:
                return None
            for p, s in t["partitions"].items():
                if s["error"] != 0 or s["leader"] != leaders[p]:
                    return None
        return leaders
    return c.wait_for(served, timeout, "partitions of %s led by live brokers%s on every broker"
                      % (topic, " other than %s" % list(exclude) if exclude else ""))


def wait_isr(c, topic, want, timeout, what):
    """Waits until want(partition, state, replicas) holds for every partition's ZooKeeper
    state; returns the states."""
    replicas = assigned(c, topic)

    def ok():
        zk = states(c, topic)
        if all(s is not None and want(p, s, replicas[p]) for p, s in zk.items()):
            return zk
        return None
    try:
        return c.wait_for(ok, timeout, what, interval=0.1)
    except TimeoutError as e:
        raise AssertionError("%s (ZooKeeper states: %s)" % (e, states(c, topic))) from None


def wait_isr_full(c, topic, timeout=60):
    return wait_isr(c, topic, lambda p, s, r: sorted(s["isr"]) == sorted(r) and s["leader"] in r,
                    timeout, "ISR of every partition of %s full again" % topic)


def wait_metadata_isr_full(c, topic, timeout=30):
    """Every live broker's Metadata lists RF replicas and an ISR of all of them per partition."""
    def full():
        for i in c.live_ids():
            t = c.metadata(i, [topic])["topics"][topic]
            for p, s in t["partitions"].items():
                if len(s["replicas"]) != O.rf or sorted(s["isr"]) != sorted(s["replicas"]):
                    return None
        return True
    c.wait_for(full, timeout, "every broker's Metadata: %d replicas and a full ISR per partition" % O.rf)


def summary(name, p, report, began, extra=""):
    if p.replacements:  # a client bug was worked around (checker.Producer._watchdog, _replace_after_fatal)
        extra = (extra + "; " if extra else "") + "producer client replaced (stuck partitions, " \
            "librdkafka#3399; or [] after its fatal #4438): %s, %d unacknowledged records purged" % (
                [(t, parts) for t, parts, _ in p.replacements], len(p.purged))
    print("     %s: %s errors=%s%s %.1fs" % (name, report.line(), p.error_summary(),
                                               " " + extra if extra else "", time.monotonic() - began),
          flush=True)


def finish(c, topic, p, name, began, bootstrap=None, extra=""):
    """Stops the producer (every record acked or failed), consumes everything, checks."""
    p.stop()
    if replicated() and len(c.running_ids()) > 1:
        digests = wait_replicas_identical(c, topic)
        extra = (extra + "; " if extra else "") + "replicas identical (%s bytes)" % "/".join(
            str(next(iter(v.values()))[0]) for _, v in sorted(digests.items()))
    consumed = consume_all(bootstrap or c.bootstrap, topic, O.partitions, min_end=p.ends(), timeout=120)
    report = check(p.acked, consumed, raise_on_failure=False)
    summary(name, p, report, began, extra)
    assert not p.failed, "%d records failed delivery (not acknowledged), e.g. %s" % (len(p.failed), p.failed[:5])
    check(p.acked, consumed)
    assert report["acked"] >= 1000, "only %d records acknowledged" % report["acked"]
    return report


def progress(p, what, count=200, timeout=60, partitions=None):
    """Acks resume: `count` more on every partition (default) within `timeout`."""
    try:
        return p.wait_progress(count, timeout, partitions=range(O.partitions) if partitions is None else partitions)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (what, e)) from None


def new_controller(c, old, timeout):
    return c.wait_for(lambda: (lambda n: n if n not in (None, old) else None)(c.controller_id()),
                      timeout, "a controller other than %s" % old)


def detection_timeout(session_ms=None):
    return (session_ms or O.session_ms) / 1000.0 + 20


# CLUSTER.md: a new leader serves within the session timeout plus one controller round.
# ZooKeeper expires sessions on 500 ms ticks; the rest is slack for a loaded 2-CPU machine.
FAILOVER_SLACK_S = 5.0


def assert_fast(took, what):
    bound = O.session_ms / 1000.0 + FAILOVER_SLACK_S
    assert took <= bound, "%s took %.1fs, more than the session timeout (%.1fs) + %.1fs" % (
        what, took, O.session_ms / 1000.0, FAILOVER_SLACK_S)


# ---- the cases -----------------------------------------------------------------------------------

def test_checker_selftest():
    checker_selftest()


def test_sanity_produce_consume_check():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("sanity")
    create_topic(c, topic)
    p = start_producer(c, topic, rate=5000, limit=5000)
    c.wait_for(lambda: p.acked_count() + len(p.failed) >= 5000, 120, "5000 records acknowledged",
               interval=0.2)
    report = finish(c, topic, p, "sanity", began)
    assert report["acked"] == 5000, report.line()
    wait_metadata_isr_full(c, topic)
    for i in c.ids:
        t = c.metadata(i, [topic])["topics"][topic]
        for part, s in sorted(t["partitions"].items()):
            assert len(s["replicas"]) == O.rf and sorted(s["isr"]) == sorted(s["replicas"]), \
                "broker %d, partition %d: replicas %s isr %s" % (i, part, s["replicas"], s["isr"])
    sizes = replica_log_sizes(c, topic)
    print("     log bytes per partition per broker: %s" % sizes)
    if replicated():
        for part, per_broker in sizes.items():
            assert len(set(per_broker.values())) == 1 and len(per_broker) == O.rf, \
                "partition %d: replicas hold different amounts of log: %s" % (part, per_broker)


def replica_digests(c, topic):
    """{partition: {broker: (bytes, sha256 prefix)}} of each running replica's log: its
    segment files (<data>/<topic>-<p>/<base offset>.log) concatenated in offset order, so
    the digest does not depend on where segments were rolled."""
    replicas = assigned(c, topic)
    out = {}
    for part in range(O.partitions):
        out[part] = {}
        for i in replicas[part]:
            if not c.broker(i).running():
                continue
            d = os.path.join(c.broker(i).data_dir, "%s-%d" % (topic, part))
            h, size = hashlib.sha256(), 0
            for f in sorted(f for f in os.listdir(d) if f.endswith(".log")) if os.path.isdir(d) else []:
                with open(os.path.join(d, f), "rb") as fh:
                    data = fh.read()
                h.update(data)
                size += len(data)
            out[part][i] = (size, h.hexdigest()[:12])
    return out


def wait_replicas_identical(c, topic, timeout=30):
    """Once the producer stopped: every running replica of every partition holds the same
    log bytes (followers caught up, nothing diverged, truncation done). Returns the digests."""
    last = {}

    def identical():
        last.clear()
        last.update(replica_digests(c, topic))
        return all(len(set(v.values())) == 1 for v in last.values())
    try:
        c.wait_for(identical, timeout, "replicas identical", interval=0.5)
    except TimeoutError:
        raise AssertionError("replicas of %s differ %ds after the producer stopped: %s"
                             % (topic, timeout, {p: v for p, v in last.items() if len(set(v.values())) > 1})) from None
    return last


def replica_log_sizes(c, topic):
    """{partition: {broker: bytes of *.log files in <data>/<topic>-<p>}} from the data dirs."""
    out = {}
    for part in range(O.partitions):
        out[part] = {}
        for i in c.ids:
            d = os.path.join(c.broker(i).data_dir, "%s-%d" % (topic, part))
            if os.path.isdir(d):
                out[part][i] = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log"))
    return out


class LeaderAnnouncements:
    """Whether a broker ever names a partition's leader before that leader leads: asks every
    live broker for the partition over and over, and whenever one names a leader epoch newer
    than any seen from the leader itself, asks the leader at once. A leader naming an older
    epoch then is a violation (a client told of it would be refused, NOT_LEADER_OR_FOLLOWER)."""

    def __init__(self, c, topic, partition=0):
        self.c, self.topic, self.partition = c, topic, partition
        self.announced = 0      # newer epochs seen from another broker, checked at the leader
        self.violations = []
        self._confirmed = {}    # leader -> the newest epoch it named itself
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-announcements", daemon=True)

    def _state(self, via):
        t = self.c.metadata(via, [self.topic], timeout=2)["topics"].get(self.topic)
        return None if t is None or t["error"] != 0 else t["partitions"].get(self.partition)

    def _run(self):
        while not self._stop.is_set():
            for b in self.c.live_ids():
                try:
                    s = self._state(b)
                    leader, epoch = (s["leader"], s["leader_epoch"]) if s else (-1, -1)
                    if leader < 0 or leader == b or epoch <= self._confirmed.get(leader, -1):
                        continue
                    own = self._state(leader)
                except Exception:  # a broker killed, starting or stopping
                    continue
                self.announced += 1
                if own is None or own["leader_epoch"] < epoch:  # (a newer epoch: it led, then moved on)
                    self.violations.append("broker %d named %d leader at epoch %d; %d itself said %s"
                                           % (b, leader, epoch, leader, own and (own["leader"], own["leader_epoch"])))
                else:
                    self._confirmed[leader] = own["leader_epoch"]
            time.sleep(0.001)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self


def test_hard_bounce_leader_5_times():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("hard-bounce")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    watch = LeaderAnnouncements(c, topic).start()
    rounds = []
    for n in range(5):
        before = c.partition_state(topic, 0)
        leader = before["leader"]
        t0 = time.monotonic()
        c.kill(leader)
        took = None
        if replicated():
            wait_served(c, topic, timeout=detection_timeout(), exclude=(leader,))
            took = time.monotonic() - t0
            assert_fast(took, "round %d: failover of partition 0 from killed leader %d" % (n + 1, leader))
            after = c.partition_state(topic, 0)
            assert after["leader_epoch"] > before["leader_epoch"] and after["leader"] in before["isr"], \
                "round %d: partition 0 state %s after its leader %d died (before: %s)" % (n + 1, after, leader, before)
            progress(p, "round %d: acks on partition 0 after broker %d (its leader) was killed" % (n + 1, leader),
                     count=50, partitions=[0])
        c.restart(leader)
        wait_isr_full(c, topic, timeout=60)
        rounds.append("%d:%s" % (leader, "%.1fs" % took if took is not None else "-"))
    progress(p, "after the last bounce")
    watch.stop()
    # The controller tells the brokers of a new leader only once it leads (controller.cc).
    assert not watch.violations, "%d of %d new leaders named before they led, e.g. %s" % (
        len(watch.violations), watch.announced, watch.violations[:3])
    finish(c, topic, p, "hard bounce x5", began, extra="killed(leader:failover)=%s; new leaders checked at once "
           "when named: %d" % (" ".join(rounds), watch.announced))


def test_clean_bounce_every_broker():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("clean-bounce")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    notes = []
    for i in c.ids:
        code = c.stop_broker(i)
        assert code == 0, "broker %d exited with %d on SIGTERM" % (i, code)
        if replicated():
            # Controlled shutdown moves leadership before the broker exits: at once, ZooKeeper's
            # state names other leaders.
            t0 = time.monotonic()
            wait_isr(c, topic, lambda _p, s, _r: s["leader"] != i and i not in s["isr"], 3,
                     "broker %d (stopped cleanly) neither leader nor in the ISR of any partition" % i)
            notes.append("%d:%.1fs" % (i, time.monotonic() - t0))
            progress(p, "acks while broker %d is stopped" % i, count=50)
        c.restart(i)
        wait_isr_full(c, topic, timeout=60)
    progress(p, "after the rolling restart")
    finish(c, topic, p, "clean bounce", began,
           extra="leadership gone after exit=%s" % " ".join(notes) if notes else "")


def test_controller_killed_and_restarted():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("ctrl-kill")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    old = c.controller_id()
    led = [q for q, s in states(c, topic).items() if s["leader"] == old]
    t0 = time.monotonic()
    c.kill(old)
    new = new_controller(c, old, detection_timeout())
    took = time.monotonic() - t0
    if replicated():
        wait_served(c, topic, timeout=detection_timeout(), exclude=(old,))
        progress(p, "acks with controller %d killed" % old)
    c.restart(old)
    wait_isr_full(c, topic, timeout=60)
    progress(p, "after the old controller returned")
    finish(c, topic, p, "controller kill", began,
           extra="controller %d->%d in %.1fs, it led partitions %s" % (old, new, took, led))


def test_follower_paused_leaves_isr_and_rejoins():
    lag_ms = 3000
    # The pause must not expire the follower's session, so that the leader's lag rule acts:
    # the session is as long as the harness' ZooKeeper allows (maxSessionTimeout = 20 ticks
    # of 500 ms), and the ISR must shrink well before it ends. Kafka checks the lag every
    # replica_lag_time_max_ms / 2: out after at most 1.5 x the lag plus a controller round.
    session_ms = 10000
    shrink_within = lag_ms / 1000.0 * 1.5 + 3.5
    began = time.monotonic()
    # (unreplicated, the lag rule has nothing to act on: the key is left out)
    c = start_cluster(extra_config="replica_lag_time_max_ms = %d\n" % lag_ms if replicated() else "",
                      session_ms=session_ms)
    controller = c.controller_id()
    follower = max(i for i in c.ids if i != controller)
    others = [i for i in c.ids if i != follower]
    # The follower leads nothing, so writes go on while it is paused.
    if replicated():
        assignment = {q: [others[q % 2], others[(q + 1) % 2], follower][:O.rf] for q in range(O.partitions)}
    else:
        assignment = {q: [others[q % 2]] for q in range(O.partitions)}
    topic = topic_name("pause")
    create_topic(c, topic, assignment)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    session = c.registration_owner(follower)
    t0 = time.monotonic()
    c.pause(follower)
    shrink = rejoin = None
    try:
        if replicated():
            wait_isr(c, topic, lambda _p, s, _r: follower not in s["isr"], shrink_within,
                     "paused follower %d out of every ISR (replica_lag_time_max_ms %d, session %d ms)"
                     % (follower, lag_ms, session_ms))
            shrink = time.monotonic() - t0
            assert c.registration_owner(follower) == session, \
                "broker %d's session expired during the pause: the test meant the lag rule to act" % follower
            progress(p, "acks while follower %d is paused" % follower, count=100, timeout=3)
        else:
            time.sleep(lag_ms / 1000.0 + 2)
    finally:
        paused_for = time.monotonic() - t0
        c.resume(follower)
    t1 = time.monotonic()
    if replicated():
        wait_isr(c, topic, lambda _p, s, r: sorted(s["isr"]) == sorted(r), 60,
                 "resumed follower %d back in every ISR" % follower)
        rejoin = time.monotonic() - t1
    progress(p, "after the follower resumed")
    finish(c, topic, p, "follower paused", began,
           extra="follower %d paused %.1fs, left ISR after %s, rejoined after %s" % (
               follower, paused_for, "%.1fs" % shrink if shrink else "-", "%.1fs" % rejoin if rejoin else "-"))


def test_two_of_three_down_not_enough_replicas_then_recovery():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("two-down")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    survivor = c.controller_id()
    victims = [i for i in c.ids if i != survivor]
    for v in victims:
        c.kill(v)
    t0 = time.monotonic()
    notes = []
    if replicated():
        wait_isr(c, topic, lambda _p, s, _r: s["leader"] == survivor and s["isr"] == [survivor],
                 detection_timeout(), "every partition led by survivor %d with ISR [%d]" % (survivor, survivor))
        shrunk = time.monotonic()
        notes.append("ISR [%d] after %.1fs" % (survivor, shrunk - t0))
        # The survivor itself knows the ISR is [survivor] (LeaderAndIsr follows the znode).
        c.wait_for(lambda: all(s["isr"] == [survivor] for s in
                               c.metadata(survivor, [topic])["topics"][topic]["partitions"].values()),
                   10, "broker %d's Metadata: ISR [%d] everywhere" % (survivor, survivor))
        # A raw acks=all produce is refused with NOT_ENOUGH_REPLICAS, nothing written. (Answers
        # given while the leader still learns the ISR, e.g. NOT_ENOUGH_REPLICAS_AFTER_APPEND
        # or REQUEST_TIMED_OUT, are retried for a few seconds.)
        raw = []
        for q in range(O.partitions):
            deadline = time.monotonic() + 10
            while True:
                code, offset = kr.produce(addr(c, survivor), topic, q, [b"raw-acks-all"], acks=-1)
                raw.append((q, code))
                if code == NOT_ENOUGH_REPLICAS or code == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert code == NOT_ENOUGH_REPLICAS, \
                "raw acks=all produce to partition %d on broker %d (ISR [%d], min.insync.replicas %d): " \
                "error %d offset %d, expected NOT_ENOUGH_REPLICAS (19); answers %s" % (
                    q, survivor, survivor, O.min_isr, code, offset, raw)
        notes.append("raw acks=all answers %s" % sorted({code for _, code in raw}))
        # A short-lived idempotent producer gets nothing acknowledged.
        short = Producer(c.broker(survivor).bootstrap, topic, O.partitions, rate=100, limit=O.partitions,
                         message_timeout_ms=5000)
        short.start()
        time.sleep(1)
        short.stop(flush_timeout=30)
        assert not short.acked, "acknowledged with 1 of 3 replicas in the ISR: %s" % short.acked
        assert len(short.failed) == O.partitions, short.failed
        names = {f[2] for f in short.failed}
        seen = short.error_summary()
        notes.append("short producer: delivery %s, seen %s" % (sorted(names), seen))
        assert names <= {"NOT_ENOUGH_REPLICAS", "_MSG_TIMED_OUT"}, \
            "delivery errors %s, expected NOT_ENOUGH_REPLICAS or a timeout" % names
        assert "NOT_ENOUGH_REPLICAS" in names or seen.get("retry:NOT_ENOUGH_REPLICAS"), \
            "the short-lived producer never saw NOT_ENOUGH_REPLICAS: %s %s" % (names, seen)
        time.sleep(2)
        grace = 1.0  # acks already on their way when the ISR shrank
        late = p.acked_between(shrunk + grace, time.monotonic())
        assert not late, "%d records acknowledged with ISR [%d] < min.insync.replicas %d, e.g. %s" % (
            len(late), survivor, O.min_isr, late[:3])
    else:
        time.sleep(3)
    t1 = time.monotonic()
    for v in victims:
        c.restart(v)
    wait_isr_full(c, topic, timeout=60)
    took = progress(p, "after both brokers returned")
    notes.append("writes resumed %.1fs after the restarts began" % (time.monotonic() - t1))
    del took
    finish(c, topic, p, "two of three down", began, extra="; ".join(notes))


def test_leader_and_controller_killed_together():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("leader-ctrl")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    controller = c.controller_id()
    st = states(c, topic)
    part = next((q for q, s in sorted(st.items()) if s["leader"] != controller), 0)
    leader = st[part]["leader"]
    victims = sorted({controller, leader})
    for v in victims:
        c.kill(v)
    t0 = time.monotonic()
    new = new_controller(c, controller, detection_timeout())
    took = time.monotonic() - t0
    if replicated():
        wait_served(c, topic, timeout=detection_timeout(), exclude=victims)
    if replicated() and len(victims) < 2:
        progress(p, "acks with the controller (and leader) %s killed" % victims)
    time.sleep(1)
    for v in victims:
        c.restart(v)
    wait_isr_full(c, topic, timeout=60)
    progress(p, "after the leader and the controller returned")
    finish(c, topic, p, "leader+controller kill", began,
           extra="killed %s (controller %d, leader of partition %d %d), new controller %d after %.1fs"
                 % (victims, controller, part, leader, new, took))


def test_paused_leader_loses_its_session_and_is_fenced():
    """SIGSTOP of a leader beyond the session timeout: the controller elects another ISR
    member (epoch + 1); the resumed old leader must not acknowledge anything as leader
    (its followers left, its AlterPartition carries a stale epoch) and becomes a follower,
    truncating what it alone appended."""
    if not replicated():
        raise Skip("needs replicas (--rf > 1)")
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("zombie")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    controller = c.controller_id()
    st = states(c, topic)
    part = next((q for q, s in sorted(st.items()) if s["leader"] != controller), 0)
    before = st[part]
    leader = before["leader"]
    t0 = time.monotonic()
    c.pause(leader)
    try:
        new = wait_isr(c, topic, lambda q, s, _r: q != part or (s["leader"] not in (leader, -1)),
                       detection_timeout(), "partition %d led by another broker than paused %d" % (part, leader))[part]
        took = time.monotonic() - t0
        assert new["leader_epoch"] > before["leader_epoch"] and new["leader"] in before["isr"], (before, new)
        assert_fast(took, "failover from paused leader %d" % leader)
        progress(p, "acks on partition %d with its old leader %d paused" % (part, leader), count=50, partitions=[part])
        time.sleep(1)
    finally:
        c.resume(leader)
    c.wait_ready(detection_timeout())
    wait_isr_full(c, topic, timeout=60)
    progress(p, "after the old leader resumed")
    finish(c, topic, p, "paused leader fenced", began,
           extra="leader %d of partition %d paused %.1fs; broker %d leads after %.1fs (epoch %d -> %d)" % (
               leader, part, time.monotonic() - t0, new["leader"], took, before["leader_epoch"], new["leader_epoch"]))


def test_no_unclean_election_while_the_last_isr_member_is_down():
    """The two followers die, the ISR shrinks to the leader; the leader dies; the followers
    return: no live ISR member, so the partitions stay offline (no unclean election, the
    default) until the last ISR member returns; then everything acknowledged is there."""
    if not replicated():
        raise Skip("needs replicas (--rf > 1)")
    began = time.monotonic()
    c = start_cluster()
    controller = c.controller_id()
    last = next(i for i in c.ids if i != controller)
    others = [i for i in c.ids if i != last]
    # `last` is every partition's preferred leader, so it leads them all.
    assignment = {q: [last] + [others[(q + k) % 2] for k in range(2)][:O.rf - 1] for q in range(O.partitions)}
    topic = topic_name("unclean")
    create_topic(c, topic, assignment)
    p = start_producer(c, topic)
    progress(p, "before any fault")
    for i in others:
        c.kill(i)
    wait_isr(c, topic, lambda _p, s, _r: s["leader"] == last and s["isr"] == [last], detection_timeout(),
             "every partition led by %d with ISR [%d]" % (last, last))
    time.sleep(1)
    c.kill(last)
    for i in others:
        c.restart(i, wait=False)
    c.wait_for(lambda: c.registered_ids() == sorted(others) and c.controller_id() in others,
               detection_timeout(), "brokers %s registered, %d gone, a controller among them" % (others, last))
    c.wait_ready(detection_timeout())
    time.sleep(3)  # time for a wrong (unclean) election to happen
    for q, s in states(c, topic).items():
        assert s["leader"] == -1, "partition %d: leader %d elected without being in the ISR %s " \
            "(unclean election; the last ISR member %d is down): %s" % (q, s["leader"], s["isr"], last, s)
    for i in others:
        t = c.metadata(i, [topic])["topics"][topic]
        for q, s in t["partitions"].items():
            assert s["leader"] == -1 and s["error"] == kr.LEADER_NOT_AVAILABLE, \
                "broker %d's Metadata, partition %d: %s (expected no leader, LEADER_NOT_AVAILABLE)" % (i, q, s)
    offline_acks = p.acked_count()
    t1 = time.monotonic()
    c.restart(last)
    wait_served(c, topic, timeout=detection_timeout())
    wait_isr_full(c, topic, timeout=60)
    progress(p, "after the last ISR member %d returned" % last)
    finish(c, topic, p, "no unclean election", began,
           extra="offline while %d was down; %d acked before, served again %.1fs after its restart" % (
               last, offline_acks, time.monotonic() - t1))


def test_wiped_broker_rereplicates_and_serves_alone():
    if not replicated():
        raise Skip("needs replicas (--rf > 1): a wiped unreplicated broker loses its partitions")
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("wipe")
    create_topic(c, topic)
    p = start_producer(c, topic)
    progress(p, "before any fault", count=2000)  # some data to re-replicate
    controller = c.controller_id()
    wiped = max(i for i in c.ids if i != controller)
    code = c.stop_broker(wiped)
    assert code == 0, "broker %d exited with %d on SIGTERM" % (wiped, code)
    wait_isr(c, topic, lambda _p, s, _r: wiped not in s["isr"], 5,
             "broker %d (stopped cleanly) out of every ISR" % wiped)
    progress(p, "acks while broker %d is stopped" % wiped, count=500)
    c.wipe(wiped)
    t0 = time.monotonic()
    c.restart(wiped)
    wait_isr(c, topic, lambda _p, s, r: wiped in s["isr"], 120,
             "wiped broker %d back in every ISR" % wiped)
    caught_up = time.monotonic() - t0
    progress(p, "after broker %d rejoined" % wiped)
    p.stop()
    sizes = wait_replicas_identical(c, topic)
    others = [i for i in c.ids if i != wiped]
    for i in others:  # clean stops: controlled shutdown hands leadership to the wiped broker
        code = c.stop_broker(i)
        assert code == 0, "broker %d exited with %d on SIGTERM" % (i, code)
    wait_served(c, topic, timeout=detection_timeout())
    led = {q: s["leader"] for q, s in states(c, topic).items()}
    assert all(v == wiped for v in led.values()), "leaders %s, expected broker %d everywhere" % (led, wiped)
    finish(c, topic, p, "wiped broker", began, bootstrap=c.broker(wiped).bootstrap,
           extra="broker %d back in the ISR %.1fs after restart; log bytes %s" % (wiped, caught_up, sizes))


# ---- runner ---------------------------------------------------------------------------

TESTS = [
    test_checker_selftest,
    test_sanity_produce_consume_check,
    test_hard_bounce_leader_5_times,
    test_clean_bounce_every_broker,
    test_controller_killed_and_restarted,
    test_follower_paused_leaves_isr_and_rejoins,
    test_two_of_three_down_not_enough_replicas_then_recovery,
    test_leader_and_controller_killed_together,
    test_wiped_broker_rereplicates_and_serves_alone,
    test_paused_leader_loses_its_session_and_is_fenced,
    test_no_unclean_election_while_the_last_isr_member_is_down,
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run the tests whose name contains one of these")
    parser.add_argument("--rf", type=int, default=O.rf)
    parser.add_argument("--min-isr", type=int, default=O.min_isr)
    parser.add_argument("--partitions", type=int, default=O.partitions)
    parser.add_argument("--rate", type=int, default=O.rate)
    parser.add_argument("--session-timeout-ms", type=int, default=O.session_ms)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    O.rf, O.min_isr, O.partitions, O.rate, O.session_ms = (
        args.rf, args.min_isr, args.partitions, args.rate, args.session_timeout_ms)
    names = list(args.names)
    if os.environ.get("ONLY"):
        names.append(os.environ["ONLY"])
    selected = [t for t in TESTS if not names or any(n in t.__name__ for n in names)]
    if args.list:
        print("\n".join(t.__name__ for t in selected))
        return 0
    install_sigterm_handler()
    print("replication suite: RF %d, min.insync.replicas %d, %d partitions, %d records/s, binary %s"
          % (O.rf, O.min_isr, O.partitions, O.rate, os.environ.get("SPATE_BIN", "build/broker/spate")),
          flush=True)
    return cluster_module.run_suite(selected, cleanup)


if __name__ == "__main__":
    sys.exit(main())
