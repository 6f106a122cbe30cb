"""The acknowledged-vs-consumed checker of the replication tests and bench/chaos.py.

    p = Producer(c.bootstrap, topic, partitions=3, rate=1000).start()
    ... faults ...
    p.stop()                                   # flushes: every record acked or failed
    consumed = consume_all(c.bootstrap, topic, 3, min_end=p.ends())
    report = check(p.acked, consumed)          # AssertionError naming the first offenders

Producer is confluent_kafka.Producer (idempotent, acks=all, retries without end,
message.timeout.ms 120 s so faults do not expire records) fed from a thread at a fixed
rate; values are unique, "<run>-<seq>", seq counting up from 0 in the order produced. It
keeps every *acknowledged* record (partition, offset, value, seq, time) from the delivery
reports, and counts errors by name: final delivery errors ("delivery:NAME"), the client's
error callback ("client:NAME"), and the retriable errors librdkafka retries by itself
("retry:NAME", from its debug log, which is the only place it reports them).
A watchdog replaces the client when librdkafka 2.0.2 leaves one partition stuck on a
broker that is not its leader (a client bug, see Producer._watchdog); it is counted
("client:REPLACED_STUCK_CLIENT"), listed in `replacements`, and the records it purged
were never acknowledged, so the check is unaffected. SPATE_PRODUCER_UNSTICK=0 disables
it, =N sets its delay (default 20 s). The client is replaced too when librdkafka before 2.3
fails fatally with a "rewound sequence number" after a lost connection (its issue 4438, see
Producer._replace_after_fatal): counted as "client:REPLACED_FATAL_CLIENT".

check(acked, consumed) fails on: an acknowledged record missing (lost); an acknowledged
value found elsewhere than at its acknowledged (partition, offset) (moved); consumed
offsets of a partition not strictly increasing, or a partition's acknowledged values
not in the order produced (order); any value consumed twice when the producer was
idempotent (duplicated). Values of no known run (e.g. raw test records) are counted as
"foreign" and otherwise ignored.

checker_selftest() feeds check() synthetic faults (one lost, one duplicate, one moved,
one reorder) and asserts each is detected.
"""
import collections
import logging
import os
import re
import threading
import time
import uuid

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer as KafkaProducer,
                             TopicPartition, libversion)

Record = collections.namedtuple("Record", "partition offset value seq time")

# librdkafka's error strings ("Broker: Not enough in-sync replicas") back to their names.
_ERROR_NAMES = {}
for _code in range(-200, 200):
    try:
        _e = KafkaError(_code)
        _name, _text = _e.name(), _e.str()
    except Exception:
        continue
    if _name and _text and not _name.startswith("ERR_") and "Unknown" not in _text:
        _ERROR_NAMES.setdefault(_text, _name)
_ERROR_TEXT = re.compile("|".join(re.escape(t) for t in sorted(_ERROR_NAMES, key=len, reverse=True)))
# The debug "msg" lines that report a produce request's failure.
_FAILED = re.compile(r"encountered error|failed|error:|Error", re.I)


def seq_of(value):
    """The sequence number at the end of "<run>-<seq>", None if there is none."""
    try:
        return int(value.rsplit("-", 1)[1])
    except (IndexError, ValueError, AttributeError):
        return None


class _ErrorLog(logging.Handler):
    """Receives librdkafka's log (debug "msg,broker,topic"), counts the errors it names
    (retriable ones, which the client retries without telling the application) and keeps
    the last lines mentioning one."""

    def __init__(self, owner):
        super().__init__(logging.DEBUG)
        self.owner = owner

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:
            return
        if self.owner.log_file is not None:
            self.owner.log_file.write("%.3f %s\n" % (time.time(), text))
        if not _FAILED.search(text):
            return
        m = _ERROR_TEXT.search(text)
        if m is None:
            return
        self.owner._count("retry:" + _ERROR_NAMES[m.group(0)])
        self.owner.error_lines.append(text)
        if len(self.owner.error_lines) > 200:
            del self.owner.error_lines[:100]


class Producer:
    """A confluent_kafka producer fed from its own thread at `rate` records per second
    for as long as it runs. keys=True gives each record the key str(seq) and lets the
    partitioner choose; otherwise records go round-robin to partitions 0..partitions-1."""

    def __init__(self, bootstrap, topic, partitions, rate=1000, run=None, keys=False,
                 idempotent=True, acks="all", message_timeout_ms=120000, config=None,
                 debug="msg", limit=None, log_path=None, unstick_after=None):
        self.topic = topic
        self.partitions = partitions
        self.rate = float(rate)
        self.run = run or uuid.uuid4().hex[:8]
        self.keys = keys
        self.idempotent = idempotent
        self.limit = limit  # stop producing after this many records (None: until stop())
        # The client-bug watchdog (see _watchdog); SPATE_PRODUCER_UNSTICK=0 turns it off.
        if unstick_after is None:
            unstick_after = float(os.environ.get("SPATE_PRODUCER_UNSTICK", "20"))
        self.unstick_after = unstick_after if unstick_after > 0 and not keys else None
        self.replacements = []   # [(seconds since start, stuck partitions, what the client said)]
        self.purged = []         # [(partition, value)] dropped with a replaced client, never acknowledged
        self._sent_p = collections.Counter()
        self._settled_p = collections.Counter()
        self._last_progress = {}
        self._last_watch = 0.0
        # every librdkafka log line (debug `debug`) to this file, e.g. SPATE_PRODUCER_LOG
        self.log_file = open(log_path, "a", buffering=1) if log_path else None
        self.acked = []          # [Record] in delivery order
        self.failed = []         # [(partition, value, error name)]
        self.errors = collections.Counter()
        self.error_lines = []
        self.sent = 0
        self.started = self.stopped = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._exception = None
        conf = {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": idempotent,
            "acks": acks,
            "message.timeout.ms": message_timeout_ms,
            "retries": 2147483647 if idempotent else 1000000,
            "retry.backoff.ms": 100,
            "linger.ms": 5,
            "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000,
            "error_cb": self._on_error,
        }
        if debug:
            logger = logging.getLogger("checker.rdkafka.%s" % self.run)
            logger.propagate = False
            logger.setLevel(logging.DEBUG)
            logger.addHandler(_ErrorLog(self))
            conf["debug"] = debug
            conf["logger"] = logger
        conf.update(config or {})
        self._conf = conf
        self._producer = KafkaProducer(conf)

    # ---- counting (called from librdkafka callbacks, served by poll() in the thread) ----

    def _count(self, name):
        with self._lock:
            self.errors[name] += 1

    def _on_error(self, err):
        name = err.name() or str(err.code())
        if err.fatal():  # the producer is unusable from here on: say why
            name = "FATAL"
        self._count("client:" + name)
        if name != "_TRANSPORT":
            with self._lock:
                self.error_lines.append("client error %s: %s" % (name, err.str()))

    def _delivered(self, err, msg):
        value = msg.value().decode()
        with self._lock:
            self._settled_p[msg.partition()] += 1
            if err is None:
                self._last_progress[msg.partition()] = time.monotonic()
        if err is not None and err.code() in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self._count("purged:" + err.name())
            with self._lock:
                self.purged.append((msg.partition(), value))
            return
        if err is not None:
            self._count("delivery:" + (err.name() or str(err.code())))
            with self._lock:
                self.failed.append((msg.partition(), value, err.name()))
            return
        if msg.offset() is None:
            # librdkafka's idempotent producer reports a batch whose answer it never got as
            # delivered, without an offset, once a later batch's sequence proves the broker
            # has it ("possibly persisted" resolved): the check looks for its value instead.
            self._count("ack:without offset")
        record = Record(msg.partition(), msg.offset(), value, seq_of(value), time.monotonic())
        with self._lock:
            self.acked.append(record)

    # ---- the thread -------------------------------------------------------------------

    def start(self):
        self.started = time.monotonic()
        self._last_progress = {p: self.started for p in range(self.partitions)}
        self._thread = threading.Thread(target=self._loop, name="producer-" + self.run, daemon=True)
        self._thread.start()
        return self

    def _produce_one(self):
        seq = self.sent
        value = "%s-%d" % (self.run, seq)
        kwargs = {"on_delivery": self._delivered}
        if self.keys:
            kwargs["key"] = str(seq)
        else:
            kwargs["partition"] = seq % self.partitions
        while True:
            try:
                self._producer.produce(self.topic, value.encode(), **kwargs)
                break
            except BufferError:  # the local queue is full: serve callbacks, then again
                self._producer.poll(0.05)
                if self._stop.is_set():
                    return False
        self.sent += 1
        if not self.keys:
            with self._lock:
                self._sent_p[kwargs["partition"]] += 1
        return True

    def _watchdog(self):
        """librdkafka 2.0.2 can leave a partition delegated to a broker that is not its
        leader after metadata naming two leaders in turn arrives during a failover (a stale
        answer from a broker the new controller has not updated yet): "leader N unchanged,
        not migrating away from preferred replica M" (confluentinc/librdkafka#3399, #4976,
        PR #5593). The partition then never progresses while the others do. When one
        partition has had records outstanding and no acknowledgement for unstick_after
        seconds while another partition is fine, the client is replaced: its outstanding
        records are purged (never acknowledged, so the checker does not count on them)
        and a new idempotent producer continues the sequence. Counted as
        client:REPLACED_STUCK_CLIENT, listed in replacements."""
        now = time.monotonic()
        if self.unstick_after is None or now - self._last_watch < 1.0:
            return
        self._last_watch = now
        with self._lock:
            pending = {p: self._sent_p[p] - self._settled_p[p] for p in range(self.partitions)}
            idle = {p: now - self._last_progress.get(p, self.started) for p in range(self.partitions)}
        stuck = [p for p in range(self.partitions) if pending[p] > 0 and idle[p] > self.unstick_after]
        fine = [p for p in range(self.partitions) if p not in stuck and (pending[p] == 0 or idle[p] < self.unstick_after)]
        if not stuck or not fine:
            return
        said = self.error_lines[-1] if self.error_lines else ""
        self.replacements.append((round(now - self.started, 1), stuck, said[:300]))
        self._count("client:REPLACED_STUCK_CLIENT")
        self._replace_client()
        with self._lock:
            for p in range(self.partitions):
                self._last_progress[p] = time.monotonic()

    def _replace_after_fatal(self, exception):
        """librdkafka before 2.3 raises next_ack_seq after a "possibly persisted" error (a
        connection lost with requests in flight), so when, during the failover that follows,
        the first retried batch is refused (not leader) and the next answered
        OUT_OF_ORDER_SEQUENCE_NUMBER behind it, it finds that sequence "rewound" and fails
        fatally (confluentinc/librdkafka#4438, fixed in 2.3.0: "rewound sequence number in
        case of multiple errored messages"). Only that case, after such a lost connection,
        replaces the client: its outstanding records fail (never acknowledged) and a new
        idempotent producer continues the sequence, so the check is unaffected. Any other
        fatal error fails the test."""
        error = exception.args[0] if exception.args else None
        lost_connection = any(self.errors[k] for k in
                              ("client:_TRANSPORT", "retry:_TRANSPORT", "retry:_TIMED_OUT"))
        if (not isinstance(error, KafkaError) or not error.fatal() or
                "rewound sequence number" not in error.str() or not lost_connection or
                libversion()[1] >= 0x02030000):
            return False
        self.replacements.append((round(time.monotonic() - self.started, 1), [],
                                  error.str()[:300]))
        self._count("client:REPLACED_FATAL_CLIENT")
        self._replace_client()
        # The records the fatal error failed were never acknowledged: like purged ones.
        with self._lock:
            fatal = [f for f in self.failed if f[2] in ("OUT_OF_ORDER_SEQUENCE_NUMBER", "_FATAL")]
            self.failed = [f for f in self.failed if f not in fatal]
            self.purged.extend((partition, value) for partition, value, _ in fatal)
        return True

    def _replace_client(self):
        """Drops the client's outstanding records (their reports arrive as purged, or failed
        when it is in a fatal state) and goes on with a new client."""
        old = self._producer
        try:
            old.purge()
            old.flush(10)
        except KafkaException:
            pass
        self._producer = KafkaProducer(self._conf)

    def _loop(self):
        while True:
            try:
                self._loop_until_stopped()
                return
            except KafkaException as e:
                if not self._replace_after_fatal(e):
                    self._exception = e
                    return
            except Exception as e:  # surfaces in stop()
                self._exception = e
                return

    def _loop_until_stopped(self):
        while not self._stop.is_set():
            if self.limit is not None and self.sent >= self.limit:
                self._producer.poll(0.05)
                continue
            due = int((time.monotonic() - self.started) * self.rate) + 1
            if self.limit is not None:
                due = min(due, self.limit)
            while self.sent < due and not self._stop.is_set():
                if not self._produce_one():
                    break
            self._producer.poll(0.005)
            self._watchdog()

    def stop(self, flush_timeout=180):
        """Stops producing and waits until every record sent is acknowledged or failed.
        Raises if some are neither after flush_timeout seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + flush_timeout
        while len(self._producer) > 0 and time.monotonic() < deadline:
            self._producer.poll(0.1)
            self._watchdog()
        remaining = len(self._producer)
        self.stopped = time.monotonic()
        if self._exception is not None:
            raise self._exception
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        if remaining:
            raise AssertionError("%d of %d records neither acknowledged nor failed %ds after the "
                                 "producer stopped (errors %s)"
                                 % (remaining, self.sent, flush_timeout, dict(self.errors)))
        return self

    def abort(self):
        """Stops at once (a failed test): outstanding records are dropped, nothing waited for."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self._producer.purge()
            self._producer.flush(1)
        except Exception:
            pass
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    # ---- what it saw ------------------------------------------------------------------

    def acked_count(self, partition=None):
        with self._lock:
            if partition is None:
                return len(self.acked)
            return sum(1 for r in self.acked if r.partition == partition)

    def acked_between(self, began, ended):
        """Records whose acknowledgement arrived within [began, ended] (monotonic)."""
        with self._lock:
            return [r for r in self.acked if began <= r.time <= ended]

    def wait_progress(self, count=100, timeout=60, partitions=None):
        """Waits until `count` more records are acknowledged (on each of `partitions`
        when given); returns the seconds it took. Raises AssertionError on timeout."""
        parts = list(partitions) if partitions is not None else [None]
        start = {p: self.acked_count(p) for p in parts}
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if all(self.acked_count(p) - start[p] >= count for p in parts):
                return time.monotonic() - began
            if self._exception is not None:
                raise self._exception
            time.sleep(0.05)
        raise AssertionError("producer made no progress: %s more acknowledged in %ds on %s, "
                             "wanted %d (errors %s; last client errors %s)"
                             % ({p: self.acked_count(p) - start[p] for p in parts}, timeout,
                                "every partition" if partitions is None else "partitions %s" % parts,
                                count, dict(self.errors), self.error_lines[-3:]))

    def ends(self):
        """{partition: highest acknowledged offset + 1}: a consumer must read at least this far."""
        out = {}
        with self._lock:
            for r in self.acked:
                if r.offset is not None:
                    out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
        return out

    def status(self):
        """One line: what was sent, acknowledged, failed, and the errors seen."""
        with self._lock:
            return "producer %s: sent %d, acked %d, failed %d, purged %d, errors %s%s%s" % (
                self.run, self.sent, len(self.acked), len(self.failed), len(self.purged),
                dict(sorted(self.errors.items())),
                "; client replaced (stuck partitions): %s" % self.replacements if self.replacements else "",
                "; last: %s" % self.error_lines[-3:] if self.error_lines else "")

    def error_summary(self):
        with self._lock:
            return dict(sorted(self.errors.items()))


# ---- consuming ----------------------------------------------------------------------------

def consume_all(bootstrap, topic, partitions, min_end=None, timeout=120):
    """Every record of partitions 0..partitions-1 from the beginning to the end (the high
    watermark, or min_end[p] when that is further: a new leader's high watermark may
    still be catching up) as {partition: [(offset, value)]}. Gives up after `timeout`
    seconds and returns what it read (the checker then names what is missing)."""
    min_end = min_end or {}
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "checker-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 10000,
        "fetch.wait.max.ms": 100,
        "topic.metadata.refresh.interval.ms": 2000,
    })
    out = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + timeout
    try:
        ends = {}
        for p in range(partitions):
            try:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
            except Exception:
                high = -1
            ends[p] = max(high, min_end.get(p, 0))
        # A partition whose end is not reached yet (its high watermark still short of an
        # acknowledged offset) keeps being fetched until the deadline.
        pending = {p for p in range(partitions) if ends[p] > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(pending)])
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            p = msg.partition()
            out[p].append((msg.offset(), msg.value().decode(errors="replace")))
            if msg.offset() + 1 >= ends[p]:
                pending.discard(p)
    finally:
        consumer.close()
    return out


# ---- the check ----------------------------------------------------------------------------

class Report(dict):
    def line(self):
        return ("acked=%(acked)d consumed=%(consumed)d lost=%(lost)d duplicated=%(duplicated)d "
                "moved=%(moved)d order=%(order)d foreign=%(foreign)d" % self)


def check(acked, consumed, idempotent=True, raise_on_failure=True, show=5):
    """acked: [(partition, offset, value[, seq, time])]; consumed: {partition: [(offset, value)]}.
    Returns a Report (counts and the first offenders of each kind); raises AssertionError
    naming them when anything is lost, moved, out of order, or (idempotent) duplicated."""
    acked = [Record(*(tuple(r) + (None, None))[:5]) if not isinstance(r, Record) else r for r in acked]
    at = {}       # (partition, offset) -> value consumed there
    where = collections.defaultdict(list)  # value -> [(partition, offset)] consumed
    order_bad = []
    consumed_count = 0
    for p, records in sorted(consumed.items()):
        last = None
        for offset, value in records:
            consumed_count += 1
            if last is not None and offset <= last:
                order_bad.append("partition %d: offset %d consumed after %d" % (p, offset, last))
            last = offset
            at[(p, offset)] = value
            where[value].append((p, offset))

    lost, moved = [], []
    for r in acked:
        if at.get((r.partition, r.offset)) == r.value:
            continue
        if r.offset is None and any(p == r.partition for p, _ in where.get(r.value, ())):
            continue  # acknowledged without an offset (Producer._delivered): found in place
        if r.value in where:
            moved.append("%s acknowledged at %d/%s, consumed at %s" % (
                r.value, r.partition, r.offset, ", ".join("%d/%d" % x for x in where[r.value])))
        else:
            lost.append("%s acknowledged at %d/%s (there: %r)" % (
                r.value, r.partition, r.offset, at.get((r.partition, r.offset))))

    # Per partition, acknowledged values in the order produced must sit at increasing offsets.
    if idempotent:
        by_partition = collections.defaultdict(list)
        for i, r in enumerate(acked):
            by_partition[r.partition].append((r.seq if r.seq is not None else i, r))
        for p, rs in sorted(by_partition.items()):
            rs.sort(key=lambda x: x[0])
            prev = None
            for _, r in rs:
                if r.offset is None:
                    continue
                if prev is not None and r.offset <= prev.offset:
                    order_bad.append("partition %d: %s (produced later) acknowledged at offset %d, "
                                     "%s (produced earlier) at %d" % (p, r.value, r.offset, prev.value, prev.offset))
                prev = r

    runs = {r.value.rsplit("-", 1)[0] for r in acked if "-" in r.value}
    duplicated = []
    foreign = 0
    for value, places in where.items():
        if value.rsplit("-", 1)[0] not in runs:
            foreign += len(places)
            continue
        if len(places) > 1:
            duplicated.append("%s consumed %d times: %s" % (value, len(places), ", ".join("%d/%d" % x for x in places)))

    report = Report(acked=len(acked), consumed=consumed_count, lost=len(lost), moved=len(moved),
                    duplicated=len(duplicated), order=len(order_bad), foreign=foreign,
                    first_lost=lost[:show], first_moved=moved[:show],
                    first_duplicated=duplicated[:show], first_order=order_bad[:show])
    problems = []
    if lost:
        problems.append("%d acknowledged records lost, e.g. %s" % (len(lost), "; ".join(lost[:show])))
    if moved:
        problems.append("%d acknowledged records at another offset, e.g. %s" % (len(moved), "; ".join(moved[:show])))
    if order_bad:
        problems.append("%d order violations, e.g. %s" % (len(order_bad), "; ".join(order_bad[:show])))
    if duplicated and idempotent:
        problems.append("%d duplicated values (idempotent producer), e.g. %s"
                        % (len(duplicated), "; ".join(duplicated[:show])))
    report["problems"] = problems
    if problems and raise_on_failure:
        raise AssertionError("check failed (%s): %s" % (report.line(), " | ".join(problems)))
    return report


def checker_selftest():
    """Synthetic faults, each of which check() must name."""
    def acked_and_consumed(n=20, partitions=2):
        acked, consumed = [], {p: [] for p in range(partitions)}
        for seq in range(n):
            p = seq % partitions
            offset = len(consumed[p])
            value = "self-%d" % seq
            acked.append(Record(p, offset, value, seq, 0.0))
            consumed[p].append((offset, value))
        return acked, consumed

    acked, consumed = acked_and_consumed()
    report = check(acked, consumed)
    assert report.line() == "acked=20 consumed=20 lost=0 duplicated=0 moved=0 order=0 foreign=0", report.line()
    consumed[1].append((10, "raw-record"))  # foreign records are counted, not failed
    assert check(acked, consumed)["foreign"] == 1

    def expect(kind, mutate, needle):
        a, c = acked_and_consumed()
        mutate(a, c)
        try:
            check(a, c)
        except AssertionError as e:
            assert needle in str(e), "%s: %s does not name %r" % (kind, e, needle)
            report = check(a, c, raise_on_failure=False)
            assert report[kind] >= 1, "%s not counted: %s" % (kind, report.line())
            return
        raise AssertionError("check() missed a %s record" % kind)

    # lost: partition 0's offset 3 (self-6) never consumed
    expect("lost", lambda a, c: c[0].pop(3), "self-6 acknowledged at 0/3")
    # duplicated: self-4 consumed again at the end of partition 0
    expect("duplicated", lambda a, c: c[0].append((10, "self-4")), "self-4 consumed 2 times")
    # moved: self-2 (acked at 0/1) consumed on partition 1 instead
    def move(a, c):
        c[0][1] = (1, "other-x")
        c[1].append((10, "self-2"))
    expect("moved", move, "self-2 acknowledged at 0/1, consumed at 1/10")
    # order: two values of partition 1 swapped (self-3 at 1/1 and self-5 at 1/2), acks agree
    def reorder(a, c):
        c[1][1], c[1][2] = (1, "self-5"), (2, "self-3")
        for i, r in enumerate(a):
            if r.value == "self-3":
                a[i] = r._replace(offset=2)
            elif r.value == "self-5":
                a[i] = r._replace(offset=1)
    expect("order", reorder, "self-5 (produced later) acknowledged at offset 1, self-3 (produced earlier) at 2")
    # order: consumed offsets going backwards
    expect("order", lambda a, c: c[0].insert(2, (0, "extra-y")), "offset 0 consumed after 1")
    # the duplicate is tolerated without idempotence
    a, c = acked_and_consumed()
    c[0].append((10, "self-4"))
    assert check(a, c, idempotent=False)["duplicated"] == 1
    return True


if __name__ == "__main__":
    checker_selftest()
    print("checker self-test ok")
