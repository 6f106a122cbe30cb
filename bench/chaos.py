#!/usr/bin/env python3
"""Randomized faults on a replicated spate cluster while an idempotent acks=all producer
runs; at the end everything is consumed and checked (tests/cluster/checker.py: nothing
acknowledged lost, moved, reordered or duplicated).

  /usr/bin/python3 bench/chaos.py [--minutes 5] [--brokers 3] [--binary build/broker/spate]
      [--rf 3] [--min-isr 2] [--partitions 3] [--rate 1000] [--seed N]
      [--interval 3:8] [--session-timeout-ms 5000]

Every --interval seconds (uniform in the range) one fault on a random broker:
  kill   SIGKILL, then restart;
  pause  SIGSTOP, SIGCONT 1-8 s later (longer than the session timeout: the broker's
         session expires and it registers again);
  term   SIGTERM (controlled shutdown), then restart.
Never more than one broker down: after each fault the broker is back, registered, and
every partition's ISR (ZooKeeper) full again before the next one; the producer must have
made progress on every partition. Prints one line per fault and, at the end, the checker's
report and how many faults the cluster survived. Not part of the test suite.
"""
import argparse
import collections
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import replication_test as rt  # noqa: E402
from checker import Producer, check, consume_all  # noqa: E402
from cluster import Cluster, install_sigterm_handler  # noqa: E402


def describe(c, topic, node_id):
    roles = []
    if c.controller_id() == node_id:
        roles.append("controller")
    led = [p for p, s in rt.states(c, topic).items() if s and s["leader"] == node_id]
    if led:
        roles.append("leads %s" % led)
    return ", ".join(roles) or "follower"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--binary", default=os.environ.get("SPATE_BIN", os.path.join(HERE, "..", "build", "broker", "spate")))
    parser.add_argument("--rf", type=int, default=None, help="default: min(brokers, 3)")
    parser.add_argument("--min-isr", type=int, default=None, help="default: rf - 1 (at least 1)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--interval", default="3:8", help="seconds between faults, MIN:MAX")
    parser.add_argument("--session-timeout-ms", type=int, default=5000)
    parser.add_argument("--faults", default="kill,pause,term")
    args = parser.parse_args()
    os.environ["SPATE_BIN"] = os.path.abspath(args.binary)
    rf = args.rf or min(args.brokers, 3)
    min_isr = args.min_isr or max(1, rf - 1)
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    low, high = (float(x) for x in args.interval.split(":"))
    kinds = args.faults.split(",")
    rt.O.rf, rt.O.min_isr, rt.O.partitions, rt.O.rate = rf, min_isr, args.partitions, args.rate
    rt.O.session_ms, rt.O.brokers = args.session_timeout_ms, args.brokers
    install_sigterm_handler()
    print("chaos: %d brokers, RF %d, min.insync.replicas %d, %d partitions, %d records/s, %.1f min, "
          "faults %s every %s s, seed %d, binary %s" % (args.brokers, rf, min_isr, args.partitions, args.rate,
                                                         args.minutes, kinds, args.interval, seed, args.binary),
          flush=True)

    began = time.monotonic()
    survived = collections.Counter()
    c = Cluster(brokers=args.brokers, zk_nodes=1, session_timeout_ms=args.session_timeout_ms, shards=2).start()
    p = None
    failure = None
    try:
        topic = rt.topic_name("chaos")
        rt.create_topic(c, topic)
        p = Producer(c.bootstrap, topic, args.partitions, rate=args.rate).start()
        rt.progress(p, "before any fault")
        end = time.monotonic() + args.minutes * 60
        n = 0
        while time.monotonic() < end:
            time.sleep(rng.uniform(low, high))
            n += 1
            kind = rng.choice(kinds)
            victim = rng.choice(c.ids)
            role = describe(c, topic, victim)
            t0 = time.monotonic()
            if kind == "kill":
                c.kill(victim)
                time.sleep(rng.uniform(0, 3))
                c.restart(victim, timeout=args.session_timeout_ms / 1000.0 + 30)
                what = "kill -9"
            elif kind == "pause":
                pause = rng.uniform(1, 8)
                c.pause(victim)
                time.sleep(pause)
                c.resume(victim)
                c.wait_ready(args.session_timeout_ms / 1000.0 + 30)
                what = "SIGSTOP %.1fs" % pause
            else:
                code = c.stop_broker(victim)
                if code != 0:
                    raise AssertionError("broker %d exited with %d on SIGTERM" % (victim, code))
                time.sleep(rng.uniform(0, 3))
                c.restart(victim, timeout=args.session_timeout_ms / 1000.0 + 30)
                what = "SIGTERM"
            rt.wait_isr_full(c, topic, timeout=120)
            back = time.monotonic() - t0
            rt.progress(p, "after fault %d (%s on broker %d)" % (n, what, victim), count=50, timeout=60)
            survived[kind] += 1
            print("[%6.1fs] fault %d: %s broker %d (%s): ISR full after %.1fs; acked %d, errors %s"
                  % (time.monotonic() - began, n, what, victim, role, back, p.acked_count(), p.error_summary()),
                  flush=True)
        p.stop()
        if rf > 1:
            digests = rt.wait_replicas_identical(c, topic)
            print("replicas identical: %s" % {q: next(iter(v.values())) for q, v in sorted(digests.items())})
        consumed = consume_all(c.bootstrap, topic, args.partitions, min_end=p.ends(), timeout=180)
        report = check(p.acked, consumed, raise_on_failure=False)
        print("check: %s errors=%s" % (report.line(), p.error_summary()))
        if p.replacements:
            print("  producer client replaced %d times (librdkafka stuck partition, not a broker fault): %s"
                  % (len(p.replacements), p.replacements))
        for problem in report["problems"]:
            print("  " + problem)
        if p.failed:
            print("  %d records failed delivery, e.g. %s" % (len(p.failed), p.failed[:5]))
        ok = not report["problems"] and not p.failed
    except BaseException as e:
        failure = e
        ok = False
        print("chaos stopped: %r" % e, flush=True)
        for i in c.ids:
            print("--- broker %d log (tail) ---\n%s" % (i, c.broker(i).read_log(3000)))
    finally:
        if p is not None and failure is not None:
            p.abort()
        c.stop()
    total = sum(survived.values())
    print("%s: survived %d faults (%s) in %.1f min, seed %d" % (
        "PASS" if ok else "FAIL", total, ", ".join("%s %d" % kv for kv in sorted(survived.items())) or "none",
        (time.monotonic() - began) / 60, seed))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
