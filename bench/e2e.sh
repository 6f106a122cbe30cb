#!/usr/bin/env bash
# End-to-end benchmark: spate on loopback, measured against what the machine's loopback
# itself can do, all in the same run (ratios, not absolute numbers, are what compare).
#
#   bench/e2e.sh [BUILD_DIR]        default BUILD_DIR: build
#
# Measures: iperf3 loopback MB/s, sockperf TCP round-trip p99, spatectl perf produce MB/s
# (1 KiB records, acks=1, unthrottled), perf consume MB/s, and produce latency p99 at
# 10k records/s. Prints each figure and the ratios produce/iperf, consume/iperf and
# p99/sockperf-p99. Every step is bounded by `timeout`; everything started is stopped on
# exit. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
spate=$build/broker/spate
spatectl=$build/tools/spatectl
for binary in "$spate" "$spatectl"; do
  [ -x "$binary" ] || { echo "e2e: $binary is missing; build it first" >&2; exit 1; }
done
for tool in iperf3 sockperf python3; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool is not installed" >&2; exit 1; }
done

records=${RECORDS:-500000}
record_size=1024
latency_records=${LATENCY_RECORDS:-50000}

source bench/common.sh
bench_init e2e

# ---- loopback baselines ----
iperf_port=$(free_port)
timeout 20 iperf3 -s -1 -p "$iperf_port" >/dev/null 2>&1 &
pids+=($!)
# Not wait_port: `iperf3 -s -1` serves exactly one client, and a probe would be it.
sleep 0.5
iperf_mbs=$(timeout 20 iperf3 -c 127.0.0.1 -p "$iperf_port" -t 5 -J |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f" % (d["end"]["sum_received"]["bits_per_second"]/8/1048576))')

sockperf_port=$(free_port)
timeout 20 sockperf sr --tcp -i 127.0.0.1 -p "$sockperf_port" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
sockperf_p99_us=$(timeout 20 sockperf ping-pong --tcp -i 127.0.0.1 -p "$sockperf_port" -t 5 2>&1 |
  awk '/percentile 99.000/ {print $NF}')
# sockperf reports one-way latency (half the round trip); double it for a round trip.
sockperf_rtt_p99_us=$(python3 -c "print('%.1f' % (2*float('${sockperf_p99_us:-0}')))")

# ---- spate ----
port=$(free_port)
# Client and broker share the machine's cores here: unpinned shards can move to an idle
# core instead of waiting behind the client (PIN_SHARDS=true measures the pinned default).
printf 'pin_shards = %s\n' "${PIN_SHARDS:-false}" >"$work/spate.toml"
"$spate" --config "$work/spate.toml" --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/spate.log" 2>&1 &
pids+=($!)
wait_port "$port"
ctl=("$spatectl" --bootstrap-server "127.0.0.1:$port" --timeout 30000)
"${ctl[@]}" topics create --topic e2e --partitions 1 >/dev/null
"${ctl[@]}" topics create --topic e2e-latency --partitions 1 >/dev/null

produce_line=$(timeout 300 "${ctl[@]}" perf produce --topic e2e --num-records "$records" \
  --record-size "$record_size" --throughput -1 --acks 1 --batch-size 262144 --linger-ms 1 \
  --max-in-flight 8 | tail -1)
produce_mbs=$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$produce_line")

consume_out=$(timeout 300 "${ctl[@]}" perf consume --topic e2e --messages "$records" --fetch-size 8388608)
consume_mbs=$(tail -1 <<<"$consume_out" | sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/')

latency_line=$(timeout 300 "${ctl[@]}" perf produce --topic e2e-latency --num-records "$latency_records" \
  --record-size "$record_size" --throughput 10000 --acks 1 | tail -1)
latency_p99_ms=$(sed -E 's/.*, ([0-9.]+) ms 99th.*/\1/' <<<"$latency_line")
latency_p99_us=$(python3 -c "print('%.1f' % (1000*float('$latency_p99_ms')))")

# ---- acks=all with fsync group commit, against fdatasync itself ----
fsync_p99_us=n/a
group_commit_p99_us=n/a
if command -v fio >/dev/null; then
  fsync_p99_us=$(timeout 60 fio --name=fdatasync --directory="$work" --rw=write --bs=4k --size=16m \
      --fdatasync=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f" % (d["jobs"][0]["sync"]["lat_ns"]["percentile"]["99.000000"]/1000))')
  fsync_port=$(free_port)
  printf 'acks_all_policy = "fsync"\npin_shards = %s\n' "${PIN_SHARDS:-false}" >"$work/fsync.toml"
  "$spate" --config "$work/fsync.toml" --listen "127.0.0.1:$fsync_port" --data-dir "$work/data-fsync" \
    >"$work/spate-fsync.log" 2>&1 &
  pids+=($!)
  wait_port "$fsync_port"
  fsync_ctl=("$spatectl" --bootstrap-server "127.0.0.1:$fsync_port" --timeout 30000)
  "${fsync_ctl[@]}" topics create --topic e2e-fsync --partitions 1 >/dev/null
  fsync_line=$(timeout 120 "${fsync_ctl[@]}" perf produce --topic e2e-fsync --num-records 5000 \
    --record-size "$record_size" --throughput 1000 --acks -1 | tail -1)
  group_commit_p99_us=$(python3 -c "print('%.1f' % (1000*float('$(sed -E 's/.*, ([0-9.]+) ms 99th.*/\1/' <<<"$fsync_line")')))")
fi


echo "iperf3 loopback:                ${iperf_mbs} MB/s"
echo "sockperf TCP round trip p99:    ${sockperf_rtt_p99_us} us"
echo "spatectl perf produce (1 KiB):  ${produce_mbs} MB/s   [$produce_line]"
echo "spatectl perf consume:          ${consume_mbs} MB/s"
echo "produce p99 at 10k records/s:   ${latency_p99_us} us   [$latency_line]"
echo "ratio produce/iperf:            $(ratio "$produce_mbs" "$iperf_mbs")"
echo "ratio consume/iperf:            $(ratio "$consume_mbs" "$iperf_mbs")"
echo "ratio p99/sockperf p99:         $(ratio "$latency_p99_us" "$sockperf_rtt_p99_us")"
echo "fdatasync p99 (fio, 4 KiB):     ${fsync_p99_us} us"
echo "acks=all fsync p99 (1k rec/s):  ${group_commit_p99_us} us"
echo "ratio fsync-produce/fdatasync:  $(ratio "$group_commit_p99_us" "$fsync_p99_us" 2>/dev/null || echo n/a)"
