// libFuzzer target for message formats v0/v1 (proto/legacy_records.h): the Produce
// v0-v2 up-conversion of whatever a peer sends, and the down-conversion of batches
// (which reads stored batches, so it must survive any bytes too). Built and run by
// tests/fuzz/run.sh; seeds in legacy_records_corpus/.
//
// CRCs make random mutations fail early, so the first input byte chooses whether the
// up-conversion input gets its CRCs fixed first (reaching the field and wrapper code).
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "proto/legacy_records.h"

namespace {

using namespace spate::proto;

constexpr size_t bytes_max = 256 * 1024;

// Rewrites each top-level entry's CRC to match its bytes.
void fix_crcs(std::vector<uint8_t>& set) {
    size_t at = 0;
    while (set.size() - at >= 16) {
        const uint32_t size = (uint32_t{set[at + 8]} << 24) | (uint32_t{set[at + 9]} << 16) |
                              (uint32_t{set[at + 10]} << 8) | set[at + 11];
        if (size < 4 || size > set.size() - at - 12) return;
        const uLong crc = ::crc32(0L, set.data() + at + 16, static_cast<uInt>(size - 4));
        for (int i = 0; i < 4; ++i) set[at + 12 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
        at += 12 + size;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    std::vector<uint8_t> input(data + 1, data + size);
    if (mode & 1) fix_crcs(input);
    size_t sum = 0;
    auto walked = for_each_legacy_message(input, bytes_max, [&](const legacy_message& m) {
        if (m.key)
            for (uint8_t b : *m.key) sum += b;
        if (m.value)
            for (uint8_t b : *m.value) sum += b;
    });
    (void)walked;
    auto up = upconvert_message_set(input, bytes_max);
    if (up) {
        // A converted set must convert back without error.
        auto back = downconvert_batches(*up, static_cast<int8_t>(mode & 2 ? 1 : 0), bytes_max);
        if (!back) __builtin_trap();
    }
    auto down = downconvert_batches(input, static_cast<int8_t>((mode >> 1) & 1), bytes_max);
    if (down) sum += down->size();
    return static_cast<int>(sum & 0);
}
