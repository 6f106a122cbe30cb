#!/usr/bin/env python3
"""The state of this machine, for benches that must say what they measured on.

These VMs back guest memory lazily and take freed memory back (free page reporting): a
write into page cache that was never touched, or was given back, costs a hypervisor fault
per page (fio wrote 1 GiB at 1.4-1.6 GB/s so, and at 5.7-6.2 GB/s into memory freed a moment
before; after 20 s idle the freed memory was gone again). Dirty pages left by one phase
throttle the next. And DAMON pages out memory nobody touched for a minute (here a kdamond
with action "pageout" on physical addresses, min age 12 x 5 s): a topic produced and left
idle for longer is read back from disk, not from page cache; `state` names that scheme. So a figure means something only when its run starts settled and its
baseline pays the same memory costs in the same state. Imported by the Python benches; the
shell benches call it:

  bench/machine.py settle [--dirty-mib 16] [--timeout 300] [--idle-wait 120]
      sync, then until Dirty is below --dirty-mib, then until the cpus are less than 25 %
      busy over a second (at most --idle-wait s); prints the state on one line
  bench/machine.py state
      one line: load, cpu busy and steal over a second, PSI pressure, Dirty, Writeback
  bench/machine.py quiet
      exit 0 when no process outside the caller's process tree used more than 20 % of a
      core over the last second; else names them and exits 3 (a latency ratio measured
      then is the other process's figure)
  bench/machine.py memory fresh|reused MIB
      puts the page cache the next MIB MiB of writes will fill into a known state:
      "reused": touch MIB MiB through /dev/shm and free them (the next writes land in
      memory the guest holds); "fresh": drop clean caches and wait until freed memory has
      been handed back (the next writes fault every page in from the host)
"""
import argparse
import os
import subprocess
import sys
import time

MIB = 1024 * 1024
# Free page reporting hands freed memory back within seconds; 20 s idle was always enough.
GIVE_BACK_SECONDS = 25


def meminfo(*keys):
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            if name in keys:
                out[name] = int(value.split()[0]) * 1024
    return out


def _cpu_times():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def cpu_use(seconds=1.0):
    """(busy %, steal %) of the machine's cpu time over `seconds`; iowait counts as idle."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    delta = [a - b for a, b in zip(after, before)]
    total = max(1, sum(delta[:8]))
    idle = delta[3] + delta[4]
    steal = delta[7] if len(delta) > 7 else 0
    return 100.0 * (total - idle) / total, 100.0 * steal / total


def pressure():
    """PSI "some" avg10 of cpu, io and memory (empty where the kernel has no PSI)."""
    out = []
    for what in ("cpu", "io", "memory"):
        try:
            with open("/proc/pressure/" + what) as f:
                some = f.readline().split()
            out.append("%s %s" % (what, some[1].split("=")[1]))
        except (OSError, IndexError):
            pass
    return ("PSI some avg10 " + " ".join(out)) if out else "no PSI"


def damon_pageout():
    """The minimum idle seconds after which DAMON pages memory out, or None."""
    root = "/sys/kernel/mm/damon/admin/kdamonds"
    try:
        for k in os.listdir(root):
            if not k.isdigit():
                continue
            with open("%s/%s/state" % (root, k)) as f:
                if f.read().strip() != "on":
                    continue
            ctx = "%s/%s/contexts/0" % (root, k)
            with open(ctx + "/schemes/0/action") as f:
                if f.read().strip() != "pageout":
                    continue
            with open(ctx + "/schemes/0/access_pattern/age/min") as f:
                age = int(f.read())
            with open(ctx + "/monitoring_attrs/intervals/aggr_us") as f:
                return age * int(f.read()) / 1e6
    except (OSError, ValueError):
        pass
    return None


def tcp_congestion():
    """The kernel's TCP congestion control for new sockets. "bbr" paces every flow with
    high-resolution timers, loopback included: on this machine class that halved loopback
    transfer rates and doubled the sender's cpu per byte against "cubic", for spate, Kafka and
    iperf3 alike (stop 34's note), so the figures beside it hold for that setting only."""
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def state(busy_steal=None):
    """One line for a bench's log: the figures beside it were measured on this."""
    busy, steal = busy_steal if busy_steal is not None else cpu_use()
    m = meminfo("Dirty", "Writeback")
    damon = damon_pageout()
    return ("load %.2f %.2f %.2f, cpus %.0f%% busy, steal %.1f%%, %s, Dirty %.1f MiB, "
            "Writeback %.1f MiB, tcp %s%s") % (
        os.getloadavg() + (busy, steal, pressure(), m["Dirty"] / MIB, m["Writeback"] / MIB,
                           tcp_congestion(),
                           ", DAMON pages out after %.0f s idle" % damon if damon else ""))


def _process_ticks():
    """{pid: (name, parent pid, utime+stime, cutime+cstime)} of every process now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(pid)] = (name, int(fields[1]), int(fields[11]) + int(fields[12]),
                             int(fields[13]) + int(fields[14]))
        except (OSError, ValueError, IndexError):
            pass
    return out


def _ancestors(pid, table):
    seen = set()
    while pid > 1 and pid in table and pid not in seen:
        seen.add(pid)
        pid = table[pid][1]
    return seen


def busiest(seconds=1.0, exclude_tree_of=None):
    """[(percent of a core, pid, name)] over `seconds`, busiest first. With
    `exclude_tree_of`, processes descending from that pid (the bench itself, its
    brokers and clients) are left out."""
    before = _process_ticks()
    time.sleep(seconds)
    after = _process_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    used = []
    for pid, (name, _, ticks, _) in after.items():
        if pid not in before:
            continue
        if exclude_tree_of is not None and exclude_tree_of in _ancestors(pid, after):
            continue
        d = ticks - before[pid][2]
        if d > 0:
            used.append((100.0 * d / hz / seconds, pid, name))
    return sorted(used, reverse=True)


def others_busy(threshold=20.0, root=None):
    """Processes outside `root`'s tree (default: this process's parent's) using more than
    `threshold` % of a core: [(percent, pid, name)]."""
    root = root if root is not None else os.getppid()
    return [u for u in busiest(exclude_tree_of=root) if u[0] > threshold and u[1] != os.getpid()]


def _tree_ticks(*roots):
    """cpu ticks of the `roots` and their live descendants, with the children they reaped."""
    table = _process_ticks()
    return sum(own + reaped for pid, (_, _, own, reaped) in table.items()
               if not _ancestors(pid, table).isdisjoint(roots))


class Watch:
    """The cpu used by everything outside this process's tree while it measures: machine
    busy time (user, nice, system) minus the tree's own and the kernel threads'. Short-lived processes (a compiler)
    count too, which sampling processes would miss."""

    # Kernel threads (children of kthreadd, pid 2) count as ours: journal commits and
    # writeback kworkers run for the bench's own fdatasyncs and writes.
    def __init__(self):
        self.root = os.getpid()
        self.machine0 = _cpu_times()
        self.ours0 = _tree_ticks(self.root, 2)
        self.began = time.monotonic()

    def others_percent(self):
        """Average percent of one core used outside the tree since the watch began."""
        now = _cpu_times()
        busy = sum(now[i] - self.machine0[i] for i in (0, 1, 2))
        ours = _tree_ticks(self.root, 2) - self.ours0
        seconds = max(1e-3, time.monotonic() - self.began)
        return max(0.0, 100.0 * (busy - ours) / os.sysconf("SC_CLK_TCK") / seconds)

    def verdict(self, threshold=20.0):
        """None when the rest of the machine stayed below `threshold` % of a core, else why
        a latency figure measured meanwhile is not this bench's."""
        pct = self.others_percent()
        if pct <= threshold:
            return None
        return "other processes used %.0f%% of a core meanwhile (now: %s)" % (
            pct, describe(others_busy(root=self.root)[:3]) or "gone")


def describe(users):
    return ", ".join("%s (pid %d) %.0f%%" % (name, pid, pct) for pct, pid, name in users)


def settle(what="", dirty_mib=16, timeout=300, idle_wait=120, log=print):
    """sync, then until Dirty < dirty_mib (at most `timeout` s), then until the cpus are
    less than 25 % busy over a second (at most `idle_wait` s); logs the state. Returns
    True when both held."""
    began = time.monotonic()
    subprocess.run(["sync"], check=False)
    while meminfo("Dirty")["Dirty"] >= dirty_mib * MIB and time.monotonic() - began < timeout:
        time.sleep(0.5)
        subprocess.run(["sync"], check=False)
    notes = []
    if meminfo("Dirty")["Dirty"] >= dirty_mib * MIB:
        notes.append("Dirty NOT below %d MiB" % dirty_mib)
    idle_from = time.monotonic()
    use = cpu_use()
    while use[0] >= 25 and time.monotonic() - idle_from < idle_wait:
        use = cpu_use()
    if use[0] >= 25:
        notes.append("cpus NOT idle after %.0f s: %s" % (idle_wait, describe(busiest()[:3])))
    log("  [%s] %s (settled in %.1f s%s)" % (what, state(use), time.monotonic() - began,
                                              "; " + "; ".join(notes) if notes else ""))
    sys.stdout.flush()
    return not notes


def reuse_memory(mib, log=print):
    """Touches and frees `mib` MiB through tmpfs, so the next `mib` MiB of page cache land
    in memory the guest already holds. False (and a note) when there is no room."""
    avail = meminfo("MemAvailable")["MemAvailable"] // MIB
    if not os.path.isdir("/dev/shm") or avail < 2 * mib:
        log("  memory warm-up skipped (%d MiB wanted, %d MiB available)" % (mib, avail))
        return False
    path = "/dev/shm/spate-bench-warm-%d" % os.getpid()
    try:
        with open(path, "wb") as f:
            chunk = b"\0" * MIB
            for _ in range(mib):
                f.write(chunk)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return True


def fresh_memory(log=print):
    """Drops clean page cache (as root) and waits until freed memory has been handed back
    to the host, so the next writes fault their pages in as on a machine just booted."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        log("  cannot drop caches (%s): only waiting for freed memory to go back" % e.strerror)
    time.sleep(GIVE_BACK_SECONDS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("settle")
    s.add_argument("--dirty-mib", type=int, default=16)
    s.add_argument("--timeout", type=float, default=300)
    s.add_argument("--idle-wait", type=float, default=120)
    s.add_argument("--what", default="settled")
    sub.add_parser("state")
    sub.add_parser("quiet")
    m = sub.add_parser("memory")
    m.add_argument("kind", choices=["fresh", "reused"])
    m.add_argument("mib", type=int)
    args = parser.parse_args()
    if args.command == "settle":
        return 0 if settle(args.what, args.dirty_mib, args.timeout, args.idle_wait) else 1
    if args.command == "state":
        print(state())
        return 0
    if args.command == "quiet":
        users = others_busy()
        if users:
            print("busy: " + describe(users))
            return 3
        return 0
    if args.kind == "reused":
        return 0 if reuse_memory(args.mib) else 1
    fresh_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
