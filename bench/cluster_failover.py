#!/usr/bin/env python3
"""Failure detection and topic creation of a 3-broker spate cluster on one ZooKeeper.

  /usr/bin/python3 bench/cluster_failover.py [--binary build/broker/spate] [--runs 10]
      [--session-timeout-ms 5000] [--create-seconds 10]

Measures, over --runs runs each:
  * broker kill -9 -> the broker missing from another broker's Metadata (raw Metadata v12
    polled every 20 ms on a surviving broker); the killed broker is restarted between runs;
  * controller kill -9 -> a new controller registered in /controller (kazoo, polled every
    20 ms); the old controller is restarted between runs;
and the topic creation rate: CreateTopics of one 6-partition topic per request, one request
at a time, rotating over the brokers, for --create-seconds; then how long until the last
of them is served by every broker. Prints median and max next to the configured session
timeout (detection is due within it), and the machine's load average.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import kafka_raw as kr  # noqa: E402
from cluster import Cluster, install_sigterm_handler  # noqa: E402

POLL = 0.02


def addr(c, node_id):
    return ("127.0.0.1", c.broker(node_id).port)


def broker_kill_run(c, run):
    controller = c.controller_id()
    others = [i for i in c.ids if i != controller]
    victim = others[run % len(others)]
    observer = next(i for i in c.ids if i != victim)
    began = time.monotonic()
    c.kill(victim)
    while True:
        try:
            if victim not in c.metadata(observer, [], timeout=2)["brokers"]:
                took = time.monotonic() - began
                break
        except OSError:
            pass
        if time.monotonic() - began > 60:
            raise RuntimeError("broker %d still listed by broker %d after 60 s" % (victim, observer))
        time.sleep(POLL)
    c.restart(victim)
    return took


def controller_kill_run(c):
    old = c.controller_id()
    began = time.monotonic()
    c.kill(old)
    while True:
        now = c.controller_id()
        if now is not None and now != old:
            took = time.monotonic() - began
            break
        if time.monotonic() - began > 60:
            raise RuntimeError("no new controller 60 s after killing broker %d" % old)
        time.sleep(POLL)
    c.restart(old)
    return took


def creation_rate(c, seconds):
    names = []
    failures = 0
    began = time.monotonic()
    n = 0
    while time.monotonic() - began < seconds:
        name = "bench-%d" % n
        via = c.ids[n % len(c.ids)]
        n += 1
        code, message = kr.create_topics(addr(c, via), [(name, 6, 1)])[name]
        if code == 0:
            names.append(name)
        else:
            failures += 1
    answered = time.monotonic() - began
    # Until every broker serves every new topic with a leader for each partition.
    last = names[-1] if names else None
    while last is not None:
        ok = True
        for i in c.ids:
            t = c.metadata(i, [last])["topics"].get(last)
            if t is None or len(t["partitions"]) != 6 or any(p["leader"] < 0 for p in t["partitions"].values()):
                ok = False
                break
        if ok:
            break
        time.sleep(POLL)
    settled = time.monotonic() - began
    everywhere = {i: len([t for t in c.metadata(i)["topics"] if t.startswith("bench-")]) for i in c.ids}
    return len(names), failures, answered, settled, everywhere


def summary(label, values, session_s):
    return "%-48s median %6.2f s   max %6.2f s   min %6.2f s   (session timeout %.1f s, %d runs)" % (
        label, statistics.median(values), max(values), min(values), session_s, len(values))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "build", "broker", "spate"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--session-timeout-ms", type=int, default=5000)
    parser.add_argument("--create-seconds", type=float, default=10)
    args = parser.parse_args()
    os.environ["SPATE_BIN"] = os.path.abspath(args.binary)
    install_sigterm_handler()
    session_s = args.session_timeout_ms / 1000.0
    load_before = os.getloadavg()
    began = time.monotonic()
    with Cluster(brokers=3, zk_nodes=1, session_timeout_ms=args.session_timeout_ms) as c:
        broker_times = []
        for run in range(args.runs):
            broker_times.append(broker_kill_run(c, run))
            print("  broker kill run %2d: %.2f s" % (run + 1, broker_times[-1]), file=sys.stderr, flush=True)
        controller_times = []
        for run in range(args.runs):
            controller_times.append(controller_kill_run(c))
            print("  controller kill run %2d: %.2f s" % (run + 1, controller_times[-1]), file=sys.stderr,
                  flush=True)
        created, failures, answered, settled, everywhere = creation_rate(c, args.create_seconds)
    load_after = os.getloadavg()
    print("spate cluster failover: 3 brokers, 1 ZooKeeper (tick 500 ms), session timeout %.1f s, %d cpus"
          % (session_s, os.cpu_count()))
    print(summary("broker kill -9 -> gone from another's Metadata", broker_times, session_s))
    print(summary("controller kill -9 -> new controller registered", controller_times, session_s))
    print("topic creation (6 partitions, one request at a time): %d topics in %.1f s = %.1f topics/s "
          "(%.1f partitions/s), %d refused; all served everywhere after %.1f s; per broker %s"
          % (created, answered, created / answered, 6 * created / answered, failures, settled, everywhere))
    print("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f; took %.0f s"
          % (load_before + load_after + (time.monotonic() - began,)))


if __name__ == "__main__":
    main()
