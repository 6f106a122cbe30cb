#pragma once
// producer_state: idempotent-producer bookkeeping of one partition (Kafka's
// ProducerStateManager, reduced to what a single node needs).
//
// For every producer id seen on the partition it keeps the epoch and the last five
// batches (first/last sequence and the offset they were written at), which is what
// Kafka clients rely on: they keep at most five batches in flight per partition, so a
// retried batch is always among the last five. Owned by the partition's shard.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "proto/record_batch.h"
#include "proto/result.h"

namespace spate::broker {

struct producer_batch {
    int32_t first_sequence;
    int32_t last_sequence;
    int64_t base_offset;
    int64_t log_append_time_ms;
};

enum class sequence_verdict : uint8_t {
    append,         // new batch in order (or not idempotent): write it
    duplicate,      // already written: answer with the original offset, write nothing
    out_of_order,   // OUT_OF_ORDER_SEQUENCE_NUMBER (45)
    invalid_epoch,  // INVALID_PRODUCER_EPOCH (47): a fenced, older epoch
};

struct sequence_check {
    sequence_verdict verdict;
    producer_batch original;  // for `duplicate`
};

class producer_state {
public:
    static constexpr size_t batches_kept = 5;

    // `producer_id` < 0 means a non-idempotent producer: always `append`.
    sequence_check check(int64_t producer_id, int16_t epoch, int32_t first_sequence,
                         int32_t last_sequence) const;
    // Records a written batch. Call only after `check` said `append`.
    void record(int64_t producer_id, int16_t epoch, const producer_batch& batch);
    // Rebuilding from the log: records the batch if it came from an idempotent producer.
    void observe(const proto::batch_header& header);
    size_t producer_count() const { return _producers.size(); }

    // What DescribeProducers reports of one producer: its epoch and its newest batch.
    struct summary {
        int64_t producer_id;
        int16_t epoch;
        int32_t last_sequence;      // -1 when no batch is remembered
        int64_t last_timestamp_ms;  // the newest batch's log-append time, -1 if unknown
    };
    std::vector<summary> summaries() const;

    // Snapshot file (written atomically beside the partition's segments):
    //   int32  magic "SPPS" (0x53505053), int32 format version (1),
    //   int64  log offset the snapshot is valid up to (batches below it are included),
    //   int32  producer count, then per producer:
    //     int64 producer id, int16 epoch, int8 batch count (<= 5), then per batch:
    //       int32 first sequence, int32 last sequence, int64 base offset,
    //       int64 log-append time (-1 if none),
    //   uint32 CRC-32C of every byte before it. All integers big-endian.
    std::vector<uint8_t> encode_snapshot(int64_t offset) const;
    // Replaces this state with the snapshot's; returns the offset it is valid up to.
    // A damaged snapshot is an error (the caller rebuilds from the log instead).
    result<int64_t> load_snapshot(std::span<const uint8_t> bytes);

private:
    struct entry {
        int16_t epoch = 0;
        std::deque<producer_batch> recent;
    };
    std::unordered_map<int64_t, entry> _producers;
};

}  // namespace spate::broker
