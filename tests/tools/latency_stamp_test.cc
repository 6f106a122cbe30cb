// The send-time stamp of perf produce --stamp and the end-to-end latency perf consume
// --latency derives from it: byte order, the unstamped cases and the output line.

#include "tools/latency_stamp.h"

#include <doctest/doctest.h>

#include <array>
#include <string>

using namespace spate::tools;

TEST_CASE("a stamp is the first 8 bytes of the value, little-endian, and reads back") {
    std::array<uint8_t, 12> value{};
    value.fill(0xee);
    write_latency_stamp(value, 0x0102030405060708u);
    const std::array<uint8_t, 12> expected = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03,
                                              0x02, 0x01, 0xee, 0xee, 0xee, 0xee};
    CHECK(value == expected);
    CHECK(read_latency_stamp(value) == 0x0102030405060708u);

    const uint64_t now = realtime_ns();
    write_latency_stamp(std::span<uint8_t>(value.data(), 8), now);
    CHECK(read_latency_stamp(std::span<const uint8_t>(value.data(), 8)) == now);
    // A value too short to hold a stamp has none.
    CHECK_FALSE(read_latency_stamp(std::span<const uint8_t>(value.data(), 7)).has_value());
}

TEST_CASE("end-to-end latency in microseconds; 0 and far-future stamps are unstamped") {
    const uint64_t now = 1'800'000'000'000'000'000u;
    CHECK(end_to_end_micros(now - 1'234'567, now) == 1234u);
    CHECK(end_to_end_micros(now, now) == 0u);
    // A little ahead is a clock step: no latency, but still a stamp.
    CHECK(end_to_end_micros(now + 1'000'000'000, now) == 0u);
    CHECK_FALSE(end_to_end_micros(now + 1'000'000'001, now).has_value());
    CHECK_FALSE(end_to_end_micros(0, now).has_value());
    // An unstamped perf produce payload starts with letters: decades ahead.
    const std::string letters = "QWERTYUI";
    const auto stamp =
        read_latency_stamp({reinterpret_cast<const uint8_t*>(letters.data()), letters.size()});
    REQUIRE(stamp.has_value());
    CHECK_FALSE(end_to_end_micros(*stamp, now).has_value());
}

TEST_CASE("records without a usable stamp are counted apart; threads merge") {
    const uint64_t now = 1'800'000'000'000'000'000u;
    std::array<uint8_t, 16> stamped{};
    write_latency_stamp(stamped, now - 250'000);
    const std::array<uint8_t, 4> short_value{1, 2, 3, 4};
    const std::array<uint8_t, 8> zero{};

    end_to_end_latency first;
    first.record(std::span<const uint8_t>(stamped), now);
    first.record(std::span<const uint8_t>(short_value), now);
    first.record(std::nullopt, now);
    end_to_end_latency second;
    second.record(std::span<const uint8_t>(stamped), now + 750'000);
    second.record(std::span<const uint8_t>(zero), now);
    first.merge(second);
    CHECK(first.micros.count() == 2);
    CHECK(first.micros.min() == 250);
    CHECK(first.micros.max() == 1000);
    CHECK(first.unstamped == 3);
    CHECK(format_end_to_end_latency(first) ==
          "end-to-end latency: 2 records, avg 625.0 µs, 50th 250 µs, 99th 1000 µs, "
          "99.9th 1000 µs, max 1000 µs\nunstamped records: 3\n");

    // Nothing unstamped: the latency line alone.
    end_to_end_latency clean;
    clean.record(std::span<const uint8_t>(stamped), now);
    CHECK(format_end_to_end_latency(clean) ==
          "end-to-end latency: 1 records, avg 250.0 µs, 50th 250 µs, 99th 250 µs, "
          "99.9th 250 µs, max 250 µs\n");
}
