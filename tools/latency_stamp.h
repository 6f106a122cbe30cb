#pragma once
// The send-time stamp that `perf produce --stamp` writes into each record and
// `perf consume --latency` reads back, so that end-to-end latency (handed to the producer
// → handed to the consuming application) can be measured across processes, as the
// OpenMessaging Benchmark does.
//
// Format: bytes 0..7 of a record's value are the time the record was handed to the
// producer, CLOCK_REALTIME in nanoseconds since the Unix epoch, as a little-endian
// uint64. The bytes after them are the payload as it would be without --stamp.
// CLOCK_REALTIME because both ends must read the same clock from different processes;
// on one machine it is one clock, across machines it is as good as their time sync.
//
// Header-only and allocation-free: the producer stamps 100k+ records/s and the consumer
// reads as many, one clock read per record each.

#include <time.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>

#include "proto/assert.h"
#include "tools/histogram.h"

namespace spate::tools {

constexpr size_t latency_stamp_bytes = 8;
// How far in the future a stamp may lie and still be taken for a send time: both ends
// read one clock, so only a clock step (NTP) can put a real stamp ahead of the reader.
// Anything further ahead is not a stamp (for instance an unstamped payload's letters).
constexpr uint64_t latency_stamp_future_ns_max = 1'000'000'000;

// The wall clock in nanoseconds since the Unix epoch.
inline uint64_t realtime_ns() {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(now.tv_nsec);
}

// Writes `stamp_ns` into the first latency_stamp_bytes of `value`.
inline void write_latency_stamp(std::span<uint8_t> value, uint64_t stamp_ns) {
    SPATE_ASSERT(value.size() >= latency_stamp_bytes, "a stamped value holds the whole stamp");
    for (size_t i = 0; i < latency_stamp_bytes; ++i)
        value[i] = static_cast<uint8_t>(stamp_ns >> (8 * i));
}

// The stamp of a value, or nullopt when the value is too short to hold one.
inline std::optional<uint64_t> read_latency_stamp(std::span<const uint8_t> value) {
    if (value.size() < latency_stamp_bytes) return std::nullopt;
    uint64_t stamp_ns = 0;
    for (size_t i = 0; i < latency_stamp_bytes; ++i)
        stamp_ns |= static_cast<uint64_t>(value[i]) << (8 * i);
    return stamp_ns;
}

// The end-to-end latency in microseconds of a record stamped at `stamp_ns` and read at
// `now_ns`, or nullopt when the stamp cannot be a send time: 0 (never stamped) or more
// than latency_stamp_future_ns_max ahead of now. A stamp ahead by less is a clock step
// and counts as no latency at all.
inline std::optional<uint64_t> end_to_end_micros(uint64_t stamp_ns, uint64_t now_ns) {
    if (stamp_ns == 0) return std::nullopt;
    if (stamp_ns > now_ns) {
        if (stamp_ns - now_ns > latency_stamp_future_ns_max) return std::nullopt;
        return 0;
    }
    return (now_ns - stamp_ns) / 1000;
}

// End-to-end latencies of one consumer thread: the stamped records' latencies and the
// count of records read without a usable stamp. Owned by that thread; merged into one
// by the command after the threads are joined.
struct end_to_end_latency {
    latency_histogram micros;
    uint64_t unstamped = 0;

    // Records the latency of a record whose value is `value` (nullopt: a null value),
    // read at `now_ns`.
    void record(std::optional<std::span<const uint8_t>> value, uint64_t now_ns) {
        const auto stamp_ns = value ? read_latency_stamp(*value) : std::nullopt;
        const auto latency = stamp_ns ? end_to_end_micros(*stamp_ns, now_ns) : std::nullopt;
        if (latency)
            micros.record(*latency);
        else
            ++unstamped;
    }

    void merge(const end_to_end_latency& other) {
        micros.merge(other.micros);
        unstamped += other.unstamped;
    }
};

// "end-to-end latency: N records, avg X µs, 50th Y µs, 99th Y µs, 99.9th Y µs, max Y µs"
// and, when some records carried no stamp, "unstamped records: N"; each line ends in '\n'.
inline std::string format_end_to_end_latency(const end_to_end_latency& latency) {
    char text[256];
    const auto& micros = latency.micros;
    std::snprintf(text, sizeof text,
                  "end-to-end latency: %llu records, avg %.1f µs, 50th %llu µs, 99th %llu µs, "
                  "99.9th %llu µs, max %llu µs\n",
                  static_cast<unsigned long long>(micros.count()), micros.mean(),
                  static_cast<unsigned long long>(micros.percentile(50)),
                  static_cast<unsigned long long>(micros.percentile(99)),
                  static_cast<unsigned long long>(micros.percentile(99.9)),
                  static_cast<unsigned long long>(micros.max()));
    std::string out = text;
    if (latency.unstamped > 0)
        out += "unstamped records: " + std::to_string(latency.unstamped) + "\n";
    return out;
}

}  // namespace spate::tools
