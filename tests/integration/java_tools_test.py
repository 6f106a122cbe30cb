"""Apache Kafka's stock Java tools (../shared/kafka/bin, or $SPATE_KAFKA_DIR) against a real
spate: kafka-topics, the console producer and consumer, kafka-consumer-groups, the perf
tests, and Kafka's Java Admin client (java/AdminProbe.java) for the admin APIs the tools jar
has no command for (DescribeLogDirs, DescribeProducers, DescribeTopicPartitions paging,
broker configs). Skips, saying so, when the Kafka folder or a JDK is absent."""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

from harness import Broker, Runner, free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def kafka_dir():
    candidates = [os.environ.get("SPATE_KAFKA_DIR", ""),
                  os.path.join(HERE, "..", "..", "..", "shared", "kafka"), "/work/shared/kafka"]
    for k in candidates:
        if k and os.path.isfile(os.path.join(k, "bin", "kafka-topics.sh")):
            return os.path.abspath(k)
    return None


KAFKA = kafka_dir()


def tools_classpath():
    """TOOLS_CP from the folder's bin/common.sh, so the probe runs on the tools' own jars."""
    done = subprocess.run(["bash", "-c", 'source "$0/bin/common.sh" && echo "$TOOLS_CP"', KAFKA],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError("common.sh: " + done.stderr)
    return done.stdout.strip()


def tool(broker, name, *args, data=None, timeout=120, check=True):
    done = subprocess.run([os.path.join(KAFKA, "bin", name), "--bootstrap-server", broker.bootstrap]
                          + list(args), input=data, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError("%s %s failed (%d):\n%s\n%s\nbroker log:\n%s" % (
            name, " ".join(args), done.returncode, done.stdout[-2000:], done.stderr[-3000:],
            broker.read_log()))
    return done.stdout


def probe(broker, command, *args):
    done = subprocess.run(["java", "-cp", tools_classpath(), os.path.join(HERE, "java", "AdminProbe.java"),
                           command, broker.bootstrap] + list(args),
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError("AdminProbe %s failed:\n%s" % (command, done.stderr[-3000:]))
    return [line.split("\t") for line in done.stdout.splitlines()]


def wait_for(what, check, timeout=30):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError("timed out waiting for " + what)


class RequestLog:
    """A loopback TCP proxy in front of the broker that notes (api_key, version, bytes) of
    every request passing through, so a test can see what a real client sends."""

    def __init__(self, target_port, port):
        self.port = port
        self.target = target_port
        self.requests = []
        self.lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self.pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()

    def pump(self, source, sink, requests):
        pending = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
                if not requests:
                    continue
                pending += data
                while len(pending) >= 8:
                    size = struct.unpack(">i", pending[:4])[0]
                    if len(pending) < 4 + size:
                        break
                    key, version = struct.unpack(">hh", pending[4:8])
                    with self.lock:
                        self.requests.append((key, version, size))
                    pending = pending[4 + size:]
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.server.close()


def test_topics_create_describe_alter_delete():
    with Broker() as b:
        tool(b, "kafka-topics.sh", "--create", "--topic", "orders", "--partitions", "3",
             "--config", "min.insync.replicas=2", "--config", "compression.type=zstd")
        out = tool(b, "kafka-topics.sh", "--describe", "--topic", "orders")
        head = out.splitlines()[0]
        assert re.search(r"TopicId: [A-Za-z0-9_-]{22}\s", head), out
        assert "PartitionCount: 3" in head and "ReplicationFactor: 1" in head, out
        assert "compression.type=zstd" in head and "min.insync.replicas=2" in head, out
        assert len(re.findall(r"Partition: \d+\s+Leader: 0\s+Replicas: 0\s+Isr: 0", out)) == 3, out
        topic_id = re.search(r"TopicId: (\S+)", head).group(1)

        tool(b, "kafka-topics.sh", "--alter", "--topic", "orders", "--partitions", "5")
        out = tool(b, "kafka-topics.sh", "--describe", "--topic", "orders")
        assert "PartitionCount: 5" in out and topic_id in out, out
        # A second create of the same name fails with TopicExistsException.
        dup = subprocess.run([os.path.join(KAFKA, "bin", "kafka-topics.sh"), "--bootstrap-server",
                              b.bootstrap, "--create", "--topic", "orders"],
                             capture_output=True, text=True, timeout=60)
        assert dup.returncode != 0 and "already exists" in dup.stdout + dup.stderr, dup
        # Unknown config names are refused, as Kafka refuses them.
        bad = subprocess.run([os.path.join(KAFKA, "bin", "kafka-topics.sh"), "--bootstrap-server",
                              b.bootstrap, "--create", "--topic", "bad", "--config", "no.such.config=1"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0, bad

        assert "orders" in tool(b, "kafka-topics.sh", "--list").split()
        tool(b, "kafka-topics.sh", "--delete", "--topic", "orders")
        wait_for("orders to go", lambda: "orders" not in tool(b, "kafka-topics.sh", "--list").split())


def test_console_producer_and_consumer():
    with Broker() as b:
        tool(b, "kafka-topics.sh", "--create", "--topic", "lines", "--partitions", "2")
        records = ["k%d:value number %d" % (i % 5, i) for i in range(200)]
        tool(b, "kafka-console-producer.sh", "--topic", "lines", "--property", "parse.key=true",
             "--property", "key.separator=:", data="\n".join(records) + "\n")
        out = tool(b, "kafka-console-consumer.sh", "--topic", "lines", "--from-beginning",
                   "--max-messages", "200", "--property", "print.key=true",
                   "--property", "key.separator=:", "--timeout-ms", "30000")
        got = out.splitlines()
        assert sorted(got) == sorted(records), (len(got), got[:3])
        # Records of one key stay in order (one partition per key).
        for key in ("k0", "k3"):
            mine = [r for r in got if r.startswith(key + ":")]
            assert mine == [r for r in records if r.startswith(key + ":")], mine[:3]


def test_consumer_groups_describe_shows_host():
    with Broker() as b:
        tool(b, "kafka-topics.sh", "--create", "--topic", "work", "--partitions", "4")
        tool(b, "kafka-console-producer.sh", "--topic", "work",
             data="".join("job %d\n" % i for i in range(40)))
        consumer = subprocess.Popen(
            [os.path.join(KAFKA, "bin", "kafka-console-consumer.sh"), "--bootstrap-server", b.bootstrap,
             "--topic", "work", "--group", "workers", "--from-beginning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def described():
                out = tool(b, "kafka-consumer-groups.sh", "--describe", "--group", "workers")
                rows = [line.split() for line in out.splitlines() if line.startswith("workers ")]
                lagging = [r for r in rows if len(r) < 9 or r[5] != "0"]
                return out if len(rows) == 4 and not lagging else None
            out = wait_for("the group to consume everything", described, timeout=60)
            rows = [line.split() for line in out.splitlines() if line.startswith("workers ")]
            # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
            assert all(r[7] == "/127.0.0.1" for r in rows), out
            assert sum(int(r[4]) for r in rows) == 40, out
            members = probe(b, "group", "workers")
            assert members[0][:3] == ["group", "workers", "Stable"], members
            assert [m[2] for m in members[1:]] == ["/127.0.0.1"], members
            state = tool(b, "kafka-consumer-groups.sh", "--describe", "--group", "workers", "--state")
            assert re.search(r"workers\s+127\.0\.0\.1:%d\s+\(0\)\s+\S+\s+Stable\s+1" % b.port, state), state
        finally:
            consumer.terminate()
            consumer.wait(timeout=30)
        # The console consumer leaves the group on SIGTERM (LeaveGroup from its shutdown hook).
        wait_for("the group to empty", lambda: re.search(r"workers\s.*\sEmpty\s+0", tool(
            b, "kafka-consumer-groups.sh", "--describe", "--group", "workers", "--state")), timeout=20)
        out = tool(b, "kafka-consumer-groups.sh", "--reset-offsets", "--group", "workers", "--topic",
                   "work", "--to-earliest", "--execute")
        assert out.count(" 0") >= 4, out
        tool(b, "kafka-consumer-groups.sh", "--delete", "--group", "workers")
        assert "workers" not in tool(b, "kafka-consumer-groups.sh", "--list").split()


def test_perf_tools():
    with Broker() as b:
        done = subprocess.run([os.path.join(KAFKA, "bin", "kafka-producer-perf-test.sh"), "--topic", "perf",
                               "--num-records", "20000", "--record-size", "200", "--throughput", "-1",
                               "--producer-props", "bootstrap.servers=" + b.bootstrap],
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        assert re.search(r"20000 records sent", done.stdout), done.stdout[-2000:]
        out = tool(b, "kafka-consumer-perf-test.sh", "--topic", "perf", "--messages", "20000",
                   "--timeout", "60000")
        last = out.strip().splitlines()[-1].split(",")
        # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
        assert int(last[4]) == 20000, out


def test_admin_client_describe_apis():
    with Broker() as b:
        tool(b, "kafka-topics.sh", "--create", "--topic", "sized", "--partitions", "5")
        tool(b, "kafka-console-producer.sh", "--topic", "sized", "--property", "parse.key=true",
             "--property", "key.separator=:", data="".join("same:record %d\n" % i for i in range(50)))
        lines = probe(b, "logdirs")
        dirs = [l for l in lines if l[0] == "logdir"]
        assert len(dirs) == 1 and dirs[0][1] == os.path.abspath(b.data_dir), dirs
        assert dirs[0][2] == "none" and int(dirs[0][3]) > 0 and 0 < int(dirs[0][4]) <= int(dirs[0][3]), dirs
        replicas = {(l[1], int(l[2])): (int(l[3]), int(l[4])) for l in lines if l[0] == "replica"}
        assert sorted(p for t, p in replicas if t == "sized") == [0, 1, 2, 3, 4], replicas
        written = [key for key, (size, lag) in replicas.items() if key[0] == "sized" and size > 0]
        assert len(written) == 1, replicas  # one key: one partition holds every record
        assert all(lag == 0 for size, lag in replicas.values()), replicas

        producers = probe(b, "producers", "sized", str(written[0][1]))
        assert len(producers) == 1 and producers[0][0] == "producer", producers
        assert int(producers[0][1]) >= 0 and producers[0][3] == "49", producers  # 50 records: 0..49
        assert probe(b, "producers", "sized", str((written[0][1] + 1) % 5)) == []

        # describeTopics pages with 2 partitions per DescribeTopicPartitions answer.
        tool(b, "kafka-topics.sh", "--create", "--topic", "another", "--partitions", "3")
        topics = probe(b, "topics", "sized", "another")
        assert [(t[1], t[3], t[4]) for t in topics] == [("sized", "5", "false"), ("another", "3", "false")], topics

        configs = {l[1]: (l[2], l[3]) for l in probe(b, "broker-configs", "0") if l[0] == "config"}
        assert configs.get("broker.id", (None,))[0] == "0", configs

        # No authorizer: ACLs can be neither listed nor created, and the client is told so.
        assert probe(b, "acls") == [["acls", "SecurityDisabledException", "SecurityDisabledException"]]


def test_java_consumer_of_1000_partitions_fetches_incrementally():
    """The Java consumer opens a fetch session (Fetch v17, topic ids): after its first full
    fetch, each fetch request names only what changed and is a few bytes, not 1,000
    partitions."""
    proxy_port = free_port()
    with Broker(extra=["--advertised", "127.0.0.1:%d" % proxy_port]) as b:
        log = RequestLog(b.port, proxy_port)
        try:
            tool(b, "kafka-topics.sh", "--create", "--topic", "wide", "--partitions", "1000")
            tool(b, "kafka-console-producer.sh", "--topic", "wide",
                 data="".join("record %d\n" % i for i in range(20)))
            out = subprocess.run(
                [os.path.join(KAFKA, "bin", "kafka-console-consumer.sh"), "--bootstrap-server",
                 "127.0.0.1:%d" % proxy_port, "--topic", "wide", "--from-beginning",
                 "--timeout-ms", "8000", "--consumer-property", "fetch.max.wait.ms=200"],
                capture_output=True, text=True, timeout=120)
            got = sorted(out.stdout.splitlines())
            assert got == sorted("record %d" % i for i in range(20)), (len(got), out.stderr[-2000:])
            fetches = [(version, size) for key, version, size in log.requests if key == 1]
            assert len(fetches) >= 5 and all(v == 17 for v, _ in fetches), fetches[:5]
            full = max(size for _, size in fetches)
            later = sorted(size for _, size in fetches[2:])
            assert full > 15000, fetches[:3]  # 1,000 partitions named once
            assert later[len(later) // 2] < 200, later  # then only what changed
            print("java consumer, 1,000 partitions: largest fetch request %d B, median later %d B"
                  " over %d fetches" % (full, later[len(later) // 2], len(fetches)))
        finally:
            log.close()


def test_kafka_formatters_read_consumer_offsets():
    """__consumer_offsets holds Kafka's own records: Kafka's formatters decode them."""
    with Broker() as b:
        tool(b, "kafka-topics.sh", "--create", "--topic", "fmt", "--partitions", "2")
        tool(b, "kafka-console-producer.sh", "--topic", "fmt",
             data="".join("r %d\n" % i for i in range(10)))
        tool(b, "kafka-console-consumer.sh", "--topic", "fmt", "--group", "fmt-group",
             "--from-beginning", "--max-messages", "10", "--timeout-ms", "30000")
        listed = tool(b, "kafka-topics.sh", "--describe", "--topic", "__consumer_offsets")
        assert "cleanup.policy=compact" in listed, listed[:2000]
        def formatted(formatter):
            return tool(b, "kafka-console-consumer.sh", "--topic", "__consumer_offsets",
                        "--from-beginning", "--formatter",
                        "org.apache.kafka.tools.consumer." + formatter, "--timeout-ms", "8000",
                        check=False)
        offsets = [line for line in formatted("OffsetsMessageFormatter").splitlines()
                   if '"fmt-group"' in line]
        assert offsets, "no offset commit of fmt-group decoded"
        last = {}  # partition -> the last committed offset the formatter printed
        # The formatter ends some records without a newline (two commits of one batch may
        # share a line), so every key/value pair of a line counts, in order.
        pair = re.compile(r'"partition":(\d+)\}\},"value":\{[^}]*?"offset":(\d+)')
        for line in offsets:
            for found in pair.finditer(line):
                last[int(found.group(1))] = int(found.group(2))
        assert sum(last.values()) == 10, offsets
        groups = [line for line in formatted("GroupMetadataMessageFormatter").splitlines()
                  if '"fmt-group"' in line]
        assert groups and '"protocolType":"consumer"' in groups[0], groups


if __name__ == "__main__":
    if KAFKA is None:
        print("SKIP: Apache Kafka's tools not found (../shared/kafka or $SPATE_KAFKA_DIR); "
              "java_tools_test needs them")
        sys.exit(77)
    if shutil.which("java") is None:
        print("SKIP: no java on PATH (run %s/install-deps.sh)" % KAFKA)
        sys.exit(77)
    Runner().run([test_topics_create_describe_alter_delete, test_console_producer_and_consumer,
                  test_consumer_groups_describe_shows_host, test_perf_tools,
                  test_admin_client_describe_apis,
                  test_java_consumer_of_1000_partitions_fetches_incrementally,
                  test_kafka_formatters_read_consumer_offsets])
