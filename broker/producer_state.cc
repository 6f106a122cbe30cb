#include "broker/producer_state.h"

#include "proto/assert.h"

namespace spate::broker {
namespace {

// Sequences wrap from INT32_MAX to 0, as in Kafka.
int32_t next_sequence(int32_t sequence) { return sequence == INT32_MAX ? 0 : sequence + 1; }

}  // namespace

sequence_check producer_state::check(int64_t producer_id, int16_t epoch, int32_t first_sequence,
                                     int32_t last_sequence) const {
    if (producer_id < 0) return {sequence_verdict::append, {}};
    auto found = _producers.find(producer_id);
    // An unknown producer (new, or its state expired) may start at any sequence.
    if (found == _producers.end() || found->second.recent.empty())
        return {sequence_verdict::append, {}};
    const entry& known = found->second;
    if (epoch < known.epoch) return {sequence_verdict::invalid_epoch, {}};
    if (epoch > known.epoch) {
        // A bumped epoch (the client may bump it itself) starts over at sequence 0.
        if (first_sequence == 0) return {sequence_verdict::append, {}};
        return {sequence_verdict::out_of_order, {}};
    }
    for (const producer_batch& batch : known.recent) {
        if (batch.first_sequence == first_sequence && batch.last_sequence == last_sequence)
            return {sequence_verdict::duplicate, batch};
    }
    if (first_sequence == next_sequence(known.recent.back().last_sequence))
        return {sequence_verdict::append, {}};
    return {sequence_verdict::out_of_order, {}};
}

void producer_state::record(int64_t producer_id, int16_t epoch, const producer_batch& batch) {
    if (producer_id < 0) return;
    entry& known = _producers[producer_id];
    if (epoch != known.epoch) {
        known.epoch = epoch;
        known.recent.clear();
    }
    known.recent.push_back(batch);
    while (known.recent.size() > batches_kept) known.recent.pop_front();
    SPATE_ASSERT(known.recent.size() <= batches_kept, "producer keeps at most five batches");
}

}  // namespace spate::broker
