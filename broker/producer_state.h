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
#include <unordered_map>

namespace spate::broker {

struct producer_batch {
    int32_t first_sequence;
    int32_t last_sequence;
    int64_t base_offset;
    int64_t log_append_time_ms;
};

enum class sequence_verdict : uint8_t {
    append,             // new batch in order (or not idempotent): write it
    duplicate,          // already written: answer with the original offset, write nothing
    out_of_order,       // OUT_OF_ORDER_SEQUENCE_NUMBER (45)
    invalid_epoch,      // INVALID_PRODUCER_EPOCH (47): a fenced, older epoch
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
    size_t producer_count() const { return _producers.size(); }

private:
    struct entry {
        int16_t epoch = 0;
        std::deque<producer_batch> recent;
    };
    std::unordered_map<int64_t, entry> _producers;
};

}  // namespace spate::broker
