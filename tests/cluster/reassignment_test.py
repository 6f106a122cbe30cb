"""The reassignment suite (KIP-455 in ZooKeeper mode): 4 spate brokers on a real
ZooKeeper; partitions move between brokers through AlterPartitionReassignments (45),
through /admin/reassign_partitions (Kafka's ZooKeeper tool's node, written here with
kazoo), are cancelled, and survive a controller killed mid-move. An idempotent acks=all
producer (checker.Producer) runs during the moves; at the end everything is consumed and
checker.check() demands that nothing acknowledged is lost, reordered or duplicated.

    /usr/bin/python3 tests/cluster/reassignment_test.py [names...] [--list]

names are substrings of the test names (ONLY=substring works too). Each case starts a
cluster of its own and prints "ok"/"FAIL"; on failure the tail of every broker's log.
SPATE_KEEP_CLUSTER_DIR=1 keeps the cluster directories.
"""
import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as cluster_module  # noqa: E402
import kafka_raw as kr  # noqa: E402
from checker import Producer, check, consume_all  # noqa: E402
from cluster import Cluster, install_sigterm_handler  # noqa: E402

NOT_CONTROLLER = 41
INVALID_REPLICA_ASSIGNMENT = 39
NO_REASSIGNMENT_IN_PROGRESS = 85

PARTITIONS = 2
RATE = 500


# ---- AlterPartitionReassignments (45) and ListPartitionReassignments (46), v0 (flexible) ----

def _compact_int32s(values):
    """A compact nullable []int32: None is null (0)."""
    if values is None:
        return b"\x00"
    return kr.uvarint(len(values) + 1) + b"".join(struct.pack(">i", v) for v in values)


def _compact_array(items, encode):
    return kr.uvarint(len(items) + 1) + b"".join(encode(item) for item in items)


def _by_topic(keys):
    topics = {}
    for (topic, partition) in sorted(keys):
        topics.setdefault(topic, []).append(partition)
    return sorted(topics.items())


def alter_partition_reassignments(address, moves, timeout_ms=30000):
    """moves: {(topic, partition): [brokers] or None (cancel)}. Returns (error_code,
    error_message, {(topic, partition): (error_code, error_message)})."""
    def topic(entry):
        name, partitions = entry
        return kr.cstring(name) + _compact_array(
            partitions, lambda p: struct.pack(">i", p) + _compact_int32s(moves[(name, p)]) + b"\x00") + b"\x00"
    body = struct.pack(">i", timeout_ms) + _compact_array(_by_topic(moves), topic) + b"\x00"
    r = kr.call(address, 45, 0, body, flexible=True, timeout=timeout_ms / 1000 + 10)
    r.int32()  # throttle
    code, message = r.int16(), r.cstring()
    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.cstring()
        for _ in range(r.uvarint() - 1):
            index = r.int32()
            out[(name, index)] = (r.int16(), r.cstring())
            r.tags()
        r.tags()
    r.tags()
    return code, message, out


def list_partition_reassignments(address, partitions=None, timeout_ms=30000):
    """partitions: [(topic, partition)] or None for all. Returns (error_code, {(topic,
    partition): {"replicas", "adding", "removing"}})."""
    if partitions is None:
        topics = b"\x00"
    else:
        topics = _compact_array(_by_topic(partitions),
                                lambda t: kr.cstring(t[0]) + _compact_int32s(t[1]) + b"\x00")
    body = struct.pack(">i", timeout_ms) + topics + b"\x00"
    r = kr.call(address, 46, 0, body, flexible=True, timeout=timeout_ms / 1000 + 10)
    r.int32()
    code = r.int16()
    r.cstring()
    out = {}
    for _ in range(r.uvarint() - 1):
        name = r.cstring()
        for _ in range(r.uvarint() - 1):
            index = r.int32()
            out[(name, index)] = {"replicas": r.compact_int32s(), "adding": r.compact_int32s(),
                                  "removing": r.compact_int32s()}
            r.tags()
        r.tags()
    r.tags()
    return code, out


# ---- what a case starts; main() stops it, printing logs first when the case failed ----------

_clusters = []
_producers = []


def start_cluster(session_ms=5000):
    c = Cluster(brokers=4, zk_nodes=1, session_timeout_ms=session_ms, shards=2)
    _clusters.append(c)
    return c.start()


def start_producer(c, topic, **kwargs):
    kwargs.setdefault("rate", RATE)
    p = Producer(c.bootstrap, topic, PARTITIONS, **kwargs).start()
    _producers.append(p)
    return p


def cleanup(failed):
    for p in _producers:
        if failed:
            print("     " + p.status())
        try:
            p.abort()
        except Exception:
            pass
    _producers.clear()
    for c in _clusters:
        if failed:
            for topic in getattr(c, "test_topics", []):
                try:
                    print("--- %s: assignment %s states %s" % (topic, c.zk_json("/brokers/topics/" + topic)[0],
                                                              states(c, topic)))
                except Exception as e:
                    print("--- %s: %r" % (topic, e))
            for i in c.ids:
                print("--- broker %d log (tail) ---\n%s" % (i, c.broker(i).read_log(5000)))
        c.stop()
    _clusters.clear()


# ---- helpers ---------------------------------------------------------------------------------

_names = iter(range(1, 1 << 30))


def topic_name(prefix):
    return "%s-%d-%d" % (prefix, os.getpid() % 1000, next(_names))


def addr(c, node_id):
    return ("127.0.0.1", c.broker(node_id).port)


def controller_addr(c):
    return addr(c, c.wait_for(c.controller_id, 30, "a controller"))


def create_topic(c, name, replicas):
    """Every partition on `replicas` (RF len(replicas), min.insync.replicas 1), created
    through the controller; waits until every partition is led and its ISR full."""
    c.test_topics = getattr(c, "test_topics", []) + [name]
    spec = (name, PARTITIONS, len(replicas), {p: list(replicas) for p in range(PARTITIONS)},
            {"min.insync.replicas": "1"})
    code, message = kr.create_topics(controller_addr(c), [spec])[name]
    assert code == 0, "CreateTopics %s on %s: error %d %s" % (name, replicas, code, message)
    c.wait_for(lambda: all(s is not None and sorted(s["isr"]) == sorted(replicas)
                           for s in states(c, name).values()),
               30, "%s led with a full ISR %s" % (name, replicas))


def states(c, topic):
    return {p: c.partition_state(topic, p) for p in range(PARTITIONS)}


def topic_node(c, topic):
    node, _ = c.zk_json("/brokers/topics/" + topic)
    return node


def assignment(c, topic):
    return {int(p): r for p, r in topic_node(c, topic)["partitions"].items()}


def partition_dir(c, node_id, topic, partition):
    return os.path.join(c.broker(node_id).data_dir, "%s-%d" % (topic, partition))


def wait_moved(c, topic, target, timeout=60):
    """The reassignment of every partition to `target` finished: the topic znode lists
    `target` and nothing being added or removed, each state's leader and ISR are within
    it (ISR full), and every live broker's Metadata lists `target` as the replicas."""
    def done():
        node = topic_node(c, topic)
        if node.get("adding_replicas") or node.get("removing_replicas"):
            return None
        if any(node["partitions"][str(p)] != target for p in range(PARTITIONS)):
            return None
        for p, s in states(c, topic).items():
            if s["leader"] not in target or sorted(s["isr"]) != sorted(target):
                return None
        for i in c.live_ids():
            t = c.metadata(i, [topic])["topics"][topic]
            for p, s in t["partitions"].items():
                if s["replicas"] != target or s["leader"] not in target:
                    return None
        return True
    c.wait_for(done, timeout, "%s moved to %s" % (topic, target), interval=0.2)


def wait_dirs_gone(c, topic, brokers, timeout=30):
    c.wait_for(lambda: not any(os.path.isdir(partition_dir(c, i, topic, p))
                               for i in brokers for p in range(PARTITIONS)),
               timeout, "%s's partition directories gone from brokers %s" % (topic, brokers))


def finish(c, topic, p, name, began, minimum=500):
    p.stop()
    consumed = consume_all(c.bootstrap, topic, PARTITIONS, min_end=p.ends(), timeout=120)
    report = check(p.acked, consumed, raise_on_failure=False)
    print("     %s: %s errors=%s %.1fs" % (name, report.line(), p.error_summary(), time.monotonic() - began),
          flush=True)
    assert not p.failed, "%d records failed delivery, e.g. %s" % (len(p.failed), p.failed[:5])
    check(p.acked, consumed)
    assert report["acked"] >= minimum, "only %d records acknowledged" % report["acked"]


def spatectl(c, *args):
    """Runs spatectl (beside SPATE_BIN) against the live brokers; returns its stdout."""
    binary = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        os.environ.get("SPATE_BIN", "build/broker/spate")))), "tools", "spatectl")
    done = subprocess.run([binary, "--bootstrap-server", c.bootstrap] + list(args),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, "spatectl %s: exit %d: %s" % (" ".join(args), done.returncode, done.stderr)
    return done.stdout


def all_partitions(topic, target):
    return {(topic, p): target for p in range(PARTITIONS)}


# ---- the cases -----------------------------------------------------------------------------------

def test_reassign_under_load_through_the_api():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("move")
    create_topic(c, topic, [1, 2])
    p = start_producer(c, topic)
    p.wait_progress(300, 60, partitions=range(PARTITIONS))
    controller = c.controller_id()
    # A broker that is not the controller refuses.
    other = next(i for i in c.ids if i != controller)
    code, _, _ = alter_partition_reassignments(addr(c, other), all_partitions(topic, [3, 4]))
    assert code == NOT_CONTROLLER, "AlterPartitionReassignments to broker %d (not the controller): %d" % (other, code)
    code, _ = list_partition_reassignments(addr(c, other))
    assert code == NOT_CONTROLLER, "ListPartitionReassignments to broker %d: %d" % (other, code)
    # Invalid targets are refused per partition.
    code, _, bad = alter_partition_reassignments(addr(c, controller), {(topic, 0): [3, 3], (topic, 1): [3, 9]})
    assert code == 0 and bad[(topic, 0)][0] == INVALID_REPLICA_ASSIGNMENT \
        and bad[(topic, 1)][0] == INVALID_REPLICA_ASSIGNMENT, bad
    code, _, bad = alter_partition_reassignments(addr(c, controller), {(topic, 0): None})
    assert bad[(topic, 0)][0] == NO_REASSIGNMENT_IN_PROGRESS, bad
    # The move.
    code, message, results = alter_partition_reassignments(addr(c, controller), all_partitions(topic, [3, 4]))
    assert code == 0 and all(r[0] == 0 for r in results.values()), (code, message, results)
    code, ongoing = list_partition_reassignments(addr(c, controller))
    assert code == 0, code
    for q in range(PARTITIONS):
        listed = ongoing.get((topic, q))
        # In progress (replicas [3,4,1,2], adding [3,4], removing [1,2]) or already done.
        assert listed is None or (listed["replicas"] == [3, 4, 1, 2] and listed["adding"] == [3, 4]
                                  and listed["removing"] == [1, 2]), ongoing
        if listed is None:
            assert assignment(c, topic)[q] == [3, 4], (ongoing, assignment(c, topic))
    print("     listed right after the request: %s" % ongoing)
    wait_moved(c, topic, [3, 4])
    code, ongoing = list_partition_reassignments(addr(c, controller), [(topic, q) for q in range(PARTITIONS)])
    assert code == 0 and not ongoing, ongoing
    wait_dirs_gone(c, topic, [1, 2])
    p.wait_progress(300, 60, partitions=range(PARTITIONS))
    finish(c, topic, p, "move [1,2] -> [3,4] under load", began)


def test_reassign_through_zookeeper_node():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("zk-move")
    create_topic(c, topic, [1, 2])
    p = start_producer(c, topic)
    p.wait_progress(200, 60, partitions=range(PARTITIONS))
    # What Kafka 2.8's kafka-reassign-partitions.sh --zookeeper writes.
    request = {"version": 1, "partitions": [{"topic": topic, "partition": q, "replicas": [2, 3]}
                                            for q in range(PARTITIONS)]}
    c.kazoo.create("/admin/reassign_partitions", json.dumps(request).encode())
    c.wait_for(lambda: c.kazoo.exists("/admin/reassign_partitions") is None, 30,
               "/admin/reassign_partitions taken and deleted by the controller")
    wait_moved(c, topic, [2, 3])
    wait_dirs_gone(c, topic, [1])
    p.wait_progress(200, 60, partitions=range(PARTITIONS))
    finish(c, topic, p, "move [1,2] -> [2,3] via ZooKeeper", began)


def test_cancel():
    began = time.monotonic()
    c = start_cluster()
    topic = topic_name("cancel")
    create_topic(c, topic, [1, 2])
    p = start_producer(c, topic)
    p.wait_progress(200, 60, partitions=range(PARTITIONS))
    controller_id = c.controller_id()
    controller = addr(c, controller_id)
    # The new replica d (not the controller) is paused, still registered, so the move
    # cannot finish; the cancel comes well within the controller's request timeout, so d
    # takes both requests (follow, then stop and delete) on resuming.
    d = next(i for i in (4, 3) if i != controller_id)
    c.pause(d)
    try:
        # Partition 0 through spatectl (found beside the broker), partition 1 by hand.
        out = spatectl(c, "topics", "reassign", topic, "0", "1,%d" % d)
        assert "started" in out, out
        code, message, results = alter_partition_reassignments(controller, {(topic, 1): [1, d]})
        assert code == 0 and all(r[0] == 0 for r in results.values()), (code, message, results)
        code, ongoing = list_partition_reassignments(controller, [(topic, 0)])
        assert ongoing == {(topic, 0): {"replicas": [1, d, 2], "adding": [d], "removing": [2]}}, ongoing
        listed = spatectl(c, "topics", "reassignments")
        assert "%s-1\treplicas [1,%d,2]\tadding [%d]\tremoving [2]" % (topic, d, d) in listed, listed
        out = spatectl(c, "topics", "reassign", topic, "0", "cancel")
        assert "cancelled" in out, out
        code, message, results = alter_partition_reassignments(controller, {(topic, 1): None})
        assert code == 0 and all(r[0] == 0 for r in results.values()), (code, message, results)
        code, ongoing = list_partition_reassignments(controller)
        assert code == 0 and not ongoing, ongoing
        assert spatectl(c, "topics", "reassignments") == ""
    finally:
        c.resume(d)
    wait_moved(c, topic, [1, 2])
    wait_dirs_gone(c, topic, [d])
    p.wait_progress(200, 60, partitions=range(PARTITIONS))
    finish(c, topic, p, "cancelled move", began)


def test_controller_killed_mid_reassignment():
    began = time.monotonic()
    c = start_cluster()
    controller = c.controller_id()
    a, b, d = [i for i in c.ids if i != controller]
    topic = topic_name("ctrl-kill")
    create_topic(c, topic, [a, b])
    p = start_producer(c, topic)
    p.wait_progress(200, 60, partitions=range(PARTITIONS))
    # The new replica d is paused, so the move is still in progress when the controller
    # dies; the leader a is removed, so the new controller also hands leadership over.
    c.pause(d)
    try:
        code, message, results = alter_partition_reassignments(addr(c, controller),
                                                               all_partitions(topic, [b, d]))
        assert code == 0 and all(r[0] == 0 for r in results.values()), (code, message, results)
        node = topic_node(c, topic)
        assert node["adding_replicas"] == {str(q): [d] for q in range(PARTITIONS)}, node
        assert node["removing_replicas"] == {str(q): [a] for q in range(PARTITIONS)}, node
        c.kill(controller)
    finally:
        c.resume(d)
    new = c.wait_for(lambda: (lambda n: n if n not in (None, controller) else None)(c.controller_id()),
                     30, "a controller other than %d" % controller)
    code, ongoing = c.wait_for(lambda: (lambda r: r if r[0] == 0 else None)(
        list_partition_reassignments(addr(c, new))), 30, "the new controller answers")
    print("     new controller %d lists: %s" % (new, ongoing))
    wait_moved(c, topic, [b, d])
    wait_dirs_gone(c, topic, [a])
    p.wait_progress(200, 60, partitions=range(PARTITIONS))
    finish(c, topic, p, "controller %d killed mid-move, %d finished it" % (controller, new), began)
    c.restart(controller)


def test_single_node_answers():
    """A single node (no ZooKeeper) has no other broker: it answers every partition with
    the error Kafka gives for an impossible move, and never closes the connection. The
    fuzz corpus' requests for both APIs are answered too."""
    from harness import Broker
    b = Broker(shards=2).start()
    try:
        address = ("127.0.0.1", b.port)
        node = next(iter(kr.metadata_request(address, [])["brokers"]))
        topic = topic_name("single")
        assert kr.create_topics(address, [(topic, 1, 1)])[topic][0] == 0
        code, _, out = alter_partition_reassignments(address, {(topic, 0): [node + 1]})
        assert code == 0 and out[(topic, 0)][0] == INVALID_REPLICA_ASSIGNMENT and out[(topic, 0)][1], out
        code, _, out = alter_partition_reassignments(address, {(topic, 0): None, ("absent", 0): [node]})
        assert out == {(topic, 0): (NO_REASSIGNMENT_IN_PROGRESS, out[(topic, 0)][1]),
                       ("absent", 0): (kr.UNKNOWN_TOPIC_OR_PARTITION, out[("absent", 0)][1])}, out
        code, _, out = alter_partition_reassignments(address, {(topic, 0): [node]})
        assert out[(topic, 0)][0] == 0, out  # already there: nothing to move
        assert list_partition_reassignments(address) == (0, {})
        corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "request_corpus")
        for name in sorted(os.listdir(corpus)):
            if "reassignments" not in name:
                continue
            with open(os.path.join(corpus, name), "rb") as f:
                frame = f.read()
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(struct.pack(">i", len(frame)) + frame)
                size = struct.unpack(">i", kr._recv_exact(sock, 4))[0]
                assert size > 4, (name, size)
                kr._recv_exact(sock, size)
    finally:
        b.stop()
        shutil.rmtree(b.data_dir, ignore_errors=True)
        if os.path.exists(b.log_path):
            os.remove(b.log_path)


# ---- runner ---------------------------------------------------------------------------

TESTS = [
    test_reassign_under_load_through_the_api,
    test_reassign_through_zookeeper_node,
    test_cancel,
    test_controller_killed_mid_reassignment,
    test_single_node_answers,
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run the tests whose name contains one of these")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    names = list(args.names)
    if os.environ.get("ONLY"):
        names.append(os.environ["ONLY"])
    selected = [t for t in TESTS if not names or any(n in t.__name__ for n in names)]
    if args.list:
        print("\n".join(t.__name__ for t in selected))
        return 0
    install_sigterm_handler()
    return cluster_module.run_suite(selected, cleanup)


if __name__ == "__main__":
    sys.exit(main())
