#pragma once
// Small vocabulary types of the Kafka wire format shared by the codec and its users.

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace spate::proto {

// A 128-bit UUID as Kafka sends it (topic ids): 16 bytes, big-endian halves.
struct uuid {
    std::array<uint8_t, 16> bytes{};
    bool operator==(const uuid&) const = default;
    bool is_zero() const {
        for (uint8_t b : bytes)
            if (b != 0) return false;
        return true;
    }
};

// The `records` field of Produce/Fetch. Either inline bytes (a decoded request
// points into its receive buffer; a built batch points into its own buffer) or
// `external_length` bytes that the sender will supply from elsewhere (a log
// segment moved with splice/sendfile) at the place this field is encoded: the
// writer leaves a gap marker instead of copying. `is_null` encodes Kafka's null.
struct records {
    std::span<const uint8_t> bytes;
    int32_t external_length = -1;  // >= 0: external bytes, `bytes` ignored
    uint32_t external_id = 0;      // the sender's handle for the external bytes
    bool is_null = false;

    int64_t size() const {
        return external_length >= 0 ? external_length : static_cast<int64_t>(bytes.size());
    }
};

}  // namespace spate::proto
