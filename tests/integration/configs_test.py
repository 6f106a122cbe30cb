"""Topic configs as Kafka has them: every name Kafka's LogConfig defines is accepted,
validated, stored across restarts and described with its source; the ones with a meaning
here are honoured (compression.type recompresses, the timestamp windows refuse records
with INVALID_TIMESTAMP, min.insync.replicas refuses acks=all with NOT_ENOUGH_REPLICAS);
broker configs are described. Driven by confluent-kafka-python (librdkafka)."""
import glob
import os
import struct
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

from harness import Broker, Runner

# Every topic config of Kafka's LogConfig, with a valid value that is not its default.
EVERY_CONFIG = {
    "cleanup.policy": "compact,delete",
    "compression.type": "lz4",
    "compression.gzip.level": "5",
    "compression.lz4.level": "12",
    "compression.zstd.level": "7",
    "delete.retention.ms": "7200000",
    "file.delete.delay.ms": "1000",
    "flush.messages": "1000",
    "flush.ms": "5000",
    "follower.replication.throttled.replicas": "0:1,1:2",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "-1",
    "local.retention.ms": "-1",
    "max.compaction.lag.ms": "86400000",
    "max.message.bytes": "2000000",
    "message.downconversion.enable": "false",
    "message.format.version": "2.8-IV1",
    "message.timestamp.after.max.ms": "3600000",
    "message.timestamp.before.max.ms": "86400000",
    "message.timestamp.difference.max.ms": "172800000",
    "message.timestamp.type": "LogAppendTime",
    "min.cleanable.dirty.ratio": "0.25",
    "min.compaction.lag.ms": "1000",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.log.copy.disable": "true",
    "remote.log.delete.on.disable": "true",
    "remote.storage.enable": "false",
    "retention.bytes": "1073741824",
    "retention.ms": "604800001",
    "segment.bytes": "104857600",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "60000",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "true",
}


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def wait_all(futures, timeout=30):
    return {key: f.result(timeout=timeout) for key, f in futures.items()}


def create(b, name, config, partitions=1):
    a = admin(b)  # kept alive until the futures resolve
    wait_all(a.create_topics([NewTopic(name, num_partitions=partitions,
                                       replication_factor=1, config=config)]))


def describe(b, name):
    a = admin(b)
    resource = ConfigResource("topic", name)
    return wait_all(a.describe_configs([resource]))[resource]


def create_error(b, name, config):
    try:
        create(b, name, config)
    except KafkaException as e:
        return e.args[0].name()
    return None


def test_every_kafka_topic_config_accepted_stored_and_described():
    b = Broker()
    b.start()
    try:
        create(b, "all-configs", EVERY_CONFIG)
        for attempt in ("created", "restarted"):
            described = describe(b, "all-configs")
            for name, value in EVERY_CONFIG.items():
                assert name in described, (attempt, name)
                assert described[name].value == value, (attempt, name, described[name].value)
                assert described[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, \
                    (attempt, name, described[name].source)
            assert b.stop() == 0
            b.start()
        # A topic without overrides describes Kafka's defaults, as defaults.
        create(b, "plain", {})
        described = describe(b, "plain")
        assert set(EVERY_CONFIG) <= set(described), set(EVERY_CONFIG) - set(described)
        for name, value in {"compression.type": "producer", "min.insync.replicas": "1",
                            "unclean.leader.election.enable": "false", "preallocate": "false",
                            "min.cleanable.dirty.ratio": "0.5", "segment.jitter.ms": "0",
                            "message.downconversion.enable": "true",
                            "max.compaction.lag.ms": "9223372036854775807",
                            "segment.index.bytes": "10485760", "file.delete.delay.ms": "60000",
                            "remote.storage.enable": "false"}.items():
            assert described[name].value == value, (name, described[name].value)
            assert described[name].source == ConfigSource.DEFAULT_CONFIG.value, name
    finally:
        b.own_dir = True
        b.__exit__(None, None, None)


def test_bad_names_and_values_are_refused():
    with Broker() as b:
        for config in ({"no.such.config": "1"}, {"compression.type": "brotli"},
                       {"min.insync.replicas": "0"}, {"min.cleanable.dirty.ratio": "1.5"},
                       {"preallocate": "maybe"}, {"remote.storage.enable": "true"},
                       {"message.format.version": "banana"}, {"segment.index.bytes": "2"},
                       {"leader.replication.throttled.replicas": "0-1"},
                       {"message.timestamp.after.max.ms": "-5"}, {"local.retention.ms": "-3"},
                       {"compression.zstd.level": "23"}):
            assert create_error(b, "refused", config) == "INVALID_CONFIG", config
        assert "refused" not in admin(b).list_topics(timeout=10).topics


def first_batch_codec(b, topic):
    """The codec bits of the first batch in the topic's first segment, read from disk."""
    [log] = sorted(glob.glob(os.path.join(b.data_dir, topic + "-0", "*.log")))[:1]
    with open(log, "rb") as f:
        header = f.read(61)
    assert len(header) == 61 and header[16] == 2, header
    return struct.unpack(">h", header[21:23])[0] & 7


def produce(b, topic, records, raise_errors=True, **config):
    settings = {"bootstrap.servers": b.bootstrap, "linger.ms": 5}
    settings.update(config)
    p = Producer(settings)
    errors = []
    for item in records:
        key, value = item[0], item[1]
        kwargs = {"key": key, "value": value,
                  "on_delivery": lambda err, msg: err is not None and errors.append(err.name())}
        if len(item) > 2:
            kwargs["timestamp"] = item[2]
        p.produce(topic, **kwargs)
    assert p.flush(60) == 0
    if raise_errors:
        assert not errors, errors[:3]
    return errors


def consume_messages(b, topic, count, group):
    """Up to `count` messages of `topic` from the beginning (30 s at most), as a consumer
    group member; confluent-kafka Message objects."""
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    c.close()
    return got


def consume(b, topic, count):
    return [(m.key(), m.value()) for m in consume_messages(b, topic, count, "cfg-" + topic)]


def test_compression_type_recompresses_batches():
    with Broker() as b:
        records = [(b"k%d" % i, b"value %d " % i * 20) for i in range(300)]
        for topic_codec, producer_codec, stored in (("zstd", "gzip", 4), ("uncompressed", "lz4", 0),
                                                    ("gzip", "none", 1), ("snappy", "zstd", 2),
                                                    ("producer", "lz4", 3), ("lz4", "lz4", 3)):
            topic = "codec-%s-from-%s" % (topic_codec, producer_codec)
            create(b, topic, {"compression.type": topic_codec})
            produce(b, topic, records, **{"compression.type": producer_codec, "acks": "all",
                                          "enable.idempotence": True})
            assert first_batch_codec(b, topic) == stored, topic
            assert consume(b, topic, len(records)) == records, topic


def test_timestamp_windows_refuse_records_out_of_range():
    with Broker() as b:
        create(b, "windowed", {"message.timestamp.before.max.ms": "3600000",
                               "message.timestamp.after.max.ms": "60000"})
        create(b, "difference", {"message.timestamp.difference.max.ms": "60000"})
        create(b, "appendtime", {"message.timestamp.difference.max.ms": "60000",
                                 "message.timestamp.type": "LogAppendTime"})
        now = int(time.time() * 1000)
        opts = {"retries": 0, "acks": "all"}
        assert produce(b, "windowed", [(b"a", b"now", now)], **opts) == []
        assert produce(b, "windowed", [(b"a", b"30 min ago", now - 1800000)], **opts) == []
        assert produce(b, "windowed", [(b"a", b"2 h ago", now - 7200000)], False, **opts) \
            == ["INVALID_TIMESTAMP"]
        assert produce(b, "windowed", [(b"a", b"10 min ahead", now + 600000)], False, **opts) \
            == ["INVALID_TIMESTAMP"]
        # difference.max.ms stands in for both sides when they are left at their defaults.
        assert produce(b, "difference", [(b"a", b"2 min ago", now - 120000)], False, **opts) \
            == ["INVALID_TIMESTAMP"]
        assert produce(b, "difference", [(b"a", b"2 min ahead", now + 120000)], False, **opts) \
            == ["INVALID_TIMESTAMP"]
        # LogAppendTime topics replace the timestamps, so there is nothing to refuse.
        assert produce(b, "appendtime", [(b"a", b"old", now - 7200000)], **opts) == []
        assert consume(b, "windowed", 2) == [(b"a", b"now"), (b"a", b"30 min ago")]


def test_min_insync_replicas_refuses_acks_all_beyond_one_replica():
    with Broker() as b:
        create(b, "guarded", {"min.insync.replicas": "2"})
        assert produce(b, "guarded", [(None, b"x")], False, acks="all", retries=0) \
            == ["NOT_ENOUGH_REPLICAS"]
        # acks=1 does not wait for replicas, so min.insync.replicas does not apply.
        assert produce(b, "guarded", [(None, b"y")], acks="1") == []
        assert consume(b, "guarded", 1) == [(None, b"y")]


def test_broker_configs_described():
    with Broker() as b:
        a = admin(b)
        resource = ConfigResource("broker", "0")
        described = wait_all(a.describe_configs([resource]))[resource]
        assert described["broker.id"].value == "0"
        assert described["log.dirs"].value == b.data_dir
        assert described["min.insync.replicas"].value == "1"
        assert described["num.partitions"].is_read_only


if __name__ == "__main__":
    Runner().run([test_every_kafka_topic_config_accepted_stored_and_described,
                  test_bad_names_and_values_are_refused,
                  test_compression_type_recompresses_batches,
                  test_timestamp_windows_refuse_records_out_of_range,
                  test_min_insync_replicas_refuses_acks_all_beyond_one_replica,
                  test_broker_configs_described])
