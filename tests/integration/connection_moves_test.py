"""Connections moving to the shard that owns their partitions: produce requests all of whose
partitions a shard accepted vote for it, and a request the owner shard refused starts the
count again, so a producer whose requests are being refused (as during a leader change,
where librdkafka 2.0.2's idempotent producer can take a move's pause between a refused
request and the next as fatal) stays where it is. The move of a fetching connection, with
its session, is in fetch_sessions_test.py."""
import itertools
import os
import socket
import tempfile

from kafka.record.default_records import DefaultRecordBatchBuilder

from bad_batch_test import produce_on
from fetch_sessions_test import create, moves_of
from harness import Broker, Runner

UNKNOWN_TOPIC_OR_PARTITION = 3
OUT_OF_ORDER_SEQUENCE_NUMBER = 45


def batch(producer_id, sequence, value):
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=producer_id, producer_epoch=0,
                                        base_sequence=sequence, batch_size=1 << 20)
    builder.append(0, timestamp=1, key=None, value=value, headers=[])
    return bytes(builder.build())


class Connection:
    """One connection for every produce: the one that may move."""

    def __init__(self, b):
        self.sock = socket.create_connection(("127.0.0.1", b.port), timeout=30)
        self.correlation = itertools.count(1)

    def produce(self, partition, records):
        """One batch to partition `partition` of topic "moves": its error code."""
        return produce_on(self.sock, "moves", partition, records, next(self.correlation))[0]


def test_refused_produces_do_not_move_a_connection():
    """Two shards, a topic of 2 partitions (hashed to shards: at least one is on the other
    shard than the one that accepted the connection), connection_move_requests = 4. One
    connection sends an idempotent producer's batch at sequence 0 to each partition, then 12
    at sequence 5: the owner shard refuses those (OUT_OF_ORDER_SEQUENCE_NUMBER), and the
    connection does not move. Nor after 3 accepted batches, one to a partition that does not
    exist, 3 accepted, and one again, to each partition. Then 12 plain batches
    to each, all accepted: the partition on the other shard moves it."""
    config = os.path.join(tempfile.mkdtemp(prefix="spate-it-"), "moves.toml")
    with open(config, "w") as f:
        f.write('metrics_listen = "127.0.0.1:0"\nconnection_move_requests = 4\n')
    with Broker(shards=2, extra=["--config", config]) as b:
        create(b, "moves", 2)
        c = Connection(b)
        for partition in (0, 1):
            assert c.produce(partition, batch(7000, 0, b"first")) == 0
            for i in range(12):
                error = c.produce(partition, batch(7000, 5, b"refused"))
                assert error == OUT_OF_ORDER_SEQUENCE_NUMBER, (partition, i, error)
        # Refused before any shard sees it (no such partition): the count starts again too.
        for partition in (0, 1):
            for _ in range(2):
                for i in range(3):
                    assert c.produce(partition, batch(-1, -1, b"three")) == 0
                assert c.produce(99, batch(-1, -1, b"no")) == UNKNOWN_TOPIC_OR_PARTITION
        refused_moves = moves_of(b)
        for partition in (0, 1):
            for i in range(12):
                error = c.produce(partition, batch(-1, -1, b"accepted"))
                assert error == 0, (partition, i, error)
        accepted_moves = moves_of(b)
        c.sock.close()
        print("moves: %d after the refused produces, %d after 24 accepted in a row" % (
            refused_moves, accepted_moves))
        assert refused_moves == 0, refused_moves
        assert accepted_moves >= 1, accepted_moves


if __name__ == "__main__":
    Runner().run([test_refused_produces_do_not_move_a_connection])
