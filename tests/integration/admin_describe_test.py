"""DescribeLogDirs, DescribeProducers and DescribeTopicPartitions by hand on the wire: the
edge cases Kafka's tools do not reach (null topic list, unknown topics and partitions,
cursor paging and a cursor outside the topic list)."""
import struct

from groups_test import Raw, cstring, uvarint
from harness import Broker, Runner


def describe_topic_partitions(raw, topics, limit, cursor=None):
    body = uvarint(len(topics) + 1) + b"".join(cstring(t) + b"\x00" for t in topics)
    body += struct.pack(">i", limit)
    if cursor is None:
        body += struct.pack(">b", -1)
    else:
        body += struct.pack(">b", 1) + cstring(cursor[0]) + struct.pack(">i", cursor[1]) + b"\x00"
    reply = raw.call(75, 0, body + b"\x00", flexible=True)
    reply.int32()  # throttle
    out = []
    for _ in range(reply.uvarint() - 1):
        error, name = reply.int16(), reply.cstring()
        reply.take(16)  # topic id
        reply.int8()  # is_internal
        partitions = []
        for _ in range(reply.uvarint() - 1):
            reply.int16()
            index = reply.int32()
            reply.int32(), reply.int32()
            for _list in range(5):  # replicas, isr, elr, last known elr, offline
                n = reply.uvarint()
                reply.take(4 * max(n - 1, 0))
            reply.tags()
            partitions.append(index)
        reply.int32()  # authorized operations
        reply.tags()
        out.append((name, error, partitions))
    cursor = None
    if reply.int8() == 1:
        cursor = (reply.cstring(), reply.int32())
        reply.tags()
    return out, cursor


def test_describe_topic_partitions_pages_and_refuses_bad_cursors():
    with Broker() as b:
        raw = Raw(b)
        create(raw, "alpha", 3)
        create(raw, "beta", 2)
        topics, cursor = describe_topic_partitions(raw, [], 2)
        assert topics == [("alpha", 0, [0, 1])] and cursor == ("alpha", 2), (topics, cursor)
        topics, cursor = describe_topic_partitions(raw, [], 2, cursor)
        assert topics == [("alpha", 0, [2]), ("beta", 0, [0])] and cursor == ("beta", 1), topics
        topics, cursor = describe_topic_partitions(raw, [], 2, cursor)
        assert topics == [("beta", 0, [1])] and cursor is None, (topics, cursor)
        # Exactly full at a topic's end: the next answer starts at the next topic.
        topics, cursor = describe_topic_partitions(raw, ["beta", "alpha"], 3)
        assert topics == [("alpha", 0, [0, 1, 2])] and cursor == ("beta", 0), (topics, cursor)
        # Unknown topics are named with UNKNOWN_TOPIC_OR_PARTITION (3).
        topics, cursor = describe_topic_partitions(raw, ["nope", "beta"], 100)
        assert topics == [("beta", 0, [0, 1]), ("nope", 3, [])], topics
        # A cursor topic outside the list, or a negative partition: INVALID_REQUEST (42).
        topics, _ = describe_topic_partitions(raw, ["alpha"], 100, ("beta", 0))
        assert topics == [("alpha", 42, [])], topics
        topics, _ = describe_topic_partitions(raw, ["alpha"], 100, ("alpha", -1))
        assert topics == [("alpha", 42, [])], topics
        raw.close()


def create(raw, name, partitions):
    # CreateTopics v5 (flexible): one topic, no assignments, no configs, timeout 10 s.
    body = uvarint(2) + cstring(name) + struct.pack(">ih", partitions, -1) + uvarint(1) + uvarint(1)
    body += b"\x00" + struct.pack(">i", 10000) + struct.pack(">b", 0) + b"\x00"
    reply = raw.call(19, 5, body, flexible=True)
    reply.int32()
    assert reply.uvarint() == 2 and reply.cstring() == name
    assert reply.int16() == 0


def describe_log_dirs(raw, topics, version=4):
    if topics is None:
        body = uvarint(0)
    else:
        body = uvarint(len(topics) + 1)
        for name, partitions in topics:
            body += cstring(name) + uvarint(len(partitions) + 1)
            body += b"".join(struct.pack(">i", p) for p in partitions) + b"\x00"
    reply = raw.call(35, version, body + b"\x00", flexible=True)
    reply.int32()
    assert reply.int16() == 0  # v3+
    dirs = []
    for _ in range(reply.uvarint() - 1):
        error, path = reply.int16(), reply.cstring()
        sizes = {}
        for _ in range(reply.uvarint() - 1):
            name = reply.cstring()
            for _ in range(reply.uvarint() - 1):
                index, size, lag, future = reply.int32(), reply.int64(), reply.int64(), reply.int8()
                reply.tags()
                sizes[(name, index)] = (size, lag, future)
            reply.tags()
        total, usable = reply.int64(), reply.int64()
        reply.tags()
        dirs.append((error, path, sizes, total, usable))
    return dirs


def test_describe_log_dirs_all_some_and_unknown():
    with Broker() as b:
        raw = Raw(b)
        create(raw, "logs", 2)
        [(error, path, sizes, total, usable)] = describe_log_dirs(raw, None)
        assert error == 0 and path.startswith("/") and total >= usable > 0, (path, total, usable)
        assert sizes == {("logs", 0): (0, 0, 0), ("logs", 1): (0, 0, 0)}, sizes
        # Unknown topics and partitions are left out, as Kafka does.
        [(_, _, sizes, _, _)] = describe_log_dirs(raw, [("logs", [1, 7]), ("missing", [0])])
        assert sizes == {("logs", 1): (0, 0, 0)}, sizes
        raw.close()


def test_describe_producers_unknown_partition():
    with Broker() as b:
        raw = Raw(b)
        create(raw, "prod", 1)
        body = uvarint(2) + cstring("prod") + uvarint(3) + struct.pack(">ii", 0, 5) + b"\x00" + b"\x00"
        reply = raw.call(61, 0, body, flexible=True)
        reply.int32()
        assert reply.uvarint() == 2 and reply.cstring() == "prod"
        got = []
        for _ in range(reply.uvarint() - 1):
            index, error, _message = reply.int32(), reply.int16(), reply.cstring()
            producers = reply.uvarint() - 1
            reply.tags()
            got.append((index, error, producers))
        assert got == [(0, 0, 0), (5, 3, 0)], got
        raw.close()


if __name__ == "__main__":
    Runner().run([test_describe_topic_partitions_pages_and_refuses_bad_cursors,
                  test_describe_log_dirs_all_some_and_unknown,
                  test_describe_producers_unknown_partition])
