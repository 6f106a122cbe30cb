#pragma once
// Where a consumer's next Fetch starts, read from one partition's records of a Fetch
// response by their batch headers alone. spatectl's consumers use it to send the next
// Fetch as soon as a response arrives, before they decode its records, so the broker
// prepares the next answer while this one is handed out. A free function over
// caller-owned bytes; any thread may call it.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>

#include "proto/record_batch.h"
#include "proto/result.h"

namespace spate::tools {

// The offset to fetch from after `records`, the records field of one partition in the
// answer to a fetch at `fetch_offset`:
// * one past the last offset of the last whole batch: the broker sends whole batches in
//   offset order;
// * never below fetch_offset: the first batch may begin below it (it holds the wanted
//   offset), and an answer with no whole batch brings nothing new;
// * when the bytes end in a partial batch (the broker cut it at the partition's max
//   bytes) whose header is whole, at least that batch's base offset: the next fetch
//   begins with that batch, even after a gap that compaction left.
// Headers that cannot be v2 batches, or whose offsets do not fit an int64, are errors:
// the records cannot be decoded either, and the caller reports that instead of fetching
// on.
inline result<int64_t> next_fetch_offset(std::span<const uint8_t> records, int64_t fetch_offset) {
    int64_t next = fetch_offset;
    bool overflow = false;
    auto split = proto::for_each_batch(
        records, [&](std::span<const uint8_t>, const proto::batch_header& header) {
            // last_offset() + 1 must not overflow on a peer's arbitrary numbers.
            if (header.base_offset < 0 || header.last_offset_delta < 0 ||
                header.base_offset >
                    std::numeric_limits<int64_t>::max() - 1 - header.last_offset_delta) {
                overflow = true;
                return false;
            }
            next = std::max(next, header.last_offset() + 1);
            return true;
        });
    if (!split) return split.failure();
    if (overflow) return error{1, "record batch offsets out of range"};
    const auto tail = records.subspan(split->consumed_bytes);
    if (tail.size() >= proto::batch_header_size) {
        // for_each_batch stopped here only because the batch is longer than the bytes
        // left; it has checked the header's magic and length already.
        auto header = proto::read_batch_header(tail);
        if (header) next = std::max(next, header->base_offset);
    }
    return next;
}

}  // namespace spate::tools
