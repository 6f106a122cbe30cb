"""Consumer groups against a real spate: confluent-kafka-python (librdkafka) consumers
sharing partitions while members leave and join, separate groups each receiving
everything, committed offsets surviving clean and kill -9 restarts, and kcat -G."""
import atexit
import os
import subprocess
import tempfile
import time

import socket
import struct

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, Runner


def group_broker(data_dir=None, port=None, settings=""):
    """A broker whose first rebalance of an empty group waits 100 ms, not Kafka's 3 s;
    `settings` adds TOML lines."""
    handle, path = tempfile.mkstemp(prefix="spate-groups-", suffix=".toml")
    with os.fdopen(handle, "w") as f:
        f.write("group_initial_rebalance_delay_ms = 100\n" + settings)
    atexit.register(os.unlink, path)
    return Broker(data_dir=data_dir, port=port, extra=["--config", path])


def create_topic(b, topic, partitions):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for f in futures.values():
        f.result(timeout=30)


def produce(b, topic, values, partitions=1):
    """Produces `values` spread round-robin over `partitions` (librdkafka's sticky
    partitioner would put a quick burst of keyless records into one partition)."""
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "acks": "all"})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0


def consumer(b, group, **extra):
    settings = {"bootstrap.servers": b.bootstrap, "group.id": group,
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                "fetch.wait.max.ms": 100}
    settings.update(extra)
    return Consumer(settings)


def drain(consumers, seen, expected_total, timeout=60, commit=True):
    """Polls every consumer in turn until `seen` holds expected_total values; each value
    is committed (synchronously) right after it is received."""
    deadline = time.time() + timeout
    while sum(len(v) for v in seen.values()) < expected_total:
        if time.time() > deadline:
            raise AssertionError("timed out with %d of %d records" % (
                sum(len(v) for v in seen.values()), expected_total))
        for c in consumers:
            msg = c.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                # Partition EOF is informational. UNKNOWN_TOPIC_OR_PART can come from a
                # broker that was restarted a moment ago and has not opened its partitions
                # yet; librdkafka retries by itself.
                if msg.error().code() in (KafkaError._PARTITION_EOF,
                                          KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise KafkaException(msg.error())
            seen.setdefault(msg.value(), []).append(id(c))
            if commit:
                c.commit(message=msg, asynchronous=False)


def settle(consumers, partitions, timeout=60):
    """Polls until the consumers' assignments cover every partition exactly once."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for c in consumers:
            c.poll(0.05)
        owned = [tp.partition for c in consumers for tp in c.assignment()]
        if sorted(owned) == list(range(partitions)) and all(c.assignment() for c in consumers):
            return
    raise AssertionError("assignments did not settle: %r" % (
        [[tp.partition for tp in c.assignment()] for c in consumers],))


def test_three_consumers_share_partitions_while_members_leave_and_join():
    with group_broker() as b:
        create_topic(b, "shared", 6)
        members = [consumer(b, "sharing") for _ in range(3)]
        for c in members:
            c.subscribe(["shared"])
        settle(members, 6)
        seen = {}
        batch1 = [b"a-%d" % i for i in range(300)]
        produce(b, "shared", batch1, partitions=6)
        drain(members, seen, 300)
        # Every member got a share of the work.
        assert len({owner for owners in seen.values() for owner in owners}) == 3
        # One member leaves; the other two take over its partitions.
        members[0].close()
        members = members[1:]
        settle(members, 6)
        produce(b, "shared", [b"b-%d" % i for i in range(300)], partitions=6)
        drain(members, seen, 600)
        # A new member joins.
        newcomer = consumer(b, "sharing")
        newcomer.subscribe(["shared"])
        members.append(newcomer)
        settle(members, 6)
        produce(b, "shared", [b"c-%d" % i for i in range(300)], partitions=6)
        drain(members, seen, 900)
        duplicates = [v for v, owners in seen.items() if len(owners) != 1]
        assert not duplicates, duplicates[:5]
        assert len(seen) == 900
        for c in members:
            c.close()


def test_two_groups_each_receive_everything():
    with group_broker() as b:
        create_topic(b, "fanout", 3)
        produce(b, "fanout", [b"m-%d" % i for i in range(200)], partitions=3)
        for group in ("first", "second"):
            c = consumer(b, group)
            c.subscribe(["fanout"])
            seen = {}
            drain([c], seen, 200)
            assert len(seen) == 200, group
            c.close()


def consume_and_commit(b, group, topic, count):
    c = consumer(b, group)
    c.subscribe([topic])
    seen = {}
    drain([c], seen, count)
    c.close()
    return seen


def resume_after_restart(sig, settings=""):
    with group_broker(settings=settings) as first:
        data_dir, port = first.data_dir, first.port
        create_topic(first, "resume", 2)
        produce(first, "resume", [b"r-%d" % i for i in range(100)], partitions=2)
        seen = consume_and_commit(first, "resumers", "resume", 100)
        assert len(seen) == 100
        first.stop(sig)
        again = group_broker(data_dir=data_dir, port=port, settings=settings)
        with again:
            c = consumer(again, "resumers")
            committed = c.committed([TopicPartition("resume", 0), TopicPartition("resume", 1)],
                                    timeout=30)
            assert sum(tp.offset for tp in committed) == 100, committed
            produce(again, "resume", [b"s-%d" % i for i in range(20)], partitions=2)
            c.subscribe(["resume"])
            fresh = {}
            drain([c], fresh, 20)
            # Nothing before the committed offsets comes back.
            assert all(v.startswith(b"s-") for v in fresh), list(fresh)[:5]
            c.close()


def test_committed_offsets_survive_a_clean_restart():
    import signal
    resume_after_restart(signal.SIGTERM)


def test_committed_offsets_survive_kill_9():
    import signal
    resume_after_restart(signal.SIGKILL)


def test_fsynced_commits_survive_kill_9():
    import signal
    resume_after_restart(signal.SIGKILL, settings='acks_all_policy = "fsync"\n')


def test_live_group_survives_a_broker_restart_without_rebalancing():
    with group_broker() as first:
        data_dir, port = first.data_dir, first.port
        create_topic(first, "steady", 4)
        changes = {"count": 0}

        def count(consumer, partitions):
            changes["count"] += 1

        members = [consumer(first, "steady-group") for _ in range(2)]
        for c in members:
            c.subscribe(["steady"], on_assign=count, on_revoke=count)
        settle(members, 4)
        before = changes["count"]
        assignments = [sorted(tp.partition for tp in c.assignment()) for c in members]
        first.stop()
        with group_broker(data_dir=data_dir, port=port) as again:
            produce(again, "steady", [b"after-%d" % i for i in range(40)], partitions=4)
            seen = {}
            drain(members, seen, 40)
            # Give several heartbeats (every 500 ms) the chance to report a rebalance.
            deadline = time.time() + 2
            while time.time() < deadline:
                for c in members:
                    c.poll(0.05)
            # The members kept their ids, generation and partitions across the restart.
            assert changes["count"] == before, "a rebalance happened"
            assert [sorted(tp.partition for tp in c.assignment()) for c in members] == assignments
            for c in members:
                c.close()


def test_admin_lists_and_describes_groups():
    with group_broker() as b:
        create_topic(b, "described", 2)
        produce(b, "described", [b"d-%d" % i for i in range(10)])
        c = consumer(b, "watched")
        c.subscribe(["described"])
        settle([c], 2)
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        groups = {g.id: g for g in admin.list_groups(timeout=30)}
        assert "watched" in groups, groups
        g = groups["watched"]
        assert g.state == "Stable", g.state
        assert g.protocol_type == "consumer"
        assert g.protocol in ("range", "roundrobin"), g.protocol
        assert len(g.members) == 1
        assert len(g.members[0].assignment) > 0
        c.close()


def test_static_member_restart_keeps_assignment_without_rebalance():
    with group_broker() as b:
        create_topic(b, "static", 4)
        rebalances = {"b": 0}

        def count_b(consumer, partitions):
            rebalances["b"] += 1

        a = consumer(b, "statics", **{"group.instance.id": "instance-a"})
        other = consumer(b, "statics", **{"group.instance.id": "instance-b"})
        a.subscribe(["static"])
        other.subscribe(["static"], on_assign=count_b, on_revoke=count_b)
        settle([a, other], 4)
        before = sorted(tp.partition for tp in a.assignment())
        counted = rebalances["b"]
        # A static member leaves without LeaveGroup and comes back within its session.
        a.close()
        a = consumer(b, "statics", **{"group.instance.id": "instance-a"})
        a.subscribe(["static"])
        settle([a, other], 4)
        assert sorted(tp.partition for tp in a.assignment()) == before
        for _ in range(20):
            other.poll(0.05)
        assert rebalances["b"] == counted, "the other member saw a rebalance"
        a.close()
        other.close()


# ---- raw requests for the APIs confluent-kafka-python 1.7 does not expose -------------

class Raw:
    """One connection speaking the Kafka protocol by hand (just enough for the tests)."""

    def __init__(self, b):
        self.sock = socket.create_connection(("127.0.0.1", b.port), timeout=10)
        self.correlation = 0

    def close(self):
        self.sock.close()

    def call(self, api_key, version, body, flexible):
        self.correlation += 1
        client = b"groups-test"
        header = struct.pack(">hhih", api_key, version, self.correlation, len(client)) + client
        if flexible:
            header += b"\x00"  # no tagged fields
        payload = header + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", self.recv_exact(4))[0]
        reply = Reader(self.recv_exact(size))
        assert reply.int32() == self.correlation
        if flexible:
            reply.tags()
        return reply

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "connection closed by the broker"
            data += chunk
        return data


def uvarint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def cstring(text):
    data = text.encode()
    return uvarint(len(data) + 1) + data


def string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        piece = self.data[self.at:self.at + n]
        self.at += n
        return piece

    def int8(self):
        return struct.unpack(">b", self.take(1))[0]

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def int64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def string(self):
        return self.take(self.int16()).decode()

    def cstring(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def test_find_coordinator_batched_keys_and_transactions():
    with group_broker() as b:
        raw = Raw(b)
        # v4: key_type, then the batch of keys.
        reply = raw.call(10, 4, struct.pack(">b", 0) + uvarint(3) + cstring("g1") + cstring("g2")
                         + b"\x00", flexible=True)
        reply.int32()
        coordinators = []
        for _ in range(reply.uvarint() - 1):
            key, node, host, port = reply.cstring(), reply.int32(), reply.cstring(), reply.int32()
            error, _message = reply.int16(), reply.cstring()
            reply.tags()
            coordinators.append((key, node, host, port, error))
        assert coordinators == [("g1", 0, "127.0.0.1", b.port, 0),
                                ("g2", 0, "127.0.0.1", b.port, 0)], coordinators
        # Transactions are not supported: a fatal, explicit error (53).
        reply = raw.call(10, 1, string("txn") + struct.pack(">b", 1), flexible=False)
        reply.int32()
        assert reply.int16() == 53
        raw.close()


def delete_groups(raw, names):
    body = struct.pack(">i", len(names)) + b"".join(string(n) for n in names)
    reply = raw.call(42, 0, body, flexible=False)
    reply.int32()
    return {reply.string(): reply.int16() for _ in range(reply.int32())}


def offset_fetch_v8(raw, groups):
    body = uvarint(len(groups) + 1)
    for g in groups:
        body += cstring(g) + uvarint(0) + b"\x00"  # null topics: every partition
    body += b"\x00" + b"\x00"  # require_stable false, no tags
    reply = raw.call(9, 8, body, flexible=True)
    reply.int32()
    result = {}
    for _ in range(reply.uvarint() - 1):
        group = reply.cstring()
        offsets = {}
        for _ in range(reply.uvarint() - 1):
            topic = reply.cstring()
            for _ in range(reply.uvarint() - 1):
                partition, offset = reply.int32(), reply.int64()
                reply.int32()
                reply.cstring()
                assert reply.int16() == 0
                reply.tags()
                offsets[(topic, partition)] = offset
            reply.tags()
        assert reply.int16() == 0
        reply.tags()
        result[group] = offsets
    return result


def test_offset_fetch_multi_group_and_delete_groups():
    with group_broker() as b:
        create_topic(b, "multi", 2)
        # Consumers that manage their own partitions commit with generation -1.
        for group, base in (("multi-a", 10), ("multi-b", 20)):
            c = consumer(b, group)
            c.commit(offsets=[TopicPartition("multi", 0, base), TopicPartition("multi", 1, base + 1)],
                     asynchronous=False)
            c.close()
        raw = Raw(b)
        fetched = offset_fetch_v8(raw, ["multi-a", "multi-b", "nobody"])
        assert fetched == {"multi-a": {("multi", 0): 10, ("multi", 1): 11},
                           "multi-b": {("multi", 0): 20, ("multi", 1): 21},
                           "nobody": {}}, fetched
        # A group with a live member cannot be deleted.
        produce(b, "multi", [b"x"])
        live = consumer(b, "multi-live")
        live.subscribe(["multi"])
        settle([live], 2)
        assert delete_groups(raw, ["multi-a", "multi-live", "never"]) == {
            "multi-a": 0, "multi-live": 68, "never": 69}
        live.close()
        assert offset_fetch_v8(raw, ["multi-a"]) == {"multi-a": {}}
        raw.close()


def test_kcat_balanced_consumer():
    with group_broker() as b:
        create_topic(b, "kcat-group", 4)
        produce(b, "kcat-group", [b"k-%d" % i for i in range(200)], partitions=4)
        done = subprocess.run(
            ["kcat", "-b", b.bootstrap, "-G", "kcat-readers", "-X", "auto.offset.reset=earliest",
             "-e", "-f", "%s\n", "kcat-group"],
            capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        got = done.stdout.split()
        assert sorted(got) == sorted(b"k-%d" % i for i in range(200)), len(got)
        # kcat committed what it read: a second run sees only new records.
        produce(b, "kcat-group", [b"n-%d" % i for i in range(10)], partitions=4)
        done = subprocess.run(
            ["kcat", "-b", b.bootstrap, "-G", "kcat-readers", "-X", "auto.offset.reset=earliest",
             "-e", "-f", "%s\n", "kcat-group"],
            capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert sorted(done.stdout.split()) == sorted(b"n-%d" % i for i in range(10)), done.stdout


def _crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _legacy_commit(group, topic, partition, offset, metadata=b"m"):
    """One commit record of the per-shard offsets files of earlier versions
    (broker/group/offset_store.h): uint32 body length, uint32 CRC-32C, body."""
    def string(b):
        return struct.pack(">h", len(b)) + b
    body = (struct.pack(">bq", 1, 1700000000000) + string(group.encode()) +
            string(topic.encode()) + struct.pack(">iqi", partition, offset, -1) + string(metadata))
    return struct.pack(">II", len(body), _crc32c(body)) + body


def committed_of(b, group, topic, partitions):
    c = consumer(b, group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return [tp.offset for tp in got]
    finally:
        c.close()


def test_upgrade_imports_the_old_offsets_files_once():
    data_dir = tempfile.mkdtemp(prefix="spate-upgrade-")
    old = os.path.join(data_dir, "__consumer_offsets")
    os.makedirs(old)
    with open(os.path.join(old, "offsets-7-0.log"), "wb") as f:
        f.write(_legacy_commit("legacy-a", "up", 0, 5) + _legacy_commit("legacy-a", "up", 1, 9))
        f.write(_legacy_commit("legacy-a", "up", 0, 6))  # the later commit wins
    with open(os.path.join(old, "offsets-7-1.log"), "wb") as f:
        f.write(_legacy_commit("legacy-b", "up", 0, 3))
    with open(os.path.join(old, "offsets-6-0.log"), "wb") as f:  # an older epoch: ignored
        f.write(_legacy_commit("legacy-b", "up", 0, 99))
    with open(os.path.join(old, "state"), "w") as f:
        f.write("7 2\n")
    try:
        with group_broker(data_dir=data_dir) as b:
            create_topic(b, "up", 2)
            assert committed_of(b, "legacy-a", "up", 2) == [6, 9]
            assert committed_of(b, "legacy-b", "up", 2)[0] == 3
            deadline = time.time() + 20
            while os.path.exists(old) and time.time() < deadline:
                time.sleep(0.1)
            assert not os.path.exists(old), os.listdir(old)
            assert os.path.isdir(os.path.join(data_dir, "__consumer_offsets-0"))
            c = consumer(b, "legacy-a")
            c.commit(offsets=[TopicPartition("up", 0, 40)], asynchronous=False)
            c.close()
        # Imported once: a restart keeps what was committed since.
        with group_broker(data_dir=data_dir) as b:
            assert committed_of(b, "legacy-a", "up", 2) == [40, 9]
            assert committed_of(b, "legacy-b", "up", 2)[0] == 3
    finally:
        import shutil
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    Runner().run([test_three_consumers_share_partitions_while_members_leave_and_join,
                  test_two_groups_each_receive_everything,
                  test_committed_offsets_survive_a_clean_restart,
                  test_committed_offsets_survive_kill_9,
                  test_fsynced_commits_survive_kill_9,
                  test_live_group_survives_a_broker_restart_without_rebalancing,
                  test_admin_lists_and_describes_groups,
                  test_static_member_restart_keeps_assignment_without_rebalance,
                  test_find_coordinator_batched_keys_and_transactions,
                  test_offset_fetch_multi_group_and_delete_groups,
                  test_kcat_balanced_consumer,
                  test_upgrade_imports_the_old_offsets_files_once])
