#!/usr/bin/env python3
"""spatectl against a real spate: every command, its error paths and dump-log.

Run by meson (test 'integration-spatectl') with SPATESTL_BIN (spatectl) and SPATE_BIN
(the broker) set; uses tests/integration/harness.py to start the broker.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Broker, free_port  # noqa: E402

# The running broker's data directory, for the tests that read its files.
BROKER_DATA = []

SPATECTL = os.environ.get("SPATESTL_BIN") or os.environ.get("SPATECTL_BIN", "build/tools/spatectl")


def run(bootstrap, *args, stdin=None, timeout=60):
    command = [SPATECTL, "--bootstrap-server", bootstrap, "--timeout", "5000"] + list(args)
    done = subprocess.run(command, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")


def ok(bootstrap, *args, stdin=None):
    code, out, err = run(bootstrap, *args, stdin=stdin)
    assert code == 0, "spatectl %s exited %d: %s" % (" ".join(args), code, err)
    return out


def fails(bootstrap, expected_code, *args, stdin=None, one_line=True):
    """Runs spatectl expecting exit code `expected_code` (1 error, 2 usage) and, unless
    told otherwise, exactly one line on stderr: "spatectl: <what failed>"."""
    code, out, err = run(bootstrap, *args, stdin=stdin)
    assert code == expected_code, "spatectl %s: expected exit %d, got %d (%s)" % (
        " ".join(args), expected_code, code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "spatectl %s: no error message" % " ".join(args)
    if one_line:
        assert len(lines) == 1 and lines[0].startswith("spatectl: "), (
            "spatectl %s: expected one error line, got %r" % (" ".join(args), err))
    return err


def test_topics(b):
    assert b"Created topic orders." in ok(b, "topics", "create", "--topic", "orders",
                                           "--partitions", "3", "--replication-factor", "1",
                                           "--config", "retention.ms=86400000")
    ok(b, "topics", "create", "--topic", "single")
    names = ok(b, "topics", "list").decode().split()
    assert "orders" in names and "single" in names, names
    assert json.loads(ok(b, "--json", "topics", "list")) == sorted(names)

    described = ok(b, "topics", "describe", "--topic", "orders").decode().splitlines()
    head = described[0].split("\t")
    assert head[0] == "Topic: orders", described
    assert head[1].startswith("TopicId: ") and len(head[1]) == len("TopicId: ") + 22, head
    assert head[2] == "PartitionCount: 3", head
    assert head[3] == "ReplicationFactor: 1", head
    assert head[4].startswith("Configs:"), head
    assert len(described) == 4, described
    for p, line in enumerate(described[1:]):
        fields = line.split("\t")
        assert fields[0] == "" and fields[1] == "Topic: orders", fields
        assert fields[2] == "Partition: %d" % p, fields
        assert fields[3].startswith("Leader: ") and fields[4].startswith("Replicas: "), fields
        assert fields[5].startswith("Isr: "), fields
    as_json = json.loads(ok(b, "--json", "topics", "describe", "--topic", "orders"))
    assert as_json["partition_count"] == 3 and len(as_json["partitions"]) == 3, as_json

    err = fails(b, 1, "topics", "create", "--topic", "orders", "--partitions", "1")
    assert "TOPIC_ALREADY_EXISTS" in err and '"orders"' in err, err
    ok(b, "topics", "create", "--topic", "orders", "--if-not-exists")

    err = fails(b, 1, "topics", "describe", "--topic", "nope")
    assert 'topic "nope" does not exist (UNKNOWN_TOPIC_OR_PARTITION)' in err, err

    ok(b, "topics", "alter", "--topic", "single", "--partitions", "2")
    assert "PartitionCount: 2" in ok(b, "topics", "describe", "--topic", "single").decode()

    assert b"Deleted topic single." in ok(b, "topics", "delete", "--topic", "single")
    assert "single" not in ok(b, "topics", "list").decode().split()
    err = fails(b, 1, "topics", "delete", "--topic", "single")
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err, err


def test_produce_consume(b):
    ok(b, "topics", "create", "--topic", "lines", "--partitions", "1")
    lines = [b"plain value", b"k1:v1", b"k2:with:colons", b"", b"\xc3\xa9t\xc3\xa9 \x01 bytes"]
    ok(b, "produce", "--topic", "lines", "--key-separator", ":", stdin=b"\n".join(lines) + b"\n")
    out = ok(b, "consume", "--topic", "lines", "--from-beginning", "--max-messages", "5",
             "--format", "kv")
    expected = b"null\tplain value\nk1\tv1\nk2\twith:colons\nnull\t\nnull\t\xc3\xa9t\xc3\xa9 \x01 bytes\n"
    assert out == expected, out

    # Values without a key separator round-trip byte for byte, across compression codecs.
    payload = b"".join(b"record %05d %s\n" % (i, b"x" * (i % 50)) for i in range(2000))
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        topic = "round-" + codec
        ok(b, "topics", "create", "--topic", topic, "--partitions", "1")
        ok(b, "produce", "--topic", topic, "--compression", codec, "--acks", "all", stdin=payload)
        out = ok(b, "consume", "--topic", topic, "--from-beginning", "--max-messages", "2000")
        assert out == payload, "%s: %d bytes back, %d sent" % (codec, len(out), len(payload))

    # Keys spread records over partitions; reading them all back loses nothing.
    ok(b, "topics", "create", "--topic", "keyed", "--partitions", "3")
    keyed = b"".join(b"key%d=value%d\n" % (i, i) for i in range(300))
    ok(b, "produce", "--topic", "keyed", "--key-separator", "=", stdin=keyed)
    out = ok(b, "consume", "--topic", "keyed", "--from-beginning", "--max-messages", "300",
             "--format", "kv")
    assert sorted(out.splitlines()) == sorted(line.replace(b"=", b"\t") for line in keyed.splitlines())

    # Offsets, partition selection, JSON lines and the idle timeout.
    out = ok(b, "consume", "--topic", "lines", "--partition", "0", "--offset", "1",
             "--max-messages", "1", "--format", "offsets").decode()
    fields = out.rstrip("\n").split("\t")
    assert fields[0].startswith("CreateTime:") and fields[1:] == ["Partition:0", "Offset:1", "k1", "v1"], fields
    out = ok(b, "consume", "--topic", "lines", "--from-beginning", "--max-messages", "2",
             "--format", "json").decode().splitlines()
    first = json.loads(out[0])
    assert first["offset"] == 0 and first["key"] is None and first["value"] == "plain value", first
    assert json.loads(out[1])["key"] == "k1"
    # Starts at the end, so nothing arrives and --timeout-ms ends it. Long polling is off
    # here because spate does not yet answer an empty fetch when max_wait_ms expires.
    out = ok(b, "-X", "fetch.max.wait.ms=0", "consume", "--topic", "lines", "--timeout-ms", "700")
    assert out == b"", out

    err = fails(b, 1, "consume", "--topic", "missing", "--max-messages", "1")
    assert 'topic "missing" does not exist (UNKNOWN_TOPIC_OR_PARTITION)' in err, err
    err = fails(b, 1, "produce", "--topic", "missing", stdin=b"x\n")
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err, err
    err = fails(b, 1, "produce", "--topic", "lines", "--partition", "7", stdin=b"x\n")
    assert "partition 7" in err, err


def test_headers(b):
    """produce --headers -> consume --print-headers is byte-identical, keys included."""
    ok(b, "topics", "create", "--topic", "headed", "--partitions", "3")
    headers = b"trace:abc-123,url:http://x/y,empty:"
    lines = [b"k%d=value %d \xc3\xa9" % (i, i) for i in range(60)] + [b"no separator here"]
    ok(b, "produce", "--topic", "headed", "--key-separator", "=", "--headers", headers.decode(),
       stdin=b"\n".join(lines) + b"\n")
    out = ok(b, "consume", "--topic", "headed", "--from-beginning", "--max-messages", str(len(lines)),
             "--format", "kv", "--print-headers")
    expected = []
    for line in lines:
        key, sep, value = line.partition(b"=")
        expected.append(headers + b"\t" + (key + b"\t" + value if sep else b"null\t" + line))
    assert sorted(out.splitlines()) == sorted(expected), out
    # One partition read alone keeps produce order, so the bytes match exactly.
    ok(b, "topics", "create", "--topic", "headed-one", "--partitions", "1")
    ok(b, "produce", "--topic", "headed-one", "--key-separator", "=", "--headers", headers.decode(),
       stdin=b"\n".join(lines) + b"\n")
    out = ok(b, "consume", "--topic", "headed-one", "--from-beginning", "--max-messages",
             str(len(lines)), "--format", "kv", "--print-headers")
    assert out == b"".join(e + b"\n" for e in expected), out
    # Without --print-headers the text formats are unchanged; value format with headers.
    out = ok(b, "consume", "--topic", "headed-one", "--from-beginning", "--max-messages", "1")
    assert out == b"value 0 \xc3\xa9\n", out
    out = ok(b, "consume", "--topic", "headed-one", "--from-beginning", "--max-messages", "1",
             "--print-headers")
    assert out == headers + b"\tvalue 0 \xc3\xa9\n", out
    # JSON lines carry the headers; a header without ':' has a null value.
    ok(b, "produce", "--topic", "headed-one", "--headers", "bare,k:v", stdin=b"last\n")
    out = ok(b, "consume", "--topic", "headed-one", "--offset", "0", "--partition", "0",
             "--max-messages", str(len(lines) + 1), "--format", "json").decode().splitlines()
    first = json.loads(out[0])
    assert first["key"] == "k0" and first["value"] == "value 0 \u00e9", first
    assert first["headers"] == [{"key": "trace", "value": "abc-123"},
                                {"key": "url", "value": "http://x/y"},
                                {"key": "empty", "value": ""}], first
    last = json.loads(out[-1])
    assert last["value"] == "last" and last["headers"] == [{"key": "bare", "value": None},
                                                            {"key": "k", "value": "v"}], last
    out = ok(b, "consume", "--topic", "lines", "--from-beginning", "--max-messages", "1",
             "--print-headers")
    assert out == b"NO_HEADERS\tplain value\n", out
    fails(b, 2, "produce", "--topic", "headed", "--headers", ":novalue", stdin=b"x\n")
    fails(b, 2, "produce", "--topic", "headed", "--headers", "a:1,,b:2", stdin=b"x\n")


def describe_group(b, group):
    """The group's describe table as dicts keyed by the column names."""
    lines = ok(b, "groups", "describe", "--group", group).decode().splitlines()
    assert lines[0].startswith("Consumer group '%s' is " % group), lines
    header = lines[2].split()
    assert header == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                      "CONSUMER-ID", "HOST", "CLIENT-ID"], lines
    return lines[0], [dict(zip(header, line.split())) for line in lines[3:]]


def test_groups(b):
    ok(b, "topics", "create", "--topic", "grouped", "--partitions", "2")
    payload = b"".join(b"k%d:v%d\n" % (i, i) for i in range(40))
    ok(b, "produce", "--topic", "grouped", "--key-separator", ":", stdin=payload)
    everything = sorted(b"v%d" % i for i in range(40))

    # The first member reads 15 records and commits where it stopped.
    first = ok(b, "consume", "--topic", "grouped", "--group", "g1", "--from-beginning",
               "--max-messages", "15").splitlines()
    assert len(first) == 15, first
    assert "g1" in ok(b, "groups", "list").decode().split()
    assert "g1" in json.loads(ok(b, "--json", "groups", "list"))
    state, rows = describe_group(b, "g1")
    assert "is Empty" in state, state
    assert len(rows) == 2, rows
    assert sum(int(r["CURRENT-OFFSET"]) for r in rows) == 15, rows
    assert sum(int(r["LOG-END-OFFSET"]) for r in rows) == 40, rows
    assert sum(int(r["LAG"]) for r in rows) == 25, rows
    described = json.loads(ok(b, "--json", "groups", "describe", "--group", "g1"))
    assert described["state"] == "Empty" and described["members"] == [], described
    assert sum(p["lag"] for p in described["partitions"]) == 25, described

    # The second run resumes exactly there: together they saw every record once.
    second = ok(b, "consume", "--topic", "grouped", "--group", "g1", "--from-beginning",
                "--max-messages", "25").splitlines()
    assert sorted(first + second) == everything, (first, second)
    _, rows = describe_group(b, "g1")
    assert all(r["LAG"] == "0" for r in rows), rows

    # Reset to the beginning; the next run reads everything again.
    out = ok(b, "groups", "reset-offsets", "--group", "g1", "--topic", "grouped", "--to-earliest")
    assert out.decode().splitlines()[0].split() == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], out
    _, rows = describe_group(b, "g1")
    assert all(r["CURRENT-OFFSET"] == "0" for r in rows), rows
    again = ok(b, "consume", "--topic", "grouped", "--group", "g1", "--max-messages", "40").splitlines()
    assert sorted(again) == everything, again
    ok(b, "groups", "reset-offsets", "--group", "g1", "--topic", "grouped", "--to-offset", "3")
    _, rows = describe_group(b, "g1")
    assert all(r["CURRENT-OFFSET"] == "3" for r in rows), rows
    fails(b, 2, "groups", "reset-offsets", "--group", "g1", "--topic", "grouped")

    # A live member: describe shows it owning both partitions, and the group cannot be
    # deleted or reset until it leaves.
    member = subprocess.Popen(
        [SPATECTL, "--bootstrap-server", b, "-X", "fetch.max.wait.ms=0", "consume", "--topic",
         "grouped", "--group", "g1", "--timeout-ms", "4000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            state, rows = describe_group(b, "g1")
            if "is Stable" in state and all(r["CONSUMER-ID"] != "-" for r in rows):
                break
            assert time.time() < deadline, (state, rows)
            time.sleep(0.1)
        assert all(r["CLIENT-ID"] == "spatectl" for r in rows), rows
        err = fails(b, 1, "groups", "delete", "--group", "g1")
        assert "NON_EMPTY_GROUP" in err, err
        err = fails(b, 1, "groups", "reset-offsets", "--group", "g1", "--topic", "grouped",
                    "--to-latest")
        assert "inactive" in err, err
        out, err = member.communicate(timeout=60)
        assert member.returncode == 0, err
        # It started at offset 3 of each partition.
        assert len(out.splitlines()) == 34, out
    finally:
        if member.poll() is None:
            member.kill()
            member.wait()
    state, _ = describe_group(b, "g1")
    assert "is Empty" in state, state
    assert b"was successful" in ok(b, "groups", "delete", "--group", "g1")
    assert "g1" not in ok(b, "groups", "list").decode().split()
    err = fails(b, 1, "groups", "describe", "--group", "g1")
    assert "GROUP_ID_NOT_FOUND" in err, err


def test_fetch_ahead(b):
    """The consumers send the next Fetch before they decode the answer to the last one.
    A --max-messages that ends inside a response (with the next fetch already in flight)
    still prints exactly that many, and a group commits only what was printed."""
    ok(b, "topics", "create", "--topic", "ahead", "--partitions", "1")
    lines = [b"%05d %s" % (i, b"x" * 1000) for i in range(3000)]
    ok(b, "produce", "--topic", "ahead", stdin=b"\n".join(lines) + b"\n")

    # About 3 MB: three 1 MiB fetches, and 1500 ends inside the second answer.
    first = ok(b, "consume", "--topic", "ahead", "--group", "ahead-g", "--from-beginning",
               "--max-messages", "1500").splitlines()
    assert first == lines[:1500], len(first)
    _, rows = describe_group(b, "ahead-g")
    assert [r["CURRENT-OFFSET"] for r in rows] == ["1500"], rows
    second = ok(b, "consume", "--topic", "ahead", "--group", "ahead-g", "--max-messages",
                "1500").splitlines()
    assert second == lines[1500:], len(second)

    # From an offset inside a batch, without a group.
    out = ok(b, "consume", "--topic", "ahead", "--partition", "0", "--offset", "1234",
             "--max-messages", "777").splitlines()
    assert out == lines[1234:2011], len(out)
    # An offset past the end is refused by the broker; no fetch goes out after it.
    err = fails(b, 1, "consume", "--topic", "ahead", "--partition", "0", "--offset", "5000",
                "--max-messages", "1")
    assert 'topic "ahead" partition 0 at offset 5000 failed (OFFSET_OUT_OF_RANGE)' in err, err

    # perf consume counts exactly, with fetches small enough to need many round trips.
    out = ok(b, "perf", "consume", "--topic", "ahead", "--messages", "2999",
             "--fetch-size", "65536").decode().splitlines()
    assert out[-1].startswith("2999 records received, "), out

    # A member that rejoins while its next fetch is in flight: the second member's join
    # makes the first one rejoin (and, as group leader, ask for Metadata on the connection
    # that carries its fetches). Both finish cleanly and together they print everything.
    ok(b, "topics", "create", "--topic", "ahead-two", "--partitions", "2")
    ok(b, "produce", "--topic", "ahead-two", stdin=b"\n".join(lines) + b"\n")
    # The second member's JoinGroup waits until the first one's next heartbeat (every 3 s)
    # tells it to rejoin: a longer request timeout than the other tests use.
    command = [SPATECTL, "--bootstrap-server", b, "--timeout", "15000", "consume", "--topic",
               "ahead-two", "--group", "ahead-rejoin", "--from-beginning", "--timeout-ms", "6000"]
    one = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    two = None
    try:
        # Until the first member has joined, the group does not exist.
        deadline = time.time() + 20
        while True:
            code, out, _ = run(b, "groups", "describe", "--group", "ahead-rejoin")
            if code == 0:
                state, rows = describe_group(b, "ahead-rejoin")
                if "is Stable" in state and all(r["CONSUMER-ID"] != "-" for r in rows):
                    break
            assert time.time() < deadline, out
            time.sleep(0.1)
        two = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out_two, err_two = two.communicate(timeout=60)
        out_one, err_one = one.communicate(timeout=60)
        assert one.returncode == 0, err_one
        assert two.returncode == 0, err_two
        assert set(out_one.splitlines() + out_two.splitlines()) == set(lines)
    finally:
        for member in (one, two):
            if member is not None and member.poll() is None:
                member.kill()
                member.wait()


# kafka-producer-perf-test's lines, field for field; latencies keep three decimals (µs).
FINAL_LINE = re.compile(r"^(\d+) records sent, \d+\.\d{6} records/sec \(\d+\.\d{2} MB/sec\), "
                        r"\d+\.\d{3} ms avg latency, \d+\.\d{3} ms max latency, (\d+\.\d{3}) ms 50th, "
                        r"(\d+\.\d{3}) ms 95th, (\d+\.\d{3}) ms 99th, (\d+\.\d{3}) ms 99\.9th\.$")
PROGRESS_LINE = re.compile(r"^(\d+) records sent, \d+\.\d records/sec \(\d+\.\d{2} MB/sec\), "
                           r"\d+\.\d{3} ms avg latency, \d+\.\d{3} ms max latency\.$")
# kafka-consumer-perf-test's CSV header and data line.
CSV_HEADER = ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
              "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}:\d{3}"
CSV_LINE = re.compile(r"^%s, %s, \d+\.\d{4}, \d+\.\d{4}, (\d+), \d+\.\d{4}, 0, \d+, \d+\.\d{4}, "
                      r"\d+\.\d{4}$" % (TIME, TIME))


def test_perf(b):
    ok(b, "topics", "create", "--topic", "perf", "--partitions", "2")
    out = ok(b, "perf", "produce", "--topic", "perf", "--num-records", "20000", "--record-size", "100",
             "--throughput", "-1", "--acks", "1", "--batch-size", "16384", "--linger-ms", "2").decode()
    last = out.strip().splitlines()[-1]
    match = FINAL_LINE.match(last)
    assert match and match.group(1) == "20000", last
    p50, p95, p99, p999 = (float(match.group(i)) for i in range(2, 6))
    assert p50 <= p95 <= p99 <= p999, last
    out = ok(b, "perf", "produce", "--topic", "perf", "--num-records", "500", "--record-size", "10",
             "--throughput", "1000", "--acks", "all", "--compression", "lz4").decode()
    assert out.strip().splitlines()[-1].startswith("500 records sent, "), out
    out = ok(b, "perf", "consume", "--topic", "perf", "--messages", "20500").decode().splitlines()
    assert out[0] == CSV_HEADER, out
    match = CSV_LINE.match(out[1])
    assert match and match.group(1) == "20500", out
    assert len(out) == 3 and out[2].startswith("20500 records received, ") and "MB/sec" in out[2], out
    # Two threads with a partition each read the same records.
    out = ok(b, "perf", "consume", "--topic", "perf", "--messages", "20500", "--threads", "2").decode().splitlines()
    assert out[-1].startswith("20500 records received, "), out
    # More threads than partitions: the extra ones are not started.
    out = ok(b, "perf", "consume", "--topic", "perf", "--messages", "20500", "--threads", "8").decode().splitlines()
    assert out[-1].startswith("20500 records received, "), out
    fails(b, 2, "perf", "consume", "--topic", "perf", "--messages", "1", "--threads", "0")

    # --payload-file: records are the file's lines.
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as payload_file:
        payload_lines = [b"payload line %d %s" % (i, b"z" * i) for i in range(7)]
        payload_file.write(b"\n".join(payload_lines) + b"\n\n")
    try:
        ok(b, "topics", "create", "--topic", "payloads", "--partitions", "2")
        out = ok(b, "perf", "produce", "--topic", "payloads", "--num-records", "400",
                 "--payload-file", payload_file.name, "--throughput", "-1").decode()
        assert out.strip().splitlines()[-1].startswith("400 records sent, "), out
        got = ok(b, "consume", "--topic", "payloads", "--from-beginning", "--max-messages", "400").splitlines()
        assert len(got) == 400 and set(got) <= set(payload_lines), got[:10]
        assert len(set(got)) > 1, "every record was the same line"
        fails(b, 2, "perf", "produce", "--topic", "payloads", "--num-records", "1",
              "--payload-file", payload_file.name, "--record-size", "10")
    finally:
        os.unlink(payload_file.name)
    err = fails(b, 1, "perf", "produce", "--topic", "payloads", "--num-records", "1",
                "--payload-file", "/nonexistent/payloads.txt")
    assert "payloads.txt" in err, err

    # --idempotence: a producer id from InitProducerId, sequences per partition, acks=all.
    ok(b, "topics", "create", "--topic", "idempotent", "--partitions", "2")
    out = ok(b, "perf", "produce", "--topic", "idempotent", "--num-records", "6000", "--record-size",
             "50", "--throughput", "-1", "--idempotence", "--batch-size", "4096").decode()
    assert out.strip().splitlines()[-1].startswith("6000 records sent, "), out
    got = ok(b, "consume", "--topic", "idempotent", "--from-beginning", "--max-messages", "6000").splitlines()
    assert len(got) == 6000, len(got)
    err = fails(b, 2, "perf", "produce", "--topic", "idempotent", "--num-records", "1", "--idempotence",
                "--acks", "1")
    assert "acks" in err, err

    # perf e2e: one record at a time, latency percentiles in microseconds.
    ok(b, "topics", "create", "--topic", "e2e", "--partitions", "1")
    out = ok(b, "perf", "e2e", "--topic", "e2e", "--num-records", "200", "--record-size", "64").decode()
    lines = out.strip().splitlines()
    assert lines[0].startswith("200 records, avg latency: ") and lines[0].endswith(" µs"), lines
    fields = lines[1].split(", ")
    assert lines[1].startswith("Percentiles: 50th = ") and len(fields) == 3, lines
    p50, p99, p999 = (int(f.split(" = ")[1].split()[0]) for f in fields)
    assert 0 < p50 <= p99 <= p999, lines
    out = ok(b, "perf", "e2e", "--topic", "e2e", "--num-records", "20", "--acks", "all").decode()
    assert out.startswith("20 records, "), out
    assert len(ok(b, "consume", "--topic", "e2e", "--from-beginning", "--max-messages", "220").splitlines()) == 220
    err = fails(b, 1, "perf", "e2e", "--topic", "nope", "--num-records", "1")
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err, err
    fails(b, 2, "perf", "e2e", "--topic", "e2e")


def test_perf_progress(b):
    """A run longer than 5 s prints progress lines (over each window) before the final one."""
    ok(b, "topics", "create", "--topic", "paced", "--partitions", "1")
    out = ok(b, "perf", "produce", "--topic", "paced", "--num-records", "12000", "--record-size", "64",
             "--throughput", "2000").decode().strip().splitlines()
    progress = [line for line in out[:-1] if PROGRESS_LINE.match(line)]
    assert progress and len(progress) == len(out) - 1, out
    # About 5 s at 2000 records/s each; the final line counts every record.
    assert all(8000 <= int(PROGRESS_LINE.match(line).group(1)) <= 12000 for line in progress), out
    assert FINAL_LINE.match(out[-1]) and out[-1].startswith("12000 records sent, "), out


def test_perf_partitions(b):
    """perf produce --partitions N creates a missing topic with N partitions, as the Java
    producer's auto-creation would, and leaves an existing topic as it is."""
    err = fails(b, 1, "perf", "produce", "--topic", "made", "--num-records", "10", "--throughput", "-1")
    assert 'topic "made" does not exist (UNKNOWN_TOPIC_OR_PARTITION)' in err, err
    out = ok(b, "perf", "produce", "--topic", "made", "--partitions", "3", "--num-records", "300",
             "--record-size", "20", "--throughput", "-1").decode()
    assert FINAL_LINE.match(out.strip().splitlines()[-1]), out
    assert "PartitionCount: 3" in ok(b, "topics", "describe", "--topic", "made").decode()
    code, out, err = run(b, "perf", "produce", "--topic", "made", "--partitions", "5", "--num-records",
                         "10", "--throughput", "-1")
    assert code == 0 and "exists with 3 partition(s)" in err, err
    assert "PartitionCount: 3" in ok(b, "topics", "describe", "--topic", "made").decode()
    assert len(ok(b, "consume", "--topic", "made", "--from-beginning", "--max-messages", "310").splitlines()) == 310
    fails(b, 2, "perf", "produce", "--topic", "made", "--partitions", "0", "--num-records", "1")


E2E_LATENCY_LINE = re.compile(r"^end-to-end latency: (\d+) records, avg \d+\.\d µs, 50th (\d+) µs, "
                              r"99th (\d+) µs, 99\.9th (\d+) µs, max (\d+) µs$")


def test_perf_stamp_latency(b):
    """perf produce --stamp and perf consume --latency, as a benchmark runs them: the
    consumer starts first on an empty fresh topic and waits; the producer runs at a fixed
    rate over many partitions; every record read has its end-to-end latency measured."""
    ok(b, "topics", "create", "--topic", "stamped", "--partitions", "10")
    histogram = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    histogram.close()
    command = [SPATECTL, "--bootstrap-server", b, "--timeout", "5000", "perf", "consume", "--topic",
               "stamped", "--messages", "3000", "--threads", "3", "--latency", "--timeout-ms",
               "30000", "--histogram", histogram.name]
    consumer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Longer than a fetch's long poll: the consumer has found nothing a few times.
        time.sleep(1.5)
        assert consumer.poll() is None, consumer.communicate()
        out = ok(b, "perf", "produce", "--topic", "stamped", "--stamp", "--num-records", "3000",
                 "--record-size", "64", "--throughput", "3000").decode()
        assert FINAL_LINE.match(out.strip().splitlines()[-1]), out
        out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, err
        with open(histogram.name) as distribution:
            rows = [row.split("\t") for row in distribution.read().splitlines()[1:]]
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        os.unlink(histogram.name)
    lines = out.decode().splitlines()
    assert lines[0] == CSV_HEADER and lines[2].startswith("3000 records received, "), lines
    assert len(lines) == 4, lines
    match = E2E_LATENCY_LINE.match(lines[3])
    assert match and match.group(1) == "3000", lines
    p50, p99, p999, top = (int(match.group(i)) for i in range(2, 6))
    assert 0 < p50 <= p99 <= p999 <= top, lines
    assert rows and sum(int(row[2]) for row in rows) == 3000, rows[:5]
    # Paced batches linger out long before they fill, and the sticky partition moves on
    # with each one: the records reach every partition, not just the first.
    # One JSON object a line; split on "\n" only, as the stamps' bytes may decode to
    # characters str.splitlines() also breaks at (U+0085, U+2028).
    read = ok(b, "consume", "--topic", "stamped", "--from-beginning", "--max-messages", "3000",
              "--format", "json").split(b"\n")
    assert {json.loads(line)["partition"] for line in read if line} == set(range(10)), read[:3]

    # Records without a stamp are counted apart, not measured: 20 unstamped ones on top.
    ok(b, "perf", "produce", "--topic", "stamped", "--num-records", "20", "--record-size", "64",
       "--throughput", "-1")
    lines = ok(b, "perf", "consume", "--topic", "stamped", "--messages", "3020",
               "--latency").decode().splitlines()
    match = E2E_LATENCY_LINE.match(lines[3])
    assert match and match.group(1) == "3000" and lines[4] == "unstamped records: 20", lines
    # Without --latency the output is what it was.
    lines = ok(b, "perf", "consume", "--topic", "stamped", "--messages", "3020").decode().splitlines()
    assert len(lines) == 3, lines

    fails(b, 2, "perf", "produce", "--topic", "stamped", "--num-records", "1", "--stamp",
          "--record-size", "7")
    fails(b, 2, "perf", "produce", "--topic", "stamped", "--num-records", "1", "--stamp",
          "--payload-file", "/etc/hostname")
    fails(b, 2, "perf", "consume", "--topic", "stamped", "--messages", "1", "--histogram", "/tmp/x")


def test_client_settings(b):
    """--command-config FILE and -X take the same keys; unknown keys are usage errors."""
    ok(b, "topics", "create", "--topic", "configured", "--partitions", "1")
    with tempfile.TemporaryDirectory() as scratch:
        good = os.path.join(scratch, "client.properties")
        with open(good, "w") as f:
            f.write("# a Kafka client properties file\n\n! also a comment\n"
                    " acks = all \ncompression.type=zstd\nlinger.ms=1\nbatch.size=4096\n")
        out = ok(b, "--command-config", good, "perf", "produce", "--topic", "configured",
                 "--num-records", "100", "--record-size", "30", "--throughput", "-1").decode()
        assert out.strip().startswith("100 records sent, "), out
        batches = ok(b, "dump-log", *sorted(glob.glob(os.path.join(BROKER_DATA[0], "configured-0", "*.log"))))
        assert b"compresscodec: zstd" in batches, batches[:500]
        # The flag wins over the file, and a later -X over an earlier setting.
        ok(b, "--command-config", good, "-X", "acks=0", "produce", "--topic", "configured",
           "--acks", "1", stdin=b"x\n")

        # bootstrap.servers in the file stands in for --bootstrap-server.
        servers = os.path.join(scratch, "servers.properties")
        with open(servers, "w") as f:
            f.write("bootstrap.servers=%s\n" % b)
        done = subprocess.run([SPATECTL, "--command-config", servers, "topics", "list"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert done.returncode == 0 and b"configured" in done.stdout.split(), done

        bad = os.path.join(scratch, "bad.properties")
        with open(bad, "w") as f:
            f.write("acks=1\nenable.idempotance=true\n")
        err = fails(b, 2, "--command-config", bad, "topics", "list")
        assert '"enable.idempotance"' in err and "bad.properties:2" in err, err
        with open(bad, "w") as f:
            f.write("acks\n")
        err = fails(b, 2, "--command-config", bad, "topics", "list")
        assert "key=value" in err, err
    err = fails(b, 1, "--command-config", "/nonexistent/client.properties", "topics", "list")
    assert "/nonexistent/client.properties" in err, err
    err = fails(b, 2, "-X", "linger.msec=5", "topics", "list")
    assert '"linger.msec"' in err and "-X" in err, err
    err = fails(b, 2, "-X", "acks=2", "produce", "--topic", "configured", stdin=b"x\n")
    assert "acks" in err, err


def test_dump_log(b, data_dir):
    files = sorted(glob.glob(os.path.join(data_dir, "lines-0", "*.log")))
    assert files, os.listdir(data_dir)
    assert all(len(os.path.basename(f)) == len("00000000000000000000.log") for f in files), files
    out = ok(b, "dump-log", "--print-data-log", *files).decode()
    assert "baseOffset: 0 " in out and "isvalid: true" in out, out
    assert "payload: plain value" in out and "key: k1 payload: v1" in out, out
    # The idempotent producer's batches carry its producer id and consecutive sequences.
    out = "".join(ok(b, "dump-log", f).decode()
                  for f in sorted(glob.glob(os.path.join(data_dir, "idempotent-0", "*.log"))))
    batches = [line for line in out.splitlines() if line.startswith("baseOffset:")]
    assert batches and all(" producerId: -1 " not in line for line in batches), out[:2000]
    expected_sequence = 0
    for line in batches:
        words = line.split()
        base, last = int(words[words.index("baseSequence:") + 1]), int(words[words.index("lastSequence:") + 1])
        assert base == expected_sequence, (expected_sequence, line)
        expected_sequence = last + 1
    zstd = sorted(glob.glob(os.path.join(data_dir, "round-zstd-0", "*.log")))
    out = ok(b, "dump-log", *zstd).decode()
    assert "compresscodec: zstd" in out and "isvalid: false" not in out, out
    err = fails(b, 1, "dump-log", os.path.join(data_dir, "no-such.log"))
    assert "no-such.log" in err, err
    # A running broker's active segment may end in zeros (tail padding): named as such,
    # and other junk after the last batch as invalid bytes.
    with open(files[-1], "rb") as f:
        data = f.read()
    with tempfile.TemporaryDirectory() as scratch:
        padded = os.path.join(scratch, "00000000000000000000.log")
        with open(padded, "wb") as f:
            f.write(data + bytes(65536 - len(data) % 65536))
        out = ok(b, "dump-log", padded).decode()
        assert "baseOffset: 0 " in out and "zero bytes after the last batch" in out, out
        with open(padded, "wb") as f:
            f.write(data + b"\x01" * 30)  # shorter than a batch header
        out = ok(b, "dump-log", padded).decode()
        assert "Found 30 invalid bytes" in out, out


# Every command, as its words and the flags it needs to get as far as the broker.
COMMANDS = [
    ("topics", "list"),
    ("topics", "describe", "--topic", "x"),
    ("topics", "create", "--topic", "x"),
    ("topics", "delete", "--topic", "x"),
    ("topics", "alter", "--topic", "x", "--partitions", "2"),
    ("produce", "--topic", "x"),
    ("consume", "--topic", "x", "--max-messages", "1"),
    ("groups", "list"),
    ("groups", "describe", "--group", "g"),
    ("groups", "delete", "--group", "g"),
    ("groups", "reset-offsets", "--group", "g", "--topic", "x", "--to-earliest"),
    ("perf", "produce", "--topic", "x", "--num-records", "1"),
    ("perf", "consume", "--topic", "x", "--messages", "1"),
    ("perf", "e2e", "--topic", "x", "--num-records", "1"),
]


def test_usage_errors(b):
    # A bad flag is a usage error (exit 2) naming the flag, for every command.
    for command in COMMANDS + [("dump-log", "file.log")]:
        err = fails(b, 2, *(command + ("--bogus",)), stdin=b"")
        assert "--bogus" in err, (command, err)
    err = fails(b, 2, "frobnicate")
    assert '"frobnicate"' in err, err
    err = fails(b, 2, "topics", "create")
    assert "--topic" in err, err
    fails(b, 2, "topics", "create", "--topic", "t", "--partitions")
    fails(b, 2, "consume", "--topic", "lines", "--format", "xml")
    err = fails(b, 2, "perf", "produce", "--topic", "perf", "--num-records", "ten")
    assert "--num-records" in err and '"ten"' in err, err
    fails(b, 2, "perf", "produce", "--topic", "perf")
    fails(b, 2, "perf", "produce", "--topic", "perf", "--num-records", "1", "--throughput", "0")
    fails(b, 2, "perf", "consume", "--topic", "perf")
    fails(b, 2, "--bootstrap-server", "nohost", "topics", "list")
    fails(b, 2, "--timeout", "-5", "topics", "list")
    fails(b, 2, "-X", "novalue", "topics", "list")
    fails(b, 2, "dump-log")
    # --help is no mistake: usage on stdout, exit 0.
    code, out, err = run(b, "--help")
    assert code == 0 and b"--command-config FILE" in out and b"perf produce" in out, (code, err)


def test_unknown_topic(b):
    """Every command that names a topic says plainly that it does not exist (exit 1)."""
    for command in COMMANDS:
        if "--topic" not in command or command[:2] in (("topics", "create"), ("groups", "reset-offsets")):
            continue
        err = fails(b, 1, *[word.replace("x", "no-such-topic") if word == "x" else word
                            for word in command], stdin=b"x\n")
        assert 'topic "no-such-topic" does not exist (UNKNOWN_TOPIC_OR_PARTITION)' in err, (command, err)


def test_top(b, metrics):
    """top --once: one view of the broker's /metrics over one interval, then exit 0; a
    metrics address nothing listens on is exit 1 naming it."""
    ok(b, "topics", "create", "--topic", "top-topic", "--partitions", "2")
    ok(b, "produce", "--topic", "top-topic", stdin=b"".join(b"r%d\n" % i for i in range(100)))
    out = ok(b, "top", "--metrics", metrics, "--once", "--interval-ms", "200",
             "--rows", "1000").decode()
    assert out.startswith("spatectl top  http://%s/metrics" % metrics), out
    assert re.search(r"^node \d+ serving", out, re.M), out
    for section in ("SHARDS", "TOPICS", "PARTITIONS", "GROUPS"):
        assert re.search(r"^%s\b" % section, out, re.M), (section, out)
    assert re.search(r"^top-topic\s+\d", out, re.M), out
    down = "127.0.0.1:%d" % free_port()
    err = fails(b, 1, "top", "--metrics", down, "--once")
    assert "cannot connect to " + down in err, err


def fetch_counters(metrics, request="Fetch"):
    """(requests, request bytes) of one API the broker has counted."""
    text = urllib.request.urlopen("http://%s/metrics" % metrics, timeout=10).read().decode()
    values = {}
    for name in ("kafka_network_requestmetrics_requests_total", "spate_request_bytes_in_total"):
        match = re.search(r'^%s\{request="%s"\} (\S+)$' % (name, request), text, re.M)
        values[name] = float(match.group(1)) if match else 0.0
    return (values["kafka_network_requestmetrics_requests_total"],
            values["spate_request_bytes_in_total"])


def test_max_request_size(b, metrics):
    """perf produce bounds its Produce requests by max.request.size, as the Java producer
    does (a broker closes the connection of a frame over its limit): with eight partitions'
    16 KiB batches ready at once, a 20,000-byte bound sends them one per request; a batch
    larger than the bound still goes, alone."""
    ok(b, "topics", "create", "--topic", "bounded", "--partitions", "8")
    before = fetch_counters(metrics, "Produce")
    ok(b, "-X", "max.request.size=20000", "perf", "produce", "--topic", "bounded", "--num-records",
       "4000", "--record-size", "1000", "--throughput", "-1", "--batch-size", "16384",
       "--linger-ms", "50", "--max-in-flight", "1")
    after = fetch_counters(metrics, "Produce")
    requests, in_bytes = after[0] - before[0], after[1] - before[1]
    assert requests >= 4000 * 1000 / 20000, (requests, in_bytes)
    assert in_bytes / requests < 20000, (requests, in_bytes)
    ok(b, "-X", "max.request.size=100", "perf", "produce", "--topic", "bounded", "--num-records",
       "50", "--record-size", "1000", "--throughput", "-1")
    assert len(ok(b, "consume", "--topic", "bounded", "--from-beginning", "--max-messages",
                  "4050").splitlines()) == 4050
    fails(b, 2, "-X", "max.request.size=0", "perf", "produce", "--topic", "bounded",
          "--num-records", "1")


def test_fetch_session(b, metrics):
    """The consumers fetch in a fetch session (KIP-227), as the Java consumer does: reading
    300 partitions while one record at a time arrives, a fetch names only the partitions
    that moved, not all 300 (about 10 KB each as a full fetch), and nothing is lost."""
    ok(b, "topics", "create", "--topic", "sessions", "--partitions", "300")
    before = fetch_counters(metrics)
    consumer = subprocess.Popen([SPATECTL, "--bootstrap-server", b, "perf", "consume", "--topic",
                                 "sessions", "--messages", "400", "--timeout-ms", "30000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)  # its first, full, fetch is parked before the records come
    ok(b, "perf", "produce", "--topic", "sessions", "--num-records", "400", "--record-size", "50",
       "--throughput", "200", "--acks", "1")
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, (out, err)
    assert "400 records received" in out.decode(), out
    after = fetch_counters(metrics)
    requests, request_bytes = after[0] - before[0], after[1] - before[1]
    assert requests >= 20, (before, after)  # records came one fetch answer after another
    assert request_bytes / requests < 1000, (requests, request_bytes)


def test_broker_down():
    """Every command that talks to a broker names the address it could not reach (exit 1)."""
    down = "127.0.0.1:%d" % free_port()
    for command in COMMANDS:
        err = fails(down, 1, *command, stdin=b"x\n")
        assert "cannot connect to " + down in err, (command, err)


def main():
    # Kafka's 3 s initial rebalance delay would only slow the group tests down.
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    config.write("group_initial_rebalance_delay_ms = 0\n")
    metrics = "127.0.0.1:%d" % free_port()
    config.write('metrics_listen = "%s"\n' % metrics)
    config.close()
    with Broker(extra=["--config", config.name]) as broker:
        b = broker.bootstrap
        BROKER_DATA.append(broker.data_dir)
        for test in (test_topics, test_produce_consume, test_headers, test_groups, test_fetch_ahead,
                     test_perf, test_perf_progress, test_perf_partitions, test_perf_stamp_latency,
                     test_client_settings, test_usage_errors, test_unknown_topic):
            test(b)
            print("ok", test.__name__)
        test_dump_log(b, broker.data_dir)
        print("ok test_dump_log")
        test_top(b, metrics)
        print("ok test_top")
        test_fetch_session(b, metrics)
        print("ok test_fetch_session")
        test_max_request_size(b, metrics)
        print("ok test_max_request_size")
    os.unlink(config.name)
    test_broker_down()
    print("ok test_broker_down")


if __name__ == "__main__":
    main()
