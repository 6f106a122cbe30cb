"""A spate cluster for tests: a real ZooKeeper (zookeeper.py) and N spate brokers.

    with Cluster(brokers=3) as c:          # node ids 1..3, all registered and agreed
        c.bootstrap                        # "127.0.0.1:P1,127.0.0.1:P2,..." (running, not paused)
        c.broker(2)                        # the harness.Broker of node id 2
        c.kill(2); c.restart(2)            # SIGKILL; start again with the same data and port
        c.stop_broker(2)                   # SIGTERM, returns the exit code
        c.pause(2); c.resume(2)            # SIGSTOP / SIGCONT
        c.controller_id()                  # from /controller (kazoo), None when absent
        c.registered_ids(); c.zk_json(path); c.kazoo   # ZooKeeper as it is
        c.metadata(1, ["t"])               # a raw Metadata v12 answer from node 1
        c.leader_of("t", 0)                # the leader in a live broker's Metadata, None if none
        c.partition_state("t", 0)          # the partition's state znode (leader, isr, epochs)
        c.wipe(2)                          # delete a stopped broker's data directory
        c.wait_for(lambda: ..., 10, "what")
        c.wait_ready()                     # ZooKeeper and every broker agree on the live set

Brokers are numbered by their node id, 1..N. Everything lives under one temporary
directory: the ZooKeeper servers (zk/), each broker's data (b<id>/) and log (b<id>.log)
and the broker config file. Ports are picked below the kernel's ephemeral range (as
zookeeper.py does) so a restarted broker gets its old port back.

stop() stops everything (a paused broker is continued first) and removes the directory;
SPATE_KEEP_CLUSTER_DIR=1 keeps it for a look at the logs. An atexit hook stops clusters
a crashed test left running, and every broker runs under `setpriv --pdeathsig KILL`, so
even a SIGKILLed test leaves no broker behind.
"""
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from harness import Broker  # noqa: E402
from kafka_raw import metadata_request  # noqa: E402
from zookeeper import ZooKeeper, free_ports  # noqa: E402

_clusters = set()


class ClusterBroker(Broker):
    """A harness.Broker run under setpriv --pdeathsig (dies with the test) in its own
    session (a terminal's Ctrl-C reaches only Python, which then stops it in order)."""

    setpriv = shutil.which("setpriv")

    def __init__(self, node_id, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.node_id = node_id
        self.paused = False
        self.exit_code = None  # of a start that failed because the broker exited

    def start(self):
        self.log = open(self.log_path, "ab")
        command = [self.binary, "--listen", self.bootstrap, "--data-dir", self.data_dir,
                   "--shards", str(self.shards)] + self.extra
        if self.setpriv and threading.current_thread() is threading.main_thread():
            command = [self.setpriv, "--pdeathsig", "KILL", "--"] + command
        self.paused = False
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.process.poll() is not None:
                code = self.exit_code = self.process.returncode
                self.process = None
                self.log.close()
                raise RuntimeError("spate %d exited with %d:\n%s" % (self.node_id, code, self.read_log()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("spate %d did not start listening:\n%s" % (self.node_id, self.read_log()))

    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.paused and self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.paused = False
        return super().stop(sig, timeout)

    def read_log(self, limit=4000):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
            return text[-limit:] if limit else text
        except OSError:
            return ""


class Cluster:
    # Admin request versions the harness's helpers send (bench/kafka_cluster.py's Kafka
    # 1.0.2 takes older ones with the same bodies).
    create_topics_version = 4
    delete_topics_version = 3

    def __init__(self, brokers=3, zk_nodes=1, session_timeout_ms=5000, shards=2,
                 connection_timeout_ms=5000, racks=None, extra_config=""):
        self.broker_count = brokers
        self.zk_nodes = zk_nodes
        self.session_timeout_ms = session_timeout_ms
        self.connection_timeout_ms = connection_timeout_ms
        self.shards = shards
        self.racks = racks  # {node_id: rack} or None
        self.extra_config = extra_config
        self.base_dir = None
        self.zk = None
        self.brokers = {}
        self._kazoo = None

    # ---- lifecycle ------------------------------------------------------------------

    def start(self, timeout=60):
        _clusters.add(self)
        self.base_dir = tempfile.mkdtemp(prefix="spate-cluster-")
        try:
            self.zk = ZooKeeper(self.zk_nodes, base_dir=os.path.join(self.base_dir, "zk"))
            self.zk.start()
            self.config_path = self.write_config(self.session_timeout_ms,
                                                 self.connection_timeout_ms, self.extra_config)
            ports = free_ports(self.broker_count)
            for i in range(self.broker_count):
                node_id = i + 1
                self.brokers[node_id] = self.make_broker(node_id, ports[i])
            for b in self.brokers.values():
                b.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def write_config(self, session_timeout_ms, connection_timeout_ms, extra="", name="broker.toml"):
        path = os.path.join(self.base_dir, name)
        with open(path, "w") as f:
            f.write("zookeeper_session_timeout_ms = %d\n" % session_timeout_ms)
            f.write("zookeeper_connection_timeout_ms = %d\n" % connection_timeout_ms)
            f.write(extra)
        return path

    def make_broker(self, node_id, port, zookeeper=None, config=None):
        extra = ["--node-id", str(node_id), "--zookeeper", zookeeper or self.zk.connect_string,
                 "--config", config or self.config_path]
        if self.racks and node_id in self.racks:
            extra += ["--rack", self.racks[node_id]]
        data_dir = os.path.join(self.base_dir, "b%d" % node_id)
        os.makedirs(data_dir, exist_ok=True)
        return ClusterBroker(node_id, data_dir=data_dir, port=port, shards=self.shards, extra=extra)

    def stop(self):
        for b in self.brokers.values():
            try:
                b.stop(timeout=20)
            except Exception:
                try:
                    if b.process is not None:
                        b.process.kill()
                        b.process.wait()
                        b.process = None
                except Exception:
                    pass
        if self._kazoo is not None:
            try:
                self._kazoo.stop()
                self._kazoo.close()
            except Exception:
                pass
            self._kazoo = None
        if self.zk is not None:
            try:
                self.zk.stop()
            except Exception:
                pass
            self.zk = None
        if self.base_dir and not os.environ.get("SPATE_KEEP_CLUSTER_DIR"):
            shutil.rmtree(self.base_dir, ignore_errors=True)
        elif self.base_dir:
            print("cluster directory kept: %s" % self.base_dir, file=sys.stderr)
        self.base_dir = None
        self.brokers = {}
        _clusters.discard(self)

    def __enter__(self):
        return self if self.brokers else self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- brokers --------------------------------------------------------------------

    @property
    def ids(self):
        return sorted(self.brokers)

    def broker(self, node_id):
        return self.brokers[node_id]

    def running_ids(self):
        return [i for i in self.ids if self.brokers[i].running()]

    def live_ids(self):
        """Brokers running and not paused."""
        return [i for i in self.running_ids() if not self.brokers[i].paused]

    @property
    def bootstrap(self):
        return ",".join(self.brokers[i].bootstrap for i in self.live_ids())

    def kill(self, node_id):
        """SIGKILL, like a crashed machine; the registration stays until the session times out."""
        return self.brokers[node_id].kill()

    def stop_broker(self, node_id):
        """A clean stop (SIGTERM); returns the exit code."""
        return self.brokers[node_id].stop()

    def restart(self, node_id, wait=True, timeout=None):
        """Starts the broker again (killing it first if it runs) with its data and port; waits
        until it is registered under a new session and every live broker lists it."""
        b = self.brokers[node_id]
        before = self.registration_owner(node_id)
        if b.running():
            b.kill()
        b.start()
        if wait:
            timeout = timeout or (self.session_timeout_ms / 1000.0 + 15)
            self.wait_for(lambda: self.registration_owner(node_id) not in (None, before), timeout,
                          "broker %d registered again" % node_id)
            self.wait_ready(timeout)
        return b

    def wipe(self, node_id):
        """Deletes a stopped broker's data directory (left empty, as on a new disk)."""
        b = self.brokers[node_id]
        if b.running():
            raise RuntimeError("broker %d still runs: stop it before wiping its data" % node_id)
        shutil.rmtree(b.data_dir, ignore_errors=True)
        os.makedirs(b.data_dir, exist_ok=True)

    def pause(self, node_id):
        b = self.brokers[node_id]
        b.process.send_signal(signal.SIGSTOP)
        b.paused = True

    def resume(self, node_id):
        b = self.brokers[node_id]
        b.process.send_signal(signal.SIGCONT)
        b.paused = False

    # ---- ZooKeeper ------------------------------------------------------------------

    @property
    def kazoo(self):
        """A kazoo client on the ensemble (one per cluster, retried operations)."""
        if self._kazoo is None:
            from kazoo.client import KazooClient
            from kazoo.retry import KazooRetry
            import logging
            logging.getLogger("kazoo").setLevel(logging.ERROR)
            client = KazooClient(hosts=self.zk.connect_string, timeout=6.0,
                                 connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=0.5),
                                 command_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=0.5,
                                                          deadline=20))
            client.start(timeout=15)
            self._kazoo = client
        return self._kazoo

    def zk_json(self, path):
        """(parsed JSON, stat) of a znode, or (None, None) when it does not exist."""
        from kazoo.exceptions import NoNodeError
        try:
            data, stat = self.kazoo.get(path)
        except NoNodeError:
            return None, None
        return json.loads(data.decode()) if data else None, stat

    def controller_id(self):
        node, _ = self.zk_json("/controller")
        return None if node is None else node.get("brokerid")

    def registered_ids(self):
        from kazoo.exceptions import NoNodeError
        try:
            return sorted(int(c) for c in self.kazoo.get_children("/brokers/ids"))
        except NoNodeError:
            return []

    def partition_state(self, topic, partition):
        """/brokers/topics/<t>/partitions/<p>/state as a dict ({"leader", "leader_epoch",
        "isr", ...}), None when absent."""
        node, _ = self.zk_json("/brokers/topics/%s/partitions/%d/state" % (topic, partition))
        return node

    def leader_of(self, topic, partition, via=None):
        """The partition's leader in broker `via`'s Metadata (default: the first live
        broker); None when it has none (-1) or does not know the partition."""
        via = via if via is not None else self.live_ids()[0]
        t = self.metadata(via, [topic])["topics"].get(topic)
        if t is None or t["error"] != 0 or partition not in t["partitions"]:
            return None
        leader = t["partitions"][partition]["leader"]
        return None if leader < 0 else leader

    def registration_owner(self, node_id):
        """The session (ephemeralOwner) holding /brokers/ids/<id>, None when absent."""
        stat = self.kazoo.exists("/brokers/ids/%d" % node_id)
        return None if stat is None else stat.ephemeralOwner

    # ---- waiting --------------------------------------------------------------------

    @staticmethod
    def wait_for(predicate, timeout, what=None, interval=0.1):
        """Polls until predicate() returns something true (returned); exceptions count as
        not yet. Raises TimeoutError naming `what` and the last value or exception."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = value
            except Exception as e:  # not yet
                last = e
            if time.monotonic() > deadline:
                raise TimeoutError("%s: not within %.1fs (last: %r)"
                                   % (what or getattr(predicate, "__name__", "condition"), timeout, last))
            time.sleep(interval)

    def agreed(self, ids=None):
        """True when ZooKeeper lists exactly the live brokers, there is a controller, and
        every live broker's Metadata lists them all and that controller."""
        ids = sorted(ids if ids is not None else self.live_ids())
        if self.registered_ids() != ids:
            return False
        controller = self.controller_id()
        if controller not in ids:
            return False
        for i in ids:
            m = self.metadata(i, [])
            if sorted(m["brokers"]) != ids or m["controller_id"] != controller:
                return False
        return True

    def wait_ready(self, timeout=30):
        self.wait_for(self.agreed, timeout, "cluster agreed on live brokers %s" % self.live_ids())

    # ---- Kafka requests by hand ---------------------------------------------------------

    def metadata(self, node_id, topics=None, timeout=5):
        """Metadata v12 sent to broker `node_id`; topics None asks for all."""
        return metadata_request(("127.0.0.1", self.brokers[node_id].port), topics, timeout)


@atexit.register
def _stop_all():
    for c in list(_clusters):
        c.stop()


def _on_sigterm(*_):
    # meson test (and anyone else) stops a test with SIGTERM: unwind, so the with-blocks
    # and the atexit hook stop the brokers and ZooKeeper.
    raise SystemExit(143)


def install_sigterm_handler():
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


# ---- running a suite --------------------------------------------------------------------

class Skip(Exception):
    """Raised by a test that cannot run here (a missing tool): reported, not failed."""


def run_suite(selected, cleanup):
    """Runs the test functions `selected` in order, a line each; `cleanup(failed)` after
    each and once more at the end, then stops every cluster still running. Prints the
    summary line "N passed, N failed" and returns the exit code."""
    import time
    import traceback
    passed, failed, skipped = [], [], []
    total = time.monotonic()
    try:
        for test in selected:
            began = time.monotonic()
            ok = False
            try:
                test()
                ok = True
                passed.append(test.__name__)
                print("ok   %s (%.1fs)" % (test.__name__, time.monotonic() - began), flush=True)
            except Skip as why:
                ok = True
                skipped.append((test.__name__, str(why)))
                print("skip %s: %s" % (test.__name__, why), flush=True)
            except Exception as failure:
                failed.append((test.__name__, str(failure)))
                print("FAIL %s (%.1fs): %s" % (test.__name__, time.monotonic() - began, failure),
                      flush=True)
                if isinstance(failure, AssertionError):  # the message says it; where it was raised
                    frame = traceback.extract_tb(failure.__traceback__)[-1]
                    print("     (raised at %s:%d in %s)" % (os.path.basename(frame.filename),
                                                          frame.lineno, frame.name))
                else:
                    traceback.print_exc()
                sys.stdout.flush()
            finally:
                cleanup(failed=not ok)
    finally:
        cleanup(failed=False)
        for c in list(_clusters):
            c.stop()
    print("total %.1fs" % (time.monotonic() - total))
    for name, why in skipped:
        print("skipped: %s (%s)" % (name, why))
    for name, why in failed:
        print("failed: %s: %s" % (name, why[:600]))
    print("%d passed, %d failed" % (len(passed), len(failed)) +
          (", %d skipped" % len(skipped) if skipped else ""))
    return 1 if failed else 0
