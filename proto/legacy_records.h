#pragma once
// Kafka's message formats v0 and v1 (magic 0 and 1, "message sets"), which clients older
// than Kafka 0.11 write and read: converted to record batch v2 on the way in (Produce
// v0-v2) and from it on the way out (Fetch v0-v3), as Kafka 3.x converts them.
//
// A message set is a sequence of entries:
//   int64 offset, int32 message_size, then message_size bytes:
//   uint32 crc (CRC-32, IEEE, of everything after it), int8 magic (0 or 1),
//   int8 attributes (bits 0-2 codec: 0 none, 1 gzip, 2 snappy, 3 lz4; bit 3, magic 1
//   only: LogAppendTime), int64 timestamp (magic 1 only), bytes key, bytes value
//   (int32 length, -1 for null).
// A compressed message (a "wrapper") holds in its value a whole inner message set,
// compressed; its inner messages are uncompressed. An incomplete entry at the end of
// a set is ignored (clients cut sets at a byte limit).
//
// Stateless free functions; any thread may call them.

#include <cerrno>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "proto/compression.h"
#include "proto/record_batch.h"
#include "proto/result.h"

namespace spate::proto {

// One message of a legacy set, with views into the set (or its decompressed copy).
struct legacy_message {
    int64_t offset = 0;
    int8_t magic = 0;
    int8_t attributes = 0;
    int64_t timestamp = -1;  // -1 for magic 0
    std::optional<std::span<const uint8_t>> key;
    std::optional<std::span<const uint8_t>> value;
};

// Converts a Produce v0-v2 message set into one record batch v2 (offsets from 0,
// timestamps kept, magic 0's as -1, the wrapper's codec kept), for the usual validation
// and append. Errors: EBADMSG for a CRC mismatch (CORRUPT_MESSAGE), EINVAL for
// malformed entries, a nested wrapper, an unknown codec or an empty set
// (INVALID_RECORD), EFBIG when the messages would exceed `bytes_max` (MESSAGE_TOO_LARGE).
result<std::vector<uint8_t>> upconvert_message_set(std::span<const uint8_t> set, size_t bytes_max);

// Converts record batches v2 (as read from the log, whole batches) into a message set
// of `magic` (0 for Fetch v0-v1, 1 for Fetch v2-v3): one uncompressed message per
// record, with its absolute offset and (magic 1) timestamp, control batches left out.
// Stops before the batch that would take the output past `bytes_max`, but always
// converts the first one. Errors: EINVAL for a batch that does not decode.
result<std::vector<uint8_t>> downconvert_batches(std::span<const uint8_t> batches, int8_t magic,
                                                 size_t bytes_max);

// Calls `fn(const legacy_message&)` for each message of a set, decompressing wrappers
// (inner messages reported with absolute offsets for magic 1). For tests and the fuzz
// target; upconvert_message_set uses it.
template <class Fn>
result<void> for_each_legacy_message(std::span<const uint8_t> set, size_t bytes_max, Fn&& fn);

// ---- implementation details ----

namespace legacy_detail {
// Parses the entry at the start of `in`; nullopt at an incomplete tail.
struct entry {
    legacy_message message;
    size_t size;  // bytes of the entry
};
result<std::optional<entry>> parse_entry(std::span<const uint8_t> in);
}  // namespace legacy_detail

template <class Fn>
result<void> for_each_legacy_message(std::span<const uint8_t> set, size_t bytes_max, Fn&& fn) {
    size_t at = 0;
    while (at < set.size()) {
        auto parsed = legacy_detail::parse_entry(set.subspan(at));
        if (!parsed) return parsed.failure();
        if (!*parsed) break;
        const legacy_detail::entry& outer = **parsed;
        at += outer.size;
        const auto codec = static_cast<compression_codec>(outer.message.attributes & 0x07);
        if (codec == compression_codec::none) {
            fn(outer.message);
            continue;
        }
        if (codec == compression_codec::zstd || !outer.message.value)
            return error{EINVAL, "a legacy wrapper message with zstd or no value"};
        auto inner = decompress(codec, *outer.message.value, bytes_max);
        if (!inner) return inner.failure();
        // Magic 1 inner offsets are relative: the wrapper's offset is the last inner one.
        // Both come from the peer: the arithmetic wraps, as Java's longs do.
        std::vector<legacy_message> messages;
        size_t inner_at = 0;
        while (inner_at < inner->size()) {
            auto entry =
                legacy_detail::parse_entry(std::span<const uint8_t>(*inner).subspan(inner_at));
            if (!entry) return entry.failure();
            if (!*entry) break;
            if (((*entry)->message.attributes & 0x07) != 0)
                return error{EINVAL, "a compressed legacy message inside a wrapper"};
            inner_at += (*entry)->size;
            messages.push_back((*entry)->message);
        }
        if (messages.empty()) return error{EINVAL, "an empty legacy wrapper message"};
        const int64_t shift = outer.message.magic >= 1
                                  ? wrapping_sub(outer.message.offset, messages.back().offset)
                                  : 0;
        for (legacy_message& m : messages) {
            m.offset = wrapping_add(m.offset, shift);
            if (outer.message.magic >= 1 && (outer.message.attributes & 0x08) != 0)
                m.timestamp = outer.message.timestamp;  // LogAppendTime of the wrapper
            fn(static_cast<const legacy_message&>(m));
        }
    }
    return ok_result();
}

}  // namespace spate::proto
