#!/usr/bin/env bash
# Memory per idle partition: the broker's resident set size before and after creating
# N partitions (default 4000) that then sit idle, divided by N. Also counts the open
# file descriptors per partition. Usage: bench/idle_partitions.sh [BUILD_DIR] [N]
set -euo pipefail
build=${1:-build}
count=${2:-4000}
data=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/broker/spate" --listen "127.0.0.1:$port" --data-dir "$data" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
sleep 1
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }
before_kib=$(rss); before_fds=$(fds)
timeout 120 "$build/tools/spatectl" --bootstrap-server "127.0.0.1:$port" --timeout 60000 \
  topics create --topic idle --partitions "$count" >/dev/null
sleep 2
after_kib=$(rss); after_fds=$(fds)
echo "partitions:               $count"
echo "RSS before/after:         ${before_kib} KiB / ${after_kib} KiB"
echo "memory per idle partition: $(( (after_kib - before_kib) * 1024 / count )) bytes (goal < 65536)"
echo "fds per idle partition:    $(/usr/bin/python3 -c "print('%.2f' % (($after_fds - $before_fds) / $count))")"
