"""Three Apache Kafka 1.0.2 brokers on one ZooKeeper, for bench/replication.py's side-by-side
runs: a tests/cluster/cluster.py Cluster whose brokers are Kafka's (bootstrap, ids,
controller, ZooKeeper's state, stop: Cluster's own; start, Metadata and the topic admin
versions: Kafka's), so the same phase code drives both brokers with the same client.

  with KafkaCluster(KAFKA_DIR, brokers=3) as c:   # KAFKA_DIR as for bench/vs_kafka.py
      ...

Every broker runs with Kafka's defaults and kafka1-start.sh's JVM settings (1 GiB heap, G1),
its own log directory under a temporary directory, and broker ids 1..3. Kafka keeps the
znode layout spate keeps, so ZooKeeper's state is read the same way. Kafka 1.0.2 answers
CreateTopics up to v2 and DeleteTopics up to v1 (their bodies are those of the versions
spate's tests use), and Metadata up to v5 (v1 here).
"""
import os
import struct
import subprocess
import tempfile

import cluster as cluster_module
import kafka_raw as kr
from cluster import Cluster
from zookeeper import ZooKeeper, free_ports

SERVER_PROPERTIES = """\
broker.id={id}
listeners=PLAINTEXT://127.0.0.1:{port}
log.dirs={data}
zookeeper.connect={zk}
offsets.topic.replication.factor=3
"""
JVM = ["-Xmx1G", "-Xms1G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
       "-XX:InitiatingHeapOccupancyPercent=35", "-Djava.awt.headless=true"]


def kafka1_classpath(kafka_dir):
    """KAFKA1_CP of KAFKA_DIR/bin/common.sh (which also checks the Debian jars it needs)."""
    common = os.path.join(kafka_dir, "bin", "common.sh")
    done = subprocess.run(["bash", "-c", '. "$1" && printf %s "$KAFKA1_CP"', "-", common],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError("no Kafka 1.0.2 classpath from %s: %s" % (common, done.stderr.strip()))
    return done.stdout


class KafkaBroker:
    """What Cluster asks of its brokers: bootstrap, running(), stop(), read_log()."""

    def __init__(self, node_id, port, directory):
        self.node_id = node_id
        self.port = port
        self.dir = directory
        self.data_dir = os.path.join(directory, "data")
        self.process = None
        self.paused = False

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=30):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def read_log(self, limit=4000):
        try:
            with open(os.path.join(self.dir, "kafka.out"), "rb") as f:
                return f.read()[-limit:].decode(errors="replace")
        except OSError:
            return ""


class KafkaCluster(Cluster):
    """Cluster's readers of ZooKeeper and of its brokers serve as they are (Kafka keeps the
    znode layout spate keeps); what differs is starting the brokers, the admin versions
    and Metadata."""
    create_topics_version = 2
    delete_topics_version = 1

    def __init__(self, kafka_dir, brokers=3):
        super().__init__(brokers=brokers, zk_nodes=1)
        self.kafka_dir = os.path.abspath(kafka_dir)

    def start(self, timeout=120):
        classpath = kafka1_classpath(self.kafka_dir)
        log4j = os.path.join(self.kafka_dir, "config", "kafka1-log4j.properties")
        cluster_module._clusters.add(self)  # stopped at exit, as Cluster's are
        self.base_dir = tempfile.mkdtemp(prefix="kafka-cluster-")
        try:
            self.zk = ZooKeeper(1, base_dir=os.path.join(self.base_dir, "zk"))
            self.zk.start()
            ports = free_ports(self.broker_count)
            for i in range(self.broker_count):
                b = KafkaBroker(i + 1, ports[i], os.path.join(self.base_dir, "b%d" % (i + 1)))
                os.makedirs(b.data_dir)
                properties = os.path.join(b.dir, "server.properties")
                with open(properties, "w") as f:
                    f.write(SERVER_PROPERTIES.format(id=b.node_id, port=b.port, data=b.data_dir,
                                                     zk=self.zk.connect_string))
                with open(os.path.join(b.dir, "kafka.out"), "wb") as out:
                    b.process = subprocess.Popen(
                        ["java"] + JVM + ["-Dkafka.logs.dir=" + b.dir,
                                          "-Dlog4j.configuration=file:" + log4j,
                                          "-cp", classpath, "kafka.Kafka", properties],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
                self.brokers[b.node_id] = b
            self.wait_for(lambda: self.registered_ids() == self.ids
                          and self.controller_id() is not None, timeout,
                          "Kafka brokers %s registered, a controller elected" % self.ids)
        except BaseException:
            self.stop()
            raise
        return self

    def metadata(self, node_id, topics=None, timeout=5):
        """Metadata v1 sent to broker `node_id`, in the shape of Cluster.metadata's answer
        (without what v1 does not carry: topic ids, leader epochs, offline replicas)."""
        return metadata_v1(("127.0.0.1", self.brokers[node_id].port), topics, timeout)


def metadata_v1(address, topics=None, timeout=5):
    body = struct.pack(">i", -1) if topics is None else kr.array(topics, kr.string)
    r = kr.call(address, 3, 1, body, timeout=timeout)
    out = {"brokers": {}, "topics": {}}
    for _ in range(r.count()):
        node = r.int32()
        host = r.string()
        port = r.int32()
        out["brokers"][node] = (host, port, r.string())
    out["controller_id"] = r.int32()
    for _ in range(r.count()):
        error = r.int16()
        name = r.string()
        r.int8()  # is_internal
        partitions = {}
        for _ in range(r.count()):
            p = {"error": r.int16()}
            index = r.int32()
            p["leader"] = r.int32()
            p["replicas"] = [r.int32() for _ in range(r.count())]
            p["isr"] = [r.int32() for _ in range(r.count())]
            partitions[index] = p
        out["topics"][name] = {"error": error, "partitions": partitions}
    return out
