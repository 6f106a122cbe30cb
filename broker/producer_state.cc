#include "broker/producer_state.h"

#include <algorithm>

#include "proto/assert.h"
#include "proto/crc32c.h"
#include "proto/reader.h"
#include "proto/writer.h"

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

std::vector<producer_state::summary> producer_state::summaries() const {
    std::vector<summary> out;
    out.reserve(_producers.size());
    for (const auto& [id, known] : _producers) {
        summary s{id, known.epoch, -1, -1};
        if (!known.recent.empty()) {
            s.last_sequence = known.recent.back().last_sequence;
            s.last_timestamp_ms = known.recent.back().log_append_time_ms;
        }
        out.push_back(s);
    }
    std::sort(out.begin(), out.end(),
              [](const summary& a, const summary& b) { return a.producer_id < b.producer_id; });
    return out;
}

void producer_state::observe(const proto::batch_header& header) {
    if (header.producer_id < 0 || header.base_sequence < 0) return;
    const int32_t last = static_cast<int32_t>(
        (static_cast<int64_t>(header.base_sequence) + header.last_offset_delta) %
        (int64_t{INT32_MAX} + 1));
    const int64_t append_time = header.has_log_append_time() ? header.max_timestamp : -1;
    record(header.producer_id, header.producer_epoch,
           {header.base_sequence, last, header.base_offset, append_time});
}

namespace {
constexpr int32_t snapshot_magic = 0x53505053;
constexpr int32_t snapshot_version = 1;
}  // namespace

std::vector<uint8_t> producer_state::encode_snapshot(int64_t offset) const {
    proto::writer out(64 + _producers.size() * 128);
    out.int32(snapshot_magic);
    out.int32(snapshot_version);
    out.int64(offset);
    out.int32(static_cast<int32_t>(_producers.size()));
    for (const auto& [id, known] : _producers) {
        out.int64(id);
        out.int16(known.epoch);
        out.int8(static_cast<int8_t>(known.recent.size()));
        for (const producer_batch& batch : known.recent) {
            out.int32(batch.first_sequence);
            out.int32(batch.last_sequence);
            out.int64(batch.base_offset);
            out.int64(batch.log_append_time_ms);
        }
    }
    out.uint32(proto::crc32c(out.buffer()));
    return std::move(out.buffer());
}

result<int64_t> producer_state::load_snapshot(std::span<const uint8_t> bytes) {
    if (bytes.size() < 24) return error{EINVAL, "producer snapshot too short"};
    proto::reader trailer(bytes.subspan(bytes.size() - 4));
    if (trailer.uint32() != proto::crc32c(bytes.first(bytes.size() - 4)))
        return error{EINVAL, "producer snapshot CRC mismatch"};
    proto::reader in(bytes.first(bytes.size() - 4));
    if (in.int32() != snapshot_magic || in.int32() != snapshot_version)
        return error{EINVAL, "not a producer snapshot of format 1"};
    const int64_t offset = in.int64();
    const int32_t count = in.array_count(false, 11);
    std::unordered_map<int64_t, entry> loaded;
    for (int32_t i = 0; i < count && in.ok(); ++i) {
        const int64_t id = in.int64();
        entry& known = loaded[id];
        known.epoch = in.int16();
        const int8_t batches = in.int8();
        if (batches < 0 || static_cast<size_t>(batches) > batches_kept) {
            in.fail(proto::decode_error::bad_value);
            break;
        }
        for (int8_t b = 0; b < batches && in.ok(); ++b) {
            producer_batch batch{};
            batch.first_sequence = in.int32();
            batch.last_sequence = in.int32();
            batch.base_offset = in.int64();
            batch.log_append_time_ms = in.int64();
            known.recent.push_back(batch);
        }
    }
    if (!in.ok() || in.remaining() != 0) return error{EINVAL, "malformed producer snapshot"};
    _producers = std::move(loaded);
    return offset;
}

}  // namespace spate::broker
