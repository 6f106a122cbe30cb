#!/usr/bin/env python3
"""Bytes on the wire of a consumer of N partitions (default 1,000) with one new record,
per fetch: sessionless (every partition in the request and the answer) against an
incremental fetch session (KIP-227: only what changed). Starts its own broker.

  /usr/bin/python3 bench/fetch_sessions.py [--binary build/broker/spate] [--partitions 1000]
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from fetch_sessions_test import session_figures  # noqa: E402
from harness import Broker  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "build", "broker", "spate"))
    parser.add_argument("--partitions", type=int, default=1000)
    args = parser.parse_args()
    os.environ["SPATE_BIN"] = args.binary
    with Broker() as b:
        (full_req, full_resp), (inc_req, inc_resp) = session_figures(b, args.partitions)
    print("%d partitions, one new record, bytes per fetch:" % args.partitions)
    print("  sessionless  request %7d  response %7d" % (full_req, full_resp))
    print("  incremental  request %7d  response %7d" % (inc_req, inc_resp))
    print("  ratio        request %7.0fx response %7.0fx" % (full_req / inc_req, full_resp / inc_resp))


if __name__ == "__main__":
    main()
