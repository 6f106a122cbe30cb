#pragma once
// The pieces of log compaction (cleanup.policy=compact) that do not depend on a log:
// the bounded key -> latest offset map and the rewriting of one record batch.
//
// A compaction run of a partition_log (storage/log.h) has two phases, both chunked
// so that no single call blocks the owner shard for long:
//   1. mapping: every batch of the log, oldest first up to the log end seen when the
//      run started, is read and each keyed record's key is entered in a key_offset_map
//      with its offset, so the map ends up holding the latest offset of every key;
//   2. cleaning: each closed segment in the cleanable range is copied into a new file
//      through clean_batch, which keeps a record unless the map knows a newer record
//      with the same key, or it is a tombstone older than delete.retention.ms.
// Dropping a record only ever needs a NEWER record of the same key, so a map that
// covers only a prefix of the log (its entry cap was hit) is still safe to clean with;
// the run then cleans only segments wholly inside the covered prefix.
//
// Rewritten batches keep base_offset, last_offset_delta, the timestamps, the producer
// fields and the attributes (codec included) of the original; only records_count, the
// records section (recompressed with the batch's own codec), batch_length and the CRC
// change. Each kept record keeps its bytes, hence its offset delta and offset, so a
// compacted log has offset gaps only where whole batches vanished and inside batches
// (records_count < last_offset_delta + 1), which is what Kafka's cleaner produces and
// what validate_batch accepts for batches read back from a log.
//
// Free functions and a caller-owned map: any thread may use them on its own objects.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "proto/result.h"

namespace spate::storage {

// A 128-bit digest of a record key made of two independent 64-bit hashes. Two keys
// share it with probability about 2^-128 per pair: negligible against disk errors,
// and it keeps each map entry a fixed 24 bytes whatever the key length.
struct key_hash {
    uint64_t first;
    uint64_t second;
    bool operator==(const key_hash&) const = default;
};

key_hash hash_key(std::span<const uint8_t> key);

// Open-addressing hash table from key_hash to the latest offset seen for it. It grows
// by doubling from a small start up to `entries_max` entries (a load factor of at
// most 1/2, so its memory is at most 2 * entries_max rounded up to a power of two
// slots of 24 bytes), which keeps a partition with few keys cheap and bounds the
// largest. Owned by one compaction run.
class key_offset_map {
public:
    explicit key_offset_map(size_t entries_max);

    // Records `offset` as the latest offset of `key`. False (and nothing changed) when
    // the key is new and the map already holds entries_max keys.
    bool put(const key_hash& key, int64_t offset);
    // The latest offset recorded for `key`.
    std::optional<int64_t> get(const key_hash& key) const;

    size_t size() const { return _size; }
    size_t entries_max() const { return _entries_max; }
    size_t memory_bytes() const { return _slots.capacity() * sizeof(slot); }

private:
    struct slot {
        key_hash key;
        int64_t offset;  // -1: empty slot
    };
    size_t find_slot(const key_hash& key) const;
    void grow();

    std::vector<slot> _slots;
    size_t _size = 0;
    size_t _entries_max;
};

// Decompressing one batch during compaction is bounded by this many bytes; a batch
// whose records expand beyond it (or do not decode) is kept as it is and its keys are
// not mapped, which only means that nothing is dropped because of it.
constexpr size_t compaction_decompressed_bytes_max = 128 << 20;

// Calls `fn(const key_hash&, int64_t offset)` for each keyed record of the validated
// batch, in offset order. Control batches (transaction markers) are skipped: their
// keys are not record keys. Errors when the records cannot be decoded.
template <class Fn>
result<void> for_each_keyed_record(std::span<const uint8_t> batch, Fn&& fn);

// What clean_batch decided.
struct cleaned_batch {
    enum class outcome : uint8_t { unchanged, rewritten, dropped };
    outcome result = outcome::unchanged;
    std::vector<uint8_t> bytes;  // the rewritten batch when result == rewritten
    int64_t records_removed = 0;
    // The earliest time (ms) at which a tombstone kept by this call may be removed,
    // or INT64_MAX when none was kept.
    int64_t tombstone_due_ms = INT64_MAX;
};

struct clean_rules {
    int64_t now_ms;
    int64_t delete_retention_ms;  // tombstones live this long past their batch's max timestamp
};

// Rewrites one validated batch without the records the map supersedes and without
// tombstones past their retention. Keyless records are kept. Control batches and
// batches whose records cannot be decoded are returned unchanged.
result<cleaned_batch> clean_batch(std::span<const uint8_t> batch, const key_offset_map& map,
                                  const clean_rules& rules);

// ---- internals shared with the template below ----

namespace compaction_detail {

// The raw extent of one record inside an uncompressed records section and the fields
// compaction needs from it.
struct record_extent {
    size_t position;  // first byte of the record's length varint
    size_t size;      // bytes of the length varint and the record
    int64_t offset_delta;
    std::optional<std::span<const uint8_t>> key;
    bool null_value;
};

// The records section of a batch, decompressed into `scratch` when needed (capped at
// compaction_decompressed_bytes_max).
result<std::span<const uint8_t>> records_section(std::span<const uint8_t> batch,
                                                 std::vector<uint8_t>& scratch);
// Splits an uncompressed records section holding `records_count` records into their
// extents; EINVAL when it is malformed or has bytes left over.
result<std::vector<record_extent>> split_records(std::span<const uint8_t> section,
                                                 int32_t records_count);
bool is_control_batch(std::span<const uint8_t> batch);
int64_t batch_base_offset(std::span<const uint8_t> batch);
int32_t batch_records_count(std::span<const uint8_t> batch);

}  // namespace compaction_detail

template <class Fn>
result<void> for_each_keyed_record(std::span<const uint8_t> batch, Fn&& fn) {
    if (compaction_detail::is_control_batch(batch)) return ok_result();
    std::vector<uint8_t> scratch;
    auto section = compaction_detail::records_section(batch, scratch);
    if (!section) return section.failure();
    auto records =
        compaction_detail::split_records(*section, compaction_detail::batch_records_count(batch));
    if (!records) return records.failure();
    const int64_t base = compaction_detail::batch_base_offset(batch);
    for (const auto& record : *records)
        if (record.key) fn(hash_key(*record.key), base + record.offset_delta);
    return ok_result();
}

}  // namespace spate::storage
