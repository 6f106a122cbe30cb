"""Hostile input: the broker answers or closes that one connection and keeps serving
everyone else."""
import os
import select
import socket
import struct
import tempfile
import time

from harness import Broker, Runner


def api_versions_frame(correlation_id=7, version=0):
    client = b"hostile"
    body = struct.pack(">hhih", 18, version, correlation_id, len(client)) + client
    if version >= 3:
        # Flexible versions use request header v2: an empty tagged-field section, and
        # a body the broker need not understand to answer UNSUPPORTED_VERSION.
        body += b"\x00" + b"\x08hostile\x021\x00"
    return struct.pack(">i", len(body)) + body


def read_frame(sock):
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (size,) = struct.unpack(">i", header)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def healthy(b):
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(api_versions_frame(42))
        frame = read_frame(s)
        assert frame is not None and struct.unpack(">i", frame[:4])[0] == 42
        (error,) = struct.unpack(">h", frame[4:6])
        assert error == 0


def closed_by_broker(b, payload):
    with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
        s.sendall(payload)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass


def test_bad_frames_close_only_their_connection():
    with Broker() as b:
        keeper = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        payloads = [
            struct.pack(">i", -5),                       # negative size
            struct.pack(">i", 0),                        # empty frame
            struct.pack(">i", 0x7fffffff),               # over socket.request.max.bytes
            struct.pack(">i", 3) + b"\x00\x12\x00",      # truncated header
            struct.pack(">i", 10) + struct.pack(">hhih", 999, 0, 1, -1),  # unknown api key
            struct.pack(">i", 10) + struct.pack(">hhih", 3, 99, 1, -1),   # unsupported version
            struct.pack(">i", 12) + struct.pack(">hhih", 3, 1, 1, 0) + b"\xff\xff",  # bad body
        ]
        for payload in payloads:
            closed_by_broker(b, payload)
            healthy(b)
        rng = os.urandom(1 << 16)
        for i in range(64):
            closed_by_broker(b, rng[i * 1000:(i + 1) * 1000])
        healthy(b)
        keeper.sendall(api_versions_frame(9))
        assert read_frame(keeper) is not None
        keeper.close()


def test_unsupported_api_versions_version_answers_v0_with_error():
    with Broker() as b:
        with socket.create_connection(("127.0.0.1", b.port), timeout=5) as s:
            s.sendall(api_versions_frame(5, version=99))
            frame = read_frame(s)
            assert frame is not None
            correlation, error = struct.unpack(">ih", frame[:6])
            assert correlation == 5 and error == 35, (correlation, error)
            (count,) = struct.unpack(">i", frame[6:10])
            assert count > 5


def config_file(text):
    """A TOML file for --config; removed when the test process exits."""
    handle = tempfile.NamedTemporaryFile("w", prefix="spate-hostile-", suffix=".toml")
    handle.write(text)
    handle.flush()
    config_file.kept.append(handle)
    return handle.name


config_file.kept = []


def closed_now(sock):
    """True once the broker has closed the connection; never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for %d" % pid)


def test_slow_loris_and_idle_connections_are_disconnected():
    # Regression (issue 10, defect 5): a client that sends a request one byte at a time is
    # never idle, and one that sends nothing was never closed either, so both held their
    # connection (and a partial request's memory) forever. request_receive_timeout_ms now
    # drops a request not received whole in time, connections_max_idle_ms an idle one.
    config = config_file("request_receive_timeout_ms = 1000\nconnections_max_idle_ms = 2000\n")
    with Broker(extra=["--config", config]) as b:
        loris = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        idle = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        start = time.time()
        loris.sendall(struct.pack(">i", 1000))
        loris_closed_after = idle_closed_after = None
        while time.time() - start < 30 and (loris_closed_after is None or idle_closed_after is None):
            time.sleep(0.1)
            if loris_closed_after is None:
                try:
                    loris.send(b"x")
                    if closed_now(loris):
                        loris_closed_after = time.time() - start
                except OSError:
                    loris_closed_after = time.time() - start
            if idle_closed_after is None and closed_now(idle):
                idle_closed_after = time.time() - start
            healthy(b)
        assert loris_closed_after is not None, "a byte-a-tick request kept its connection"
        assert idle_closed_after is not None, "an idle connection was never closed"
        healthy(b)
        loris.close()
        idle.close()


def test_half_sent_large_requests_stay_within_the_budget():
    # Regression (issue 10, defect 5): frame buffers grew as bytes arrived with no bound
    # across connections, so clients that each announce a large request and send most of it
    # held memory without limit (ten half-sent 100 MB requests: 984 MB of RSS). Now a frame
    # reserves its size from queued_max_request_bytes when its size prefix arrives, and a
    # connection whose frame does not fit is not read at all until room frees up: its bytes
    # stay in the kernel's socket buffers, which the broker's RSS does not count. Another
    # client's requests are still answered meanwhile.
    budget = 64 << 20
    claim = 20 << 20
    connections = 12
    config = config_file("queued_max_request_bytes = %d\nrequest_receive_timeout_ms = 120000\n"
                         % budget)
    # Under AddressSanitizer every buffer freed while a frame grows waits in a quarantine
    # (256 MiB by default) before its memory is reused, which the RSS below would count as
    # held by the frames; a small quarantine keeps the measure about the broker.
    saved_asan = os.environ.get("ASAN_OPTIONS")
    if saved_asan is not None:
        os.environ["ASAN_OPTIONS"] = saved_asan + ":quarantine_size_mb=8"
    try:
        half_sent_requests_within_budget(config, budget, claim, connections)
    finally:
        if saved_asan is not None:
            os.environ["ASAN_OPTIONS"] = saved_asan


def half_sent_requests_within_budget(config, budget, claim, connections):
    with Broker(extra=["--config", config]) as b:
        healthy(b)
        baseline = rss_bytes(b.process.pid)
        hogs = []
        for _ in range(connections):
            s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
            s.sendall(struct.pack(">i", claim))
            s.setblocking(False)
            hogs.append([s, 0])
        chunk = b"\0" * (1 << 20)
        peak = baseline
        round_trips = 0
        last_progress = time.time()
        deadline = time.time() + 60
        # Push until no connection takes more bytes for 3 s (every socket buffer is full) or
        # each has sent all but the last MiB of its claim.
        while time.time() < deadline and time.time() - last_progress < 3:
            open_hogs = [h for h in hogs if h[1] < claim - len(chunk)]
            if not open_hogs:
                break
            _, writable, _ = select.select([], [h[0] for h in open_hogs], [], 0.2)
            for hog in open_hogs:
                if hog[0] not in writable:
                    continue
                try:
                    sent = hog[0].send(chunk)
                except BlockingIOError:
                    continue
                hog[1] += sent
                last_progress = time.time()
            peak = max(peak, rss_bytes(b.process.pid))
            healthy(b)
            round_trips += 1
        peak = max(peak, rss_bytes(b.process.pid))
        sent_total = sum(h[1] for h in hogs)
        growth = peak - baseline
        print("half-sent: %d MiB sent, RSS %d -> %d MiB (+%d MiB), %d round trips"
              % (sent_total >> 20, baseline >> 20, peak >> 20, growth >> 20, round_trips))
        assert round_trips > 0
        # The budget, plus slack for the shards' receive buffers (4 MiB each), what the
        # receives in flight bring a connection before its pause lands (kept for it, outside
        # the budget: about 1-2 MiB per waiting connection), and the allocator keeping the
        # smaller buffers a growing frame left behind. Measured here: 73-111 MiB over ten
        # runs (1025fc8 and a4a219b alike); 48 MiB of slack failed once. Unbounded, the 12
        # connections would add about 230 MiB.
        assert growth < budget + (64 << 20), "RSS grew by %d MiB" % (growth >> 20)
        # The connections not admitted hold no memory, but they are still open: waiting.
        for hog in hogs:
            assert not closed_now(hog[0])
            hog[0].close()
        healthy(b)


if __name__ == "__main__":
    Runner().run([test_bad_frames_close_only_their_connection,
                  test_unsupported_api_versions_version_answers_v0_with_error,
                  test_slow_loris_and_idle_connections_are_disconnected,
                  test_half_sent_large_requests_stay_within_the_budget])
