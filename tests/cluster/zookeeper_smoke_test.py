"""Smoke test of the ZooKeeper test helper (zookeeper.py) against the real server.

Standalone: start, create and read a znode with kazoo. Ensemble: start three
servers, write, SIGKILL the leader, read and write through the survivors, restart
the killed node and read the data back from it alone. Prints how long each start
took and ends with "N passed, M failed"; exit status 1 on any failure.
"""
import logging
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kazoo.client import KazooClient  # noqa: E402
from kazoo.retry import KazooRetry  # noqa: E402

from zookeeper import ZooKeeper  # noqa: E402

# Kazoo warns on every dropped connection, which this test causes on purpose.
logging.getLogger("kazoo").setLevel(logging.ERROR)

# Every java pid the tests saw, checked at the end: nothing may outlive its test.
# (Other sessions may run their own ZooKeepers, so no machine-wide pgrep here.)
seen_pids = set()


def client(hosts):
    # Sessions must outlive a leader election; operations retry until a deadline
    # instead of failing on the first ConnectionLoss.
    c = KazooClient(hosts=hosts, timeout=6.0,
                    connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=0.5),
                    command_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=0.5, deadline=20))
    c.start(timeout=15)
    return c


def remember_pids(zk):
    for node in zk.nodes:
        if node.process is not None:
            seen_pids.add(node.process.pid)


def timed_start(zk, what):
    began = time.monotonic()
    zk.start()
    print("     %s started in %.2fs" % (what, time.monotonic() - began), flush=True)
    remember_pids(zk)
    return zk


def test_standalone_create_and_read():
    with timed_start(ZooKeeper(), "standalone server") as zk:
        base = zk.base_dir
        assert zk.mode(0) == "standalone", zk.mode(0)
        c = client(zk.connect_string)
        try:
            c.create("/spate/hello", b"world", makepath=True)
            data, stat = c.get("/spate/hello")
            assert data == b"world" and stat.version == 0, (data, stat)
            c.set("/spate/hello", b"again")
            assert c.get("/spate/hello")[0] == b"again"
        finally:
            c.stop()
            c.close()
    assert not os.path.exists(base), "temp dir left behind: " + base


def test_ensemble_survives_killed_leader():
    with timed_start(ZooKeeper(nodes=3), "3-node ensemble") as zk:
        base = zk.base_dir
        modes = sorted(zk.mode(i) for i in range(3))
        assert modes == ["follower", "follower", "leader"], modes
        c = client(zk.connect_string)
        try:
            c.create("/spate/before", b"1", makepath=True)

            victim = zk.leader()
            began = time.monotonic()
            zk.kill_node(victim)
            # Through the survivors: reads, an update and a new znode.
            assert c.retry(c.get, "/spate/before")[0] == b"1"
            c.retry(c.set, "/spate/before", b"2")
            c.retry(c.create, "/spate/during", b"3")
            print("     writes went through %.2fs after killing leader %d"
                  % (time.monotonic() - began, victim), flush=True)
            survivors = [i for i in range(3) if i != victim]
            modes = sorted(zk.mode(i) for i in survivors)
            assert modes == ["follower", "leader"], modes

            began = time.monotonic()
            zk.start_node(victim)
            print("     killed node %d restarted in %.2fs" % (victim, time.monotonic() - began),
                  flush=True)
            remember_pids(zk)
            assert zk.mode(victim) == "follower", zk.mode(victim)
        finally:
            c.stop()
            c.close()

        # The restarted node alone must have caught up with what it missed.
        only = client(zk.node_connect_string(victim))
        try:
            only.sync("/spate")
            assert only.get("/spate/before")[0] == b"2"
            assert only.get("/spate/during")[0] == b"3"
        finally:
            only.stop()
            only.close()

        # A graceful stop and restart of a follower, for the stop_node path.
        follower = next(i for i in range(3) if zk.mode(i) == "follower")
        began = time.monotonic()
        zk.stop_node(follower)
        stopped = time.monotonic() - began
        assert not zk.is_running(follower)
        began = time.monotonic()
        zk.start_node(follower)
        print("     follower %d stopped in %.2fs, restarted in %.2fs"
              % (follower, stopped, time.monotonic() - began), flush=True)
        remember_pids(zk)
    assert not os.path.exists(base), "temp dir left behind: " + base


def test_failed_start_raises_with_log_and_cleans_up():
    zk = ZooKeeper(extra_config={"tickTime": "not-a-number"})
    try:
        zk.start(timeout=15)
    except RuntimeError as e:
        assert "zookeeper.log" in str(e) or "stdout.log" in str(e), str(e)
    else:
        zk.stop()
        raise AssertionError("start with a broken zoo.cfg did not fail")
    assert zk.nodes == [] and zk.base_dir is None, "failed start left state behind"


def test_no_java_process_left():
    time.sleep(0.2)  # let the kernel reap
    alive = []
    for pid in seen_pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if b"QuorumPeerMain" in f.read():
                    alive.append(pid)
        except OSError:  # gone
            pass
    assert seen_pids, "no java processes were recorded"
    assert not alive, "java processes still running: %s" % alive


def main():
    tests = [test_standalone_create_and_read, test_ensemble_survives_killed_leader,
             test_failed_start_raises_with_log_and_cleans_up, test_no_java_process_left]
    passed = failed = 0
    total = time.monotonic()
    for test in tests:
        began = time.monotonic()
        try:
            test()
            passed += 1
            print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - began), flush=True)
        except Exception as failure:  # report and go on with the next test
            failed += 1
            print("FAIL %s: %r" % (test.__name__, failure), flush=True)
            traceback.print_exc()
    print("total %.1fs" % (time.monotonic() - total))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
