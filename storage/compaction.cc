#include "storage/compaction.h"

#include <cerrno>
#include <cstring>

#include "proto/assert.h"
#include "proto/compression.h"
#include "proto/record_batch.h"
#include "storage/file.h"

namespace spate::storage {

namespace {

// The two halves of key_hash: the same word-at-a-time multiply-xorshift walk with two
// different seeds and multipliers, each finished by the splitmix64 finaliser, so the
// halves are independent enough that a pair of keys colliding in both is as unlikely
// as a 128-bit collision.
uint64_t finalize(uint64_t h) {
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

uint64_t hash_words(std::span<const uint8_t> bytes, uint64_t seed, uint64_t multiplier) {
    uint64_t h = seed ^ (bytes.size() * multiplier);
    size_t at = 0;
    for (; at + 8 <= bytes.size(); at += 8) {
        uint64_t word = 0;
        std::memcpy(&word, bytes.data() + at, 8);
        h = (h ^ finalize(word + seed)) * multiplier;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    for (size_t i = 0; at + i < bytes.size(); ++i) tail |= uint64_t{bytes[at + i]} << (8 * i);
    h = (h ^ finalize(tail + seed + bytes.size())) * multiplier;
    return finalize(h);
}

// The map starts with this many slots and doubles while it has fewer than its cap.
constexpr size_t map_slots_initial = 64;

// Reads a zig-zag LEB128 varint of at most `bytes_max` bytes (5 for int32, 10 for
// int64) at `at`; false when the section ends first or the varint is too long.
bool read_varint(std::span<const uint8_t> in, size_t& at, size_t bytes_max, int64_t& out) {
    uint64_t raw = 0;
    for (size_t i = 0; i < bytes_max; ++i) {
        if (at >= in.size()) return false;
        const uint8_t byte = in[at++];
        raw |= uint64_t{byte & 0x7fu} << (7 * i);
        if ((byte & 0x80u) == 0) {
            out = static_cast<int64_t>(raw >> 1) ^ -static_cast<int64_t>(raw & 1);
            return true;
        }
    }
    return false;
}

constexpr size_t varint32_bytes_max = 5;
constexpr size_t varint64_bytes_max = 10;

}  // namespace

key_hash hash_key(std::span<const uint8_t> key) {
    return {hash_words(key, 0x9e3779b97f4a7c15ULL, 0xff51afd7ed558ccdULL),
            hash_words(key, 0xc2b2ae3d27d4eb4fULL, 0x87c37b91114253d5ULL)};
}

key_offset_map::key_offset_map(size_t entries_max)
    : _entries_max(std::max<size_t>(entries_max, 1)) {
    _slots.assign(map_slots_initial, slot{{0, 0}, -1});
}

size_t key_offset_map::find_slot(const key_hash& key) const {
    const size_t mask = _slots.size() - 1;
    size_t at = static_cast<size_t>(key.first) & mask;
    while (_slots[at].offset >= 0 && !(_slots[at].key == key)) at = (at + 1) & mask;
    return at;
}

void key_offset_map::grow() {
    std::vector<slot> old;
    old.swap(_slots);
    _slots.assign(old.size() * 2, slot{{0, 0}, -1});
    for (const slot& s : old)
        if (s.offset >= 0) _slots[find_slot(s.key)] = s;
}

bool key_offset_map::put(const key_hash& key, int64_t offset) {
    SPATE_ASSERT(offset >= 0, "offsets in the key map are never negative");
    size_t at = find_slot(key);
    if (_slots[at].offset >= 0) {
        _slots[at].offset = offset;
        return true;
    }
    if (_size >= _entries_max) return false;
    // At most half full, so probe runs stay short and an empty slot always exists.
    if ((_size + 1) * 2 > _slots.size()) {
        grow();
        at = find_slot(key);
    }
    _slots[at] = slot{key, offset};
    ++_size;
    return true;
}

std::optional<int64_t> key_offset_map::get(const key_hash& key) const {
    const slot& s = _slots[find_slot(key)];
    if (s.offset < 0) return std::nullopt;
    return s.offset;
}

namespace compaction_detail {

bool is_control_batch(std::span<const uint8_t> batch) {
    auto header = proto::read_batch_header(batch);
    return header && header->is_control();
}

int64_t batch_base_offset(std::span<const uint8_t> batch) {
    return static_cast<int64_t>(load_be64(batch.data() + proto::batch_base_offset_offset));
}

int32_t batch_records_count(std::span<const uint8_t> batch) {
    return static_cast<int32_t>(load_be32(batch.data() + proto::batch_records_count_offset));
}

result<std::span<const uint8_t>> records_section(std::span<const uint8_t> batch,
                                                 std::vector<uint8_t>& scratch) {
    return proto::batch_records(batch, compaction_decompressed_bytes_max, scratch);
}

result<std::vector<record_extent>> split_records(std::span<const uint8_t> section,
                                                 int32_t records_count) {
    // Every record takes at least 7 bytes, which bounds the vector by the section size
    // whatever records_count claims.
    constexpr size_t record_size_min = 7;
    if (records_count < 0 ||
        static_cast<size_t>(records_count) > section.size() / record_size_min + 1)
        return error{EINVAL, "record count larger than the records section"};
    std::vector<record_extent> records;
    records.reserve(static_cast<size_t>(records_count));
    size_t at = 0;
    for (int32_t i = 0; i < records_count; ++i) {
        const size_t start = at;
        int64_t length = 0;
        if (!read_varint(section, at, varint32_bytes_max, length) || length < 0 ||
            static_cast<uint64_t>(length) > section.size() - at)
            return error{EINVAL, "malformed record length"};
        const size_t end = at + static_cast<size_t>(length);
        const std::span<const uint8_t> body = section.first(end);
        size_t cursor = at;
        int64_t ignored = 0;
        int64_t offset_delta = 0;
        int64_t key_length = 0;
        if (cursor >= end) return error{EINVAL, "record without attributes"};
        ++cursor;                                                            // attributes
        if (!read_varint(body, cursor, varint64_bytes_max, ignored) ||       // timestamp delta
            !read_varint(body, cursor, varint32_bytes_max, offset_delta) ||  // offset delta
            !read_varint(body, cursor, varint32_bytes_max, key_length) || key_length < -1 ||
            (key_length > 0 && static_cast<uint64_t>(key_length) > end - cursor))
            return error{EINVAL, "malformed record"};
        std::optional<std::span<const uint8_t>> key;
        if (key_length >= 0) {
            key = body.subspan(cursor, static_cast<size_t>(key_length));
            cursor += static_cast<size_t>(key_length);
        }
        int64_t value_length = 0;
        if (!read_varint(body, cursor, varint32_bytes_max, value_length) || value_length < -1)
            return error{EINVAL, "malformed record value"};
        if (offset_delta < 0) return error{EINVAL, "negative offset delta"};
        records.push_back({start, end - start, offset_delta, key, value_length == -1});
        at = end;
    }
    if (at != section.size()) return error{EINVAL, "bytes after the last record"};
    return records;
}

}  // namespace compaction_detail

result<cleaned_batch> clean_batch(std::span<const uint8_t> batch, const key_offset_map& map,
                                  const clean_rules& rules) {
    using namespace compaction_detail;
    cleaned_batch out;
    auto header = proto::read_batch_header(batch);
    if (!header) return header.failure();
    if (header->is_control()) return out;
    std::vector<uint8_t> scratch;
    auto section = records_section(batch, scratch);
    if (!section) return out;  // Undecodable: kept whole, see compaction_decompressed_bytes_max.
    auto records = split_records(*section, header->records_count);
    if (!records) return out;

    // A tombstone may go once its batch is older than delete.retention.ms; until then
    // it must stay so that consumers catching up see the delete.
    const int64_t tombstone_due_ms = header->max_timestamp > INT64_MAX - rules.delete_retention_ms
                                         ? INT64_MAX
                                         : header->max_timestamp + rules.delete_retention_ms;
    std::vector<uint8_t> kept;
    int32_t kept_count = 0;
    for (const record_extent& record : *records) {
        bool keep = true;
        if (record.key) {
            const int64_t offset = proto::record_offset(header->base_offset, record.offset_delta);
            const std::optional<int64_t> latest = map.get(hash_key(*record.key));
            if (latest && *latest > offset) {
                keep = false;
            } else if (record.null_value) {
                if (rules.now_ms >= tombstone_due_ms)
                    keep = false;
                else
                    out.tombstone_due_ms = std::min(out.tombstone_due_ms, tombstone_due_ms);
            }
        }
        if (keep) {
            kept.insert(
                kept.end(), section->begin() + static_cast<std::ptrdiff_t>(record.position),
                section->begin() + static_cast<std::ptrdiff_t>(record.position + record.size));
            ++kept_count;
        } else {
            ++out.records_removed;
        }
    }
    if (out.records_removed == 0) return out;
    if (kept_count == 0) {
        out.result = cleaned_batch::outcome::dropped;
        return out;
    }
    std::vector<uint8_t> compressed;
    std::span<const uint8_t> new_section = kept;
    if (header->codec() != proto::compression_codec::none) {
        auto packed = proto::compress(header->codec(), kept);
        if (!packed) return packed.failure();
        compressed = std::move(packed).value();
        new_section = compressed;
    }
    if (new_section.size() > static_cast<size_t>(INT32_MAX) - proto::batch_header_size)
        return error{EFBIG, "rewritten batch too large"};
    out.bytes.resize(proto::batch_header_size + new_section.size());
    std::memcpy(out.bytes.data(), batch.data(), proto::batch_header_size);
    std::memcpy(out.bytes.data() + proto::batch_header_size, new_section.data(),
                new_section.size());
    store_be32(out.bytes.data() + proto::batch_length_offset,
               static_cast<uint32_t>(out.bytes.size() - proto::batch_log_overhead));
    store_be32(out.bytes.data() + proto::batch_records_count_offset,
               static_cast<uint32_t>(kept_count));
    proto::update_batch_crc(out.bytes);
    out.result = cleaned_batch::outcome::rewritten;
    return out;
}

}  // namespace spate::storage
