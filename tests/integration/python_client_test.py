"""confluent-kafka-python (librdkafka) against a real spate: admin, idempotent
produce with acks=all, consume, restarts (clean and kill -9)."""
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from harness import Broker, Runner


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def wait_all(futures, timeout=30):
    return {key: f.result(timeout=timeout) for key, f in futures.items()}


def produce(b, topic, records, partition=None, **config):
    settings = {"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "acks": "all",
                "linger.ms": 5}
    settings.update(config)
    p = Producer(settings)
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)

    for key, value in records:
        kwargs = {"key": key, "value": value, "on_delivery": report}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
    left = p.flush(60)
    assert left == 0, "%d records not delivered" % left
    assert not errors, errors[:3]


def consume_all(b, topic, partitions, expected, timeout=60):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused-" + topic,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.time() + timeout
    while len(got) < expected and time.time() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        got.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
    c.close()
    return got


def test_admin_create_describe_alter_delete():
    with Broker() as b:
        a = admin(b)
        wait_all(a.create_topics([NewTopic("admin-a", num_partitions=4, replication_factor=1,
                                           config={"retention.ms": "3600000"})]))
        md = a.list_topics(timeout=10)
        assert len(md.topics["admin-a"].partitions) == 4
        # Creating it again fails with TOPIC_ALREADY_EXISTS.
        try:
            wait_all(a.create_topics([NewTopic("admin-a", num_partitions=1, replication_factor=1)]))
            raise AssertionError("duplicate create succeeded")
        except KafkaException as e:
            assert e.args[0].name() == "TOPIC_ALREADY_EXISTS", e
        # Replication factor 3 on one broker is refused.
        try:
            wait_all(a.create_topics([NewTopic("admin-b", num_partitions=1, replication_factor=3)]))
            raise AssertionError("replication factor 3 accepted")
        except KafkaException as e:
            assert e.args[0].name() == "INVALID_REPLICATION_FACTOR", e
        resource = ConfigResource("topic", "admin-a")
        configs = wait_all(a.describe_configs([resource]))[resource]
        assert configs["retention.ms"].value == "3600000"
        wait_all(a.create_partitions([NewPartitions("admin-a", 6)]))
        assert len(a.list_topics(timeout=10).topics["admin-a"].partitions) == 6
        wait_all(a.delete_topics(["admin-a"]))
        deadline = time.time() + 10
        while "admin-a" in a.list_topics(timeout=10).topics and time.time() < deadline:
            time.sleep(0.1)
        assert "admin-a" not in a.list_topics(timeout=10).topics


def test_idempotent_produce_and_consume_in_order():
    with Broker() as b:
        a = admin(b)  # kept alive until the futures resolve
        wait_all(a.create_topics([NewTopic("orders", num_partitions=6, replication_factor=1)]))
        records = [(b"k%d" % i, b"v%d-" % i + b"x" * (i % 100)) for i in range(6000)]
        produce(b, "orders", records)
        got = consume_all(b, "orders", 6, len(records))
        assert len(got) == len(records), len(got)
        assert sorted((k, v) for _, _, k, v in got) == sorted(records)
        per_partition = {}
        for partition, offset, key, value in got:
            per_partition.setdefault(partition, []).append(offset)
        for offsets in per_partition.values():
            assert offsets == list(range(len(offsets))), "offsets not contiguous"


def test_restart_clean_and_after_kill():
    b = Broker(shards=2)
    b.start()
    try:
        produce(b, "durable", [(None, b"before-%d" % i) for i in range(300)], partition=0)
        assert b.stop() == 0, "SIGTERM exit code"
        b.start()
        produce(b, "durable", [(None, b"after-%d" % i) for i in range(300)], partition=0)
        b.kill()
        b.start()
        got = consume_all(b, "durable", 1, 600)
        values = [v for _, _, _, v in got]
        assert values == [b"before-%d" % i for i in range(300)] + [b"after-%d" % i for i in range(300)]
    finally:
        b.own_dir = True
        b.__exit__(None, None, None)


def test_fsync_policy_with_small_segments():
    # Group commit (acks wait for fdatasync) while segments roll every 128 KiB, so the
    # background syncs of rolled segments run alongside; everything comes back.
    import os
    import tempfile
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write('acks_all_policy = "fsync"\nmessage_max_bytes = 65536\n'
                 '[log]\nsegment_bytes = 131072\n')
    config.close()
    try:
        with Broker(extra=["--config", config.name]) as b:
            records = [(b"k%d" % i, b"v" * 700) for i in range(3000)]
            produce(b, "synced", records, partition=0, **{"batch.size": 16384})
            got = consume_all(b, "synced", 1, len(records))
            assert [(k, v) for _, _, k, v in got] == records
            segments = [f for f in os.listdir(os.path.join(b.data_dir, "synced-0")) if f.endswith(".log")]
            assert len(segments) > 10, segments
    finally:
        os.unlink(config.name)


def test_long_poll_wakes_for_each_record():
    """A consumer always has a fetch parked on the broker; every record produced must wake
    it, whatever moment it lands at. The consumer waits up to 10 s per fetch, so a lost
    wake-up costs 10 s, against milliseconds when the wake-up works."""
    with Broker() as b:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in a.create_topics([NewTopic("wake", num_partitions=1,
                                           replication_factor=1)]).values():
            f.result(timeout=30)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0, "acks": 1})
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "wake-check",
                      "fetch.wait.max.ms": 10000, "enable.auto.commit": False})
        c.assign([TopicPartition("wake", 0, 0)])
        for i in range(300):
            value = b"record-%d" % i
            started = time.time()
            p.produce("wake", value=value, partition=0)
            p.flush(30)
            while True:
                m = c.poll(30)
                assert m is not None, "record %d never arrived" % i
                assert not m.error(), m.error()
                if m.value() == value:
                    break
            # Far below the 10 s long poll: this record did not wait for a poll to time out.
            took = time.time() - started
            assert took < 5, "record %d took %.1f s: a lost long-poll wake-up" % (i, took)
        c.close()


if __name__ == "__main__":
    Runner().run([test_admin_create_describe_alter_delete,
                  test_idempotent_produce_and_consume_in_order,
                  test_restart_clean_and_after_kill,
                  test_fsync_policy_with_small_segments,
                  test_long_poll_wakes_for_each_record])
