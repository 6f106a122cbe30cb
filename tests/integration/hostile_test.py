"""Hostile input: the broker answers or closes that one connection and keeps serving
everyone else."""
import os
import socket
import struct

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


if __name__ == "__main__":
    Runner().run([test_bad_frames_close_only_their_connection,
                  test_unsupported_api_versions_version_answers_v0_with_error])
