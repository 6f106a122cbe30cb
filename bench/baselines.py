"""What the machine itself can do, measured in the bench's own run: the baselines every
spate figure is divided by. Each function runs its tool once, bounded by a timeout, and
returns figures (MB/s are MiB/s, as spatectl and Kafka's perf tools print them).

  iperf3_mbs(seconds)                       TCP over loopback, one stream
  sockperf_rtt(seconds, size)               {percentile: µs} TCP round trips on loopback
  fio_write_mbs(directory, mib, block)      buffered sequential write of a new file
  fio_fdatasync_lat(directory, block, rate) {percentile: µs} of fdatasync after each write
"""
import json
import re
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iperf3_mbs(seconds=3):
    port = free_port()
    # `-1`: serves exactly one client; no readiness probe, which would be that client.
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        done = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                              stdout=subprocess.PIPE, text=True, timeout=seconds + 30, check=True)
    finally:
        server.kill()
        server.wait()
    return json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"] / 8 / 1048576


def sockperf_rtt(seconds, size):
    """{percentile: round trip in µs} of sockperf ping-pong over TCP on loopback (plus
    "max" and "count")."""
    port = free_port()
    server = subprocess.Popen(["sockperf", "sr", "--tcp", "-i", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        done = subprocess.run(["sockperf", "ping-pong", "--tcp", "-i", "127.0.0.1", "-p", str(port),
                               "-t", str(int(seconds)), "-m", str(size), "--full-rtt"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=seconds + 30)
    finally:
        server.kill()
        server.wait()
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    out = {}
    for name, value in re.findall(r"percentile (\d+\.\d+) = +([\d.]+)", text):
        out[float(name)] = float(value)
    m = re.search(r"<MAX> observation = +([\d.]+)", text)
    if m:
        out["max"] = float(m.group(1))
    m = re.search(r"\[Valid Duration\].*ReceivedMessages=(\d+)", text)
    if m:
        out["count"] = int(m.group(1))
    if 99.0 not in out:
        raise RuntimeError("sockperf ping-pong printed no percentiles:\n" + text[-2000:])
    return out


def _fio(args, timeout):
    done = subprocess.run(["fio", "--output-format=json"] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("fio %s exited %d: %s" % (" ".join(args), done.returncode, done.stderr[-500:]))
    return json.loads(done.stdout)["jobs"][0]


def fio_write_mbs(directory, mib, block, name="spate-baseline"):
    """Buffered sequential write of `mib` MiB in `block`-byte writes into a new file (no
    fsync: into page cache, as a produce is); the file is deleted after."""
    job = _fio(["--name=" + name, "--directory=" + directory, "--rw=write", "--bs=%d" % block,
                "--size=%dm" % mib, "--unlink=1"], timeout=600)
    return job["write"]["bw_bytes"] / 1048576


def fio_fdatasync_lat(directory, block, rate, mib=5):
    """{percentile: µs} of fdatasync after each `block`-byte append, at `rate` writes/s
    (back to back the device never idles, which is not the workload compared)."""
    job = _fio(["--name=fdatasync", "--directory=" + directory, "--rw=write", "--bs=%d" % block,
                "--size=%dm" % mib, "--rate_iops=%d" % rate, "--fdatasync=1", "--unlink=1"],
               timeout=mib * 1048576 // block // rate + 60)
    pct = job["sync"]["lat_ns"]["percentile"]
    out = {float(k): v / 1000.0 for k, v in pct.items()}
    out["max"] = job["sync"]["lat_ns"]["max"] / 1000.0
    return out
