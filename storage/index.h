#pragma once
// The sparse indexes of one segment, kept in memory and saved next to the log.
//
// Both files use Kafka's layout byte for byte (so Kafka's DumpLogSegments can read
// them) and therefore carry no header of their own: they are derived data, checked
// for sanity when loaded and rebuilt from the .log file whenever they fail a check.
//
// <20-digit base offset>.index — offset index, 8-byte entries, big-endian:
//   offset  size  field
//   0       4     relative offset (int32): last offset of the indexed batch − base offset
//   4       4     position (int32): byte position of that batch in the .log file
// Entries are strictly increasing in both fields. One entry is added for the first batch
// after at least index_interval_bytes of log were written since the previous entry,
// so a lookup reads at most about index_interval_bytes (plus one batch) of headers.
//
// <20-digit base offset>.timeindex — time index, 12-byte entries, big-endian:
//   offset  size  field
//   0       8     timestamp (int64): largest batch max_timestamp seen so far
//   8       4     relative offset (int32): last offset of the batch that carried it
// Entries are strictly increasing in timestamp and non-decreasing in relative offset.
// An entry is added with each offset-index entry when the largest timestamp grew, and
// once more when the segment is closed, so the last entry of a closed segment is its
// largest timestamp (what time-based retention looks at).
//
// Owned by one segment, on the partition's owner shard; not thread-safe.

#include <cstdint>
#include <filesystem>
#include <vector>

#include "proto/result.h"

namespace spate::storage {

constexpr size_t offset_index_entry_size = 8;
constexpr size_t time_index_entry_size = 12;

struct offset_index_entry {
    int32_t relative_offset;
    int32_t position;
};

struct time_index_entry {
    int64_t timestamp;
    int32_t relative_offset;
};

class offset_index {
public:
    void append(int32_t relative_offset, int32_t position);
    // The position of the last entry whose relative offset is <= `relative_offset`,
    // or 0: where a forward scan for that offset may start.
    int32_t position_floor(int32_t relative_offset) const;
    // The largest entry position that is <= `position_limit`, or 0.
    int32_t position_at_or_below(int64_t position_limit) const;
    // The same among the entries whose relative offset is < `relative_offset_end`: every
    // batch before that position ends below the offset (a read bounded by an offset).
    int32_t position_at_or_below(int64_t position_limit, int64_t relative_offset_end) const;
    // Drops the entries whose position is >= `position` (after a truncation).
    void truncate_to_position(int64_t position);

    // Serialised size and bytes in the file layout above.
    std::vector<uint8_t> serialize() const;
    // Parses a file image; false when it fails a sanity check against `segment_size`.
    bool parse(const std::vector<uint8_t>& bytes, int64_t segment_size);

    size_t entry_count() const { return _entries.size(); }
    const std::vector<offset_index_entry>& entries() const { return _entries; }
    size_t memory_bytes() const { return _entries.capacity() * sizeof(offset_index_entry); }
    void clear_and_release() { std::vector<offset_index_entry>().swap(_entries); }

private:
    std::vector<offset_index_entry> _entries;
};

class time_index {
public:
    // Adds an entry when `timestamp` is larger than the last one.
    void maybe_append(int64_t timestamp, int32_t relative_offset);
    // The relative offset of the last entry whose timestamp is < `timestamp`, or -1:
    // every batch up to and including that offset has a smaller timestamp.
    int32_t offset_before(int64_t timestamp) const;
    // Drops the entries whose relative offset is >= `relative_offset`.
    void truncate_to_offset(int32_t relative_offset);
    const time_index_entry* last() const { return _entries.empty() ? nullptr : &_entries.back(); }

    std::vector<uint8_t> serialize() const;
    bool parse(const std::vector<uint8_t>& bytes);

    size_t entry_count() const { return _entries.size(); }
    size_t memory_bytes() const { return _entries.capacity() * sizeof(time_index_entry); }
    void clear_and_release() { std::vector<time_index_entry>().swap(_entries); }

private:
    std::vector<time_index_entry> _entries;
};

}  // namespace spate::storage
