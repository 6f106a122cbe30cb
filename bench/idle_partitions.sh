#!/usr/bin/env bash
# Idle partitions: the broker's resident set size and open descriptors before and after
# creating N partitions (default 4000) that then sit idle, per partition; the time to
# create them, to stop (SIGTERM) and to start again with them (until the broker logs
# that it listens, which it does once every partition is open), the same figures after
# the restart, and the descriptors once the idle segment files have been closed
# (segment_files_idle_ms, IDLE_MS [60000]). partitions_max is raised to N for the run.
# Usage: bench/idle_partitions.sh [BUILD_DIR] [N] [SHARDS]
set -euo pipefail
build=${1:-build}
count=${2:-4000}
shards=${3:-2}
data=$(mktemp -d)
log="$data.log"
config="$data.toml"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
idle_ms=${IDLE_MS:-60000}
printf 'partitions_max = %d\nsegment_files_idle_ms = %d\n' "$(( count > 10000 ? count : 10000 ))" \
  "$idle_ms" >"$config"
# Creation and start-up take tens of microseconds per partition, a stop less (no fsync
# per partition); the waits stay generous for slow or shared disks.
wait_s=$(( 120 + count / 100 ))
pid=
start_broker() {
  "$build/broker/spate" --config "$config" --listen "127.0.0.1:$port" --data-dir "$data" \
    --shards "$shards" >>"$log" 2>&1 &
  pid=$!
}
stop_broker() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
# The data is deleted anyway: no clean stop (which costs minutes for 100,000 partitions).
trap 'kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$data" "$log" "$config"' EXIT
now_ms() { date +%s%3N; }
# Waits until the log holds `count` lines saying the broker listens.
wait_listening() {
  local want=$1 deadline=$(( $(date +%s) + wait_s ))
  while [ "$(grep -c ' listening on ' "$log" || true)" -lt "$want" ]; do
    if [ "$(date +%s)" -gt "$deadline" ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "the broker did not start:" >&2; tail -5 "$log" >&2; exit 1
    fi
    sleep 0.05
  done
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }
per() { /usr/bin/python3 -c "print('%.3f' % (($2 - $1) / $count))"; }

start_broker
wait_listening 1
sleep 1
before_kib=$(rss); before_fds=$(fds)
t0=$(now_ms)
timeout "$wait_s" "$build/tools/spatectl" --bootstrap-server "127.0.0.1:$port" \
  --timeout "$(( wait_s * 1000 ))" topics create --topic idle --partitions "$count" >/dev/null
t1=$(now_ms)
sleep 2
after_kib=$(rss); after_fds=$(fds)
t2=$(now_ms); stop_broker; t3=$(now_ms)
grep -q 'stopped cleanly' "$log" || { echo "unclean stop" >&2; tail -5 "$log" >&2; exit 1; }
t4=$(now_ms); start_broker; wait_listening 2; t5=$(now_ms)
sleep 2
restart_kib=$(rss); restart_fds=$(fds)
sleep $(( idle_ms / 1000 + 2 ))
idle_fds=$(fds)
# A second stop: every partition was opened clean and stayed idle since.
t6=$(now_ms); stop_broker; t7=$(now_ms)
[ "$(grep -c 'stopped cleanly' "$log")" -ge 2 ] || { echo "unclean stop" >&2; tail -5 "$log" >&2; exit 1; }
t8=$(now_ms); start_broker; wait_listening 3; t9=$(now_ms)
budget=$(grep -o 'up to [0-9]* segment files open per shard' "$log" | tail -1)

echo "partitions:                $count on $shards shards ($budget)"
echo "create:                    $(( t1 - t0 )) ms"
echo "RSS before/after:          ${before_kib} KiB / ${after_kib} KiB"
echo "memory per idle partition: $(( (after_kib - before_kib) * 1024 / count )) bytes (goal < 65536)"
echo "fds before/after:          $before_fds / $after_fds ($(per "$before_fds" "$after_fds") per partition)"
echo "stop (SIGTERM):            $(( t3 - t2 )) ms"
echo "start with them:           $(( t5 - t4 )) ms"
echo "after restart:             RSS ${restart_kib} KiB, fds $restart_fds ($(per "$before_fds" "$restart_fds") per partition)"
echo "after ${idle_ms} ms idle:        fds $idle_fds ($(per "$before_fds" "$idle_fds") per partition)"
echo "stop again (idle, clean):  $(( t7 - t6 )) ms"
echo "start again:               $(( t9 - t8 )) ms"
