"""Fetch sessions (KIP-227) and Fetch v13+ (topic ids) on the wire: a full fetch opens a
session, incremental fetches carry and return only what changed, forgotten partitions
leave it, and the errors come as Kafka sends them (FETCH_SESSION_ID_NOT_FOUND 70,
INVALID_FETCH_SESSION_EPOCH 71, FETCH_SESSION_TOPIC_ID_ERROR 106, UNKNOWN_TOPIC_ID 100).
A session follows its connection when the broker moves it to another shard. Also the byte
counts of a 1,000-partition consumer with and without a session
(bench/fetch_sessions.py prints them)."""
import os
import re
import struct
import tempfile
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from groups_test import Raw, cstring, uvarint
from harness import Broker, Runner


class FetchClient(Raw):
    """Raw Fetch v12+ requests; counts the bytes sent and received."""

    def __init__(self, b):
        super().__init__(b)
        self.sent = self.received = 0

    def call(self, api_key, version, body, flexible):
        self.sent += len(body)
        reply = super().call(api_key, version, body, flexible)
        self.received += len(reply.data)
        return reply

    def fetch(self, version, session_id, epoch, partitions, forgotten=(), max_wait_ms=0,
              min_bytes=0):
        """partitions / forgotten: [(topic name or 16-byte id, [(partition, offset)])]."""
        body = b""
        if version < 15:
            body += struct.pack(">i", -1)
        body += struct.pack(">iiibii", max_wait_ms, min_bytes, 1 << 20, 0, session_id, epoch)
        body += uvarint(len(partitions) + 1)
        for topic, parts in partitions:
            body += topic if version >= 13 else cstring(topic)
            body += uvarint(len(parts) + 1)
            for partition, offset in parts:
                body += struct.pack(">iiqiqi", partition, -1, offset, -1, -1, 1 << 20) + b"\x00"
            body += b"\x00"
        body += uvarint(len(forgotten) + 1)
        for topic, parts in forgotten:
            body += topic if version >= 13 else cstring(topic)
            body += uvarint(len(parts) + 1) + b"".join(struct.pack(">i", p) for p in parts)
            body += b"\x00"
        body += cstring("") + b"\x00"
        reply = self.call(1, version, body, flexible=True)
        reply.int32()  # throttle
        error, session = reply.int16(), reply.int32()
        listed = {}
        for _ in range(reply.uvarint() - 1):
            topic = reply.take(16) if version >= 13 else reply.cstring()
            for _ in range(reply.uvarint() - 1):
                index, perror, hw = reply.int32(), reply.int16(), reply.int64()
                reply.int64(), reply.int64()  # last stable offset, log start offset
                n = reply.uvarint()
                reply.take(max(n - 1, 0) * 16 + max(n - 1, 0))  # aborted (empty here)
                reply.int32()  # preferred read replica
                n = reply.uvarint()
                records = reply.take(n - 1) if n > 0 else b""
                reply.tags()
                listed[(topic, index)] = (perror, hw, len(records))
            reply.tags()
        reply.tags()
        return error, session, listed


def create(b, name, partitions):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic(name, num_partitions=partitions,
                                       replication_factor=1)]).values():
        f.result(timeout=60)


def produce(b, topic, partition_values):
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1})
    for partition, value in partition_values:
        p.produce(topic, value=value, partition=partition)
    assert p.flush(30) == 0


def topic_id(b, name):
    """The topic's id from Metadata v12 (raw, since confluent-kafka 1.7 has no ids)."""
    raw = Raw(b)
    body = uvarint(2) + b"\x00" * 16 + cstring(name) + b"\x00" + b"\x01\x00\x00"
    reply = raw.call(3, 12, body, flexible=True)
    reply.int32()
    for _ in range(reply.uvarint() - 1):
        reply.int32(), reply.cstring(), reply.int32(), reply.cstring(), reply.tags()
    reply.cstring(), reply.int32()
    assert reply.uvarint() == 2
    assert reply.int16() == 0 and reply.cstring() == name
    ident = reply.take(16)
    raw.close()
    return ident


def session_figures(b, partitions=1000):
    """Bytes of a consumer of `partitions` partitions with one record in flight, per fetch,
    sessionless and incremental."""
    create(b, "wide", partitions)
    all_parts = [("wide", [(i, 0) for i in range(partitions)])]
    c = FetchClient(b)
    error, session, listed = c.fetch(12, 0, 0, all_parts)
    assert error == 0 and session != 0 and len(listed) == partitions, (error, session, len(listed))
    produce(b, "wide", [(7, b"x" * 100)])
    c.sent = c.received = 0
    error, _, listed = c.fetch(12, session, 1, [])
    assert error == 0 and list(listed) == [("wide", 7)] and listed[("wide", 7)][2] > 0, listed
    incremental = (c.sent, c.received)
    c.sent = c.received = 0
    error, none, listed = c.fetch(12, 0, -1, [("wide", [(i, 1 if i == 7 else 0)
                                                         for i in range(partitions)])])
    assert error == 0 and none == 0 and len(listed) == partitions
    sessionless = (c.sent, c.received)
    c.close()
    return sessionless, incremental


def test_incremental_session_carries_only_changes():
    with Broker() as b:
        sessionless, incremental = session_figures(b)
        print("1,000 partitions, one new record: sessionless fetch %d B request / %d B response;"
              " incremental %d B / %d B" % (sessionless + incremental))
        assert incremental[0] * 50 < sessionless[0] and incremental[1] * 20 < sessionless[1]


def test_session_updates_forgets_and_closes():
    with Broker() as b:
        create(b, "s", 4)
        c = FetchClient(b)
        error, session, listed = c.fetch(12, 0, 0, [("s", [(0, 0), (1, 0), (2, 0)])])
        assert error == 0 and session > 0 and sorted(listed) == [("s", 0), ("s", 1), ("s", 2)]
        # Nothing changed: an empty answer, and the epoch moves on.
        assert c.fetch(12, session, 1, []) == (0, session, {})
        produce(b, "s", [(1, b"one"), (2, b"two"), (3, b"three")])
        error, _, listed = c.fetch(12, session, 2, [])
        assert sorted(listed) == [("s", 1), ("s", 2)], listed  # 3 is not in the session
        # The client moves its positions and adds partition 3; it forgets partition 2.
        error, _, listed = c.fetch(12, session, 3, [("s", [(1, 1), (3, 0)])],
                                   forgotten=[("s", [2])])
        assert sorted(listed) == [("s", 3)] and listed[("s", 3)][2] > 0, listed
        produce(b, "s", [(2, b"again")])
        assert c.fetch(12, session, 4, [("s", [(3, 1)])]) == (0, session, {})
        # A wrong epoch, an unknown id, and ids against a session of names.
        assert c.fetch(12, session, 9, [])[0] == 71
        assert c.fetch(12, session ^ 0x100, 1, [])[0] == 70
        assert c.fetch(13, session, 5, [])[0] == 106
        assert c.fetch(12, session, 5, []) == (0, session, {})
        # Epoch -1 closes the session; it is gone afterwards.
        error, none, listed = c.fetch(12, session, -1, [("s", [(0, 0)])])
        assert error == 0 and none == 0 and list(listed) == [("s", 0)]
        assert c.fetch(12, session, 6, [])[0] == 70
        c.close()


def test_fetch_by_topic_id():
    with Broker() as b:
        create(b, "ids", 2)
        produce(b, "ids", [(0, b"zero"), (1, b"one")])
        ident = topic_id(b, "ids")
        c = FetchClient(b)
        for version in (13, 15, 16, 17):
            error, session, listed = c.fetch(version, 0, -1, [(ident, [(0, 0), (1, 0)])])
            assert error == 0 and session == 0, (version, error)
            assert sorted(listed) == [(ident, 0), (ident, 1)], (version, listed)
            assert all(e == 0 and hw == 1 and size > 0 for e, hw, size in listed.values())
        unknown = b"\x01" * 16
        error, _, listed = c.fetch(13, 0, -1, [(unknown, [(0, 0)]), (ident, [(5, 0)])])
        assert listed[(unknown, 0)][0] == 100 and listed[(ident, 5)][0] == 3, listed
        # A session by id keeps working across fetches.
        error, session, listed = c.fetch(17, 0, 0, [(ident, [(0, 1), (1, 1)])])
        assert error == 0 and session > 0 and len(listed) == 2
        produce(b, "ids", [(1, b"more")])
        error, _, listed = c.fetch(17, session, 1, [])
        assert list(listed) == [(ident, 1)] and listed[(ident, 1)][1] == 2, listed
        c.close()


def test_full_cache_answers_without_session_until_one_goes_stale():
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write("max_incremental_fetch_session_cache_slots = 1\n"
                 "min_incremental_fetch_session_eviction_ms = 1500\n")
    config.close()
    try:
        with Broker(shards=1, extra=["--config", config.name]) as b:
            create(b, "e", 8)
            first, second = FetchClient(b), FetchClient(b)
            _, a, _ = first.fetch(12, 0, 0, [("e", [(i, 0) for i in range(4)])])
            assert a > 0
            # Full: a young session is not evicted, even for a larger one.
            _, none, listed = second.fetch(12, 0, 0, [("e", [(i, 0) for i in range(8)])])
            assert none == 0 and len(listed) == 8
            time.sleep(2)
            # Unused past the eviction time: the larger session takes its slot.
            _, c, _ = second.fetch(12, 0, 0, [("e", [(i, 0) for i in range(8)])])
            assert c > 0 and c != a
            assert first.fetch(12, a, 1, [])[0] == 70
            assert second.fetch(12, c, 1, [])[:2] == (0, c)
            first.close()
            second.close()
    finally:
        os.unlink(config.name)


def test_sessions_together_hold_a_bounded_number_of_partitions():
    # One shard with partitions_max 1000 keeps at most 4,000 session entries.
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write("partitions_max = 1000\n")
    config.close()
    try:
        with Broker(shards=1, extra=["--config", config.name]) as b:
            create(b, "p", 1000)
            everything = [("p", [(i, 0) for i in range(1000)])]
            clients = [FetchClient(b) for _ in range(5)]
            sessions = [c.fetch(12, 0, 0, everything)[1] for c in clients]
            assert all(s > 0 for s in sessions[:4]) and sessions[4] == 0, sessions
            # Growing a session past the bound loses it, as an eviction would.
            clients[0].fetch(12, sessions[0], -1, [])  # close one: room for 1,000
            small = clients[4].fetch(12, 0, 0, [("p", [(0, 0)])])[1]
            assert small > 0
            error = clients[4].fetch(12, small, 1, [("p", [(i, 0) for i in range(1, 1000)])])[0]
            assert error == 0  # exactly at the bound
            new = clients[0].fetch(12, 0, 0, [("p", [(0, 0)])])[1]
            assert new == 0  # no room left
            # One entry more (even for a topic that does not exist) loses the session.
            assert clients[4].fetch(12, small, 2, [("nope", [(0, 0)])])[0] == 70
            assert clients[0].fetch(12, 0, 0, [("p", [(0, 0)])])[1] > 0  # room again
            for c in clients:
                c.close()
    finally:
        os.unlink(config.name)


def moves_of(b):
    """Connections moved between shards, from /metrics (spate_connections_moved_in_total)."""
    port = None
    deadline = time.time() + 10
    while port is None and time.time() < deadline:
        found = re.findall(r"metrics on http://[^ ]+:(\d+)/metrics", b.read_log())
        port = int(found[-1]) if found else time.sleep(0.1)
    assert port, "no metrics line in the broker's log"
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as answer:
        text = answer.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("spate_connections_moved_in_total"))


def test_session_follows_its_connection_to_another_shard():
    """Two shards, a topic of 2 partitions (one per shard). One connection runs a session on
    partition 0 for 24 incremental fetches, then a second session on partition 1: whichever
    partition is on the other shard than the one that accepted the connection, its fetches
    move the connection there (connection_move_requests = 4), and its session comes along:
    every incremental fetch succeeds, and a record produced after the move is fetched."""
    config = os.path.join(tempfile.mkdtemp(prefix="spate-it-"), "moves.toml")
    with open(config, "w") as f:
        f.write('metrics_listen = "127.0.0.1:0"\nconnection_move_requests = 4\n')
    with Broker(shards=2, extra=["--config", config]) as b:
        create(b, "hop", 2)
        produce(b, "hop", [(0, b"a"), (1, b"b")])
        c = FetchClient(b)
        for partition in (0, 1):
            error, session, listed = c.fetch(12, 0, 0, [("hop", [(partition, 0)])])
            assert error == 0 and session != 0 and listed[("hop", partition)][2] > 0, listed
            epoch = 1
            for i in range(24):
                error, same, listed = c.fetch(12, session, epoch, [("hop", [(partition, 1)])])
                assert error == 0 and same == session, (partition, i, error, same)
                epoch += 1
            produce(b, "hop", [(partition, b"after")])
            error, _, listed = c.fetch(12, session, epoch, [], max_wait_ms=5000, min_bytes=1)
            assert error == 0 and listed.get(("hop", partition), (0, 0, 0))[2] > 0, listed
            error, _, _ = c.fetch(12, session, -1, [])  # closes it
            assert error == 0, error
        c.close()
        moved = moves_of(b)
        print("connections moved between shards: %d" % moved)
        assert moved >= 1, moved


if __name__ == "__main__":
    Runner().run([test_incremental_session_carries_only_changes,
                  test_session_updates_forgets_and_closes,
                  test_fetch_by_topic_id,
                  test_full_cache_answers_without_session_until_one_goes_stale,
                  test_sessions_together_hold_a_bounded_number_of_partitions,
                  test_session_follows_its_connection_to_another_shard])
