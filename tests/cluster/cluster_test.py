"""The cluster test suite: spate brokers on a real ZooKeeper, driven by real clients
(kcat, confluent-kafka-python, Kafka 1.0.2's ZooKeeper-mode kafka-topics.sh) and by
requests sent by hand to a chosen broker (kafka_raw.py), checked against ZooKeeper
(kazoo) and CLUSTER.md's znode table.

Most cases share one 3-broker cluster on a standalone ZooKeeper (session timeout 5 s),
in order: the failure cases (kill -9, controller kill, SIGSTOP, duplicate id, clean
stops) come last and leave it whole again (shared() restarts whatever a failed case left
down). The last two cases share a second cluster on a 3-node ZooKeeper ensemble.

Prints one line per case (ok / FAIL / skip) and ends with "N passed, N failed" (skips
listed); exits 1 on any failure. ONLY=substring runs the matching cases alone (they
start the shared cluster themselves). A case failing because of a broker bug carries
@broker_bug("...") and says so in its FAIL line.
"""
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as cluster_module  # noqa: E402
import kafka_raw as kr  # noqa: E402
from cluster import Cluster, ClusterBroker, install_sigterm_handler  # noqa: E402
from zookeeper import free_ports  # noqa: E402

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# ../shared/kafka beside the repository (SPATE_KAFKA_DIR overrides, e.g. to try the skip).
KAFKA_DIR = os.environ.get("SPATE_KAFKA_DIR") or os.path.abspath(os.path.join(REPO, "..", "shared", "kafka"))
KAFKA1_TOPICS = os.path.join(KAFKA_DIR, "bin", "kafka1-topics.sh")

SESSION_MS = 5000
SESSION_S = SESSION_MS / 1000.0
# Failure detection is due within the session timeout; ZooKeeper expires sessions on tick
# boundaries (500 ms) and the controller then needs a round of requests: the slack.
DETECTION_SLACK_S = 3.0

logging.getLogger("kazoo").setLevel(logging.ERROR)


class Skip(Exception):
    pass


def broker_bug(description):
    """Marks a case blocked by a broker bug (described in the report)."""
    def mark(test):
        test.broker_bug = description
        return test
    return mark


# ---- the shared cluster -----------------------------------------------------------------

_shared = None


def stop_shared():
    """Frees the machine for a case that runs a cluster of its own."""
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


def shared():
    """The 3-broker cluster most cases use, started on first use, checked whole."""
    global _shared
    if _shared is None:
        _shared = Cluster(brokers=3, zk_nodes=1, session_timeout_ms=SESSION_MS, shards=2).start()
    else:
        for i in _shared.ids:  # a failed case may have left a broker down or paused
            b = _shared.broker(i)
            if b.paused:
                _shared.resume(i)
            if not b.running():
                _shared.restart(i)
        _shared.wait_ready(SESSION_S + 15)
    return _shared


def addr(c, node_id):
    return ("127.0.0.1", c.broker(node_id).port)


_names = iter(range(1, 1 << 30))


def topic_name(prefix):
    return "%s-%d-%d" % (prefix, os.getpid() % 1000, next(_names))


def wait_topic(c, name, partitions, ids=None, timeout=15):
    """Waits until every live broker's Metadata has `name` with `partitions` partitions,
    each led by a live broker; returns broker 1's (or the first id's) view of it."""
    ids = ids or c.live_ids()

    def ready():
        views = []
        for i in ids:
            t = c.metadata(i, [name])["topics"].get(name)
            if t is None or t["error"] != 0 or len(t["partitions"]) != partitions:
                return None
            if any(p["leader"] not in ids or p["error"] != 0 for p in t["partitions"].values()):
                return None
            views.append(t)
        return views[0] if all(v == views[0] for v in views) else None
    return c.wait_for(ready, timeout, "topic %s with %d partitions on brokers %s" % (name, partitions, ids))


def wait_topic_gone(c, name, timeout=15):
    def gone():
        return all(name not in c.metadata(i)["topics"] for i in c.live_ids()) and \
            c.kazoo.exists("/brokers/topics/" + name) is None and \
            not c.kazoo.get_children("/admin/delete_topics")
    c.wait_for(gone, timeout, "topic %s deleted everywhere" % name)


def leaders(topic_view):
    return {p: s["leader"] for p, s in topic_view["partitions"].items()}


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def admin_call(bootstrap, method, *args, timeout=30):
    """Calls an AdminClient method; returns {name: None or KafkaError}. The client lives
    until every future is done (a client freed earlier breaks confluent-kafka 1.7)."""
    client = admin(bootstrap)
    futures = getattr(client, method)(*args)
    out = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0]
    return out


def kcat_produce(bootstrap, topic, values, partition=None, timeout=30):
    command = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-X", "message.timeout.ms=15000"]
    if partition is not None:
        command += ["-p", str(partition)]
    run = subprocess.run(command, input=("\n".join(values) + "\n").encode(),
                         capture_output=True, timeout=timeout)
    assert run.returncode == 0 and b"ERROR" not in run.stderr, \
        "kcat produce to %s failed (%d): %s" % (topic, run.returncode, run.stderr.decode(errors="replace"))


def kcat_consume(bootstrap, topic, partition=None, timeout=30):
    """Every message of the topic (or one partition) from the beginning: [(partition, offset, value)]."""
    command = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
               "-f", "%p %o %s\\n"]
    if partition is not None:
        command += ["-p", str(partition)]
    run = subprocess.run(command, capture_output=True, timeout=timeout)
    assert run.returncode == 0, "kcat consume of %s failed (%d): %s" % (
        topic, run.returncode, run.stderr.decode(errors="replace"))
    out = []
    for line in run.stdout.decode().splitlines():
        p, o, v = line.split(" ", 2)
        out.append((int(p), int(o), v))
    return out


def registration_times(c, node_id, began, other, timeout):
    """After a failure at `began`: seconds until /brokers/ids/<id> vanished and until broker
    `other`'s Metadata stopped listing it."""
    gone_zk = gone_md = None
    deadline = began + timeout
    while time.monotonic() < deadline and (gone_zk is None or gone_md is None):
        now = time.monotonic()
        if gone_zk is None and node_id not in c.registered_ids():
            gone_zk = now - began
        if gone_md is None:
            try:
                if node_id not in c.metadata(other, [])["brokers"]:
                    gone_md = now - began
            except OSError:
                pass
        time.sleep(0.05)
    return gone_zk, gone_md


# ---- cases: ZooKeeper-less failures -------------------------------------------------------

def test_zookeeper_unreachable_exits_naming_the_address():
    base = tempfile.mkdtemp(prefix="spate-cluster-nozk-")
    try:
        config = os.path.join(base, "broker.toml")
        with open(config, "w") as f:
            f.write("zookeeper_session_timeout_ms = 5000\nzookeeper_connection_timeout_ms = 2000\n")
        port = free_ports(1)[0]
        command = [os.environ.get("SPATE_BIN", "build/broker/spate"), "--listen", "127.0.0.1:%d" % port,
                   "--data-dir", os.path.join(base, "data"), "--node-id", "1",
                   "--zookeeper", "127.0.0.1:1", "--config", config]
        began = time.monotonic()
        run = subprocess.run(command, capture_output=True, timeout=30)
        took = time.monotonic() - began
        output = (run.stdout + run.stderr).decode(errors="replace")
        print("     exited %d after %.1fs: %s" % (run.returncode, took, output.strip().splitlines()[-1]))
        assert run.returncode != 0, "exit code 0 without ZooKeeper:\n" + output
        assert "127.0.0.1:1" in output, "the message does not name the address:\n" + output
        assert 1.5 <= took <= 10, "gave up after %.1fs, the connection timeout is 2 s" % took
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---- cases: the shared cluster, healthy -------------------------------------------------

def test_brokers_register_and_one_controller():
    c = shared()
    assert c.registered_ids() == [1, 2, 3], c.registered_ids()
    controller = c.controller_id()
    assert controller in (1, 2, 3), controller
    epoch, _ = c.kazoo.get("/controller_epoch")
    assert int(epoch.decode()) >= 1, epoch
    for i in c.ids:
        m = c.metadata(i, [])
        assert sorted(m["brokers"]) == [1, 2, 3], (i, m["brokers"])
        for node_id, (host, port, rack) in m["brokers"].items():
            assert (host, port) == ("127.0.0.1", c.broker(node_id).port), (node_id, host, port)
        assert m["controller_id"] == controller, (i, m["controller_id"], controller)
    cluster_ids = {c.metadata(i, [])["cluster_id"] for i in c.ids}
    zk_id = c.zk_json("/cluster/id")[0]["id"]
    assert cluster_ids == {zk_id}, (cluster_ids, zk_id)
    # The controller's ephemeral node belongs to that broker's session.
    assert c.kazoo.exists("/controller").ephemeralOwner == c.registration_owner(controller)


def test_create_topics_through_every_broker_spreads_partitions():
    c = shared()
    controller = c.controller_id()
    for i in c.ids:  # the controller and both others
        name = topic_name("spread-via-%d" % i)
        result = kr.create_topics(addr(c, i), [(name, 6, 1)])
        assert result == {name: (0, None)}, (i, result)
        view = wait_topic(c, name, 6)
        led = sorted(leaders(view).values())
        assert led == [1, 1, 2, 2, 3, 3], "6 partitions on 3 brokers not spread evenly: %s" % leaders(view)
        for p, s in view["partitions"].items():
            assert s["replicas"] == [s["leader"]] and s["isr"] == [s["leader"]], (p, s)
            assert s["leader_epoch"] == 0, (p, s)
        assignment, _ = c.zk_json("/brokers/topics/" + name)
        assert {int(k): v for k, v in assignment["partitions"].items()} == \
            {p: s["replicas"] for p, s in view["partitions"].items()}, assignment
        again = kr.create_topics(addr(c, i), [(name, 6, 1)])
        assert again[name][0] == kr.TOPIC_ALREADY_EXISTS, again
    # And a real client (librdkafka sends admin requests to the controller).
    name = topic_name("spread-admin")
    errors = admin_call(c.bootstrap, "create_topics",
                        [NewTopic(name, num_partitions=4, replication_factor=1)])
    assert errors == {name: None}, errors
    view = wait_topic(c, name, 4)
    assert len(set(leaders(view).values())) == 3, leaders(view)
    print("     controller %d; every broker created topics spread over all three" % controller)


def test_replication_factor_beyond_the_live_brokers_is_refused():
    c = shared()
    non_controller = next(i for i in c.ids if i != c.controller_id())
    name = topic_name("rf4")
    result = kr.create_topics(addr(c, non_controller), [(name, 3, 4)])
    code, message = result[name]
    assert code == kr.INVALID_REPLICATION_FACTOR, result
    assert message, "INVALID_REPLICATION_FACTOR without a message"
    time.sleep(0.3)
    assert c.kazoo.exists("/brokers/topics/" + name) is None, "refused topic written to ZooKeeper"
    assert all(name not in c.metadata(i)["topics"] for i in c.ids), name
    # Within the live brokers it is accepted: every partition lists its replicas on
    # distinct brokers, in the znode and in every broker's Metadata.
    name2 = topic_name("rf2")
    errors = admin_call(c.bootstrap, "create_topics",
                        [NewTopic(name2, num_partitions=2, replication_factor=2)])
    assert errors[name2] is None, errors
    assigned = c.zk_json("/brokers/topics/" + name2)[0]["partitions"]
    assert all(len(set(r)) == 2 for r in assigned.values()), assigned
    print("     message: %r; RF 2 placed %s" % (message, assigned))


def test_kcat_auto_creates_produces_and_consumes():
    c = shared()
    name = topic_name("auto")
    values = ["auto-%d" % i for i in range(20)]
    kcat_produce(c.broker(2).bootstrap, name, values)  # through one broker only
    assert c.kazoo.exists("/brokers/topics/" + name) is not None, "auto-created topic not in ZooKeeper"
    wait_topic(c, name, len(c.zk_json("/brokers/topics/" + name)[0]["partitions"]))
    got = kcat_consume(c.broker(3).bootstrap, name)
    assert sorted(v for _, _, v in got) == sorted(values), got


def test_metadata_agrees_on_every_broker_with_zookeeper():
    c = shared()
    name = topic_name("agree")
    assert kr.create_topics(addr(c, 3), [(name, 5, 1)])[name][0] == 0
    wait_topic(c, name, 5)
    views = {i: c.metadata(i) for i in c.ids}
    first = views[1]
    for i, view in views.items():
        assert view["brokers"] == first["brokers"], (i, view["brokers"])
        assert view["controller_id"] == first["controller_id"] == c.controller_id(), i
        assert view["topics"] == first["topics"], "broker %d's topics differ from broker 1's" % i
    assert first["topics"], "no topics listed"
    for topic, t in first["topics"].items():
        node, _ = c.zk_json("/brokers/topics/" + topic)
        assert node is not None, "topic %s listed but not in ZooKeeper" % topic
        assert kr.uuid_from_base64(node["topic_id"]) == t["id"], (topic, node["topic_id"], t["id"])
        assert t["id"] != uuid.UUID(int=0), topic
        for p, s in t["partitions"].items():
            state, _ = c.zk_json("/brokers/topics/%s/partitions/%d/state" % (topic, p))
            assert (state["leader"], state["leader_epoch"], state["isr"]) == \
                (s["leader"], s["leader_epoch"], s["isr"]), (topic, p, state, s)
            assert s["replicas"] == node["partitions"][str(p)], (topic, p)
    ids = {t["id"] for t in first["topics"].values()}
    assert len(ids) == len(first["topics"]), "two topics share an id"
    print("     %d topics, identical on 3 brokers and in ZooKeeper" % len(first["topics"]))


def test_not_leader_or_follower_and_clients_recover():
    c = shared()
    name = topic_name("notleader")
    assert kr.create_topics(addr(c, 1), [(name, 3, 1)])[name][0] == 0
    view = wait_topic(c, name, 3)
    for p, s in view["partitions"].items():
        leader = s["leader"]
        assert kr.produce(addr(c, leader), name, p, [b"to-leader"])[0] == 0
        for other in c.ids:
            if other == leader:
                continue
            code, _ = kr.produce(addr(c, other), name, p, [b"to-follower"])
            assert code == kr.NOT_LEADER_OR_FOLLOWER, (p, leader, other, code)
            code, _ = kr.list_offsets(addr(c, other), name, p)
            assert code == kr.NOT_LEADER_OR_FOLLOWER, ("ListOffsets", p, leader, other, code)
        assert kr.list_offsets(addr(c, leader), name, p) == (0, 1), kr.list_offsets(addr(c, leader), name, p)

    # A client with stale metadata: partition 0 moves from broker 1 to broker 2 (the topic
    # is deleted and created again with an explicit assignment) behind the producer's back.
    name = topic_name("moved")
    assert kr.create_topics(addr(c, 3), [(name, 1, 1, {0: [1]})])[name][0] == 0
    wait_topic(c, name, 1)
    logs = []

    class Capture(logging.Handler):
        def emit(self, record):
            logs.append(record.getMessage())
    logger = logging.getLogger("rdkafka-notleader")
    logger.addHandler(Capture())
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    producer = Producer({"bootstrap.servers": c.bootstrap, "topic.metadata.refresh.interval.ms": 600000,
                         "message.timeout.ms": 20000, "retry.backoff.ms": 100,
                         "debug": "msg,protocol", "logger": logger})
    outcomes = []

    def delivered(err, msg):
        outcomes.append((err, msg.partition(), msg.offset()))
    producer.produce(name, b"before", partition=0, on_delivery=delivered)
    assert producer.flush(15) == 0 and outcomes and outcomes[-1][0] is None, outcomes
    assert kr.delete_topics(addr(c, 2), [name]) == {name: 0}
    wait_topic_gone(c, name)
    assert kr.create_topics(addr(c, 3), [(name, 1, 1, {0: [2]})])[name][0] == 0
    view = wait_topic(c, name, 1)
    assert view["partitions"][0]["leader"] == 2, view
    began = time.monotonic()
    producer.produce(name, b"after", partition=0, on_delivery=delivered)
    assert producer.flush(25) == 0, "producer did not recover: %s" % outcomes
    assert outcomes[-1][0] is None, "delivery failed: %s" % (outcomes[-1],)
    errors_seen = sorted({m for line in logs for m in re.findall(
        r"Not leader for partition|Unknown topic or partition|NOT_LEADER\w*|UNKNOWN_TOPIC\w*", line)})
    assert errors_seen, "the producer never hit the old leader (no NOT_LEADER in its log)"
    got = kcat_consume(c.bootstrap, name)
    assert [v for _, _, v in got] == ["after"], got
    print("     producer recovered in %.1fs after the partition moved (errors it saw: %s)"
          % (time.monotonic() - began, ", ".join(errors_seen) or "none logged"))


def test_admin_answers_come_after_the_receiving_broker_serves_the_change():
    """Kafka answers CreateTopics, CreatePartitions and DeleteTopics once the broker that got
    the request has the change in its metadata: a client may use it right away."""
    c = shared()
    names = [topic_name("immediate") for _ in range(9)]
    for n, name in enumerate(names):
        via = c.ids[n % 3]
        assert kr.create_topics(addr(c, via), [(name, 6, 1)])[name] == (0, None)
        t = c.metadata(via, [name])["topics"].get(name)
        assert t is not None and t["error"] == 0 and len(t["partitions"]) == 6 and \
            all(p["leader"] in c.ids for p in t["partitions"].values()), \
            "broker %d does not serve %s when CreateTopics answers: %s" % (via, name, t)
    for n, name in enumerate(names[:3]):
        via = c.ids[(n + 1) % 3]
        assert kr.create_partitions(addr(c, via), [(name, 8)])[name] == (0, None)
        t = c.metadata(via, [name])["topics"][name]
        assert len(t["partitions"]) == 8 and all(p["leader"] in c.ids for p in t["partitions"].values()), \
            "broker %d does not serve 8 partitions of %s when CreatePartitions answers: %s" % (via, name, t)
    for n, name in enumerate(names):
        via = c.ids[(n + 2) % 3]
        assert kr.delete_topics(addr(c, via), [name]) == {name: 0}
        t = c.metadata(via, [name])["topics"].get(name)
        # The error code for a topic that does not exist is test_unknown_topic_...'s concern.
        assert t is None or (t["error"] != 0 and not t["partitions"]), \
            "broker %d still serves %s when DeleteTopics answers: %s" % (via, name, t)


def test_unknown_topic_without_auto_create_is_unknown_topic():
    c = shared()
    name = topic_name("nosuch")
    assert kr.create_topics(addr(c, 1), [(name, 2, 1)])[name][0] == 0
    wait_topic(c, name, 2)
    assert kr.delete_topics(addr(c, 2), [name]) == {name: 0}
    wait_topic_gone(c, name)
    never = topic_name("never")
    answers = {(i, n): c.metadata(i, [n])["topics"][n]["error"] for i in c.ids for n in (never, name)}
    assert c.kazoo.exists("/brokers/topics/" + never) is None, "Metadata without auto-creation created a topic"
    wrong = {k: v for k, v in answers.items() if v != kr.UNKNOWN_TOPIC_OR_PARTITION}
    assert not wrong, "Metadata v12 (allow_auto_topic_creation false) of a missing topic, (broker, topic): " \
        "error, expected %d everywhere: %s" % (kr.UNKNOWN_TOPIC_OR_PARTITION, wrong)


def test_delete_topics_through_any_broker():
    c = shared()
    controller = c.controller_id()
    others = [i for i in c.ids if i != controller]
    names = [topic_name("del") for _ in range(3)]
    for n in names:
        assert kr.create_topics(addr(c, 1), [(n, 3, 1)])[n][0] == 0
        wait_topic(c, n, 3)
        kcat_produce(c.bootstrap, n, ["x", "y", "z"])
    # Through a broker that is not the controller, by hand; then through a client.
    assert kr.delete_topics(addr(c, others[0]), [names[0]]) == {names[0]: 0}
    wait_topic_gone(c, names[0])
    assert kr.delete_topics(addr(c, others[1]), [names[1]]) == {names[1]: 0}
    wait_topic_gone(c, names[1])
    errors = admin_call(c.bootstrap, "delete_topics", [names[2]])
    assert errors == {names[2]: None}, errors
    wait_topic_gone(c, names[2])
    missing = kr.delete_topics(addr(c, others[0]), [topic_name("never")])
    assert list(missing.values()) == [kr.UNKNOWN_TOPIC_OR_PARTITION], missing
    # The replicas' directories go too.
    def no_dirs():
        return not [d for i in c.ids for d in os.listdir(c.broker(i).data_dir)
                    if any(d.startswith(n + "-") for n in names)]
    c.wait_for(no_dirs, 10, "partition directories of deleted topics removed")
    for n in names:
        assert c.kazoo.exists("/config/topics/" + n) is None, "config node of %s left" % n


def test_create_partitions_through_any_broker():
    c = shared()
    controller = c.controller_id()
    non_controller = next(i for i in c.ids if i != controller)
    name = topic_name("grow")
    assert kr.create_topics(addr(c, controller), [(name, 3, 1)])[name][0] == 0
    before = wait_topic(c, name, 3)
    result = kr.create_partitions(addr(c, non_controller), [(name, 6)])
    assert result == {name: (0, None)}, result
    view = wait_topic(c, name, 6)
    assert view["id"] == before["id"], "topic id changed when growing"
    for p in range(3):
        assert view["partitions"][p] == before["partitions"][p], (p, view["partitions"][p])
    assert sorted(leaders(view).values()) == [1, 1, 2, 2, 3, 3], leaders(view)
    node, _ = c.zk_json("/brokers/topics/" + name)
    assert sorted(node["partitions"], key=int) == [str(p) for p in range(6)], node
    assert kr.uuid_from_base64(node["topic_id"]) == view["id"]
    for p in range(6):
        assert c.zk_json("/brokers/topics/%s/partitions/%d/state" % (name, p))[0] is not None, p
    # Explicit assignments, through the third broker.
    third = next(i for i in c.ids if i not in (controller, non_controller))
    result = kr.create_partitions(addr(c, third), [(name, 8, [[3], [1]])])
    assert result == {name: (0, None)}, result
    view = wait_topic(c, name, 8)
    assert (view["partitions"][6]["replicas"], view["partitions"][7]["replicas"]) == ([3], [1]), view
    # Shrinking is refused; the client path works too.
    code, message = kr.create_partitions(addr(c, non_controller), [(name, 4)])[name]
    assert code == kr.INVALID_PARTITIONS and message, (code, message)
    errors = admin_call(c.bootstrap, "create_partitions", [NewPartitions(name, 9)])
    assert errors == {name: None}, errors
    wait_topic(c, name, 9)
    for p in range(9):
        kcat_produce(c.bootstrap, name, ["p%d" % p], partition=p)
    got = kcat_consume(c.bootstrap, name)
    assert sorted((p, v) for p, _, v in got) == [(p, "p%d" % p) for p in range(9)], got


def test_incremental_alter_configs_through_any_broker():
    c = shared()
    controller = c.controller_id()
    non_controller = next(i for i in c.ids if i != controller)
    name = topic_name("conf")
    assert kr.create_topics(addr(c, controller), [(name, 3, 1)])[name][0] == 0
    wait_topic(c, name, 3)
    changes_before = set(c.kazoo.get_children("/config/changes"))
    code, message = kr.incremental_alter_configs(
        addr(c, non_controller), name, [("retention.ms", kr.SET, "3600000"),
                                         ("max.message.bytes", kr.SET, "65536")])
    assert code == 0, (code, message)
    node, _ = c.zk_json("/config/topics/" + name)
    assert node == {"version": 1, "config": {"retention.ms": "3600000", "max.message.bytes": "65536"}}, node
    new = sorted(set(c.kazoo.get_children("/config/changes")) - changes_before)
    assert new and all(re.fullmatch(r"config_change_\d{10}", n) for n in new), new
    notes = [c.zk_json("/config/changes/" + n)[0] for n in new]
    assert {"version": 2, "entity_path": "topics/" + name} in notes, notes

    def everywhere(expected):
        def check():
            for i in c.ids:
                error, configs = kr.describe_topic_configs(addr(c, i), name)
                if error != 0 or any(configs.get(k) != v for k, v in expected.items()):
                    return False
            return True
        return check
    c.wait_for(everywhere({"retention.ms": "3600000", "max.message.bytes": "65536"}), 10,
               "altered configs described by every broker")
    # DELETE through another broker: back to the default everywhere.
    third = next(i for i in c.ids if i not in (controller, non_controller))
    code, message = kr.incremental_alter_configs(addr(c, third), name, [("retention.ms", kr.DELETE, None)])
    assert code == 0, (code, message)
    node, _ = c.zk_json("/config/topics/" + name)
    assert node == {"version": 1, "config": {"max.message.bytes": "65536"}}, node
    c.wait_for(lambda: all(kr.describe_topic_configs(addr(c, i), name)[1].get("retention.ms") != "3600000"
                           for i in c.ids), 10, "deleted config gone on every broker")
    # max.message.bytes is enforced by every leader.
    view = wait_topic(c, name, 3)
    for p, s in view["partitions"].items():
        code, _ = kr.produce(addr(c, s["leader"]), name, p, [b"x" * 70000])
        assert code == 10, "MESSAGE_TOO_LARGE expected from broker %d, got %d" % (s["leader"], code)
    # An unknown topic is refused.
    code, _ = kr.incremental_alter_configs(addr(c, non_controller), topic_name("nope"),
                                           [("retention.ms", kr.SET, "1")])
    assert code == kr.UNKNOWN_TOPIC_OR_PARTITION, code


def _check_broker_node(c, node_id, node):
    port = c.broker(node_id).port
    expected_keys = {"version", "host", "port", "jmx_port", "timestamp", "endpoints",
                     "listener_security_protocol_map"}
    assert expected_keys <= set(node) <= expected_keys | {"rack"}, (node_id, node)
    assert node["version"] == 4 and node["jmx_port"] == -1, node
    assert node["host"] == "127.0.0.1" and node["port"] == port, node
    assert isinstance(node["timestamp"], str) and node["timestamp"].isdigit(), node
    assert abs(int(node["timestamp"]) / 1000 - time.time()) < 3600, node["timestamp"]
    assert node["endpoints"] == ["PLAINTEXT://127.0.0.1:%d" % port], node
    assert node["listener_security_protocol_map"] == {"PLAINTEXT": "PLAINTEXT"}, node


def _check_base64_uuid(text):
    assert isinstance(text, str) and re.fullmatch(r"[A-Za-z0-9_-]{22}", text), text
    assert kr.uuid_from_base64(text) != uuid.UUID(int=0), text


def test_znodes_match_cluster_md():
    c = shared()
    name = topic_name("znodes")
    assert kr.create_topics(addr(c, 2), [(name, 4, 1, None, {"retention.ms": "86400000"})])[name][0] == 0
    wait_topic(c, name, 4)
    cluster_id, _ = c.zk_json("/cluster/id")
    assert set(cluster_id) == {"version", "id"} and cluster_id["version"] == "1", cluster_id
    _check_base64_uuid(cluster_id["id"])
    for node_id in c.registered_ids():
        node, stat = c.zk_json("/brokers/ids/%d" % node_id)
        _check_broker_node(c, node_id, node)
        assert stat.ephemeralOwner != 0, "registration %d is not ephemeral" % node_id
    controller, stat = c.zk_json("/controller")
    assert set(controller) == {"version", "brokerid", "timestamp"}, controller
    assert controller["version"] == 1 and controller["brokerid"] in c.ids, controller
    assert isinstance(controller["timestamp"], str) and controller["timestamp"].isdigit(), controller
    assert stat.ephemeralOwner != 0, "/controller is not ephemeral"
    epoch_text, stat = c.kazoo.get("/controller_epoch")
    assert re.fullmatch(rb"\d+", epoch_text) and int(epoch_text) >= 1 and stat.ephemeralOwner == 0, epoch_text
    checked_states = 0
    for topic in c.kazoo.get_children("/brokers/topics"):
        node, stat = c.zk_json("/brokers/topics/" + topic)
        assert stat.ephemeralOwner == 0
        assert node["version"] in (1, 3), (topic, node)  # version 1: written by Kafka 1.0's tool
        if node["version"] == 3:
            assert set(node) == {"version", "partitions", "topic_id", "adding_replicas",
                                 "removing_replicas"}, (topic, node)
            assert node["adding_replicas"] == {} and node["removing_replicas"] == {}, node
            _check_base64_uuid(node["topic_id"])
        parts = node["partitions"]
        assert sorted(parts, key=int) == [str(p) for p in range(len(parts))], (topic, parts)
        assert all(isinstance(r, list) and r and all(isinstance(b, int) for b in r)
                   for r in parts.values()), parts
        for p in parts:
            state, _ = c.zk_json("/brokers/topics/%s/partitions/%s/state" % (topic, p))
            assert set(state) == {"version", "leader", "leader_epoch", "isr", "controller_epoch"}, state
            assert state["version"] == 1 and isinstance(state["leader"], int), state
            assert isinstance(state["leader_epoch"], int) and state["leader_epoch"] >= 0, state
            assert isinstance(state["isr"], list) and all(isinstance(b, int) for b in state["isr"]), state
            assert 1 <= state["controller_epoch"] <= int(epoch_text), (state, epoch_text)
            checked_states += 1
    config, stat = c.zk_json("/config/topics/" + name)
    assert config == {"version": 1, "config": {"retention.ms": "86400000"}}, config
    for path in ("/admin/delete_topics", "/config/changes", "/config/topics", "/brokers/ids"):
        assert c.kazoo.exists(path) is not None, path + " missing"
    block, _ = c.zk_json("/latest_producer_id_block")
    if block is not None:  # written once a producer id was handed out
        assert set(block) == {"version", "broker", "block_start", "block_end"} and block["version"] == 1, block
        assert isinstance(block["block_start"], str) and isinstance(block["block_end"], str), block
        assert int(block["block_end"]) - int(block["block_start"]) == 999, block
    print("     %d topics, %d partition states, %d registrations checked"
          % (len(c.kazoo.get_children("/brokers/topics")), checked_states, len(c.registered_ids())))


def test_producer_ids_unique_across_brokers():
    c = shared()
    name = topic_name("idem")
    assert kr.create_topics(addr(c, 1), [(name, 3, 1)])[name][0] == 0
    wait_topic(c, name, 3)
    for i in c.ids:  # an idempotent producer bootstrapped on each broker gets an id from it
        p = Producer({"bootstrap.servers": c.broker(i).bootstrap, "enable.idempotence": True,
                      "message.timeout.ms": 15000})
        for n in range(30):
            p.produce(name, b"idem-%d-%d" % (i, n))
        assert p.flush(20) == 0, "idempotent producer via broker %d did not finish" % i
    block, _ = c.zk_json("/latest_producer_id_block")
    assert block is not None, "/latest_producer_id_block not written"
    assert set(block) == {"version", "broker", "block_start", "block_end"} and block["version"] == 1, block
    assert isinstance(block["block_start"], str) and int(block["block_end"]) - int(block["block_start"]) == 999, block
    got = kcat_consume(c.bootstrap, name)
    assert len(got) == 90 and len({v for _, _, v in got}) == 90, len(got)


def test_consumer_group_commits_across_brokers():
    c = shared()
    name = topic_name("group")
    assert kr.create_topics(addr(c, 2), [(name, 6, 1)])[name][0] == 0
    wait_topic(c, name, 6)
    kcat_produce(c.bootstrap, name, ["g%d" % i for i in range(60)])
    group = topic_name("grp")

    def consume(expected, timeout=30):
        consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "session.timeout.ms": 6000})
        try:
            consumer.subscribe([name])
            got = []
            deadline = time.monotonic() + timeout
            while len(got) < expected and time.monotonic() < deadline:
                m = consumer.poll(0.5)
                if m is None:
                    continue
                assert not m.error() or m.error().code() == KafkaError._PARTITION_EOF, m.error()
                if not m.error():
                    got.append(m.value().decode())
            if got:
                consumer.commit(asynchronous=False)
            committed = consumer.committed([TopicPartition(name, p) for p in range(6)], timeout=10)
            return got, committed
        finally:
            consumer.close()
    got, committed = consume(60)
    assert sorted(got) == sorted("g%d" % i for i in range(60)), (len(got), got[:5])
    # Partitions kcat left empty have no committed offset (-1001).
    assert sum(max(tp.offset, 0) for tp in committed) == 60, committed
    kcat_produce(c.bootstrap, name, ["h%d" % i for i in range(6)])
    got, _ = consume(6)
    assert sorted(got) == sorted("h%d" % i for i in range(6)), got


# ---- Kafka 1.0.2's ZooKeeper-mode kafka-topics.sh -----------------------------------------

def kafka1(c, *args):
    run = subprocess.run([KAFKA1_TOPICS, "--zookeeper", c.zk.connect_string] + list(args),
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, "kafka1-topics.sh %s failed (%d):\n%s%s" % (
        " ".join(args), run.returncode, run.stdout, run.stderr)
    return run.stdout


def test_kafka1_topics_tool_create_describe_delete():
    if not os.path.exists(KAFKA1_TOPICS):
        raise Skip("%s absent" % KAFKA1_TOPICS)
    if not shutil.which("java"):
        raise Skip("no java")
    c = shared()
    name = topic_name("k1tool")
    out = kafka1(c, "--create", "--topic", name, "--partitions", "3", "--replication-factor", "1")
    assert 'Created topic "%s"' % name in out, out
    view = wait_topic(c, name, 3)
    assert view["id"] != uuid.UUID(int=0), "no topic id for a version-1 topic node"
    node, _ = c.zk_json("/brokers/topics/" + name)
    assert kr.uuid_from_base64(node["topic_id"]) == view["id"], (node, view["id"])
    values = ["k1-%d" % i for i in range(30)]
    kcat_produce(c.bootstrap, name, values)
    got = kcat_consume(c.bootstrap, name)
    assert sorted(v for _, _, v in got) == sorted(values), got

    # --describe of a topic spate created.
    ours = topic_name("k1desc")
    assert kr.create_topics(addr(c, 3), [(ours, 4, 1, None, {"retention.ms": "7200000"})])[ours][0] == 0
    ours_view = wait_topic(c, ours, 4)
    out = kafka1(c, "--describe", "--topic", ours)
    assert re.search(r"Topic:%s\s+PartitionCount:4\s+ReplicationFactor:1\s+Configs:retention.ms=7200000"
                     % re.escape(ours), out), out
    for p, s in ours_view["partitions"].items():
        line = r"Topic: %s\s+Partition: %d\s+Leader: %d\s+Replicas: %d\s+Isr: %d" % (
            re.escape(ours), p, s["leader"], s["leader"], s["leader"])
        assert re.search(line, out), "no line %r in:\n%s" % (line, out)
    listed = kafka1(c, "--list").split()
    assert name in listed and ours in listed, listed

    # --delete (of the tool's topic and ours).
    for n in (name, ours):
        out = kafka1(c, "--delete", "--topic", n)
        assert "marked for deletion" in out, out
        wait_topic_gone(c, n)
    assert name not in kafka1(c, "--list").split()


# ---- failures on the shared cluster ---------------------------------------------------

def test_killed_broker_leaves_metadata_and_returns_with_its_data():
    c = shared()
    controller = c.controller_id()
    victim = next(i for i in c.ids if i != controller)
    other = next(i for i in c.ids if i not in (controller, victim))
    name = topic_name("kill")
    assert kr.create_topics(addr(c, other), [(name, 6, 1)])[name][0] == 0
    before = wait_topic(c, name, 6)
    victim_parts = sorted(p for p, s in before["partitions"].items() if s["leader"] == victim)
    assert victim_parts, "victim leads nothing"
    for p in range(6):
        kcat_produce(c.bootstrap, name, ["%d-%d" % (p, i) for i in range(10)], partition=p)
    ids_before = {t: v["id"] for t, v in c.metadata(other)["topics"].items()}

    began = time.monotonic()
    c.kill(victim)
    gone_zk, gone_md = registration_times(c, victim, began, other, SESSION_S + 15)
    print("     broker %d killed: gone from /brokers/ids after %s s, from broker %d's Metadata after %s s "
          "(session timeout %.1f s)" % (victim, _fmt(gone_zk), other, _fmt(gone_md), SESSION_S))
    assert gone_zk is not None and gone_zk <= SESSION_S + DETECTION_SLACK_S, gone_zk
    assert gone_md is not None and gone_md <= SESSION_S + DETECTION_SLACK_S, gone_md
    for i in (controller, other):
        c.wait_for(lambda: sorted(c.metadata(i, [])["brokers"]) == sorted((controller, other)), 5,
                   "broker %d lists only the live brokers" % i)

    def offline():
        for i in (controller, other):
            t = c.metadata(i, [name])["topics"][name]
            for p in victim_parts:
                s = t["partitions"][p]
                if s["leader"] != -1 or s["error"] != kr.LEADER_NOT_AVAILABLE:
                    return False
            for p in set(range(6)) - set(victim_parts):
                if t["partitions"][p]["leader"] != before["partitions"][p]["leader"]:
                    return False
        return True
    c.wait_for(offline, 5, "partitions of broker %d leaderless (LEADER_NOT_AVAILABLE) on the survivors" % victim)
    t = c.metadata(other, [name])["topics"][name]
    for p in victim_parts:
        assert t["partitions"][p]["replicas"] == [victim], t["partitions"][p]
        assert t["partitions"][p]["offline"] == [victim], \
            "partition %d: offline_replicas %s, expected [%d]" % (p, t["partitions"][p]["offline"], victim)
    for p in victim_parts:
        state, _ = c.zk_json("/brokers/topics/%s/partitions/%d/state" % (name, p))
        assert state["leader"] == -1, state
    # The survivors still serve their own partitions.
    live_part = next(p for p in range(6) if p not in victim_parts)
    kcat_produce(c.bootstrap, name, ["while-down"], partition=live_part)

    began = time.monotonic()
    c.restart(victim)
    view = wait_topic(c, name, 6)
    print("     restarted: registered and leading again after %.1fs" % (time.monotonic() - began))
    for p in victim_parts:
        s = view["partitions"][p]
        assert s["leader"] == victim and s["leader_epoch"] > before["partitions"][p]["leader_epoch"], (p, s)
        got = kcat_consume(c.bootstrap, name, partition=p)
        assert [v for _, _, v in got] == ["%d-%d" % (p, i) for i in range(10)], (p, got)
    kcat_produce(c.bootstrap, name, ["after-restart"], partition=victim_parts[0])
    got = kcat_consume(c.bootstrap, name, partition=victim_parts[0])
    assert [o for _, o, _ in got] == list(range(11)), got
    for i in c.ids:
        ids_after = {t: v["id"] for t, v in c.metadata(i)["topics"].items()}
        assert ids_after == ids_before, "topic ids differ on broker %d after the restart" % i


def _fmt(seconds):
    return "never" if seconds is None else "%.2f" % seconds


def test_killed_controller_is_replaced_and_topics_still_created():
    c = shared()
    old = c.controller_id()
    epoch_before = int(c.kazoo.get("/controller_epoch")[0])
    survivors = [i for i in c.ids if i != old]
    began = time.monotonic()
    c.kill(old)
    # A topic written straight to ZooKeeper (as Kafka 1.0's tool does: a version-1 node, no
    # state nodes) while no controller is alive: the next controller must elect its leaders.
    orphan = topic_name("nocontroller")
    c.kazoo.create("/brokers/topics/" + orphan, json.dumps(
        {"version": 1, "partitions": {"0": [survivors[0]], "1": [survivors[1]]}}).encode())
    new = c.wait_for(lambda: c.controller_id() not in (None, old) and c.controller_id(),
                     SESSION_S + 15, "a new controller")
    took = time.monotonic() - began
    print("     controller %d killed: broker %d controller after %.2fs (session timeout %.1fs)"
          % (old, new, took, SESSION_S))
    view = wait_topic(c, orphan, 2, ids=survivors)
    assert leaders(view) == {0: survivors[0], 1: survivors[1]}, leaders(view)
    node, _ = c.zk_json("/brokers/topics/" + orphan)
    assert "topic_id" in node and kr.uuid_from_base64(node["topic_id"]) == view["id"], (node, view["id"])
    assert new in survivors, new
    assert took <= SESSION_S + DETECTION_SLACK_S, took
    assert int(c.kazoo.get("/controller_epoch")[0]) == epoch_before + 1
    c.wait_for(lambda: all(c.metadata(i, [])["controller_id"] == new and
                           sorted(c.metadata(i, [])["brokers"]) == survivors for i in survivors),
               5, "survivors report controller %d and only themselves" % new)
    for via in survivors:  # through the new controller and the other survivor
        name = topic_name("afterctl")
        assert kr.create_topics(addr(c, via), [(name, 4, 1)])[name] == (0, None)
        view = wait_topic(c, name, 4)
        assert set(leaders(view).values()) == set(survivors), leaders(view)
        state, _ = c.zk_json("/brokers/topics/%s/partitions/0/state" % name)
        assert state["controller_epoch"] == epoch_before + 1, state
        kcat_produce(c.bootstrap, name, ["a", "b"])
        assert len(kcat_consume(c.bootstrap, name)) == 2
    c.restart(old)
    assert c.controller_id() == new, "controller moved back on restart"


def test_paused_broker_registers_again_by_itself():
    c = shared()
    controller = c.controller_id()
    victim = next(i for i in c.ids if i != controller)
    other = next(i for i in c.ids if i not in (controller, victim))
    name = topic_name("pause")
    assert kr.create_topics(addr(c, other), [(name, 6, 1)])[name][0] == 0
    before = wait_topic(c, name, 6)
    victim_parts = [p for p, s in before["partitions"].items() if s["leader"] == victim]
    kcat_produce(c.bootstrap, name, ["before"], partition=victim_parts[0])
    session_before = c.registration_owner(victim)
    log_size = os.path.getsize(c.broker(victim).log_path)

    began = time.monotonic()
    c.pause(victim)
    gone_zk, gone_md = registration_times(c, victim, began, other, SESSION_S + 15)
    print("     broker %d paused: gone from /brokers/ids after %s s, from Metadata after %s s"
          % (victim, _fmt(gone_zk), _fmt(gone_md)))
    assert gone_zk is not None and gone_zk <= SESSION_S + DETECTION_SLACK_S, gone_zk
    assert gone_md is not None and gone_md <= SESSION_S + DETECTION_SLACK_S, gone_md
    time.sleep(1.0)  # well past the session timeout
    c.resume(victim)
    resumed = time.monotonic()
    c.wait_for(lambda: c.registration_owner(victim) not in (None, session_before), 20,
               "broker %d registered again with a new session" % victim)
    c.wait_ready(20)
    view = wait_topic(c, name, 6)
    print("     resumed: registered again after %.1fs, all brokers agree" % (time.monotonic() - resumed))
    for p in victim_parts:
        assert view["partitions"][p]["leader"] == victim, (p, view["partitions"][p])
    kcat_produce(c.bootstrap, name, ["after"], partition=victim_parts[0])
    got = kcat_consume(c.bootstrap, name, partition=victim_parts[0])
    assert [v for _, _, v in got] == ["before", "after"], got
    with open(c.broker(victim).log_path, "rb") as f:
        f.seek(log_size)
        log = f.read().decode(errors="replace")
    assert "expired" in log and "registered again" in log, "no session renewal in the log:\n" + log[-3000:]
    assert c.broker(victim).running(), "paused broker exited"


def test_paused_controller_steps_down_when_it_resumes():
    c = shared()
    old = c.controller_id()
    epoch_before = int(c.kazoo.get("/controller_epoch")[0])
    survivors = [i for i in c.ids if i != old]
    c.pause(old)
    began = time.monotonic()
    new = c.wait_for(lambda: c.controller_id() not in (None, old) and c.controller_id(),
                     SESSION_S + 15, "a new controller while %d is paused" % old)
    took = time.monotonic() - began
    assert took <= SESSION_S + DETECTION_SLACK_S, took
    name = topic_name("zombie")
    assert kr.create_topics(addr(c, survivors[0]), [(name, 4, 1)])[name][0] == 0
    wait_topic(c, name, 4, ids=survivors)
    states_before = {p: c.zk_json("/brokers/topics/%s/partitions/%d/state" % (name, p))[0] for p in range(4)}
    c.resume(old)
    c.wait_ready(SESSION_S + 15)
    assert c.controller_id() == new, "controller changed after the old one resumed: %s" % c.controller_id()
    assert int(c.kazoo.get("/controller_epoch")[0]) == epoch_before + 1, "controller epoch moved again"
    # Nothing written by the resumed (stale) controller: the states are those of the new one.
    for p in range(4):
        state = c.zk_json("/brokers/topics/%s/partitions/%d/state" % (name, p))[0]
        assert state == states_before[p], (p, states_before[p], state)
        assert state["controller_epoch"] == epoch_before + 1, state
    for i in c.ids:
        assert c.metadata(i, [])["controller_id"] == new, i
    name2 = topic_name("afterzombie")
    assert kr.create_topics(addr(c, old), [(name2, 6, 1)])[name2][0] == 0
    view = wait_topic(c, name2, 6)
    assert sorted(leaders(view).values()) == [1, 1, 2, 2, 3, 3], leaders(view)
    print("     controller %d paused: %d took over after %.2fs; resumed, stepped down, serves again"
          % (old, new, took))


def test_duplicate_broker_id_is_refused():
    c = shared()
    target = next(i for i in c.ids if i != c.controller_id())
    owner = c.registration_owner(target)
    port = free_ports(1)[0]
    dup = ClusterBroker(target, data_dir=os.path.join(c.base_dir, "dup%d" % target), port=port,
                        shards=1, extra=["--node-id", str(target), "--zookeeper", c.zk.connect_string,
                                         "--config", c.config_path])
    os.makedirs(dup.data_dir, exist_ok=True)
    began = time.monotonic()
    try:
        dup.start()  # listens first, then tries to register
    except RuntimeError:
        pass  # exited already: checked below
    try:
        code = dup.process.wait(timeout=SESSION_S + 15) if dup.process else dup.exit_code
    except subprocess.TimeoutExpired:
        code = "still running"
    took = time.monotonic() - began
    log = dup.read_log(limit=None)
    if dup.process is not None:
        dup.stop()
    print("     second broker %d exited %s after %.1fs: %s" % (
        target, code, took, (log.strip().splitlines() or [""])[-1]))
    assert code not in (0, "still running"), "duplicate broker id accepted (exit %s):\n%s" % (code, log)
    assert "already registered" in log, "no 'already registered' message:\n" + log
    assert took >= SESSION_S, "gave up after %.1fs, before the session timeout" % took
    assert c.registration_owner(target) == owner, "the live broker's registration changed"
    assert sorted(c.metadata(target, [])["brokers"]) == c.ids


def test_clean_stop_deregisters_at_once():
    c = shared()
    victim = next(i for i in c.ids if i != c.controller_id())
    began = time.monotonic()
    code = c.stop_broker(victim)
    took = time.monotonic() - began
    assert code == 0, code
    gone = c.wait_for(lambda: victim not in c.registered_ids() and time.monotonic() - began, 5,
                      "registration of a cleanly stopped broker removed")
    other = next(i for i in c.ids if i != victim)
    c.wait_for(lambda: victim not in c.metadata(other, [])["brokers"], 5, "stopped broker out of Metadata")
    print("     SIGTERM: exited 0 in %.2fs, registration gone after %.2fs" % (took, gone))
    assert gone < SESSION_S, "a clean stop waited for the session timeout"
    c.restart(victim)


def _deleted_while_down(c, prefix):
    """A topic with a partition on broker 3 is deleted while broker 3 is stopped; returns
    (name, assignment). Broker 3 is running again when this returns."""
    name = topic_name(prefix)
    assignment = {0: [3], 1: [2], 2: [1]}
    assert kr.create_topics(addr(c, 1), [(name, 3, 1, assignment)])[name][0] == 0
    wait_topic(c, name, 3)
    for p, (leader,) in assignment.items():
        assert kr.produce(addr(c, leader), name, p, [b"old-1", b"old-2"])[0] == 0
    assert c.stop_broker(3) == 0
    c.wait_for(lambda: c.agreed([1, 2]), 10, "brokers 1 and 2 agree broker 3 is gone")
    result = kr.delete_topics(addr(c, 2), [name], timeout_ms=5000)
    assert result[name] in (0, 7), result  # done, or REQUEST_TIMED_OUT while a replica is offline
    c.restart(3)
    wait_topic_gone(c, name, timeout=15)
    return name, assignment


def test_topic_deleted_while_a_replica_is_down_leaves_no_data():
    c = shared()
    name, _ = _deleted_while_down(c, "delwhiledown")
    stale = os.path.join(c.broker(3).data_dir, name + "-0")
    try:
        c.wait_for(lambda: not os.path.exists(stale), 10, "%s removed after broker 3 returned" % stale)
    except TimeoutError:
        raise AssertionError("%s still holds the deleted topic's data %.0fs after broker 3 restarted: %s"
                             % (stale, 10, sorted(os.listdir(stale))))


def test_recreated_topic_never_serves_data_of_the_deleted_one():
    c = shared()
    name, assignment = _deleted_while_down(c, "recreate")
    assert kr.create_topics(addr(c, 1), [(name, 3, 1, assignment)])[name][0] == 0
    view = wait_topic(c, name, 3)
    assert view["partitions"][0]["leader"] == 3, view
    got = kcat_consume(c.bootstrap, name)
    assert got == [], "the re-created topic serves the deleted topic's records: %s" % got
    for p in range(3):
        assert kr.list_offsets(addr(c, assignment[p][0]), name, p) == (0, 0), p
    kcat_produce(c.bootstrap, name, ["new"], partition=0)
    assert kcat_consume(c.bootstrap, name, partition=0) == [(0, 0, "new")]


def test_whole_cluster_restart_keeps_topics_ids_and_data():
    c = shared()
    name = topic_name("wholerestart")
    assert kr.create_topics(addr(c, 2), [(name, 6, 1)])[name][0] == 0
    wait_topic(c, name, 6)
    values = ["w%d" % i for i in range(60)]
    kcat_produce(c.bootstrap, name, values)
    before = c.metadata(1)
    cluster_id = before["cluster_id"]
    epoch = int(c.kazoo.get("/controller_epoch")[0])
    for i in c.ids:
        assert c.stop_broker(i) == 0
    c.wait_for(lambda: c.registered_ids() == [] and c.controller_id() is None, 3,
               "no registration and no controller left after every broker stopped")
    for i in c.ids:
        c.broker(i).start()
    c.wait_ready(SESSION_S + 15)
    after = c.metadata(3)
    assert after["cluster_id"] == cluster_id, (after["cluster_id"], cluster_id)
    # The controller moved as the brokers stopped one by one, and once more at the start.
    assert int(c.kazoo.get("/controller_epoch")[0]) > epoch
    assert {t: v["id"] for t, v in after["topics"].items()} == {t: v["id"] for t, v in before["topics"].items()}
    view = wait_topic(c, name, 6)
    assert leaders(view) == leaders(before["topics"][name]), (leaders(view), leaders(before["topics"][name]))
    got = kcat_consume(c.bootstrap, name)
    assert sorted(v for _, _, v in got) == sorted(values), len(got)


# ---- a 3-node ZooKeeper ensemble ---------------------------------------------------------

_ensemble = None


def ensemble():
    """3 brokers on a 3-node ZooKeeper ensemble, all ZooKeeper nodes running."""
    global _ensemble
    stop_shared()
    if _ensemble is None:
        _ensemble = Cluster(brokers=3, zk_nodes=3, session_timeout_ms=SESSION_MS).start()
    for i in range(3):
        if not _ensemble.zk.is_running(i):
            _ensemble.zk.start_node(i)
    _ensemble.wait_ready(SESSION_S + 15)
    return _ensemble


def stop_ensemble():
    global _ensemble
    if _ensemble is not None:
        _ensemble.stop()
        _ensemble = None


# Retriable for Kafka clients: REQUEST_TIMED_OUT, NOT_CONTROLLER.
RETRIABLE_ADMIN_ERRORS = (7, 41)


def test_zookeeper_ensemble_keeps_working_with_one_node_killed():
    c = ensemble()
    sessions = {i: c.registration_owner(i) for i in c.ids}
    victim = c.zk.leader()  # the harder loss: the survivors elect a new leader
    began = time.monotonic()
    c.zk.kill_node(victim)
    name = topic_name("ensemble")
    transient = []

    def created():
        result = kr.create_topics(addr(c, 2), [(name, 6, 1)])[name]
        if result[0] not in (0, kr.TOPIC_ALREADY_EXISTS):
            transient.append(result)
            return None
        return result
    c.wait_for(created, 15, "CreateTopics with ZooKeeper node %d down" % victim)
    wait_topic(c, name, 6, timeout=15)
    values = ["e%d" % i for i in range(30)]
    kcat_produce(c.bootstrap, name, values)
    got = kcat_consume(c.bootstrap, name)
    assert sorted(v for _, _, v in got) == sorted(values), got
    print("     ZooKeeper leader (node %d of 3) killed: topic created, produced and consumed within %.1fs "
          "(%d CreateTopics failed first: %s)" % (victim, time.monotonic() - began, len(transient),
                                                   sorted({str(t) for t in transient})))
    c.wait_ready(10)
    assert {i: c.registration_owner(i) for i in c.ids} == sessions, \
        "broker sessions did not survive the loss of one ZooKeeper node"
    # Topic deletion and a broker failure still work with two ZooKeeper nodes.
    assert kr.delete_topics(addr(c, 3), [name]) == {name: 0}
    wait_topic_gone(c, name)
    c.zk.start_node(victim)
    name2 = topic_name("ensemble2")
    assert kr.create_topics(addr(c, 3), [(name2, 3, 1)])[name2][0] == 0
    wait_topic(c, name2, 3)


def test_admin_requests_ride_out_a_zookeeper_leader_election():
    c = ensemble()
    victim = c.zk.leader()
    c.zk.kill_node(victim)
    began = time.monotonic()
    answers = []  # (seconds after the kill, broker, answer)
    names = {i: topic_name("election-via-%d" % i) for i in c.ids}
    pending = dict(names)
    while pending and time.monotonic() - began < 15:
        for i, name in list(pending.items()):
            code, message = kr.create_topics(addr(c, i), [(name, 2, 1)])[name]
            answers.append((round(time.monotonic() - began, 2), i, code, message))
            if code in (0, kr.TOPIC_ALREADY_EXISTS):
                del pending[i]
        time.sleep(0.1)
    assert not pending, "CreateTopics never succeeded with ZooKeeper node %d down: %s" % (victim, answers[-3:])
    for i in c.ids:
        wait_topic(c, names[i], 2)
    bad = [a for a in answers if a[2] not in (0, kr.TOPIC_ALREADY_EXISTS) + RETRIABLE_ADMIN_ERRORS]
    print("     ZooKeeper leader killed: %d CreateTopics sent, %d answered with a non-retriable error"
          % (len(answers), len(bad)))
    c.zk.start_node(victim)
    assert not bad, "%d non-retriable errors while ZooKeeper elected a new leader, from %.2fs to %.2fs " \
        "after the kill, e.g. (seconds, broker, code, message) %s" % (len(bad), bad[0][0], bad[-1][0], bad[:3])


# ---- runner ---------------------------------------------------------------------------

TESTS = [
    test_zookeeper_unreachable_exits_naming_the_address,
    test_brokers_register_and_one_controller,
    test_create_topics_through_every_broker_spreads_partitions,
    test_replication_factor_beyond_the_live_brokers_is_refused,
    test_kcat_auto_creates_produces_and_consumes,
    test_metadata_agrees_on_every_broker_with_zookeeper,
    test_not_leader_or_follower_and_clients_recover,
    test_admin_answers_come_after_the_receiving_broker_serves_the_change,
    test_unknown_topic_without_auto_create_is_unknown_topic,
    test_delete_topics_through_any_broker,
    test_create_partitions_through_any_broker,
    test_incremental_alter_configs_through_any_broker,
    test_producer_ids_unique_across_brokers,
    test_consumer_group_commits_across_brokers,
    test_znodes_match_cluster_md,
    test_kafka1_topics_tool_create_describe_delete,
    test_killed_broker_leaves_metadata_and_returns_with_its_data,
    test_killed_controller_is_replaced_and_topics_still_created,
    test_paused_broker_registers_again_by_itself,
    test_paused_controller_steps_down_when_it_resumes,
    test_duplicate_broker_id_is_refused,
    test_clean_stop_deregisters_at_once,
    test_topic_deleted_while_a_replica_is_down_leaves_no_data,
    test_recreated_topic_never_serves_data_of_the_deleted_one,
    test_whole_cluster_restart_keeps_topics_ids_and_data,
    test_zookeeper_ensemble_keeps_working_with_one_node_killed,
    test_admin_requests_ride_out_a_zookeeper_leader_election,
]


def main():
    install_sigterm_handler()
    only = os.environ.get("ONLY")
    passed, failed, skipped = [], [], []
    total = time.monotonic()
    try:
        for test in TESTS:
            if only and only not in test.__name__:
                continue
            began = time.monotonic()
            try:
                test()
                passed.append(test.__name__)
                print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - began), flush=True)
            except Skip as why:
                skipped.append((test.__name__, str(why)))
                print("skip %s: %s" % (test.__name__, why), flush=True)
            except Exception as failure:  # report and go on with the next case
                failed.append(test.__name__)
                bug = getattr(test, "broker_bug", None)
                print("FAIL %s%s (%.1fs): %r" % (test.__name__, " [broker bug: %s]" % bug if bug else "",
                                                 time.monotonic() - began, failure), flush=True)
                traceback.print_exc()
                sys.stdout.flush()
                for running in list(cluster_module._clusters):
                    for i in running.ids:
                        print("--- broker %d log (tail) ---\n%s" % (i, running.broker(i).read_log(3000)))
    finally:
        stop_shared()
        stop_ensemble()
    print("total %.1fs" % (time.monotonic() - total))
    for name, why in skipped:
        print("skipped: %s (%s)" % (name, why))
    print("%d passed, %d failed" % (len(passed), len(failed)) +
          (", %d skipped" % len(skipped) if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
