// libFuzzer target for everything in proto/ that reads record batches a peer
// sent: batch splitting, header validation, record decoding and the
// decompressors. Built and run by tests/fuzz/run.sh; seeds in batch_corpus/.
//
// Record decoding runs on every whole batch whether or not its CRC matches:
// random mutations almost never keep a CRC valid, and the record decoder must be
// safe on any bytes anyway (it is reached only after validation in the broker,
// but a stored segment can rot on disk).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "proto/compression.h"
#include "proto/record_batch.h"

namespace {

using namespace spate::proto;

// Small enough to keep each input fast under ASan, large enough for real batches.
constexpr size_t decompressed_bytes_max = 256 * 1024;
constexpr size_t max_batch_bytes = 1 << 20;

// Touches every view a decoded record hands out so that ASan sees any read
// beyond the input.
size_t sum_record(const record_view& record) {
    size_t sum =
        static_cast<size_t>(record.offset_delta) + static_cast<size_t>(record.timestamp_delta);
    auto touch = [&sum](std::span<const uint8_t> bytes) {
        for (uint8_t b : bytes) sum += b;
    };
    if (record.key) touch(*record.key);
    if (record.value) touch(*record.value);
    for (const auto& header : record.headers) {
        for (char c : header.key) sum += static_cast<uint8_t>(c);
        if (header.value) touch(*header.value);
    }
    return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const uint8_t> input(data, size);
    volatile size_t sink = 0;

    // One scratch for the whole input, reused as a shard reuses its own.
    std::vector<uint8_t> scratch;
    for (auto source : {batch_source::client, batch_source::log}) {
        const batch_check check = validate_batch(input, max_batch_bytes, source);
        if (check.error == batch_error::none)
            sink = sink + static_cast<size_t>(check.header.last_offset());
    }
    // The produce path's record checks, on any header whatever its CRC says (see
    // above): the bound is the decompressed cap plus the header.
    if (auto header = read_batch_header(input)) {
        const auto records =
            validate_records(input, *header, decompressed_bytes_max + batch_header_size, scratch);
        sink = sink + static_cast<size_t>(records.error);
    }

    auto split = for_each_batch(input, [&](std::span<const uint8_t> batch, const batch_header&) {
        auto walked =
            for_each_record(batch, decompressed_bytes_max,
                            [&](const record_view& record) { sink = sink + sum_record(record); });
        sink = sink + (walked.ok() ? 1 : 0);
    });
    if (split.ok()) sink = sink + split->consumed_bytes;

    // The first byte picks a codec (including invalid values), the rest is input.
    if (!input.empty()) {
        const auto codec = static_cast<compression_codec>(input[0] % 6);
        auto output = decompress(codec, input.subspan(1), decompressed_bytes_max);
        if (output.ok()) sink = sink + output->size();
        // The same input into the reused scratch must agree with the fresh vector.
        auto reused = decompress_into(codec, input.subspan(1), decompressed_bytes_max, scratch);
        if (reused.ok() != output.ok()) __builtin_trap();
        if (reused.ok() && (reused->size() != output->size() ||
                            !std::equal(reused->begin(), reused->end(), output->begin())))
            __builtin_trap();
    }
    return 0;
}
