#!/usr/bin/env python3
"""Kernel cpu of page-cache appends with and without tail padding (storage/segment.h).

Appends 1 GiB of `--batch` byte writes (default 15,800: the Java producer's default
16 KiB batches of 1 KiB records) to a new file in `--dir` (default /var/tmp), once
plainly and once padding the file with zeros to the next 64 KiB whenever a write passes
its end, as spate's appends do; alternated `--rounds` times, each after `sync`. Prints
the process's system cpu seconds per GiB for each way and their ratio. The kernel's
work per appended byte is what differs: new page-cache pages one 4 KiB page at a time,
or one 64 KiB folio at a time when the file system supports large folios (ext4 from
Linux 6.16, XFS).
"""
import argparse
import os
import resource
import statistics
import subprocess

GRANULE = 64 << 10


def append(path, batch, total, pad):
    data = os.urandom(batch)
    zeros = bytes(GRANULE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        position = padded = 0
        while position < total:
            end = position + batch
            if pad and end > padded:
                padded = (end + GRANULE - 1) // GRANULE * GRANULE
                os.pwritev(fd, [data, memoryview(zeros)[:padded - end]], position)
            else:
                os.pwrite(fd, data, position)
            position = end
        return (resource.getrusage(resource.RUSAGE_SELF).ru_stime - before) * (1 << 30) / total
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--batch", type=int, default=15800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    path = os.path.join(args.dir, "spate-tail-padding.%d" % os.getpid())
    plain, padded = [], []
    for _ in range(args.rounds):
        for pad, figures in ((False, plain), (True, padded)):
            subprocess.run(["sync"], check=True)
            figures.append(append(path, args.batch, args.mib << 20, pad))
    p, q = statistics.median(plain), statistics.median(padded)
    print("appends of %d bytes, %d MiB, %d rounds: plain %.3f, padded %.3f system cpu s/GiB "
          "(medians); padded / plain %.2f" % (args.batch, args.mib, args.rounds, p, q, q / p))


if __name__ == "__main__":
    main()
