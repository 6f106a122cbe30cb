"""What one Fetch answer carries, against a real spate, with raw Fetch v4 requests (the
clients hide which partitions an answer filled): partitions in request order while the
response's max_bytes lasts, the first partition with data always, whole batches only,
every requested partition listed, and data from at most as many partitions as one
shard's descriptor cache holds."""
import os
import socket
import struct
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, Runner

VALUE = b"v" * 1000


def create_with_one_batch_each(b, topic, partitions):
    """Every partition gets one batch of one record of the same size."""
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result(timeout=60)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20,
                  "compression.type": "none"})
    for i in range(partitions):
        p.produce(topic, value=VALUE, key=b"k", partition=i)
    assert p.flush(60) == 0, "records left unsent"


def fetch_frame(topic, partitions, max_bytes, partition_max_bytes=1 << 20, min_bytes=0,
                max_wait_ms=0, correlation_id=9):
    """A Fetch v4 request: `partitions` is a list of (index, fetch offset)."""
    client = b"fetch-test"
    header = struct.pack(">hhih", 1, 4, correlation_id, len(client)) + client
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">ih", 1, len(topic)) + topic.encode()
    body += struct.pack(">i", len(partitions))
    for index, offset in partitions:
        body += struct.pack(">iqi", index, offset, partition_max_bytes)
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def batches_of(records):
    """(base offset, record count) of each batch; asserts there is no cut-off batch."""
    batches = []
    at = 0
    while at < len(records):
        base_offset, length = struct.unpack(">qi", records[at:at + 12])
        assert at + 12 + length <= len(records), "a cut-off batch"
        (count,) = struct.unpack(">i", records[at + 57:at + 61])
        batches.append((base_offset, count))
        at += 12 + length
    return batches


def fetch(b, topic, partitions, max_bytes, **options):
    """Sends one Fetch v4 and returns {partition: (error, high watermark, records bytes)},
    checking the answer lists every requested partition exactly once."""
    with socket.create_connection(("127.0.0.1", b.port), timeout=60) as s:
        s.sendall(fetch_frame(topic, partitions, max_bytes, **options))
        (size,) = struct.unpack(">i", read_exactly(s, 4))
        data = read_exactly(s, size)
    at = 4 + 4  # correlation id, throttle time
    (topics,) = struct.unpack(">i", data[at:at + 4])
    at += 4
    assert topics == 1
    (name_length,) = struct.unpack(">h", data[at:at + 2])
    assert data[at + 2:at + 2 + name_length].decode() == topic
    at += 2 + name_length
    (count,) = struct.unpack(">i", data[at:at + 4])
    at += 4
    answer = {}
    order = []
    for _ in range(count):
        index, error, high_watermark, _stable = struct.unpack(">ihqq", data[at:at + 22])
        at += 22
        (aborted,) = struct.unpack(">i", data[at:at + 4])
        at += 4 + max(aborted, 0) * 16
        (length,) = struct.unpack(">i", data[at:at + 4])
        at += 4
        records = data[at:at + max(length, 0)]
        at += max(length, 0)
        assert index not in answer, "partition %d listed twice" % index
        answer[index] = (error, high_watermark, records)
        order.append(index)
    assert at == len(data), "trailing bytes in the answer"
    assert order == [index for index, _ in partitions], order
    return answer


def with_data(answer):
    """The partitions that carry records, each checked to hold whole batches from 0."""
    carrying = []
    for index, (error, high_watermark, records) in answer.items():
        assert error == 0, (index, error)
        assert high_watermark == 1, (index, high_watermark)
        if records:
            assert batches_of(records) == [(0, 1)], (index, batches_of(records))
            carrying.append(index)
    return carrying


def test_max_bytes_fills_partitions_in_request_order():
    """KIP-74: the answer takes partitions in the order they were asked for while
    max_bytes lasts, a partition that does not fit what is left is answered empty, and
    the first partition with data goes out even when it alone exceeds max_bytes."""
    with Broker() as b:
        create_with_one_batch_each(b, "ordered", 12)
        batch = len(fetch(b, "ordered", [(0, 0)], 1 << 20)[0][2])
        assert batch > len(VALUE)
        everything = [(i, 0) for i in range(12)]
        assert sorted(with_data(fetch(b, "ordered", everything, 1 << 20))) == list(range(12))
        # Room for two and a half batches: the first two partitions, in request order.
        room = 2 * batch + batch // 2
        assert sorted(with_data(fetch(b, "ordered", everything, room))) == [0, 1]
        backwards = list(reversed(everything))
        assert sorted(with_data(fetch(b, "ordered", backwards, room))) == [10, 11]
        # Partitions with nothing at their offset do not use the room.
        skipping = [(i, 1) for i in range(3)] + [(i, 0) for i in range(3, 12)]
        assert sorted(with_data(fetch(b, "ordered", skipping, room))) == [3, 4]
        # One byte of room: the first partition with data still comes whole, alone.
        assert with_data(fetch(b, "ordered", skipping, 1)) == [3]
        assert with_data(fetch(b, "ordered", everything, 0)) == [0]


def test_an_answer_carries_at_most_one_cache_of_partitions():
    """Regression (hardening, fetch defect 1): every partition read for a Fetch held its
    segment's descriptor until the answer was sent, and every requested partition was
    read before max_bytes trimmed the answer, so one fetch of 1,000 small partitions held
    1,000 descriptors and ran a broker with a limit of 256 out of them. An answer now
    carries data from at most as many partitions as one shard's descriptor cache holds
    (segment_files_max = 40 over 2 shards: 20), the first ones in request order, and a
    fetch of more comes back at once instead of waiting for min_bytes that the cap
    keeps it from reaching."""
    with Broker(config="segment_files_max = 40\n") as b:
        create_with_one_batch_each(b, "wide", 60)
        everything = [(i, 0) for i in range(60)]
        assert sorted(with_data(fetch(b, "wide", everything, 50 << 20))) == list(range(20))
        rest = [(i, 0) for i in range(20, 60)]
        assert sorted(with_data(fetch(b, "wide", rest, 50 << 20))) == list(range(20, 40))
        start = time.monotonic()
        answer = fetch(b, "wide", everything, 50 << 20, min_bytes=10 << 20,
                       max_wait_ms=30000)
        assert sorted(with_data(answer)) == list(range(20))
        assert time.monotonic() - start < 20, "the full answer waited for min_bytes"


def test_an_answer_carries_at_most_55_mib():
    """A client may ask for max_bytes and partition_max_bytes of INT32_MAX; the answer
    still stops at Kafka's broker-side fetch.max.bytes (55 MiB), so one answer cannot
    outgrow what its int32 frame size describes. Three partitions of about 26.5 MiB each:
    the first two fit whole, the third does not. (The loopback cap is off here: this test
    reaches the broker over loopback.)"""
    with Broker(config="loopback_fetch_max_bytes = 0\n") as b:
        produce_big(b, "big", 3, 30)
        answer = fetch(b, "big", [(i, 0) for i in range(3)], 0x7fffffff,
                       partition_max_bytes=0x7fffffff)
        sizes = [len(answer[i][2]) for i in range(3)]
        assert all(answer[i][0] == 0 and answer[i][1] == 30 for i in range(3)), answer.keys()
        assert sizes[0] > 26 << 20 and sizes[1] > 26 << 20, sizes
        assert sum(sizes) <= 55 << 20, sizes
        for i in range(2):
            assert sum(count for _, count in batches_of(answer[i][2])) == 30


def produce_big(b, topic, partitions, records):
    """`records` records of 900 KiB in each of `partitions` partitions of a new topic."""
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result(timeout=60)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 5,
                  "compression.type": "none", "batch.size": 1 << 20})
    value = b"b" * (900 << 10)
    for i in range(partitions):
        for _ in range(records):
            p.produce(topic, value=value, partition=i)
            p.poll(0)
    assert p.flush(120) == 0, "records left unsent"


def congestion_control():
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        return f.read().strip()


def usable_congestion_controls():
    """The names a broker may set on its sockets: the allowed ones, or any available one
    for root (CAP_NET_ADMIN)."""
    which = "available" if os.geteuid() == 0 else "allowed"
    with open("/proc/sys/net/ipv4/tcp_%s_congestion_control" % which) as f:
        return f.read().split()


def cut_answer(config, cut):
    """Records of the first answer to a 16 MiB fetch of 8 records of 900 KiB, from a broker
    with `config` and loopback_fetch_max_bytes = cut; checks it is whole batches from 0."""
    with Broker(config=config + "loopback_fetch_max_bytes = %d\n" % cut) as b:
        produce_big(b, "paced", 1, 8)
        answer = fetch(b, "paced", [(0, 0)], 16 << 20, partition_max_bytes=16 << 20)
        error, high_watermark, records = answer[0]
        assert error == 0 and high_watermark == 8, (error, high_watermark)
        assert batches_of(records)[0][0] == 0, batches_of(records)
        return records


def test_loopback_answers_are_cut_where_bbr_paces():
    """A connection from loopback takes loopback_congestion_control (unset: the system's).
    Where that is bbr, an answer is cut at loopback_fetch_max_bytes (whole batches, the
    first always); 0 turns the cut off, and other congestion controls never cut."""
    usable = usable_congestion_controls()
    settings = [("", congestion_control()), ('loopback_congestion_control = "reno"\n', "reno")]
    if "bbr" in usable:
        settings.append(('loopback_congestion_control = "bbr"\n', "bbr"))
    else:
        print("    (bbr is not usable here: its cut is tested only if it is the system's)")
    for config, takes in settings:
        for cut in (1 << 20, 0):
            records = cut_answer(config, cut)
            counted = sum(count for _, count in batches_of(records))
            if cut and takes.startswith("bbr"):
                # 900 KiB records: the first batch goes whole, and nothing fits after it.
                assert 0 < len(records) <= cut and counted == 1, (config, len(records), counted)
            else:
                assert counted == 8, (config, cut, counted)


if __name__ == "__main__":
    Runner().run([test_max_bytes_fills_partitions_in_request_order,
                  test_an_answer_carries_at_most_one_cache_of_partitions,
                  test_an_answer_carries_at_most_55_mib,
                  test_loopback_answers_are_cut_where_bbr_paces])
