#include "tools/client_options.h"

#include <charconv>
#include <optional>
#include <string>

namespace spate::tools {

namespace {

error usage(std::string message) { return error{usage_error_code, std::move(message)}; }

// The flag's value if given, else the -X setting's.
std::optional<std::string> flag_or_setting(const command_line& line, std::string_view flag,
                                           std::string_view setting) {
    if (auto value = line.value(flag)) return value;
    return line.setting(setting);
}

result<int32_t> bounded_int(const std::optional<std::string>& text, std::string_view name,
                            int32_t fallback, int32_t min, int32_t max) {
    if (!text) return fallback;
    int32_t number = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), number);
    if (text->empty() || ec != std::errc() || end != text->data() + text->size() || number < min ||
        number > max)
        return usage(std::string(name) + " must be an integer between " + std::to_string(min) +
                     " and " + std::to_string(max) + ", got \"" + *text + "\"");
    return number;
}

}  // namespace

result<int16_t> parse_acks(std::string_view text) {
    if (text == "all" || text == "-1") return static_cast<int16_t>(-1);
    if (text == "0") return static_cast<int16_t>(0);
    if (text == "1") return static_cast<int16_t>(1);
    return usage("acks must be all, -1, 0 or 1, got \"" + std::string(text) + "\"");
}

result<proto::compression_codec> parse_compression(std::string_view text) {
    using proto::compression_codec;
    if (text == "none") return compression_codec::none;
    if (text == "gzip") return compression_codec::gzip;
    if (text == "snappy") return compression_codec::snappy;
    if (text == "lz4") return compression_codec::lz4;
    if (text == "zstd") return compression_codec::zstd;
    return usage("compression must be none, gzip, snappy, lz4 or zstd, got \"" + std::string(text) +
                 "\"");
}

result<producer_settings> parse_producer_settings(const command_line& line, int16_t default_acks) {
    producer_settings settings;
    settings.acks = default_acks;
    if (auto text = flag_or_setting(line, "--acks", "acks")) {
        auto acks = parse_acks(*text);
        if (!acks) return acks.failure();
        settings.acks = acks.value();
    }
    if (auto text = flag_or_setting(line, "--compression", "compression.type")) {
        auto codec = parse_compression(*text);
        if (!codec) return codec.failure();
        settings.codec = codec.value();
    }
    auto batch = bounded_int(flag_or_setting(line, "--batch-size", "batch.size"), "batch size",
                             settings.batch_bytes, 1, 64 << 20);
    if (!batch) return batch.failure();
    settings.batch_bytes = batch.value();
    auto linger = bounded_int(flag_or_setting(line, "--linger-ms", "linger.ms"), "linger.ms",
                              settings.linger_ms, 0, 600000);
    if (!linger) return linger.failure();
    settings.linger_ms = linger.value();
    auto in_flight = bounded_int(
        flag_or_setting(line, "--max-in-flight", "max.in.flight.requests.per.connection"),
        "max in flight", settings.max_in_flight, 1, 1024);
    if (!in_flight) return in_flight.failure();
    settings.max_in_flight = in_flight.value();
    auto request = bounded_int(line.setting("max.request.size"), "max.request.size",
                               settings.max_request_bytes, 1, INT32_MAX);
    if (!request) return request.failure();
    settings.max_request_bytes = request.value();
    return settings;
}

result<std::vector<header_setting>> parse_header_settings(std::string_view text) {
    // The text comes from argv, which the kernel already bounds, so no count limit is
    // needed beyond what the string holds.
    std::vector<header_setting> out;
    for (;;) {
        const size_t comma = text.find(',');
        const std::string_view entry = text.substr(0, comma);
        const size_t colon = entry.find(':');
        const std::string_view key = entry.substr(0, colon);
        if (key.empty())
            return usage("--headers expects k1:v1,k2:v2 with non-empty keys, got \"" +
                         std::string(text) + "\"");
        header_setting header{std::string(key), std::nullopt};
        if (colon != std::string_view::npos) header.value = std::string(entry.substr(colon + 1));
        out.push_back(std::move(header));
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return out;
}

uint32_t kafka_key_hash(std::span<const uint8_t> key) {
    constexpr uint32_t seed = 0x9747b28c;
    constexpr uint32_t multiplier = 0x5bd1e995;
    constexpr int shift = 24;
    const size_t length = key.size();
    uint32_t hash = seed ^ static_cast<uint32_t>(length);
    const size_t words = length / 4;
    for (size_t i = 0; i < words; ++i) {
        const size_t at = i * 4;
        uint32_t k = uint32_t{key[at]} | (uint32_t{key[at + 1]} << 8) |
                     (uint32_t{key[at + 2]} << 16) | (uint32_t{key[at + 3]} << 24);
        k *= multiplier;
        k ^= k >> shift;
        k *= multiplier;
        hash *= multiplier;
        hash ^= k;
    }
    const size_t tail = words * 4;
    switch (length % 4) {
        case 3:
            hash ^= uint32_t{key[tail + 2]} << 16;
            [[fallthrough]];
        case 2:
            hash ^= uint32_t{key[tail + 1]} << 8;
            [[fallthrough]];
        case 1:
            hash ^= uint32_t{key[tail]};
            hash *= multiplier;
            break;
        default:
            break;
    }
    hash ^= hash >> 13;
    hash *= multiplier;
    hash ^= hash >> 15;
    return hash & 0x7fffffff;
}

}  // namespace spate::tools
