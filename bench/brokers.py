"""The brokers a bench runs, spate and Apache Kafka alike, and spatectl's perf tools (a Kafka
client) against either: start, CPU time and peak memory of the broker process, stop.

  Spate(build, work, pin_shards, name, config="")     a single-node spate under `work`
  Kafka(kafka_dir, work)                               Kafka 1.0.2 + ZooKeeper through
                                                       KAFKA_DIR/bin/kafka1-start.sh
Both have .bootstrap, .pid, .run(spatectl args…), .produce(…), .consume(…), .cpu_seconds(),
.peak_rss_mib() and .stop().
"""
import os
import re
import socket
import subprocess
import time

import baselines

MIB = 1024 * 1024
# The unthrottled produce's batch, and so the broker's write size: 256 KiB.
WRITE_SIZE = 256 * 1024
PRODUCE_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, ([\d.]+) ms 50th, ([\d.]+) ms 95th, ([\d.]+) ms 99th, "
    r"([\d.]+) ms 99\.9th")
CONSUME_LINE = re.compile(r"(\d+) records received, ([\d.]+) records/sec \(([\d.]+) MB/sec\)")
E2E_LINE = re.compile(r"end-to-end latency: (\d+) records, avg ([\d.]+) µs, 50th (\d+) µs, "
                      r"99th (\d+) µs, 99\.9th (\d+) µs, max (\d+) µs")


def wait_port(port, alive, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or not alive():
                raise RuntimeError("nothing listens on port %d" % port)
            time.sleep(0.1)


def parse_produce(out):
    m = None
    for line in out.strip().splitlines()[::-1]:
        m = PRODUCE_LINE.search(line)
        if m:
            break
    if m is None:
        raise RuntimeError("perf produce printed no summary: " + out[-500:])
    g = m.groups()
    return {"records": int(g[0]), "rate": float(g[1]), "mbs": float(g[2]), "p50": float(g[5]) * 1000,
            "p99": float(g[7]) * 1000, "p999": float(g[8]) * 1000, "max": float(g[4]) * 1000,
            "line": m.group(0)}


def parse_consume(out):
    m = CONSUME_LINE.search(out)
    if m is None:
        raise RuntimeError("perf consume printed no summary: " + out[-500:])
    res = {"records": int(m.group(1)), "mbs": float(m.group(3))}
    e = E2E_LINE.search(out)
    if e:
        res.update(e2e_p50=int(e.group(3)), e2e_p99=int(e.group(4)), e2e_p999=int(e.group(5)),
                   e2e_max=int(e.group(6)))
    return res


class Broker:
    spatectl = None
    bootstrap = None
    pid = None

    def command(self, *args):
        return [self.spatectl, "--bootstrap-server", self.bootstrap, "--timeout", "30000"] + list(args)

    def run(self, *args, timeout=900):
        done = subprocess.run(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError("spatectl %s exited %d: %s" % (" ".join(args), done.returncode,
                                                               done.stderr.strip()[-500:]))
        return done.stdout

    def produce(self, topic, records, size, throughput, acks, extra=()):
        args = ["perf", "produce", "--topic", topic, "--num-records", str(records),
                "--record-size", str(size), "--throughput", str(throughput), "--acks", str(acks)]
        if throughput < 0:
            args += ["--batch-size", str(WRITE_SIZE), "--linger-ms", "1", "--max-in-flight", "8"]
        return parse_produce(self.run(*(args + list(extra))))

    def consume(self, topic, records, extra=()):
        return parse_consume(self.run("perf", "consume", "--topic", topic, "--messages", str(records),
                                      "--fetch-size", str(8 * MIB), *extra))

    def cpu_seconds(self):
        """utime + stime of the broker process so far."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")


class Spate(Broker):
    def __init__(self, build, work, pin_shards, name, config=""):
        self.name = "spate"
        self.port = baselines.free_port()
        self.dir = os.path.join(work, name)
        conf = os.path.join(work, name + ".toml")
        with open(conf, "w") as f:
            f.write("pin_shards = %s\n%s" % ("true" if pin_shards else "false", config))
        self.log = open(os.path.join(work, name + ".log"), "w")
        self.proc = subprocess.Popen([os.path.join(build, "broker", "spate"), "--config", conf,
                                      "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.dir],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.spatectl = os.path.join(build, "tools", "spatectl")
        self.bootstrap = "127.0.0.1:%d" % self.port
        try:
            wait_port(self.port, lambda: self.proc.poll() is None)
        except RuntimeError:
            self.stop()
            raise RuntimeError("spate did not start; see " + self.log.name)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Kafka(Broker):
    """Apache Kafka 1.0.2 with Kafka's defaults (1 GiB heap, G1) and its own ZooKeeper."""

    def __init__(self, kafka_dir, build, work):
        self.name = "kafka"
        self.kafka_dir = kafka_dir
        self.dir = os.path.join(work, "kafka")
        self.port, zk_port = baselines.free_port(), baselines.free_port()
        subprocess.run([os.path.join(kafka_dir, "bin", "kafka1-start.sh"), self.dir, str(self.port),
                        str(zk_port)], check=True, stdout=subprocess.DEVNULL, timeout=120)
        with open(os.path.join(self.dir, "kafka.pid")) as f:
            self.pid = int(f.read())
        self.spatectl = os.path.join(build, "tools", "spatectl")
        self.bootstrap = "127.0.0.1:%d" % self.port

    def stop(self):
        subprocess.run([os.path.join(self.kafka_dir, "bin", "kafka1-stop.sh"), self.dir],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
