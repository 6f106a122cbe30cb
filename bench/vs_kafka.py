#!/usr/bin/env python3
"""Apache Kafka against spate on this machine, one after the other in one run, driven by the
same clients: Kafka's own Java perf tools and spatectl's perf tools (a Kafka client too).

  /usr/bin/python3 bench/vs_kafka.py KAFKA_DIR [--build build] [--records 1000000]
      [--record-size 1024] [--omb-seconds 60] [--omb-rate MBS] [--skip java,spatectl,omb]
  KAFKA_DIR: a folder with bin/kafka1-start.sh and bin/kafka1-stop.sh (Kafka 1.0.2 and its
  ZooKeeper, as in ../shared/kafka) and bin/kafka-{producer,consumer}-perf-test.sh.

spate runs first (its maximum sets the fixed rate of the OMB workloads), then Kafka; each
broker freshly started, each phase on a topic of its own, every phase settled first (sync,
Dirty < 16 MiB, cpus idle; bench/machine.py):
  java-default    kafka-producer-perf-test, the producer's defaults (idempotent, acks=all),
                  --records of --record-size, 1 partition
  java-acks1      the same with acks=1, batch.size=262144, linger.ms=5
  java-consume    kafka-consumer-perf-test reading java-default's records
  spatectl-*      spatectl perf produce (acks=1, unthrottled) and perf consume, 1 partition
  omb-P           the OpenMessaging Benchmark's workloads scaled to this machine: one topic
                  of P partitions (1, 100, 1000), 4 producers (1 for P = 1) at a fixed total
                  rate for --omb-seconds, OMB's Kafka producer settings (acks=all, linger.ms
                  1; batch.size 1,000,000 rather than OMB's 1 MiB, which Kafka 1.0.2 refuses:
                  its message.max.bytes is 1,000,012), and a consumer (4 threads; 1 for P = 1)
                  reading as they write. Publish latency (send → ack, the worst of the
                  producers' percentiles) and end-to-end latency (send → consumed, stamped in
                  the record). The rate: --omb-rate MB/s (default 50); --omb-rate 0 takes
                  half of spate's spatectl-produce, as OMB's guidance says, but here that
                  (about 170 MB/s) writes 10 GB per workload and broker, and the latency then
                  measured is this VM's writeback, for both brokers.
Before each unthrottled produce phase the page cache the phase fills is put in the same state
for both brokers (memory freed a moment before: bench/machine.py memory reused), as the VM's first
touch of a page costs a hypervisor fault that lands in the broker's CPU time.
Reported per broker and phase: MB/s, latencies, and broker CPU seconds per GiB moved
(utime+stime of the broker process from /proc; for Kafka the broker JVM, not ZooKeeper),
peak RSS (VmHWM); then the ratios spate/Kafka. Client and broker share the machine's cores,
so the clients' own CPU seconds per GiB are printed too: what they take bounds what any
broker can reach on this machine.
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import brokers  # noqa: E402
import machine  # noqa: E402

GIB = 1 << 30


def log(text):
    print(text, flush=True)


def clients_cpu_seconds():
    """utime+stime of this process's waited children: the clients a phase ran and waited
    for (a broker is waited only when it stops, Kafka's JVM never: neither is counted)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


class Phase:
    """Measures one phase: runs `body` and notes the broker's CPU seconds meanwhile, and the
    clients' (the machine's cores are shared: what a client takes, no broker can use)."""

    # The GiB moved is `gib_moved`, or, when the phase's figures say it ("gib"), theirs.
    def __init__(self, broker, name, gib_moved, body, fills_mib=0):
        machine.settle("%s %s" % (broker.name, name), log=log)
        if fills_mib:
            machine.reuse_memory(fills_mib, log=log)
        cpu = broker.cpu_seconds()
        clients = clients_cpu_seconds()
        self.figures = body()
        self.cpu = broker.cpu_seconds() - cpu
        clients = clients_cpu_seconds() - clients
        gib_moved = self.figures.get("gib", gib_moved)
        per_gib = lambda seconds: seconds / gib_moved if gib_moved else float("nan")  # noqa: E731
        self.figures["cpu_per_gib"] = per_gib(self.cpu)
        self.figures["client_cpu_per_gib"] = per_gib(clients)
        log("  %-8s %-16s %s" % (broker.name, name, " ".join(
            "%s=%s" % (k, ("%.1f" % v) if isinstance(v, float) else v)
            for k, v in sorted(self.figures.items()) if k != "line")))


def java(args, tool, *argv):
    done = subprocess.run([os.path.join(args.kafka_dir, "bin", tool)] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (tool, done.returncode, done.stderr[-800:]))
    return done.stdout


def java_producer(args, broker, topic, *props):
    out = java(args, "kafka-producer-perf-test.sh", "--topic", topic, "--num-records",
               str(args.records), "--record-size", str(args.record_size), "--throughput", "-1",
               "--producer-props", "bootstrap.servers=" + broker.bootstrap, *props)
    return brokers.parse_produce(out)


def java_consumer(args, broker, topic):
    out = java(args, "kafka-consumer-perf-test.sh", "--bootstrap-server", broker.bootstrap,
               "--topic", topic, "--messages", str(args.records), "--timeout", "60000")
    # start.time, end.time, data.consumed.in.MB, MB.sec, ...
    return {"mbs": float(out.strip().splitlines()[-1].split(",")[3])}


def create(broker, topic, partitions):
    # A broker listening is not yet one its controller has announced: Kafka answers
    # INVALID_REPLICATION_FACTOR ("available brokers: 0") for a few seconds after start.
    deadline = time.monotonic() + 60
    while True:
        try:
            broker.run("topics", "create", "--topic", topic, "--partitions", str(partitions),
                       "--replication-factor", "1")
            return
        except RuntimeError as failure:
            if "INVALID_REPLICATION_FACTOR" not in str(failure) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def omb(args, broker, partitions, rate_mbs):
    """One OMB-style workload: producers at a fixed total rate, a consumer reading along."""
    topic = "omb-%d" % partitions
    create(broker, topic, partitions)
    producers = 1 if partitions == 1 else 4
    per_producer = max(1, int(rate_mbs * 1048576 / args.record_size / producers))
    records_each = per_producer * args.omb_seconds
    total = records_each * producers
    consumer = subprocess.Popen(broker.command(
        "perf", "consume", "--topic", topic, "--messages", str(total), "--latency",
        "--threads", str(1 if partitions == 1 else 4), "--timeout-ms", "60000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # the consumer's fetches are in place before the first record
    runs = [subprocess.Popen(broker.command(
        "perf", "produce", "--topic", topic, "--num-records", str(records_each), "--record-size",
        str(args.record_size), "--throughput", str(per_producer), "--acks", "-1", "--stamp",
        "--linger-ms", "1", "--batch-size", "1000000"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(producers)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=args.omb_seconds * 10 + 300)
        if run.returncode != 0:
            for other in runs + [consumer]:
                if other.poll() is None:
                    other.kill()
                    other.wait()
            raise RuntimeError("perf produce exited %d: %s" % (run.returncode, err[-500:]))
        results.append(brokers.parse_produce(out))
    out, err = consumer.communicate(timeout=args.omb_seconds * 10 + 300)
    if consumer.returncode != 0:
        raise RuntimeError("perf consume --latency exited %d: %s" % (consumer.returncode, err[-500:]))
    c = brokers.parse_consume(out)
    return {"mbs": sum(r["mbs"] for r in results), "pub_p50": max(r["p50"] for r in results),
            "pub_p99": max(r["p99"] for r in results), "pub_p999": max(r["p999"] for r in results),
            "pub_max": max(r["max"] for r in results), "e2e_p50": c.get("e2e_p50", -1),
            "e2e_p99": c.get("e2e_p99", -1), "e2e_p999": c.get("e2e_p999", -1),
            "e2e_max": c.get("e2e_max", -1), "gib": 2 * total * args.record_size / GIB}


def run_broker(args, broker, results, rate):
    gib = args.records * args.record_size / GIB
    fills = int(args.records * args.record_size * 1.5) >> 20
    if "java" not in args.skip:
        create(broker, "java-default", 1)
        create(broker, "java-acks1", 1)
        results["java-default"] = Phase(broker, "java-default", gib,
                                        lambda: java_producer(args, broker, "java-default"),
                                        fills).figures
        results["java-acks1"] = Phase(broker, "java-acks1", gib, lambda: java_producer(
            args, broker, "java-acks1", "acks=1", "batch.size=262144", "linger.ms=5"), fills).figures
        results["java-consume"] = Phase(broker, "java-consume", gib,
                                        lambda: java_consumer(args, broker, "java-default")).figures
    if "spatectl" not in args.skip:
        create(broker, "spatectl", 1)
        results["spatectl-produce"] = Phase(broker, "spatectl-produce", gib, lambda: broker.produce(
            "spatectl", args.records, args.record_size, -1, 1), fills).figures
        results["spatectl-consume"] = Phase(broker, "spatectl-consume", gib,
                                            lambda: broker.consume("spatectl", args.records)).figures
    if "omb" not in args.skip:
        if rate[0] is None:
            rate[0] = results.get("spatectl-produce", {}).get("mbs", 200.0) / 2
            log("  OMB workloads at %.1f MB/s (half of spate's spatectl-produce)" % rate[0])
        for partitions in (1, 100, 1000):
            # No memory preparation here: freeing gigabytes just before a 60 s latency run
            # put its tail into the VM's page reporting (spate's omb-100 p99 139 ms after
            # it, 4.6 ms without), and at 50 MB/s the first touches cost little cpu.
            # omb() says the GiB it moved (produced + consumed).
            name = "omb-%d" % partitions
            try:
                results[name] = Phase(broker, name, None,
                                      lambda: omb(args, broker, partitions, rate[0])).figures
            except RuntimeError as failure:
                # A workload the broker could not serve is a result too (Kafka 1.0.2 closed
                # a producer's connection at 1,000 partitions here); the others still run.
                log("  %-8s %-16s failed: %s" % (broker.name, name, failure))
                results.setdefault("failed", []).append((name, str(failure).strip()[-300:]))
    results["rss_mib"] = broker.peak_rss_mib()


def latencies(figures, prefix):
    return "/".join("%.0f" % figures[prefix + q] for q in ("p50", "p99", "p999", "max"))


def report(results, rate):
    k, s = results["kafka"], results["spate"]
    log("")
    log("%-17s %10s %10s %8s %13s %13s %8s %17s" % (
        "phase", "kafka MB/s", "spate MB/s", "s/k", "kafka CPU/GiB", "spate CPU/GiB", "k/s CPU",
        "clients' CPU/GiB"))
    for name in [n for n in s if n in k and isinstance(s[n], dict)]:
        a, b = k[name], s[name]
        log("%-17s %10.1f %10.1f %8.2f %13.2f %13.2f %8.2f %8.2f %8.2f" % (
            name, a["mbs"], b["mbs"], b["mbs"] / a["mbs"] if a["mbs"] else float("nan"),
            a["cpu_per_gib"], b["cpu_per_gib"],
            a["cpu_per_gib"] / b["cpu_per_gib"] if b["cpu_per_gib"] else float("nan"),
            a["client_cpu_per_gib"], b["client_cpu_per_gib"]))
    log("(clients' CPU/GiB: the clients of the phase, with Kafka then with spate; JVM start-up "
        "included)")
    log("")
    log("latency µs          kafka p50/p99/p99.9/max          spate p50/p99/p99.9/max     p99 k/s")
    for name in [n for n in s if n in k and isinstance(s[n], dict)]:
        for prefix, label in (("", "publish"), ("pub_", "publish"), ("e2e_", "end-to-end")):
            a, b = k[name], s[name]
            if prefix + "p99" not in a or prefix + "p99" not in b:
                continue
            log("%-12s %-10s %-32s %-32s %6.1f" % (
                name, label, latencies(a, prefix), latencies(b, prefix),
                a[prefix + "p99"] / b[prefix + "p99"] if b[prefix + "p99"] > 0 else float("nan")))
    log("")
    for who in ("kafka", "spate"):
        for name, why in results[who].get("failed", []):
            log("%s %s failed: %s" % (name, who, why))
    log("peak RSS: kafka %.0f MiB (JVM, heap -Xmx1G), spate %.0f MiB" % (k["rss_mib"], s["rss_mib"]))
    if rate[0]:
        log("OMB workloads at %.1f MB/s" % rate[0])
    log("goals: java-default spate/kafka >= 3; CPU per GiB kafka/spate >= 5 (8 in the README's "
        "table); OMB end-to-end p99 kafka/spate >= 10")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kafka_dir")
    parser.add_argument("--build", default="build")
    parser.add_argument("--records", type=int, default=1000000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--omb-seconds", type=int, default=60)
    parser.add_argument("--omb-rate", type=float, default=50.0,
                        help="MB/s of the OMB workloads (0: half of spate's spatectl-produce)")
    parser.add_argument("--skip", default="")
    args = parser.parse_args()
    args.kafka_dir = os.path.abspath(args.kafka_dir)
    args.skip = set(args.skip.split(","))
    for f in ("kafka1-start.sh", "kafka1-stop.sh", "kafka-producer-perf-test.sh",
              "kafka-consumer-perf-test.sh"):
        if not os.access(os.path.join(args.kafka_dir, "bin", f), os.X_OK):
            sys.exit("vs_kafka: %s/bin/%s is missing" % (args.kafka_dir, f))
    if shutil.which("java") is None:
        sys.exit("vs_kafka: java is not installed (KAFKA_DIR/install-deps.sh)")
    work = tempfile.mkdtemp(prefix="spate-vs-kafka.", dir="/var/tmp")
    log("vs_kafka: %d records x %d B per phase, OMB %d s; %d cores; %s" % (
        args.records, args.record_size, args.omb_seconds, os.cpu_count(), machine.state()))
    results = {"spate": {}, "kafka": {}}
    rate = [args.omb_rate or None]
    try:
        spate = brokers.Spate(args.build, work, False, "spate")
        try:
            run_broker(args, spate, results["spate"], rate)
        finally:
            spate.stop()
        shutil.rmtree(os.path.join(work, "spate"), ignore_errors=True)
        kafka = brokers.Kafka(args.kafka_dir, args.build, work)
        try:
            run_broker(args, kafka, results["kafka"], rate)
        finally:
            kafka.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, rate)
    log("machine after: " + machine.state())


if __name__ == "__main__":
    main()
