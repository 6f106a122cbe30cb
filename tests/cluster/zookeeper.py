"""Starts a real Apache ZooKeeper (Debian's `zookeeper` package) for cluster tests.

    with ZooKeeper() as zk:              # one standalone server
        client = KazooClient(hosts=zk.connect_string)
    with ZooKeeper(nodes=3) as zk:       # a three-node ensemble
        i = zk.leader()                  # nodes are numbered 0..nodes-1
        zk.kill_node(i)                  # SIGKILL; stop_node(i) is a clean SIGTERM
        zk.start_node(i)                 # same ports and data, waits until it serves

Every server runs as its own java process with its own directory (zoo.cfg,
log4j.properties, data/, zookeeper.log, stdout.log) under one temporary directory.
Ports are free loopback ports picked below the kernel's ephemeral range so that a
stopped node's port is not taken by some client's outgoing connection before the
node restarts.

stop() removes the temporary directory, logs included; set SPATE_KEEP_ZK_DIR=1 to
keep it for a look at the logs after a failure.

Run as a script (`python3 tests/cluster/zookeeper.py [1|3]`) it starts the servers,
prints the connect string and keeps them up until Ctrl-C or SIGTERM.
"""
import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

JAVA_DIR = "/usr/share/java"
# zookeeper.jar's manifest already names its dependencies (jute, netty, jetty, jackson,
# slf4j-api, ...) with absolute paths; only an slf4j binding is missing, and without
# one the server logs nothing at all. Debian's log4j 1.2 binding matches its config.
JARS = ["zookeeper.jar", "slf4j-log4j12.jar", "log4j-1.2.jar"]

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={log}
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d{{ISO8601}} %-5p [%t:%C{{1}}@%L] - %m%n
"""

START_TIMEOUT = 30
STOP_TIMEOUT = 10
SERVING_MODES = ("standalone", "leader", "follower")

# Ports handed out by this process; several ensembles in one test must not collide
# even before their servers bind.
_taken_ports = set()
# Every started instance (strong references: an instance a test forgot must still be
# stopped), so the atexit hook can stop what a crashed test left behind.
_instances = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port):
    # No SO_REUSEADDR: a port in TIME_WAIT counts as busy, which is the safe answer.
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count):
    """`count` distinct free loopback ports, preferably outside the ephemeral range."""
    high = _ephemeral_low() - 1
    ports = []
    for _ in range(count * 50):
        if len(ports) == count:
            break
        port = random.randint(min(15000, high - 1000), high)
        if port not in _taken_ports and port not in ports and _port_is_free(port):
            ports.append(port)
    while len(ports) < count:  # odd port range: let the kernel pick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _taken_ports and port not in ports:
            ports.append(port)
    _taken_ports.update(ports)
    return ports


def four_letter(port, command, timeout=1.0):
    """Sends a ZooKeeper four-letter word, returns the answer ("" if unreachable)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(command.encode())
            chunks = []
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
    except OSError:
        return "(no %s)" % path


class _Node:
    def __init__(self, index, directory, client_port, peer_port, election_port):
        self.index = index
        self.myid = index + 1
        self.dir = directory
        self.data_dir = os.path.join(directory, "data")
        self.cfg = os.path.join(directory, "zoo.cfg")
        self.log_path = os.path.join(directory, "zookeeper.log")
        self.stdout_path = os.path.join(directory, "stdout.log")
        self.client_port = client_port
        self.peer_port = peer_port
        self.election_port = election_port
        self.process = None


class ZooKeeper:
    """A standalone ZooKeeper server (nodes=1) or an ensemble (nodes=3)."""

    def __init__(self, nodes=1, base_dir=None, *, tick_time=500, extra_config=None):
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.nodes_count = nodes
        self.own_dir = base_dir is None
        self.base_dir = base_dir
        self.tick_time = tick_time
        self.extra_config = dict(extra_config or {})
        self.nodes = []
        self.java = shutil.which("java") or "/usr/bin/java"
        # setpriv --pdeathsig makes the kernel SIGKILL java when the thread that spawned
        # it dies, covering a test killed by SIGKILL where atexit never runs. Only used
        # from the main thread: a worker thread ending would take its servers along.
        self.setpriv = shutil.which("setpriv")

    # ---- public API -----------------------------------------------------------------

    @property
    def connect_string(self):
        return ",".join("127.0.0.1:%d" % n.client_port for n in self.nodes)

    def node_connect_string(self, i):
        return "127.0.0.1:%d" % self.nodes[i].client_port

    def client_port(self, i):
        return self.nodes[i].client_port

    def log_path(self, i):
        return self.nodes[i].log_path

    def is_running(self, i):
        p = self.nodes[i].process
        return p is not None and p.poll() is None

    def mode(self, i):
        """"standalone", "leader", "follower", or None if the node is not serving."""
        if not self.is_running(i):
            return None
        for line in four_letter(self.nodes[i].client_port, "srvr").splitlines():
            if line.startswith("Mode: "):
                return line[len("Mode: "):].strip()
        return None

    def leader(self):
        """Index of the current leader (or of the standalone server), or None."""
        for i in range(len(self.nodes)):
            if self.mode(i) in ("leader", "standalone"):
                return i
        return None

    def start(self, timeout=START_TIMEOUT):
        if self.nodes:
            raise RuntimeError("zookeeper already started; stop() it first")
        self._check_installation()
        _instances.add(self)
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="spate-zk-")
        os.makedirs(self.base_dir, exist_ok=True)
        ports = free_ports(self.nodes_count * 3)
        for i in range(self.nodes_count):
            directory = os.path.join(self.base_dir, "zk%d" % (i + 1))
            self.nodes.append(_Node(i, directory, *ports[i * 3:i * 3 + 3]))
        try:
            for node in self.nodes:
                self._write_config(node)
            # All members at once: an ensemble only elects a leader once a quorum is up.
            for node in self.nodes:
                self._spawn(node)
            deadline = time.monotonic() + timeout
            for node in self.nodes:
                self._wait_serving(node, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop_node(self, i, timeout=STOP_TIMEOUT):
        """Stops one server with SIGTERM (SIGKILL if it does not exit in time)."""
        self._terminate(self.nodes[i], signal.SIGTERM, timeout)

    def kill_node(self, i):
        """Kills one server with SIGKILL, like a crashed machine (data dir survives)."""
        self._terminate(self.nodes[i], signal.SIGKILL, STOP_TIMEOUT)

    def start_node(self, i, timeout=START_TIMEOUT, wait=True):
        """Restarts a stopped server with its old config and data; waits until it serves
        (which for an ensemble member needs a quorum of running members)."""
        node = self.nodes[i]
        if self.is_running(i):
            raise RuntimeError("zookeeper node %d is already running" % i)
        self._spawn(node)
        if wait:
            self._wait_serving(node, time.monotonic() + timeout)

    def wait_serving(self, i, timeout=START_TIMEOUT):
        self._wait_serving(self.nodes[i], time.monotonic() + timeout)

    def stop(self):
        """Stops every server; removes the directory if this instance created it."""
        for node in self.nodes:
            try:
                self._terminate(node, signal.SIGTERM, STOP_TIMEOUT)
            except Exception:  # keep stopping the others
                pass
        if self.own_dir and self.base_dir and not os.environ.get("SPATE_KEEP_ZK_DIR"):
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
        for node in self.nodes:
            _taken_ports.difference_update((node.client_port, node.peer_port, node.election_port))
        self.nodes = []
        _instances.discard(self)

    def __enter__(self):
        # `with zk:` on an instance started earlier (e.g. to time the start) just works.
        return self if self.nodes else self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- internals ------------------------------------------------------------------

    def _check_installation(self):
        missing = [j for j in JARS if not os.path.exists(os.path.join(JAVA_DIR, j))]
        if missing:
            raise RuntimeError("zookeeper jars missing in %s: %s (apt-get install zookeeper)"
                               % (JAVA_DIR, ", ".join(missing)))
        if not os.path.exists(self.java):
            raise RuntimeError("no java found (apt-get install default-jre-headless)")

    def _write_config(self, node):
        os.makedirs(node.data_dir, exist_ok=True)
        config = {
            "tickTime": self.tick_time,  # short ticks allow short session timeouts
            "initLimit": 10,
            "syncLimit": 5,
            "dataDir": node.data_dir,
            "clientPort": node.client_port,
            "clientPortAddress": "127.0.0.1",  # default is every interface
            "admin.enableServer": "false",     # else every server binds 8080
            "4lw.commands.whitelist": "*",     # srvr is the readiness probe
        }
        if self.nodes_count > 1:
            for other in self.nodes:
                config["server.%d" % other.myid] = "127.0.0.1:%d:%d" % (
                    other.peer_port, other.election_port)
            with open(os.path.join(node.data_dir, "myid"), "w") as f:
                f.write("%d\n" % node.myid)
        config.update(self.extra_config)
        with open(node.cfg, "w") as f:
            for key, value in config.items():
                f.write("%s=%s\n" % (key, value))
        with open(os.path.join(node.dir, "log4j.properties"), "w") as f:
            f.write(LOG4J_PROPERTIES.format(log=node.log_path))

    def _spawn(self, node):
        # The node's own directory comes first so log4j finds its log4j.properties.
        classpath = ":".join([node.dir] + [os.path.join(JAVA_DIR, j) for j in JARS])
        command = [self.java, "-Xmx256m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true",
                   "-cp", classpath, "org.apache.zookeeper.server.quorum.QuorumPeerMain", node.cfg]
        if self.setpriv and threading.current_thread() is threading.main_thread():
            command = [self.setpriv, "--pdeathsig", "KILL", "--"] + command
        with open(node.stdout_path, "ab") as out:
            # Own session: a Ctrl-C in the terminal reaches only Python, which then
            # stops the servers in order instead of them dying half-way.
            node.process = subprocess.Popen(command, cwd=node.dir, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def _wait_serving(self, node, deadline):
        while True:
            if node.process is None or node.process.poll() is not None:
                code = node.process.returncode if node.process else None
                raise RuntimeError("zookeeper node %d exited with %s\n%s"
                                   % (node.index, code, self._logs(node)))
            answer = four_letter(node.client_port, "srvr", timeout=0.5)
            # An ensemble member without quorum answers "not currently serving requests".
            if any(line.startswith("Mode: ") and line[6:].strip() in SERVING_MODES
                   for line in answer.splitlines()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("zookeeper node %d (port %d) not serving in time; srvr said %r\n%s"
                                   % (node.index, node.client_port, answer.strip(), self._logs(node)))
            time.sleep(0.05)

    def _terminate(self, node, sig, timeout):
        process = node.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        node.process = None

    def _logs(self, node):
        return "--- %s ---\n%s\n--- %s ---\n%s" % (
            node.stdout_path, _tail(node.stdout_path, 10), node.log_path, _tail(node.log_path))


@atexit.register
def _stop_all():
    for zk in list(_instances):
        zk.stop()


def main(argv):
    nodes = int(argv[1]) if len(argv) > 1 else 1
    if nodes not in (1, 3):
        print("usage: %s [1|3]" % argv[0], file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    zk = ZooKeeper(nodes)
    began = time.monotonic()
    with zk:
        print("started %d zookeeper server(s) in %.2fs; logs in %s"
              % (nodes, time.monotonic() - began, zk.base_dir), file=sys.stderr)
        print(zk.connect_string, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
