"""spate's /metrics read by a real Prometheus server (the Debian package, 2.42): records
produced and consumed in a committing group, then PromQL through Prometheus's HTTP API
must see them (messages and bytes in, committed offsets, lag 0, a request latency
quantile); `promtool check metrics` accepts a scrape; every metric the Grafana dashboard
(tools/grafana/spate.json) queries exists; /health/live, /health/ready and the HTTP
errors (404, 405, 400 and close) answer as documented.

Skips (exit 77) when prometheus or promtool is not on PATH."""
import atexit
import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Broker, Runner, free_port

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                         "grafana", "spate.json")


def metrics_broker():
    """A broker with a metrics listener on a free port, and a first group rebalance that
    waits 100 ms rather than Kafka's 3 s."""
    handle, path = tempfile.mkstemp(prefix="spate-prometheus-", suffix=".toml")
    with os.fdopen(handle, "w") as f:
        f.write('metrics_listen = "127.0.0.1:0"\ngroup_initial_rebalance_delay_ms = 100\n')
    atexit.register(os.unlink, path)
    return Broker(extra=["--config", path])


def metrics_port(b, timeout=10):
    """The port spate bound for metrics_listen = "...:0", from its start-up log line (it
    is logged just after the Kafka listener the harness waits for)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ports = re.findall(r"metrics on http://[^ ]+:(\d+)/metrics", b.read_log())
        if ports:
            return int(ports[-1])
        time.sleep(0.05)
    raise AssertionError("no metrics line in the broker's log:\n" + b.read_log())


def http_get(port, path):
    """(status, body) of one GET; HTTP errors are answers here, not exceptions."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as reply:
        assert reply.status == 200, reply.status
        content_type = reply.headers.get("Content-Type", "")
        assert content_type.startswith("text/plain") and "version=0.0.4" in content_type, \
            content_type
        return reply.read().decode()


def declared_families(text):
    """{name: type} from the exposition's `# TYPE` lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


class PrometheusServer:
    """A real Prometheus scraping one spate every second, with its TSDB in a temporary
    directory; stopped (and the directory removed) on exit, failures included."""

    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="spate-prometheus-")
        self.process = None

    def __enter__(self):
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: spate\n"
                    "    scrape_timeout: 1s\n"
                    "    static_configs:\n"
                    "      - targets: ['%s']\n" % self.target)
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            ["prometheus", "--config.file=" + config,
             "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdout=self.log, stderr=self.log)
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("prometheus exited with %d:\n%s" % (
                    self.process.returncode, self.read_log()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                            timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus was not ready within %ds:\n%s" % (timeout, self.read_log()))

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def query(self, promql):
        """An instant query's samples as [(labels, value)] (a scalar as one sample)."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def value(self, promql):
        """The one value of a query, None while it has no sample."""
        samples = self.query(promql)
        assert len(samples) <= 1, "%s: %r" % (promql, samples)
        return samples[0][1] if samples else None

    def wait_for(self, promql, accept, deadline, what):
        """Polls until accept(value) holds; prints the figure; fails at the deadline."""
        last = None
        while True:
            last = self.value(promql)
            if last is not None and accept(last):
                print("  %-40s %s = %s" % (what, promql, format_value(last)), flush=True)
                return last
            if time.time() > deadline:
                targets = urllib.request.urlopen(
                    "http://127.0.0.1:%d/api/v1/targets" % self.port, timeout=5).read().decode()
                raise AssertionError("%s: %s is %r at the deadline\ntargets: %s\nprometheus:\n%s"
                                     % (what, promql, last, targets, self.read_log()))
            time.sleep(0.25)

    def __exit__(self, *exc):
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.log.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def format_value(v):
    return "%d" % v if v == int(v) else "%.6g" % v


def produce(b, topic, values, partitions):
    """Produces `values` round-robin over the partitions, uncompressed, acks=all."""
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "acks": "all",
                  "compression.type": "none"})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0


def consume_all(c, count, timeout=30):
    got = 0
    deadline = time.time() + timeout
    while got < count:
        if time.time() > deadline:
            raise AssertionError("consumed %d of %d records" % (got, count))
        msg = c.poll(0.1)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        got += 1
    return got


def test_prometheus_server_sees_produce_consume_and_group_lag():
    topic, group, partitions, records = "scraped", "scraping-group", 3, 2000
    values = [(b"record-%06d-" % i).ljust(100, b"x") for i in range(records)]
    payload_bytes = sum(len(v) for v in values)
    with metrics_broker() as b:
        port = metrics_port(b)
        with PrometheusServer("127.0.0.1:%d" % port) as prom:
            deadline = time.time() + 30
            prom.wait_for('up{job="spate"}', lambda v: v == 1, deadline, "target up")
            prom.wait_for("spate_up", lambda v: v == 1, deadline, "broker serving")
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            for f in admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                   replication_factor=1)]).values():
                f.result(timeout=30)

            # Two halves with a scrape between them, so the Produce latency buckets have
            # two different samples in Prometheus and their rate() is not empty.
            messages_in = ('sum(kafka_server_brokertopicmetrics_messagesin_total{topic="%s"})'
                           % topic)
            produce(b, topic, values[:records // 2], partitions)
            prom.wait_for(messages_in, lambda v: v == records // 2, deadline, "messages in, half")
            produce(b, topic, values[records // 2:], partitions)
            prom.wait_for(messages_in, lambda v: v == records, deadline, "messages in")

            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                          "enable.auto.commit": False, "auto.offset.reset": "earliest",
                          "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                          "fetch.wait.max.ms": 100})
            try:
                c.subscribe([topic])
                consume_all(c, records)
                committed = c.commit(asynchronous=False)
                assert all(tp.error is None for tp in committed), committed
                print("  consumed %d records, committed %s" % (records, sorted(
                    (tp.partition, tp.offset) for tp in committed)), flush=True)
                deadline = time.time() + 30

                bytes_in = prom.wait_for(
                    'sum(kafka_server_brokertopicmetrics_bytesin_total{topic="%s"})' % topic,
                    lambda v: v >= payload_bytes, deadline, "bytes in")
                # Whole batches are counted: record framing and batch headers on top of
                # the payload, far less than three times it for 100-byte values.
                assert bytes_in <= 3 * payload_bytes + 4096, (bytes_in, payload_bytes)
                print("  bytes in %d for %d payload bytes (%.3f x)" % (
                    bytes_in, payload_bytes, bytes_in / payload_bytes), flush=True)
                prom.wait_for(
                    'sum(kafka_server_brokertopicmetrics_bytesout_total{topic="%s"})' % topic,
                    lambda v: v >= bytes_in, deadline, "bytes out (consumer fetches)")
                for family in ("kafka_log_log_logendoffset", "spate_partition_high_watermark"):
                    prom.wait_for('sum(%s{topic="%s"})' % (family, topic),
                                  lambda v: v == records, deadline, family)
                prom.wait_for('count(spate_partition_leader{topic="%s"} == 1)' % topic,
                              lambda v: v == partitions, deadline, "partitions led")
                prom.wait_for(
                    'sum(spate_group_committed_offset{group="%s",topic="%s"})' % (group, topic),
                    lambda v: v == records, deadline, "committed offsets")
                prom.wait_for('count(spate_group_lag{group="%s",topic="%s"})' % (group, topic),
                              lambda v: v == partitions, deadline, "lag series")
                prom.wait_for('sum(spate_group_lag{group="%s",topic="%s"})' % (group, topic),
                              lambda v: v == 0, deadline, "group lag")
                prom.wait_for('spate_group_members{group="%s"}' % group, lambda v: v == 1,
                              deadline, "group members")
                prom.wait_for('spate_group_state{group="%s",state="Stable"}' % group,
                              lambda v: v == 1, deadline, "group state")
                prom.wait_for("kafka_coordinator_group_groupmetadatamanager_numgroups",
                              lambda v: v >= 1, deadline, "groups")

                for request in ("Produce", "Fetch", "OffsetCommit"):
                    prom.wait_for(
                        'sum(kafka_network_requestmetrics_requests_total{request="%s"})' % request,
                        lambda v: v > 0, deadline, "%s requests" % request)
                prom.wait_for('sum(spate_request_latency_seconds_count{request="Produce"})',
                              lambda v: v > 0, deadline, "Produce latency count")
                p99 = prom.wait_for(
                    'histogram_quantile(0.99, sum by (le) (rate('
                    'spate_request_latency_seconds_bucket{request="Produce"}[1m])))',
                    math.isfinite, deadline, "Produce p99 (rate, s)")
                assert 0 < p99 <= 10, p99
                p50 = prom.wait_for(
                    'histogram_quantile(0.5, sum by (le) ('
                    'spate_request_latency_seconds_bucket{request="Produce"}))',
                    math.isfinite, deadline, "Produce p50 (since start, s)")
                assert 0 < p50 <= 10, p50
                answered = prom.query(
                    "sum by (request, error) (kafka_network_requestmetrics_errors_total)")
                errors = sorted("%s %s: %d" % (labels["request"], labels["error"], v)
                                for labels, v in answered)
                print("  error codes answered: %s" % (", ".join(errors) or "none"), flush=True)
                prom.wait_for("sum(spate_connections_open)", lambda v: v >= 1, deadline,
                              "connections open")
                prom.wait_for("sum(spate_shard_busy_seconds_total)", lambda v: v > 0, deadline,
                              "shard busy seconds")
                prom.wait_for("sum(spate_storage_appends_total)", lambda v: v > 0, deadline,
                              "storage appends")
                # The catch-up read above (about 200 KB an answer) was spliced; one more
                # record, read at the log's end, is copied from the page cache.
                prom.wait_for('sum(spate_fetch_answers_total{transfer="splice"})',
                              lambda v: v > 0, deadline, "fetch answers spliced")
                produce(b, topic, [b"one-more"], 1)
                consume_all(c, 1)
                prom.wait_for('sum(spate_fetch_answers_total{transfer="copy"})', lambda v: v > 0,
                              deadline, "fetch answers copied")
                text = scrape(port)
            finally:
                c.close()

            check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                                   capture_output=True, timeout=60)
            report = (check.stdout + check.stderr).decode(errors="replace")
            assert check.returncode == 0, "promtool check metrics exited %d:\n%s" % (
                check.returncode, report)
            print("  promtool check metrics: ok (%d lines, %d families)%s" % (
                text.count("\n"), len(declared_families(text)),
                (": " + report.strip()) if report.strip() else ""), flush=True)
            check_dashboard(text, prom)


def dashboard_expressions():
    """Every PromQL expression of the Grafana dashboard: panel targets and the template
    variables' queries."""
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    assert dashboard.get("panels"), "the dashboard has no panels"
    expressions = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query") and isinstance(value, str) and value != "prometheus":
                    expressions.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return expressions


def check_dashboard(text, prom):
    """The dashboard stays true to the exposition: each metric it names is a family of the
    scrape `text` (a histogram's series by their family), and each expression, with
    Grafana's variables filled in, is PromQL the Prometheus server evaluates."""
    expressions = dashboard_expressions()
    families = declared_families(text)
    used = set()
    for expr in expressions:
        used.update(m.group(0) for m in re.finditer(r"\b(?:spate|kafka)_[a-z0-9_]+", expr))
    missing = []
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in families or (base in families and families[base] == "histogram"):
            continue
        missing.append(name)
    assert not missing, "the dashboard queries metrics spate does not export: %s" % missing
    answered = 0
    for expr in expressions:
        promql = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        promql = promql.replace("$topic", ".*")
        variable = re.fullmatch(r"label_values\((.*),\s*\w+\)", promql)
        if variable:
            promql = variable.group(1)
        try:
            samples = prom.query(promql)
        except urllib.error.HTTPError as failure:
            raise AssertionError("dashboard expression %r: %s" % (
                expr, failure.read().decode(errors="replace")))
        answered += 1 if samples else 0
    print("  dashboard: %d expressions over %d metric names, all exported and valid PromQL "
          "(%d with samples now)" % (len(expressions), len(used), answered), flush=True)


def test_health_endpoints_and_http_errors():
    with metrics_broker() as b:
        port = metrics_port(b)
        assert http_get(port, "/health/live") == (200, "live\n")
        assert http_get(port, "/health/ready") == (200, "ready\n")
        status, _ = http_get(port, "/no/such/path")
        assert status == 404, status
        print("  /health/live 200, /health/ready 200, /no/such/path 404", flush=True)

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/metrics")  # no body: a body alone would be a 400
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 405, reply.status
        finally:
            conn.close()
        print("  POST /metrics 405", flush=True)

        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"NOT AN HTTP REQUEST LINE\r\n\r\n")
            answer = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break  # the broker closed the connection after answering
                answer += chunk
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 400 "), answer
        assert b"connection: close" in answer.lower(), answer
        print("  malformed request line: %s, then closed" % status_line.decode(), flush=True)

        # The broker still serves after the refused request.
        assert http_get(port, "/health/live")[0] == 200


if __name__ == "__main__":
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        print("SKIP: %s not on PATH (Debian package prometheus)" % " and ".join(missing))
        sys.exit(77)
    Runner().run([test_prometheus_server_sees_produce_consume_and_group_lag,
                  test_health_endpoints_and_http_errors])
