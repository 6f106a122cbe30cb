"""/metrics in a cluster (issue 16): 3 spate brokers on a real ZooKeeper, each with its own
metrics listener (metrics_listen = "127.0.0.1:0", the port read from its log).

    /usr/bin/python3 tests/cluster/metrics_test.py [names...]

Cases:
  replication_figures   a topic of 3 partitions, RF 3, written to: exactly one broker says
      it is the controller (kafka_controller_kafkacontroller_activecontrollercount), every
      broker hosts the 3 partitions, the leaders together lead 3, nothing is
      under-replicated or offline and every broker's spate_up is 1. A follower is killed
      (-9): its partitions' leaders report them under-replicated (per broker and per
      partition) once the controller takes it out of the ISR, and report ISR shrinks only
      if they proposed them; restarted, it catches up and under-replicated returns to 0
      everywhere. The bytes produced show up in the leaders' per-topic bytes-in.
  followers_fetch_in_sessions   a topic of 300 partitions, RF 3, every partition written
      to once: while one partition takes a record every 20 ms, the Fetch requests the
      brokers receive (all of them followers' long polls) average under 1,000 bytes, where
      naming each leader's 100 partitions in every fetch took 1,720 bytes (KIP-227
      sessions); the leaders' log ends then match the records acknowledged, every replica
      holds them, and the 20 ms writes were each acknowledged by the ISR.
"""
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as cluster_module  # noqa: E402
import kafka_raw as kr  # noqa: E402
from cluster import Cluster, install_sigterm_handler  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

TOPIC = "metered"


def metrics_port(broker):
    ports = re.findall(r"metrics on http://[^:]+:(\d+)/metrics", broker.read_log(limit=0))
    assert ports, "no metrics listener in the log of broker %d" % broker.node_id
    return int(ports[-1])


def scrape(broker):
    """{(name, frozenset(labels)): value} of one broker's /metrics."""
    url = "http://127.0.0.1:%d/metrics" % metrics_port(broker)
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
        samples[(name, pairs)] = float(value)
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def total(samples, name, **labels):
    wanted = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and wanted <= pairs)


def test_replication_figures():
    with Cluster(brokers=3, extra_config='metrics_listen = "127.0.0.1:0"\n') as c:
        errors = kr.create_topics(("127.0.0.1", c.broker(c.controller_id()).port),
                                  [(TOPIC, 3, 3, None, {"min.insync.replicas": "2"})])
        assert all(code == 0 for code, _ in errors.values()), errors
        c.wait_for(lambda: all(c.leader_of(TOPIC, p) in c.ids for p in range(3)), 30,
                   "leaders for every partition")
        producer = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
        payload = b"x" * 1000
        for i in range(300):
            producer.produce(TOPIC, payload, partition=i % 3)
        assert producer.flush(30) == 0, "records not delivered"
        del producer  # its reconnect messages would only clutter the output below

        def settled(expect_under):
            scraped = {i: scrape(c.broker(i)) for i in c.running_ids()}
            under = sum(total(s, "kafka_server_replicamanager_underreplicatedpartitions")
                        for s in scraped.values())
            return scraped if under == expect_under else None

        scraped = c.wait_for(lambda: settled(0), 30, "no partition under-replicated")
        controllers = [i for i, s in scraped.items()
                       if value(s, "kafka_controller_kafkacontroller_activecontrollercount") == 1]
        assert controllers == [c.controller_id()], (controllers, c.controller_id())
        for i, s in scraped.items():
            assert value(s, "spate_up", node_id=str(i)) == 1, i
            assert total(s, "kafka_log_log_logendoffset", topic=TOPIC) == 300, (i, "log ends")
            assert value(s, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0, i
        led = sum(total(s, "spate_partition_leader", topic=TOPIC) for s in scraped.values())
        assert led == 3, led
        bytes_in = sum(value(s, "kafka_server_brokertopicmetrics_bytesin_total", topic=TOPIC) or 0
                       for s in scraped.values())
        assert 300 * 1000 <= bytes_in <= 300 * 1000 * 2, bytes_in
        print("     3 brokers: controller %d, leaders %s, bytes in %d for 300 KB of payload"
              % (controllers[0], {p: c.leader_of(TOPIC, p) for p in range(3)}, bytes_in))

        # A broker other than the controller dies: it is a replica of all 3 partitions,
        # so each one's leader (a new one where it led) reports it under-replicated.
        victim = next(i for i in c.ids if i != c.controller_id())
        c.kill(victim)
        began = time.monotonic()
        scraped = c.wait_for(lambda: settled(3), 60,
                             "partitions under-replicated after broker %d died" % victim)
        took = time.monotonic() - began
        per_partition = sum(total(s, "kafka_cluster_partition_underreplicated", topic=TOPIC)
                            for s in scraped.values())
        under = sum(total(s, "kafka_server_replicamanager_underreplicatedpartitions")
                    for s in scraped.values())
        assert per_partition == under, (per_partition, under)
        print("     broker %d killed: %d partitions under-replicated after %.1f s" % (victim, under, took))

        c.restart(victim)
        scraped = c.wait_for(lambda: settled(0), 60, "under-replicated back to 0")
        changes = sum(total(s, "spate_partition_leader_changes_total") for s in scraped.values())
        print("     broker %d restarted: nothing under-replicated; leader changes seen %d"
              % (victim, changes))


def test_followers_fetch_in_sessions():
    topic, partitions = "sessions", 300
    with Cluster(brokers=3, extra_config='metrics_listen = "127.0.0.1:0"\n') as c:
        errors = kr.create_topics(("127.0.0.1", c.broker(c.controller_id()).port),
                                  [(topic, partitions, 3, None, {"min.insync.replicas": "2"})])
        assert all(code == 0 for code, _ in errors.values()), errors
        c.wait_for(lambda: all(c.leader_of(topic, p) in c.ids for p in range(partitions)), 60,
                   "leaders for every partition")
        producer = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 0})
        for p in range(partitions):
            producer.produce(topic, b"first %d" % p, partition=p)
        assert producer.flush(60) == 0, "records not delivered"

        def fetch_counters():
            scraped = [scrape(c.broker(i)) for i in c.ids]
            return (sum(value(s, "kafka_network_requestmetrics_requests_total", request="Fetch")
                        or 0 for s in scraped),
                    sum(value(s, "spate_request_bytes_in_total", request="Fetch") or 0
                        for s in scraped))

        c.wait_for(lambda: sum(total(scrape(c.broker(i)),
                                     "kafka_server_replicamanager_underreplicatedpartitions")
                               for i in c.ids) == 0, 60, "no partition under-replicated")
        requests_before, bytes_before = fetch_counters()
        failed = []
        for i in range(100):
            producer.produce(topic, b"later %d" % i, partition=7,
                             on_delivery=lambda err, _m: err and failed.append(err))
            producer.poll(0.02)
        assert producer.flush(30) == 0 and not failed, failed
        requests_after, bytes_after = fetch_counters()
        requests = requests_after - requests_before
        per_request = (bytes_after - bytes_before) / max(requests, 1)
        print("     %d Fetch requests while partition 7 took 100 records: %.0f bytes each"
              % (requests, per_request))
        # Each record is a round of both followers of partition 7 at least.
        assert requests >= 200, requests
        assert per_request < 1000, per_request

        def log_ends():
            ends = [total(scrape(c.broker(i)), "kafka_log_log_logendoffset", topic=topic)
                    for i in c.ids]
            return ends if ends == [partitions + 100] * 3 else None

        ends = c.wait_for(log_ends, 30, "every replica holds every record")
        print("     log ends on the 3 brokers: %s" % ends)


TESTS = [test_replication_figures, test_followers_fetch_in_sessions]


def main():
    install_sigterm_handler()
    names = sys.argv[1:]
    selected = [t for t in TESTS if not names or any(n in t.__name__ for n in names)]
    return cluster_module.run_suite(selected, lambda failed: None)


if __name__ == "__main__":
    sys.exit(main())
