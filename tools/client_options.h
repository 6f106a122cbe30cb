#pragma once
// Producer-side settings shared by `produce` and `perf produce`, parsed from flags (and
// their -X spellings, e.g. -X acks=all), plus Kafka's default partitioner hash.
// Stateless free functions; any thread may call them.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/compression.h"
#include "proto/result.h"
#include "tools/args.h"

namespace spate::tools {

// "all" / "-1" -> -1, "0" -> 0, "1" -> 1; anything else is a usage error.
result<int16_t> parse_acks(std::string_view text);
// Kafka's compression.type names: none, gzip, snappy, lz4, zstd.
result<proto::compression_codec> parse_compression(std::string_view text);

struct producer_settings {
    int16_t acks = 1;
    proto::compression_codec codec = proto::compression_codec::none;
    int32_t batch_bytes = 16384;  // batch.size
    int32_t linger_ms = 0;        // linger.ms
    int32_t max_in_flight = 5;    // max.in.flight.requests.per.connection
    // max.request.size: a Produce request carries batches up to this many bytes (one
    // batch always goes, whatever its size), as the Java client's requests do; a broker
    // refuses larger frames (Kafka's socket.request.max.bytes closes the connection).
    int32_t max_request_bytes = 1 << 20;
};

// Reads --acks, --compression, --batch-size, --linger-ms and --max-in-flight (those the
// command declares), falling back to -X acks=…, compression.type=…, batch.size=…,
// linger.ms=…, max.in.flight.requests.per.connection=…; and -X max.request.size=….
result<producer_settings> parse_producer_settings(const command_line& line, int16_t default_acks);

// One record header given on the command line; a header without ':' has a null value.
struct header_setting {
    std::string key;
    std::optional<std::string> value;
    bool operator==(const header_setting&) const = default;
};

// `produce --headers "k1:v1,k2:v2"`: headers split at ',' and each at its first ':'
// (so values may contain ':'). An empty entry or an empty key is a usage error.
result<std::vector<header_setting>> parse_header_settings(std::string_view text);

// Kafka's murmur2 (the Java client's default partitioner hash), made positive as the
// partitioner does before taking it modulo the partition count.
uint32_t kafka_key_hash(std::span<const uint8_t> key);

}  // namespace spate::tools
