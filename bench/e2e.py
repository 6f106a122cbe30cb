#!/usr/bin/env python3
"""spate on loopback against what this machine itself can do, in the same run: every figure
is a ratio to a baseline measured beside it, in the same memory state.

  /usr/bin/python3 bench/e2e.py [--build build] [--records 1000000] [--record-size 1024]
      [--rounds 3] [--states reused,fresh] [--latency-seconds 10] [--pin-shards]
      [--skip throughput,latency,fsync]

 1. throughput, per memory state (bench/machine.py: "reused" = the page cache the writes
    fill is memory freed a moment before; "fresh" = memory handed back to the host, as after
    a boot or a long idle), --rounds alternating rounds of:
      fio: buffered write of the same volume in the produce's write size (256 KiB), into a
           new file, deleted after;
      spate: `spatectl perf produce` of --records records of --record-size bytes (acks=1,
           256 KiB batches, linger 1 ms, 8 in flight) into a new topic, then `perf consume`
           of them from page cache, then the topic is deleted.
    Each measurement starts settled (sync, Dirty < 16 MiB, cpus idle) and then puts memory in
    its state. Also iperf3 over loopback (median of --rounds). Ratios of medians:
    produce ÷ the slower of iperf3 and fio (goal >= 0.8); consume ÷ iperf3 (goal >= 0.95).
 2. latency: sockperf TCP round trips (--latency-seconds), then `perf produce` acks=1 at
    10,000 records/s for as long: produce p99 ÷ round-trip p99 (goal <= 3).
 3. fsync: fio appending --record-size writes at 1,000/s with fdatasync after each, then
    spate with acks_all_policy = "fsync", `perf produce --acks all` at the same rate and
    size: p99 ÷ fdatasync p99 (goal <= 1.5).
The latency ratios are withheld (printed as such, with who) when a process outside this
bench used more than 20 % of a core around the measurement: the figure would be that
process's. The machine's state is printed beside every figure. Not a test.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import baselines  # noqa: E402
import brokers  # noqa: E402
import machine  # noqa: E402

MIB = 1024 * 1024
WRITE_SIZE = brokers.WRITE_SIZE


def log(text):
    print(text, flush=True)


def prepare(kind, mib):
    """Settles, then puts the memory the next `mib` MiB of writes fill in state `kind`."""
    machine.settle(kind, log=log)
    if kind == "fresh":
        machine.fresh_memory(log=log)
    else:
        machine.reuse_memory(mib, log=log)


def median(values):
    return statistics.median(values) if values else float("nan")


def ratio(a, b):
    return a / b if b else float("nan")


def phase_throughput(args, work, out):
    volume_mib = args.records * args.record_size // MIB
    iperf = []
    for _ in range(args.rounds):
        machine.settle("iperf3", log=log)
        iperf.append(baselines.iperf3_mbs())
    iperf_mbs = median(iperf)
    out.append("iperf3 loopback:            %8.1f MB/s median   [runs: %s]"
               % (iperf_mbs, " ".join("%.0f" % x for x in iperf)))
    broker = brokers.Spate(args.build, work, args.pin_shards, "spate")
    try:
        for kind in args.states:
            fio, produce, consume = [], [], []
            for r in range(args.rounds):
                prepare(kind, volume_mib * 3 // 2)
                fio.append(baselines.fio_write_mbs(work, volume_mib, WRITE_SIZE))
                log("    %s round %d fio write:      %8.1f MB/s" % (kind, r + 1, fio[-1]))
                topic = "e2e-%s-%d" % (kind, r)
                broker.run("topics", "create", "--topic", topic, "--partitions", "1")
                prepare(kind, volume_mib * 3 // 2)
                p = broker.produce(topic, args.records, args.record_size, -1, "1")
                produce.append(p["mbs"])
                log("    %s round %d spate produce:  %8.1f MB/s   [%s]" % (kind, r + 1, p["mbs"], p["line"]))
                consume.append(broker.consume(topic, args.records)["mbs"])
                log("    %s round %d spate consume:  %8.1f MB/s (from page cache)" % (kind, r + 1, consume[-1]))
                broker.run("topics", "delete", "--topic", topic)
            base = min(iperf_mbs, median(fio))
            out.append("into %-6s page cache: fio write %8.1f, produce %8.1f, consume %8.1f MB/s (medians)"
                       % (kind, median(fio), median(produce), median(consume)))
            out.append("  [rounds: fio %s | produce %s | consume %s]" % (
                " ".join("%.0f" % x for x in fio), " ".join("%.0f" % x for x in produce),
                " ".join("%.0f" % x for x in consume)))
            out.append("  produce / min(iperf3, fio):  %6.3f   (goal >= 0.8)" % ratio(median(produce), base))
            out.append("  consume / iperf3:            %6.3f   (goal >= 0.95)" % ratio(median(consume), iperf_mbs))
    finally:
        broker.stop()


def phase_latency(args, work, out):
    broker = brokers.Spate(args.build, work, args.pin_shards, "spate-latency")
    try:
        broker.run("topics", "create", "--topic", "e2e-latency", "--partitions", "1")
        machine.settle("latency", log=log)
        watch = machine.Watch()
        rtt = baselines.sockperf_rtt(args.latency_seconds, args.record_size)
        p = broker.produce("e2e-latency", 10000 * args.latency_seconds, args.record_size, 10000, "1")
        why = watch.verdict()
    finally:
        broker.stop()
    out.append("sockperf TCP round trip:    p50 %7.1f  p99 %7.1f  p99.9 %7.1f µs"
               % (rtt.get(50.0, float("nan")), rtt[99.0], rtt.get(99.9, float("nan"))))
    out.append("produce at 10k rec/s acks=1: p50 %7.1f  p99 %7.1f  p99.9 %7.1f µs   [%s]"
               % (p["p50"], p["p99"], p["p999"], p["line"]))
    out.append("  produce p99 / round-trip p99: %s   (goal <= 3)"
               % ("withheld: " + why if why else "%.2f" % ratio(p["p99"], rtt[99.0])))


def phase_fsync(args, work, out):
    rate = 1000
    machine.settle("fdatasync", log=log)
    watch = machine.Watch()
    base = baselines.fio_fdatasync_lat(work, args.record_size, rate)
    broker = brokers.Spate(args.build, work, args.pin_shards, "spate-fsync", 'acks_all_policy = "fsync"\n')
    try:
        broker.run("topics", "create", "--topic", "e2e-fsync", "--partitions", "1")
        p = broker.produce("e2e-fsync", rate * args.latency_seconds, args.record_size, rate, "-1")
        why = watch.verdict()
    finally:
        broker.stop()
    out.append("fio fdatasync (%d B, %d/s):  p50 %7.1f  p99 %7.1f  p99.9 %7.1f µs"
               % (args.record_size, rate, base[50.0], base[99.0], base[99.9]))
    out.append("acks=all fsync policy:       p50 %7.1f  p99 %7.1f  p99.9 %7.1f µs   [%s]"
               % (p["p50"], p["p99"], p["p999"], p["line"]))
    out.append("  fsync produce p99 / fdatasync p99: %s   (goal <= 1.5)"
               % ("withheld: " + why if why else "%.2f" % ratio(p["p99"], base[99.0])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--records", type=int, default=1000000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--states", default="reused,fresh")
    parser.add_argument("--latency-seconds", type=int, default=10)
    parser.add_argument("--pin-shards", action="store_true",
                        help="pin shards (default unpinned: client and broker share the cores)")
    parser.add_argument("--skip", default="")
    args = parser.parse_args()
    args.states = [s for s in args.states.split(",") if s]
    for tool in ("iperf3", "sockperf", "fio"):
        if shutil.which(tool) is None:
            sys.exit("e2e: %s is not installed (apt-get install %s)" % (tool, tool))
    for binary in ("broker/spate", "tools/spatectl"):
        if not os.access(os.path.join(args.build, binary), os.X_OK):
            sys.exit("e2e: %s/%s is missing; build it first" % (args.build, binary))
    skip = set(args.skip.split(","))
    work = tempfile.mkdtemp(prefix="spate-e2e.", dir="/var/tmp")
    out = []
    log("e2e: %d records x %d B, %d rounds, states %s, %d cores; %s"
        % (args.records, args.record_size, args.rounds, ",".join(args.states), os.cpu_count(),
           machine.state()))
    try:
        if "throughput" not in skip:
            phase_throughput(args, work, out)
        if "latency" not in skip:
            phase_latency(args, work, out)
        if "fsync" not in skip:
            phase_fsync(args, work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("")
    for line in out:
        log(line)
    log("machine after: " + machine.state())


if __name__ == "__main__":
    main()
