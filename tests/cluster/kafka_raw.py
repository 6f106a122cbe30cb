"""Kafka requests by hand, sent to one chosen broker (clients pick the broker themselves:
librdkafka sends admin requests to the controller and produce requests to the leader,
and the cluster tests need to address a particular broker).

metadata_request uses Metadata v12 (flexible, carries topic ids); the admin requests use
their last non-flexible versions: CreateTopics v4, DeleteTopics v3, CreatePartitions v1,
IncrementalAlterConfigs v0, ListOffsets v1, Produce v3. Every function takes an address
(host, port) and returns plain Python values.
"""
import base64
import socket
import struct
import time
import uuid

CLIENT_ID = b"cluster-test"

# Kafka error codes the tests name.
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
NOT_CONTROLLER = 41


# ---- encoding ----------------------------------------------------------------------

def uvarint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def cstring(text):
    """A compact (flexible) nullable string."""
    if text is None:
        return b"\x00"
    data = text.encode()
    return uvarint(len(data) + 1) + data


def string(text):
    """A classic nullable string (int16 length)."""
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def array(items, encode):
    return struct.pack(">i", len(items)) + b"".join(encode(item) for item in items)


def int32s(values):
    return array(list(values), lambda v: struct.pack(">i", v))


class Reader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, n):
        if self.at + n > len(self.data):
            raise ValueError("short response (%d bytes, wanted %d at %d)" % (len(self.data), n, self.at))
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

    def cstring(self):
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def string(self):
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def compact_int32s(self):
        n = self.uvarint()
        return [self.int32() for _ in range(max(n - 1, 0))]

    def count(self):
        return max(self.int32(), 0)

    def tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        data += chunk
    return data


def call(address, api_key, version, body, flexible=False, timeout=10):
    """One request on a fresh connection; returns a Reader positioned after the header."""
    header = struct.pack(">hhih", api_key, version, 1, len(CLIENT_ID)) + CLIENT_ID
    if flexible:
        header += b"\x00"
    payload = header + body
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        reply = Reader(_recv_exact(sock, size))
    if reply.int32() != 1:
        raise ValueError("wrong correlation id")
    if flexible:
        reply.tags()
    return reply


def uuid_from_base64(text):
    """ZooKeeper's topic_id (url-safe base64 without padding) as a uuid.UUID."""
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


# ---- Metadata v12 ---------------------------------------------------------------------

def metadata_request(address, topics=None, timeout=5):
    """{"brokers": {id: (host, port, rack)}, "cluster_id", "controller_id",
        "topics": {name: {"error", "id" (uuid.UUID), "partitions": {index: {"error",
        "leader", "leader_epoch", "replicas", "isr", "offline"}}}}}; topics None asks
    for every topic. Never creates topics."""
    body = b"\x00" if topics is None else uvarint(len(topics) + 1) + b"".join(
        b"\x00" * 16 + cstring(t) + b"\x00" for t in topics)
    body += b"\x00\x00\x00"  # allow_auto_topic_creation false, no authorized ops, no tags
    r = call(address, 3, 12, body, flexible=True, timeout=timeout)
    r.int32()  # throttle
    out = {"brokers": {}, "topics": {}}
    for _ in range(r.uvarint() - 1):
        node = r.int32()
        host = r.cstring()
        port = r.int32()
        rack = r.cstring()
        r.tags()
        out["brokers"][node] = (host, port, rack)
    out["cluster_id"] = r.cstring()
    out["controller_id"] = r.int32()
    for _ in range(r.uvarint() - 1):
        error = r.int16()
        name = r.cstring()
        topic_id = uuid.UUID(bytes=r.take(16))
        r.int8()  # is_internal
        partitions = {}
        for _ in range(r.uvarint() - 1):
            p = {"error": r.int16()}
            index = r.int32()
            p["leader"] = r.int32()
            p["leader_epoch"] = r.int32()
            p["replicas"] = r.compact_int32s()
            p["isr"] = r.compact_int32s()
            p["offline"] = r.compact_int32s()
            r.tags()
            partitions[index] = p
        r.int32()  # authorized operations
        r.tags()
        out["topics"][name] = {"error": error, "id": topic_id, "partitions": partitions}
    r.tags()
    return out


# ---- admin requests -----------------------------------------------------------------

def create_topics(address, topics, timeout_ms=30000, validate_only=False, version=4):
    """topics: [(name, partitions, replication_factor, {index: [brokers]} or None,
    {config: value} or None)]. Returns {name: (error_code, error_message)} (v4; v2 and v3
    have the same request and answer, for brokers without v4). With an assignment,
    partitions and replication factor are sent as -1, as Kafka requires."""
    assert 2 <= version <= 4
    def topic(t):
        name, partitions, rf, assignment, configs = (list(t) + [None, None])[:5]
        if assignment:
            partitions, rf = -1, -1
        out = string(name) + struct.pack(">ih", partitions, rf)
        out += array(sorted((assignment or {}).items()),
                     lambda a: struct.pack(">i", a[0]) + int32s(a[1]))
        out += array(sorted((configs or {}).items()), lambda c: string(c[0]) + string(c[1]))
        return out
    body = array(topics, topic) + struct.pack(">ib", timeout_ms, 1 if validate_only else 0)
    r = call(address, 19, version, body, timeout=timeout_ms / 1000 + 10)
    r.int32()  # throttle
    out = {}
    for _ in range(r.count()):
        name = r.string()
        out[name] = (r.int16(), r.string())
    return out


def delete_topics(address, names, timeout_ms=30000, version=3):
    """Returns {name: error_code} (v3; v1 and v2 have the same request and answer)."""
    assert 1 <= version <= 3
    body = array(names, string) + struct.pack(">i", timeout_ms)
    r = call(address, 20, version, body, timeout=timeout_ms / 1000 + 10)
    r.int32()
    out = {}
    for _ in range(r.count()):
        name = r.string()
        out[name] = r.int16()
    return out


def create_partitions(address, topics, timeout_ms=30000, validate_only=False):
    """topics: [(name, total_count, [[brokers] per new partition] or None)].
    Returns {name: (error_code, error_message)} (v1)."""
    def topic(t):
        name, count, assignments = (list(t) + [None])[:3]
        out = string(name) + struct.pack(">i", count)
        out += struct.pack(">i", -1) if assignments is None else array(assignments, int32s)
        return out
    body = array(topics, topic) + struct.pack(">ib", timeout_ms, 1 if validate_only else 0)
    r = call(address, 37, 1, body, timeout=timeout_ms / 1000 + 10)
    r.int32()
    out = {}
    for _ in range(r.count()):
        name = r.string()
        out[name] = (r.int16(), r.string())
    return out


TOPIC_RESOURCE = 2
SET, DELETE = 0, 1


def incremental_alter_configs(address, topic, changes, validate_only=False):
    """changes: [(name, operation, value)] on one topic. Returns (error_code, message) (v0)."""
    configs = array(changes, lambda c: string(c[0]) + struct.pack(">b", c[1]) + string(c[2]))
    resource = struct.pack(">b", TOPIC_RESOURCE) + string(topic) + configs
    body = array([resource], lambda x: x) + struct.pack(">b", 1 if validate_only else 0)
    r = call(address, 44, 0, body)
    r.int32()
    results = []
    for _ in range(r.count()):
        code, message = r.int16(), r.string()
        r.int8()
        r.string()
        results.append((code, message))
    return results[0]


def describe_topic_configs(address, topic):
    """DescribeConfigs v1 of one topic: (error_code, {name: value})."""
    resource = struct.pack(">b", TOPIC_RESOURCE) + string(topic) + struct.pack(">i", -1)
    body = array([resource], lambda x: x) + struct.pack(">b", 0)
    r = call(address, 32, 1, body)
    r.int32()
    error, configs = None, {}
    for _ in range(r.count()):
        error = r.int16()
        r.string()  # message
        r.int8()
        r.string()
        for _ in range(r.count()):
            name = r.string()
            value = r.string()
            r.int8()  # read_only
            r.int8()  # config_source
            r.int8()  # is_sensitive
            for _ in range(r.count()):  # synonyms
                r.string(), r.string(), r.int8()
            configs[name] = value
    return error, configs


# ---- data plane -----------------------------------------------------------------------

def list_offsets(address, topic, partition, timestamp=-1):
    """ListOffsets v1 for one partition: (error_code, offset)."""
    body = struct.pack(">i", -1) + array(
        [topic], lambda t: string(t) + array([partition], lambda p: struct.pack(">iq", p, timestamp)))
    r = call(address, 2, 1, body)
    for _ in range(r.count()):
        r.string()
        for _ in range(r.count()):
            r.int32()
            error = r.int16()
            r.int64()
            return error, r.int64()
    raise ValueError("empty ListOffsets response")


def record_batch(values):
    from kafka.record.default_records import DefaultRecordBatchBuilder
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i, value in enumerate(values):
        builder.append(i, timestamp=now, key=None, value=value, headers=[])
    return bytes(builder.build())


def produce(address, topic, partition, values, acks=1):
    """Produce v3 of one batch to one partition: (error_code, base_offset)."""
    batch = record_batch(values)
    partition_data = struct.pack(">ii", partition, len(batch)) + batch
    body = string(None) + struct.pack(">hi", acks, 10000) + array(
        [topic], lambda t: string(t) + array([partition_data], lambda p: p))
    r = call(address, 0, 3, body)
    for _ in range(r.count()):
        r.string()
        for _ in range(r.count()):
            r.int32()
            error = r.int16()
            offset = r.int64()
            r.int64()
            return error, offset
    raise ValueError("empty Produce response")
