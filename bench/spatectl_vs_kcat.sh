#!/usr/bin/env bash
# spatectl's perf tools against kcat (librdkafka), both against one spate started here,
# in the same run: the issue asks that `spatectl perf produce` push at least as many MB/s
# as kcat does, so the tool is never the bottleneck of a benchmark.
#
#   bench/spatectl_vs_kcat.sh [BUILD_DIR]        default BUILD_DIR: build
#
# Environment (defaults in brackets): RECORDS [1000000], RECORD_SIZE [1024] bytes,
# PARTITIONS [1], BATCH_SIZE [1048576] bytes, LINGER_MS [5], ROUNDS [2],
# PIN_SHARDS [false].
#
# Produce: `spatectl perf produce --throughput -1 --acks 1` against `kcat -P` sending the
# same number of records of the same size (lines of a file prepared beforehand, read with
# -l), both with acks=1 and the same batch size and linger, each into a fresh topic with
# the same partition count. Consume: `spatectl perf consume` against `kcat -C -e -o
# beginning` into /dev/null, each reading back the records it produced. Every figure is
# wall-clock MB/s of the whole command (connect, metadata and the final flush included)
# over RECORDS * RECORD_SIZE bytes of values. The sides alternate for ROUNDS rounds and
# the best round of each counts, since the machine is shared. Every step is bounded by
# `timeout`; everything started is stopped on exit. Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/common.sh
bench_init spatectl_vs_kcat "${1:-build}" kcat python3

records=${RECORDS:-1000000}
record_size=${RECORD_SIZE:-1024}
partitions=${PARTITIONS:-1}
batch_size=${BATCH_SIZE:-1048576}
linger_ms=${LINGER_MS:-5}
rounds=${ROUNDS:-2}


now() { date +%s.%N; }
# mbs START END: MB/s of the run's value bytes between two `now` stamps.
mbs() {
  python3 -c "s,e=float('$1'),float('$2'); print('%.1f' % ($records*$record_size/1048576/(e-s)))"
}
best() { python3 -c "import sys; print('%.1f' % max(float(x) for x in sys.argv[1:]))" "$@"; }

# kcat's input: RECORDS lines of RECORD_SIZE printable bytes (kcat splits at '\n'), as
# random as spatectl's payload so neither side gains from the content. Written before any
# timing starts and read once so it sits in the page cache.
python3 - "$records" "$record_size" "$work/records.txt" <<'EOF'
import random, string, sys
count, size, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(12345)
lines = [("".join(rng.choice(string.ascii_uppercase) for _ in range(size)) + "\n").encode()
         for _ in range(64)]
with open(path, "wb", buffering=1 << 20) as out:
    for i in range(count):
        out.write(lines[i % len(lines)])
EOF
cat "$work/records.txt" >/dev/null

port=$(free_port)
# Client and broker share the machine's cores: unpinned shards can move to an idle core
# instead of waiting behind the client (PIN_SHARDS=true measures the pinned default).
printf 'pin_shards = %s\n' "${PIN_SHARDS:-false}" >"$work/spate.toml"
"$spate" --config "$work/spate.toml" --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/spate.log" 2>&1 &
pids+=($!)
wait_port "$port"
bootstrap=127.0.0.1:$port
ctl=("$spatectl" --bootstrap-server "$bootstrap" --timeout 30000)

# kcat's producer settings for throughput: acks, batch and linger as spatectl's; the
# local queue large enough that the reader never waits on "queue full".
kcat_produce=(kcat -P -b "$bootstrap" -q -X acks=1 -X linger.ms="$linger_ms" -X batch.size="$batch_size"
  -X batch.num.messages=1000000 -X queue.buffering.max.messages=2000000
  -X queue.buffering.max.kbytes=2097151 -X compression.codec=none)
# kcat's consumer: large fetches and a deep prefetch queue, so it is not held back either.
kcat_consume=(kcat -C -b "$bootstrap" -q -e -o beginning -X fetch.max.bytes=52428800
  -X fetch.message.max.bytes=8388608 -X queued.max.messages.kbytes=1048576)

spatectl_produce_mbs=()
kcat_produce_mbs=()
spatectl_consume_mbs=()
kcat_consume_mbs=()
spatectl_line=""
for round in $(seq "$rounds"); do
  for side in spatectl kcat; do
    topic=$side-$round
    "${ctl[@]}" topics create --topic "$topic" --partitions "$partitions" >/dev/null
    if [ "$side" = spatectl ]; then
      start=$(now)
      line=$(timeout 600 "${ctl[@]}" perf produce --topic "$topic" --num-records "$records" \
        --record-size "$record_size" --throughput -1 --acks 1 --batch-size "$batch_size" \
        --linger-ms "$linger_ms" | tail -1)
      end=$(now)
      spatectl_line=$line
      spatectl_produce_mbs+=("$(mbs "$start" "$end")")
      start=$(now)
      timeout 600 "${ctl[@]}" perf consume --topic "$topic" --messages "$records" \
        --fetch-size 8388608 >/dev/null
      end=$(now)
      spatectl_consume_mbs+=("$(mbs "$start" "$end")")
    else
      start=$(now)
      timeout 600 "${kcat_produce[@]}" -t "$topic" -l "$work/records.txt"
      end=$(now)
      kcat_produce_mbs+=("$(mbs "$start" "$end")")
      start=$(now)
      timeout 600 "${kcat_consume[@]}" -t "$topic" >/dev/null
      end=$(now)
      kcat_consume_mbs+=("$(mbs "$start" "$end")")
    fi
    # A figure only counts if the topic holds exactly RECORDS records (end offsets summed,
    # asked with kcat's query mode). The topic is deleted afterwards to bound disk use.
    query=()
    for p in $(seq 0 $((partitions - 1))); do query+=(-t "$topic:$p:-1"); done
    held=$(timeout 60 kcat -Q -b "$bootstrap" "${query[@]}" | awk '{sum += $NF} END {print sum + 0}')
    if [ "$held" != "$records" ]; then
      echo "spatectl_vs_kcat: topic $topic holds $held records, not $records" >&2
      exit 1
    fi
    "${ctl[@]}" topics delete --topic "$topic" >/dev/null
  done
  echo "round $round: produce spatectl ${spatectl_produce_mbs[-1]} MB/s, kcat ${kcat_produce_mbs[-1]} MB/s;" \
    "consume spatectl ${spatectl_consume_mbs[-1]} MB/s, kcat ${kcat_consume_mbs[-1]} MB/s"
done

sp=$(best "${spatectl_produce_mbs[@]}")
kp=$(best "${kcat_produce_mbs[@]}")
sc=$(best "${spatectl_consume_mbs[@]}")
kc=$(best "${kcat_consume_mbs[@]}")
echo "records: $records x $record_size B, $partitions partition(s), batch $batch_size B, linger $linger_ms ms, best of $rounds"
echo "spatectl perf produce:          ${sp} MB/s   [$spatectl_line]"
echo "kcat -P:                        ${kp} MB/s"
echo "ratio produce spatectl/kcat:    $(ratio "$sp" "$kp")"
echo "spatectl perf consume:          ${sc} MB/s"
echo "kcat -C:                        ${kc} MB/s"
echo "ratio consume spatectl/kcat:    $(ratio "$sc" "$kc")"
