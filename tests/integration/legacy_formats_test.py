"""Clients older than Kafka 0.11: Produce v0-v2 carrying message format v0/v1 is
converted to record batch v2 on the way in, and Fetch v0-v3 is answered with format
v0/v1 converted on the way out (unless the topic's message.downconversion.enable is
false: UNSUPPORTED_VERSION). Raw protocol for the exact versions and formats, then
kafka-python (Debian's python3-kafka 2.0.2) pinned to old protocol versions, and a
modern client (confluent-kafka) reading what old ones wrote."""
import gzip
import struct
import time
import zlib

from confluent_kafka.admin import AdminClient, NewTopic

from configs_test import consume_messages
from groups_test import Raw, Reader, string
from harness import Broker, Runner


def legacy_bytes(data):
    return struct.pack(">i", -1) if data is None else struct.pack(">i", len(data)) + data


def message(magic, key, value, offset=0, timestamp=None, attributes=0):
    body = struct.pack(">bb", magic, attributes)
    if magic == 1:
        body += struct.pack(">q", timestamp if timestamp is not None else -1)
    body += legacy_bytes(key) + legacy_bytes(value)
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return struct.pack(">qiI", offset, len(body) + 4, crc) + body


def wrapper(magic, inner_messages, timestamp=None):
    """A gzip wrapper; magic 1 inner offsets are relative, the wrapper's is the last one."""
    inner = b"".join(message(magic, k, v, offset=i, timestamp=timestamp)
                     for i, (k, v) in enumerate(inner_messages))
    return message(magic, None, gzip.compress(inner), offset=len(inner_messages) - 1,
                   timestamp=timestamp, attributes=1)


def produce(raw, version, topic, message_set, acks=1):
    body = struct.pack(">hi", acks, 10000) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(message_set))
    body += message_set
    reply = raw.call(0, version, body, flexible=False)
    assert reply.int32() == 1 and reply.string() == topic and reply.int32() == 1
    partition, error, base_offset = reply.int32(), reply.int16(), reply.int64()
    assert partition == 0
    return error, base_offset


def fetch(raw, version, topic, offset, max_bytes=1 << 20):
    body = struct.pack(">iii", -1, 100, 0)
    if version >= 3:
        body += struct.pack(">i", max_bytes)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iqi", 0, offset, max_bytes)
    reply = raw.call(1, version, body, flexible=False)
    if version >= 1:
        reply.int32()  # throttle
    assert reply.int32() == 1 and reply.string() == topic and reply.int32() == 1
    partition, error, high_watermark = reply.int32(), reply.int16(), reply.int64()
    size = reply.int32()
    return error, high_watermark, parse_set(reply.take(size) if size > 0 else b"")


def parse_set(data):
    """[(offset, magic, timestamp, key, value)] of an uncompressed message set."""
    out = []
    r = Reader(data)
    while len(data) - r.at >= 12:
        offset, size = r.int64(), r.int32()
        if size > len(data) - r.at:
            break
        body = r.take(size)
        crc = struct.unpack(">I", body[:4])[0]
        assert crc == zlib.crc32(body[4:]) & 0xFFFFFFFF, "CRC of a fetched message"
        m = Reader(body[4:])
        magic, attributes = m.int8(), m.int8()
        assert attributes & 7 == 0, "down-converted messages are uncompressed"
        timestamp = m.int64() if magic == 1 else None
        key_len = m.int32()
        key = m.take(key_len) if key_len >= 0 else None
        value_len = m.int32()
        value = m.take(value_len) if value_len >= 0 else None
        out.append((offset, magic, timestamp, key, value))
    return out


def create(b, name, config=None):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                       config=config or {})]).values():
        f.result(timeout=30)


def consume(b, topic, count):
    return [(m.offset(), m.key(), m.value(), m.timestamp()[1])
            for m in consume_messages(b, topic, count, "modern-" + topic)]


def test_old_produce_versions_convert_and_old_fetches_read_back():
    with Broker() as b:
        create(b, "old")
        raw = Raw(b)
        now = int(time.time() * 1000)
        # Produce v0, message format v0: three messages, one with a null key.
        v0 = message(0, b"a", b"zero") + message(0, None, b"one") + message(0, b"c", b"two")
        assert produce(raw, 0, "old", v0) == (0, 0)
        # Produce v1, a gzip wrapper of format v0 (absolute inner offsets).
        assert produce(raw, 1, "old", wrapper(0, [(b"d", b"three"), (b"e", b"four")])) == (0, 3)
        # Produce v2, format v1 with timestamps, plain and in a gzip wrapper.
        v1 = message(1, b"f", b"five", timestamp=now - 5) + message(1, b"g", b"six", timestamp=now)
        assert produce(raw, 2, "old", v1) == (0, 5)
        assert produce(raw, 2, "old", wrapper(1, [(b"h", b"seven"), (b"i", b"eight")],
                                              timestamp=now)) == (0, 7)
        values = [b"zero", b"one", b"two", b"three", b"four", b"five", b"six", b"seven", b"eight"]
        for version, magic in ((3, 1), (2, 1), (1, 0), (0, 0)):
            error, hw, got = fetch(raw, version, "old", 0)
            assert error == 0 and hw == 9, (version, error, hw)
            assert [m[0] for m in got] == list(range(9)), (version, got)
            assert [m[4] for m in got] == values and all(m[1] == magic for m in got), version
            assert got[1][3] is None and got[0][3] == b"a"
            if magic == 1:
                assert [m[2] for m in got[:5]] == [-1] * 5, got
                assert [m[2] for m in got[5:]] == [now - 5, now, now, now], got
        # From the middle of a batch: the batch holding the offset comes whole, as Kafka.
        error, _, got = fetch(raw, 3, "old", 4)
        assert error == 0 and got[0][0] <= 4 and got[-1][0] == 8
        raw.close()
        # A modern client reads what the old ones wrote.
        got = consume(b, "old", 9)
        assert [(o, v) for o, _, v, _ in got] == list(enumerate(values)), got
        assert got[6][3] == now


def test_corrupt_and_malformed_legacy_sets_are_refused():
    with Broker() as b:
        create(b, "bad")
        raw = Raw(b)
        good = message(1, b"k", b"v", timestamp=1)
        corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
        assert produce(raw, 2, "bad", corrupt)[0] == 2  # CORRUPT_MESSAGE
        nested = message(1, None, gzip.compress(wrapper(1, [(b"k", b"v")], timestamp=1)),
                         timestamp=1, attributes=1)
        assert produce(raw, 2, "bad", nested)[0] == 2
        assert produce(raw, 2, "bad", good[:20])[0] == 2  # no complete message
        assert fetch(raw, 3, "bad", 0)[:2] == (0, 0)
        raw.close()


def test_downconversion_can_be_turned_off():
    with Broker() as b:
        create(b, "modern-only", {"message.downconversion.enable": "false"})
        raw = Raw(b)
        assert produce(raw, 2, "modern-only", message(1, b"k", b"v", timestamp=1)) == (0, 0)
        error, _, got = fetch(raw, 3, "modern-only", 0)
        assert error == 35 and got == [], error  # UNSUPPORTED_VERSION
        raw.close()
        assert [v for _, _, v, _ in consume(b, "modern-only", 1)] == [b"v"]


def test_kafka_python_with_old_protocol_versions():
    try:
        from kafka import KafkaConsumer, KafkaProducer
    except ImportError:
        print("SKIP kafka-python (python3-kafka) is not installed")
        return
    with Broker() as b:
        for api_version, topic in (((0, 9), "kp-09"), ((0, 10, 1), "kp-0101")):
            create(b, topic)
            producer = KafkaProducer(bootstrap_servers=b.bootstrap, api_version=api_version,
                                     compression_type="gzip", linger_ms=5)
            for i in range(50):
                producer.send(topic, key=b"k%d" % (i % 3), value=b"value %d" % i)
            producer.flush(30)
            producer.close(10)
            consumer = KafkaConsumer(topic, bootstrap_servers=b.bootstrap,
                                     api_version=api_version, auto_offset_reset="earliest",
                                     consumer_timeout_ms=10000, group_id=None)
            got = [(m.offset, m.value) for m in consumer]
            consumer.close()
            assert got == [(i, b"value %d" % i) for i in range(50)], (api_version, got[:3])
            assert [v for _, _, v, _ in consume(b, topic, 50)] == [b"value %d" % i
                                                                   for i in range(50)]


if __name__ == "__main__":
    Runner().run([test_old_produce_versions_convert_and_old_fetches_read_back,
                  test_corrupt_and_malformed_legacy_sets_are_refused,
                  test_downconversion_can_be_turned_off,
                  test_kafka_python_with_old_protocol_versions])
