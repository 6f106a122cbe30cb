#!/usr/bin/env bash
# Apache Kafka against spate on this machine, one after the other in one run, driven by the
# same clients: Kafka's own Java perf tools and spatectl's perf tools (a Kafka client too).
#
#   bench/vs_kafka.sh KAFKA_DIR [BUILD_DIR (build)]
#     KAFKA_DIR  a folder with bin/kafka1-start.sh + bin/kafka1-stop.sh (Kafka 1.0.2, as in
#                ../shared/kafka) and bin/kafka-*-perf-test.sh / kafka-topics.sh (Java tools)
#   RECORDS (1000000) and RECORD_SIZE (1024) set the volume of each phase.
#
# Phases, each on a topic of its own with one partition, each broker freshly started:
#   java-default   kafka-producer-perf-test with the producer's defaults (idempotent, acks=all)
#   java-acks1     the same with acks=1, batch.size=262144, linger.ms=5
#   java-consume   kafka-consumer-perf-test reading java-default's records
#   spatectl       spatectl perf produce (acks=1) and perf consume
# Reported per broker and phase: MB/s (the tool's own figure), the producer's p99 latency,
# and the broker's CPU seconds (utime+stime of its process, from /proc) per GiB moved; per
# broker: peak RSS (VmHWM). Then the ratios spate/Kafka. Before each phase the page cache
# is settled (sync, dirty pages below 32 MiB) so one phase's writeback does not slow the
# next. Client and broker share this machine's cores; the machine's load is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh

kafka_dir=$(cd "${1:?usage: bench/vs_kafka.sh KAFKA_DIR [BUILD_DIR]}" && pwd)
build=${2:-build}
records=${RECORDS:-1000000}
size=${RECORD_SIZE:-1024}
for f in kafka1-start.sh kafka1-stop.sh kafka-producer-perf-test.sh kafka-consumer-perf-test.sh kafka-topics.sh; do
  [ -x "$kafka_dir/bin/$f" ] || { echo "vs_kafka: $kafka_dir/bin/$f is missing" >&2; exit 1; }
done
bench_init vs_kafka "$build" java python3
kafka_state=""
stop_kafka() { [ -n "$kafka_state" ] && "$kafka_dir/bin/kafka1-stop.sh" "$kafka_state" >/dev/null 2>&1 || true; }
trap 'stop_kafka; bench_cleanup' EXIT

settle() {  # sync and wait (up to 60 s) for dirty pages to drain below 32 MiB
  sync
  for _ in $(seq 120); do
    dirty=$(awk '/^Dirty:/ {print $2}' /proc/meminfo)
    [ "$dirty" -lt 32768 ] && return 0
    sleep 0.5
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of process $1
ticks_per_second=$(getconf CLK_TCK)
gib_moved=$(python3 -c "print($records * $size / 2**30)")

declare -A mbs p99 cpu_per_gib rss

# phase BROKER NAME COMMAND…: runs the client, records its MB/s (parsed by the caller
# through $phase_out) and the broker's CPU seconds per GiB moved.
phase() {
  local broker=$1 name=$2 pid=$3; shift 3
  settle
  local before after
  before=$(cpu_ticks "$pid")
  phase_out=$("$@" 2>"$work/$broker-$name.err") || {
    echo "vs_kafka: $broker $name failed: $(tail -3 "$work/$broker-$name.err")" >&2; exit 1; }
  after=$(cpu_ticks "$pid")
  cpu_per_gib[$broker,$name]=$(python3 -c "print('%.2f' % (($after - $before) / $ticks_per_second / $gib_moved))")
}

# Parses kafka-producer-perf-test's summary: "... records/sec (X MB/sec), ... ms 99th, ..."
producer_figures() {  # producer_figures BROKER NAME
  local line; line=$(grep 'records sent' <<<"$phase_out" | tail -1)
  mbs[$1,$2]=$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")
  p99[$1,$2]=$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")
}

run_broker() {  # run_broker NAME BOOTSTRAP PID
  local broker=$1 bootstrap=$2 pid=$3
  for topic in java-default java-acks1 spatectl; do
    "$kafka_dir/bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --topic "$topic" \
      --partitions 1 --replication-factor 1 >/dev/null 2>&1
  done
  local perf=("$kafka_dir/bin/kafka-producer-perf-test.sh" --num-records "$records"
    --record-size "$size" --throughput -1)
  phase "$broker" java-default "$pid" "${perf[@]}" --topic java-default \
    --producer-props "bootstrap.servers=$bootstrap"
  producer_figures "$broker" java-default
  phase "$broker" java-acks1 "$pid" "${perf[@]}" --topic java-acks1 \
    --producer-props "bootstrap.servers=$bootstrap" acks=1 batch.size=262144 linger.ms=5
  producer_figures "$broker" java-acks1
  phase "$broker" java-consume "$pid" "$kafka_dir/bin/kafka-consumer-perf-test.sh" \
    --bootstrap-server "$bootstrap" --topic java-default --messages "$records" --timeout 60000
  # start.time, end.time, data.consumed.in.MB, MB.sec, ...
  mbs[$broker,java-consume]=$(tail -1 <<<"$phase_out" | cut -d, -f4 | tr -d ' ')
  phase "$broker" spatectl-produce "$pid" "$spatectl" --bootstrap-server "$bootstrap" perf produce \
    --topic spatectl --num-records "$records" --record-size "$size" --throughput -1 --acks 1
  local line; line=$(grep 'records sent' <<<"$phase_out" | tail -1)
  mbs[$broker,spatectl-produce]=$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")
  p99[$broker,spatectl-produce]=$(sed -nE 's/.* ([0-9.]+) ms 99th.*/\1/p' <<<"$line")
  phase "$broker" spatectl-consume "$pid" "$spatectl" --bootstrap-server "$bootstrap" perf consume \
    --topic spatectl --messages "$records"
  mbs[$broker,spatectl-consume]=$(grep 'records received' <<<"$phase_out" |
    sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/')
  rss[$broker]=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
}

echo "vs_kafka: $records records x $size B per phase; load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"

# Apache Kafka (its own start script: Kafka's defaults, ZooKeeper beside it).
kport=$(free_port); zport=$(free_port)
kafka_state="$work/kafka"
"$kafka_dir/bin/kafka1-start.sh" "$kafka_state" "$kport" "$zport" >/dev/null
run_broker kafka "127.0.0.1:$kport" "$(cat "$kafka_state/kafka.pid")"
stop_kafka; kafka_state=""

# spate, unpinned: the clients run on the same cores (see README, "Using it").
sport=$(free_port)
printf 'pin_shards = false\n' >"$work/spate.toml"
"$spate" --config "$work/spate.toml" --listen "127.0.0.1:$sport" --data-dir "$work/spate" \
  >"$work/spate.log" 2>&1 &
spate_pid=$!; pids+=("$spate_pid")
wait_port "$sport"
run_broker spate "127.0.0.1:$sport" "$spate_pid"

printf '\n%-18s %12s %12s %10s %10s %14s %14s %8s\n' phase "kafka MB/s" "spate MB/s" "spate/kafka" \
  "p99 ms k/s" "kafka CPU s/GiB" "spate CPU s/GiB" "CPU k/s"
for name in java-default java-acks1 java-consume spatectl-produce spatectl-consume; do
  k=${mbs[kafka,$name]:-0}; s=${mbs[spate,$name]:-0}
  ck=${cpu_per_gib[kafka,$name]}; cs=${cpu_per_gib[spate,$name]}
  printf '%-18s %12s %12s %10s %10s %14s %14s %8s\n' "$name" "$k" "$s" "$(ratio "$s" "$k")" \
    "${p99[kafka,$name]:--}/${p99[spate,$name]:--}" "$ck" "$cs" "$(ratio "$ck" "$cs")"
done
echo "peak RSS: kafka ${rss[kafka]} MiB (JVM heap -Xmx1G), spate ${rss[spate]} MiB"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
