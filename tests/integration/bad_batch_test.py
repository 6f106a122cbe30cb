"""Producer batches whose records disagree with their header, and decompression bombs,
against a real spate (issue 10, defects 3 and 4): they are refused before anything is
appended, and ordinary producers with every codec still work.

The batches are built here byte by byte and sent in a raw Produce v7 request, because
no client library would send them. Zstd frames are written by hand too (raw and RLE
blocks of the zstd format, RFC 8878), so the test needs no compression module."""
import socket
import struct
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, Runner

INVALID_RECORD = 87
MESSAGE_TOO_LARGE = 10
CODEC_ZSTD = 4


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for byte in data:
        c = CRC32C_TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(value):
    """Zig-zag LEB128, as record fields are encoded."""
    v = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def record(offset_delta, value, key=b"k"):
    body = b"\x00" + varint(0) + varint(offset_delta)
    body += varint(len(key)) + key if key is not None else varint(-1)
    body += varint(len(value)) + value + varint(0)
    return varint(len(body)) + body


def batch(section, count, last_offset_delta, codec=0):
    """A producer's batch around an already encoded (maybe compressed) records section,
    with a correct CRC: every header check passes, whatever the records say."""
    after_crc = struct.pack(">hiqqqhii", codec, last_offset_delta, 1700000000000,
                            1700000000000, -1, -1, -1, count) + section
    length = 4 + 1 + 4 + len(after_crc)  # leader epoch, magic, crc, the rest
    return (struct.pack(">qii", 0, length, -1) + b"\x02" +
            struct.pack(">I", crc32c(after_crc)) + after_crc)


def zstd_frame(blocks):
    """A zstd frame: no content size, no checksum, a 128 KiB window (the largest block
    size). `blocks` are (raw bytes) or (byte value, repeat count) for RLE blocks."""
    out = bytearray(struct.pack("<I", 0xFD2FB528))
    out += bytes([0x00, 7 << 3])  # descriptor: window descriptor follows; window 2^17
    for i, block in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        if isinstance(block, bytes):
            out += (last | (0 << 1) | (len(block) << 3)).to_bytes(3, "little") + block
        else:
            value, repeat = block
            out += (last | (1 << 1) | (repeat << 3)).to_bytes(3, "little") + bytes([value])
    return bytes(out)


def zstd_bomb(value_bytes):
    """One record whose value is `value_bytes` zeros, zstd-compressed as RLE blocks of
    128 KiB: a 1 GiB value takes 8192 blocks of 4 bytes, about 33 KB in all."""
    record_body_length = 1 + 1 + 1 + 2 + len(varint(value_bytes)) + value_bytes + 1
    prefix = varint(record_body_length) + b"\x00" + varint(0) + varint(0)
    prefix += varint(1) + b"k" + varint(value_bytes)
    zeros = value_bytes + 1  # the value, then headers_count 0, which is a zero byte
    blocks = [prefix]
    while zeros > 0:
        run = min(zeros, 128 * 1024)
        blocks.append((0, run))
        zeros -= run
    return zstd_frame(blocks)


def produce_request(topic, partition, records, correlation_id=1, acks=-1):
    client = b"bad-batch-test"
    header = struct.pack(">hhih", 0, 7, correlation_id, len(client)) + client
    name = topic.encode()
    body = struct.pack(">hhi", -1, acks, 30000)
    body += struct.pack(">ih", 1, len(name)) + name
    body += struct.pack(">iii", 1, partition, len(records)) + records
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def read_frame(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "broker closed the connection"
            data += chunk
        return data

    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def produce_on(sock, topic, partition, records, correlation_id=1):
    """Sends one Produce v7 of `records` to `partition` on the connection `sock` and returns
    (error_code, base_offset)."""
    sock.sendall(produce_request(topic, partition, records, correlation_id))
    frame = read_frame(sock)
    assert struct.unpack_from(">i", frame, 0)[0] == correlation_id
    at = 4 + 4  # correlation id, topic count
    (name_length,) = struct.unpack_from(">h", frame, at)
    at += 2 + name_length + 4  # name, partition count
    index, error, base_offset = struct.unpack_from(">ihq", frame, at)
    assert index == partition, index
    return error, base_offset


def produce_raw(b, topic, records):
    """Sends one Produce v7 for partition 0 on a connection of its own: (error_code,
    base_offset)."""
    with socket.create_connection(("127.0.0.1", b.port), timeout=30) as s:
        return produce_on(s, topic, 0, records)


def create_topic(b, topic, **configs):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, 1, config=configs)])
    for f in futures.values():
        f.result(timeout=30)


def log_end(b, topic):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def rss_bytes(b):
    with open("/proc/%d/status" % b.process.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for the broker")


# Regression (issue 10, defect 3): the broker checked a batch's header (CRC, count
# against last_offset_delta) but never its records, and appended the header's count:
# 5 claimed with 1 present took offsets 0-4, and a zstd batch claiming 2^31 - 1 moved
# the log end by 2^31. The records are now walked (decompressed when needed) before
# the append, and any disagreement is INVALID_RECORD with the log end unmoved.
def test_lying_record_count_is_invalid_record():
    with Broker() as b:
        create_topic(b, "liars")
        value = b"v" * 64
        # A truthful batch first, so a refusal below is not the request encoding's fault.
        error, base = produce_raw(b, "liars", batch(record(0, value), 1, 0))
        assert (error, base) == (0, 0), (error, base)
        assert log_end(b, "liars") == 1

        error, _ = produce_raw(b, "liars", batch(record(0, value), 5, 4))
        assert error == INVALID_RECORD, error
        assert log_end(b, "liars") == 1

        two = record(0, value) + record(1, value)
        error, _ = produce_raw(b, "liars", batch(two, 1, 0))
        assert error == INVALID_RECORD, error
        error, _ = produce_raw(b, "liars", batch(record(0, value) + record(0, value), 2, 1))
        assert error == INVALID_RECORD, error
        error, _ = produce_raw(b, "liars", batch(record(0, value) + b"\x00", 1, 0))
        assert error == INVALID_RECORD, error

        huge = 2**31 - 1
        error, _ = produce_raw(b, "liars", batch(zstd_frame([record(0, value)]), huge, huge - 1,
                                                 CODEC_ZSTD))
        assert error == INVALID_RECORD, error
        assert log_end(b, "liars") == 1
        # The same zstd framing with a truthful count is accepted.
        error, base = produce_raw(b, "liars", batch(zstd_frame([record(0, value)]), 1, 0,
                                                    CODEC_ZSTD))
        assert (error, base) == (0, 1), (error, base)
        assert log_end(b, "liars") == 2


# Regression (issue 10, defect 4): a 33 KB zstd batch expanding to 1 GiB was
# acknowledged and stored, and consumers then failed on it. The decompressed size is
# now bounded by max.message.bytes while decompressing into a per-shard buffer that
# never grows past the bound, so the bomb is refused (MESSAGE_TOO_LARGE) and the
# broker's memory does not follow the expansion.
def test_zstd_bomb_is_refused_and_rss_stays_small():
    with Broker() as b:
        create_topic(b, "bombs")
        bomb = batch(zstd_bomb(1 << 30), 1, 0, CODEC_ZSTD)
        assert len(bomb) < 40000, len(bomb)
        before = rss_bytes(b)
        for _ in range(3):
            error, _ = produce_raw(b, "bombs", bomb)
            assert error == MESSAGE_TOO_LARGE, error
        grown = rss_bytes(b) - before
        assert grown < 64 << 20, "broker RSS grew by %d bytes" % grown
        assert log_end(b, "bombs") == 0
        # A small value in the same hand-made framing is accepted: the refusal is the
        # size, not the framing.
        error, base = produce_raw(b, "bombs", batch(zstd_bomb(1000), 1, 0, CODEC_ZSTD))
        assert (error, base) == (0, 0), (error, base)


def test_every_codec_from_a_real_producer_still_works():
    with Broker() as b:
        codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
        for codec in codecs:
            create_topic(b, "codec-" + codec)
        for codec in codecs:
            topic = "codec-" + codec
            p = Producer({"bootstrap.servers": b.bootstrap, "compression.type": codec,
                          "linger.ms": 20, "acks": "all"})
            errors = []
            for i in range(500):
                p.produce(topic, key=b"key-%d" % i, value=(b"value %d " % i) * 20,
                          on_delivery=lambda err, msg: err and errors.append(err))
            assert p.flush(60) == 0
            assert not errors, (codec, errors[:3])
            assert log_end(b, topic) == 500, (codec, log_end(b, topic))
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g-" + codec,
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            c.assign([TopicPartition(topic, 0, 0)])
            got = []
            deadline = time.time() + 30
            while len(got) < 500 and time.time() < deadline:
                msg = c.poll(0.5)
                if msg is not None:
                    assert msg.error() is None, (codec, msg.error())
                    got.append(msg.value())
            c.close()
            assert len(got) == 500, (codec, len(got))
            assert got[7] == b"value 7 " * 20


if __name__ == "__main__":
    Runner().run([test_lying_record_count_is_invalid_record,
                  test_zstd_bomb_is_refused_and_rss_stays_small,
                  test_every_codec_from_a_real_producer_still_works])
