"""Log compaction against a real spate with confluent-kafka-python (librdkafka): a topic
with cleanup.policy=compact and small segments gets many updates of a few keys; the
broker's housekeeping (1 s ticks) compacts the closed segments; a consumer reading from
the beginning sees every key's last value, offsets increasing, and in the closed
segments no older version of any key."""
import os
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from harness import Broker, Runner

KEYS = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon"]
ROUNDS = 400


def read_partition(b, topic):
    """Every record of partition 0, from the beginning up to the end seen now."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused-" + topic,
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while time.time() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                break
            raise KafkaException(msg.error())
        got.append((msg.offset(), msg.key(), msg.value()))
    c.close()
    return got


def active_segment_base(b, topic):
    names = [f for f in os.listdir(os.path.join(b.data_dir, topic + "-0")) if f.endswith(".log")]
    return max(int(name[:-4]) for name in names), len(names)


def test_compacted_topic_keeps_the_last_value_per_key():
    with Broker() as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        topic = "compacted"
        futures = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config={
            "cleanup.policy": "compact", "segment.bytes": "16384", "segment.ms": "3600000",
            "delete.retention.ms": "3600000"})])
        for f in futures.values():
            f.result(timeout=30)
        described = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
        for f in described.values():
            assert f.result(timeout=30)["cleanup.policy"].value == "compact"

        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2,
                      "batch.size": 2048})
        last = {}
        for round_number in range(ROUNDS):
            for key in KEYS:
                value = b"%s-%05d-" % (key, round_number) + b"x" * 80
                while True:
                    try:
                        p.produce(topic, key=key, value=value, partition=0)
                        break
                    except BufferError:
                        p.poll(0.1)
                last[key] = value
        assert p.flush(60) == 0
        produced = ROUNDS * len(KEYS)

        # Housekeeping syncs the rolled segments, then compacts them a tick later.
        deadline = time.time() + 60
        while True:
            got = read_partition(b, topic)
            base, segments = active_segment_base(b, topic)
            closed = [(o, k) for o, k, _ in got if o < base]
            duplicates = len(closed) - len(set(k for _, k in closed))
            if duplicates == 0 and len(got) < produced // 4:
                break
            assert time.time() < deadline, "not compacted: %d records, %d duplicates in closed " \
                "segments, %d segments" % (len(got), duplicates, segments)
            time.sleep(1)

        print("records after compaction: %d of %d, %d segments" % (len(got), produced, segments))
        assert segments > 5, segments
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(set(offsets)), "offsets must strictly increase"
        assert offsets[-1] == produced - 1, offsets[-1]
        final = {}
        for _, key, value in got:
            final[key] = value
        assert final == last, "each key's last value must be present"
        # Keys are never keyless here and every record's value names its key.
        assert all(v.startswith(k + b"-") for _, k, v in got)


def test_cleanup_policy_values():
    with Broker() as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        ok = a.create_topics([NewTopic("both", num_partitions=1, replication_factor=1,
                                       config={"cleanup.policy": "compact,delete"})])
        for f in ok.values():
            f.result(timeout=30)
        described = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "both")])
        for f in described.values():
            assert f.result(timeout=30)["cleanup.policy"].value == "compact,delete"
        bad = a.create_topics([NewTopic("bad", num_partitions=1, replication_factor=1,
                                        config={"cleanup.policy": "shred"})])
        for f in bad.values():
            try:
                f.result(timeout=30)
                raise AssertionError("cleanup.policy=shred was accepted")
            except KafkaException as e:
                assert e.args[0].code() == KafkaError.INVALID_CONFIG, e


def test_keyless_record_refused_by_compacted_topic():
    with Broker() as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in a.create_topics([NewTopic("keyed", num_partitions=1, replication_factor=1,
                                           config={"cleanup.policy": "compact"})]).values():
            f.result(timeout=30)
        # Retries off: the refusal is not retriable, and the test wants the first answer.
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "retries": 0,
                      "compression.type": "gzip"})
        outcomes = {}

        def report(err, msg):
            outcomes[msg.key()] = err

        p.produce("keyed", value=b"no key", partition=0, on_delivery=report)
        p.flush(30)
        p.produce("keyed", key=b"k", value=b"keyed", partition=0, on_delivery=report)
        p.flush(30)
        assert outcomes[None] is not None and outcomes[None].code() == KafkaError.INVALID_RECORD, \
            outcomes
        assert outcomes[b"k"] is None, outcomes
        # The refused record was not written: the keyed one got offset 0.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "keyless-check",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("keyed", 0, 0)])
        got = None
        deadline = time.time() + 20
        while got is None and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got = m
        c.close()
        assert got is not None and got.offset() == 0 and got.key() == b"k", got


if __name__ == "__main__":
    Runner().run([test_compacted_topic_keeps_the_last_value_per_key,
                  test_cleanup_policy_values,
                  test_keyless_record_refused_by_compacted_topic])
