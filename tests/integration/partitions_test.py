"""Partition limits against a real spate with confluent-kafka-python (librdkafka):
partitions_max refuses CreateTopics and CreatePartitions (validate_only too) before
anything is created, and a broker whose partitions outnumber its descriptor limit
starts and serves them, because segment descriptors are cached within a budget."""
import os
import resource
import shutil
import socket
import struct
import tempfile
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from harness import Broker, Runner


def config_file(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.write(text)
    f.close()
    return f.name


def refusal(future):
    """The KafkaError a failed admin future carries (the test fails if it succeeded)."""
    try:
        future.result(timeout=30)
    except KafkaException as failure:
        return failure.args[0]
    raise AssertionError("the request was accepted")


def partition_dirs(b):
    return sorted(d for d in os.listdir(b.data_dir) if os.path.isdir(os.path.join(b.data_dir, d))
                  and not d.startswith("__"))


def test_create_topics_beyond_partitions_max_is_refused():
    """Regression (issue 10, defect 7): a CreateTopics of 100,000 partitions was accepted
    and bricked the broker. With partitions_max = 10, every request that would take the
    broker past 10 partitions is refused with POLICY_VIOLATION and a message naming the
    key, and nothing of it is created: no metadata, no partition directory."""
    path = config_file("partitions_max = 10\n")
    try:
        with Broker(extra=["--config", path]) as b:
            a = AdminClient({"bootstrap.servers": b.bootstrap})
            a.create_topics([NewTopic("first", num_partitions=8, replication_factor=1)])[
                "first"].result(timeout=30)
            err = refusal(a.create_topics([NewTopic("huge", num_partitions=100000,
                                                    replication_factor=1)])["huge"])
            assert err.code() == KafkaError.POLICY_VIOLATION, err
            assert "partitions_max = 10" in err.str(), err.str()
            # validate_only answers what the creation would.
            err = refusal(a.create_topics([NewTopic("three", num_partitions=3,
                                                    replication_factor=1)],
                                          validate_only=True)["three"])
            assert err.code() == KafkaError.POLICY_VIOLATION, err
            a.create_topics([NewTopic("two", num_partitions=2, replication_factor=1)],
                            validate_only=True)["two"].result(timeout=30)
            # Topics of one request count together: the first fits, the second does not.
            futures = a.create_topics([NewTopic("a", num_partitions=1, replication_factor=1),
                                       NewTopic("b", num_partitions=2, replication_factor=1)])
            futures["a"].result(timeout=30)
            assert refusal(futures["b"]).code() == KafkaError.POLICY_VIOLATION
            topics = a.list_topics(timeout=10).topics
            assert sorted(t for t in topics if not t.startswith("__")) == ["a", "first"], topics
            assert len(partition_dirs(b)) == 9, partition_dirs(b)
    finally:
        os.unlink(path)


def test_create_partitions_beyond_partitions_max_is_refused():
    """CreatePartitions counts against the same broker-wide limit, validate_only too."""
    path = config_file("partitions_max = 10\n")
    try:
        with Broker(extra=["--config", path]) as b:
            a = AdminClient({"bootstrap.servers": b.bootstrap})
            a.create_topics([NewTopic("grow", num_partitions=4, replication_factor=1)])[
                "grow"].result(timeout=30)
            err = refusal(a.create_partitions([NewPartitions("grow", 11)])["grow"])
            assert err.code() == KafkaError.POLICY_VIOLATION, err
            assert "partitions_max" in err.str(), err.str()
            err = refusal(a.create_partitions([NewPartitions("grow", 11)],
                                              validate_only=True)["grow"])
            assert err.code() == KafkaError.POLICY_VIOLATION, err
            a.create_partitions([NewPartitions("grow", 10)])["grow"].result(timeout=30)
            assert len(a.list_topics(timeout=10).topics["grow"].partitions) == 10
            assert len(partition_dirs(b)) == 10
    finally:
        os.unlink(path)


def test_metadata_that_cannot_be_saved_is_a_storage_error():
    """Regression (hardening, fetch defect 2): when metadata.toml could not be written,
    CreatePartitions and DeleteTopics answered the errno as a Kafka error code (ENOSPC,
    28, read as INVALID_COMMIT_OFFSET_SIZE). A directory where the broker writes its
    temporary metadata file makes every save fail with EISDIR (21, which would read as
    INVALID_REQUIRED_ACKS): the answer is KAFKA_STORAGE_ERROR, nothing changes, and
    everything works again once the directory is gone."""
    with Broker() as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        a.create_topics([NewTopic("stuck", num_partitions=2, replication_factor=1)])[
            "stuck"].result(timeout=30)
        blocker = os.path.join(b.data_dir, "metadata.toml.tmp")
        os.mkdir(blocker)
        err = refusal(a.create_partitions([NewPartitions("stuck", 4)])["stuck"])
        assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
        assert "metadata" in err.str(), err.str()
        err = refusal(a.create_topics([NewTopic("other", num_partitions=1,
                                                replication_factor=1)])["other"])
        assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
        err = refusal(a.delete_topics(["stuck"])["stuck"])
        assert err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
        assert len(a.list_topics(timeout=10).topics["stuck"].partitions) == 2
        os.rmdir(blocker)
        a.create_partitions([NewPartitions("stuck", 4)])["stuck"].result(timeout=30)
        assert len(a.list_topics(timeout=10).topics["stuck"].partitions) == 4


PARTITIONS = 1000
DESCRIPTORS = 256


def produce_one_each(b, topic, value):
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20})
    errors = []
    for i in range(PARTITIONS):
        p.produce(topic, value=value, partition=i,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(60) == 0, "records left unsent"
    assert not errors, errors[:5]


def consume_all(b, topic, expected_per_partition):
    """Reads every partition from the start, all of them assigned at once.

    Regression (hardening, fetch defect 1): a Fetch read every requested partition and
    held each one's segment descriptor until its answer was sent, so one fetch of these
    1,000 partitions needed more descriptors than the limit of 256 and accept failed with
    EMFILE (this test used to assign 50 partitions at a time to get around it). An answer
    now carries data from at most one shard's cache of partitions (64 here)."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "many-reader",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
    seen = {}
    want = PARTITIONS * expected_per_partition
    deadline = time.time() + 120
    while sum(seen.values()) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen[m.partition()] = seen.get(m.partition(), 0) + 1
    c.close()
    assert len(seen) == PARTITIONS, "records from %d partitions" % len(seen)
    assert all(n == expected_per_partition for n in seen.values()), seen


def test_start_with_more_partitions_than_descriptors():
    """Regression (issue 10, defect 7): every partition kept its active segment open, so
    a broker holding more partitions than its descriptor limit could not create them and
    failed every restart with "Too many open files". Here the limit is 256, soft and
    hard (so the broker cannot raise it), and 1,000 partitions are created, written,
    restarted cleanly and after kill -9, and served: segment descriptors are a cache
    of half the limit, reopened on demand."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, DESCRIPTORS))
    path = config_file("partitions_max = %d\n" % (2 * PARTITIONS))
    data = tempfile.mkdtemp(prefix="spate-it-many-")
    b = Broker(data_dir=data, extra=["--config", path])
    try:
        with b:
            a = AdminClient({"bootstrap.servers": b.bootstrap})
            a.create_topics([NewTopic("many", num_partitions=PARTITIONS,
                                      replication_factor=1)])["many"].result(timeout=120)
            produce_one_each(b, "many", b"before restart")
            assert b.stop() == 0
            b.start()
            consume_all(b, "many", 1)
            b.kill()
            b.start()
            produce_one_each(b, "many", b"after kill")
            consume_all(b, "many", 2)
            assert "Too many open files" not in b.read_log(), b.read_log()
    finally:
        os.unlink(path)
        # The harness keeps the log of a directory it was given (next to it, named
        # through it): it goes first, while that name still resolves.
        if os.path.exists(b.log_path):
            os.unlink(b.log_path)
        shutil.rmtree(data, ignore_errors=True)


def create_partitions_raw(b, topics, correlation_id=11):
    """Sends CreatePartitions v0 with `topics` as (name, count) pairs, duplicates
    included (AdminClient merges or refuses those before they reach the broker), and
    returns the results as (name, error_code, error_message) in answer order."""
    client = b"raw"
    header = struct.pack(">hhih", 37, 0, correlation_id, len(client)) + client
    body = struct.pack(">i", len(topics))
    for name, count in topics:
        body += struct.pack(">h", len(name)) + name.encode() + struct.pack(">ii", count, -1)
    body += struct.pack(">ib", 30000, 0)
    frame = header + body
    host, port = b.bootstrap.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        (size,) = struct.unpack(">i", read_exactly(s, 4))
        data = read_exactly(s, size)
    (got_correlation_id, _throttle_ms, count) = struct.unpack(">iii", data[:12])
    assert got_correlation_id == correlation_id, got_correlation_id
    at = 12
    results = []
    for _ in range(count):
        (length,) = struct.unpack(">h", data[at:at + 2])
        name = data[at + 2:at + 2 + length].decode()
        at += 2 + length
        (code, message_length) = struct.unpack(">hh", data[at:at + 4])
        at += 4
        message = None
        if message_length >= 0:
            message = data[at:at + message_length].decode()
            at += message_length
        results.append((name, code, message))
    assert at == len(data), (at, len(data))
    return results


def read_exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_create_partitions_refuses_a_topic_named_twice():
    """A topic named twice in one CreatePartitions request used to be grown once per
    entry, each entry answered as a success (to 3, then to 5 here), so the count the
    client ends with depended on the order of its entries. Every entry of such a topic
    is now refused with INVALID_REQUEST and none is applied, as Kafka answers; the
    other topics of the request are grown as usual."""
    with Broker() as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        for future in a.create_topics([NewTopic("twice", num_partitions=1, replication_factor=1),
                                       NewTopic("once", num_partitions=1,
                                                replication_factor=1)]).values():
            future.result(timeout=30)
        results = create_partitions_raw(b, [("twice", 3), ("once", 2), ("twice", 5)])
        invalid_request = 42
        duplicate = (invalid_request, "Duplicate topic in request.")
        assert [r[0] for r in results] == ["twice", "once", "twice"], results
        assert results[0][1:] == duplicate, results
        assert results[1][1] == 0, results
        assert results[2][1:] == duplicate, results
        topics = a.list_topics(timeout=10).topics
        assert len(topics["twice"].partitions) == 1, topics["twice"].partitions
        assert len(topics["once"].partitions) == 2, topics["once"].partitions


if __name__ == "__main__":
    # The last test lowers this process's descriptor limit for good (a hard limit cannot
    # be raised again), so it runs last.
    Runner().run([test_create_topics_beyond_partitions_max_is_refused,
                  test_create_partitions_beyond_partitions_max_is_refused,
                  test_create_partitions_refuses_a_topic_named_twice,
                  test_metadata_that_cannot_be_saved_is_a_storage_error,
                  test_start_with_more_partitions_than_descriptors])
