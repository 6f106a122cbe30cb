#include "proto/legacy_records.h"

#include <doctest/doctest.h>
#include <zlib.h>

#include <limits>
#include <string>
#include <vector>

#include "proto/record_batch.h"

using namespace spate::proto;

namespace {

constexpr size_t one_mib = 1 << 20;
constexpr int64_t t0 = 1700000000000;

std::string text(const std::optional<std::span<const uint8_t>>& bytes) {
    if (!bytes) return "<null>";
    return {reinterpret_cast<const char*>(bytes->data()), bytes->size()};
}

std::vector<uint8_t> batch_of(compression_codec codec, int64_t base_offset, int count) {
    batch_builder builder(codec, t0);
    for (int i = 0; i < count; ++i) {
        const std::string value = "value-" + std::to_string(base_offset + i);
        if (i == 1)
            builder.add(std::nullopt, byte_view(value), {}, t0 + 7);
        else
            builder.add(byte_view("k" + std::to_string(i)), byte_view(value), {}, t0 + i);
    }
    return builder.build(base_offset);
}

std::vector<legacy_message> messages_of(std::span<const uint8_t> set,
                                        std::vector<std::string>& values) {
    std::vector<legacy_message> out;
    auto walked = for_each_legacy_message(set, one_mib, [&](const legacy_message& m) {
        out.push_back(m);
        values.push_back(text(m.value));
    });
    REQUIRE(walked);
    return out;
}

}  // namespace

TEST_CASE("down-conversion writes one message per record, with offsets and timestamps") {
    for (auto codec : {compression_codec::none, compression_codec::gzip, compression_codec::lz4,
                       compression_codec::zstd}) {
        CAPTURE(to_string(codec));
        auto batches = batch_of(codec, 100, 3);
        const auto second = batch_of(compression_codec::none, 103, 2);
        batches.insert(batches.end(), second.begin(), second.end());
        for (int8_t magic : {0, 1}) {
            auto set = downconvert_batches(batches, magic, one_mib);
            REQUIRE(set);
            std::vector<std::string> values;
            auto messages = messages_of(*set, values);
            REQUIRE(messages.size() == 5);
            for (size_t i = 0; i < messages.size(); ++i) {
                CHECK(messages[i].offset == 100 + static_cast<int64_t>(i));
                CHECK(messages[i].magic == magic);
                CHECK(values[i] == "value-" + std::to_string(100 + i));
            }
            CHECK_FALSE(messages[1].key);
            CHECK(text(messages[2].key) == "k2");
            CHECK(messages[1].timestamp == (magic == 1 ? t0 + 7 : -1));
        }
    }
}

TEST_CASE("down-conversion stops at the byte limit but always converts one batch") {
    auto batches = batch_of(compression_codec::none, 0, 50);
    const auto more = batch_of(compression_codec::none, 50, 50);
    batches.insert(batches.end(), more.begin(), more.end());
    auto one = downconvert_batches(batches, 1, 10);
    REQUIRE(one);
    std::vector<std::string> values;
    CHECK(messages_of(*one, values).size() == 50);
    auto both = downconvert_batches(batches, 1, one_mib);
    REQUIRE(both);
    values.clear();
    CHECK(messages_of(*both, values).size() == 100);
}

TEST_CASE("down-conversion of a batch at the last offset wraps as Java's longs do") {
    // Batches reach it from files and peers: a base offset of INT64_MAX is not an overflow.
    batch_builder builder(compression_codec::none, t0);
    builder.add(std::nullopt, byte_view("last"));
    builder.add(std::nullopt, byte_view("wrapped"));
    auto set = downconvert_batches(builder.build(std::numeric_limits<int64_t>::max()), 0, one_mib);
    REQUIRE(set);
    std::vector<std::string> values;
    auto messages = messages_of(*set, values);
    REQUIRE(messages.size() == 2);
    CHECK(messages[0].offset == std::numeric_limits<int64_t>::max());
    CHECK(messages[1].offset == std::numeric_limits<int64_t>::min());
    CHECK(values[1] == "wrapped");
}

TEST_CASE("up-conversion round-trips v0 and v1 sets into one batch v2") {
    for (int8_t magic : {0, 1}) {
        CAPTURE(magic);
        auto set = downconvert_batches(batch_of(compression_codec::none, 40, 4), magic, one_mib);
        REQUIRE(set);
        auto batch = upconvert_message_set(*set, one_mib);
        REQUIRE(batch);
        auto check = validate_batch(*batch, one_mib, batch_source::client);
        REQUIRE(check.error == batch_error::none);
        CHECK(check.header.records_count == 4);
        CHECK(check.header.base_offset == 0);  // the broker assigns offsets on append
        CHECK(check.header.producer_id == -1);
        std::vector<uint8_t> scratch;
        CHECK(validate_records(*batch, check.header, one_mib, scratch).error == batch_error::none);
        std::vector<int64_t> timestamps;
        auto walked = for_each_record(*batch, one_mib, [&](const record_view& r) {
            timestamps.push_back(check.header.base_timestamp + r.timestamp_delta);
        });
        REQUIRE(walked);
        if (magic == 1)
            CHECK(timestamps == std::vector<int64_t>{t0, t0 + 7, t0 + 2, t0 + 3});
        else
            CHECK(timestamps == std::vector<int64_t>{-1, -1, -1, -1});
    }
}

TEST_CASE("up-conversion of a compressed v1 wrapper keeps its codec and inner records") {
    // Inner messages with relative offsets 0..2; the wrapper carries the last one's (2).
    auto inner = downconvert_batches(batch_of(compression_codec::none, 0, 3), 1, one_mib);
    REQUIRE(inner);
    auto packed = compress(compression_codec::gzip, *inner);
    REQUIRE(packed);
    batch_builder wrapper_builder(compression_codec::none, t0);
    wrapper_builder.add(std::nullopt, std::span<const uint8_t>(*packed), {}, t0);
    auto wrapper = downconvert_batches(wrapper_builder.build(2), 1, one_mib);
    REQUIRE(wrapper);
    (*wrapper)[17] = 0x01;  // attributes (offset 8, size 4, crc 4, magic 1): gzip
    CHECK(upconvert_message_set(*wrapper, one_mib).failure().code == EBADMSG);  // stale CRC
    const uLong crc = ::crc32(0L, wrapper->data() + 16, static_cast<uInt>(wrapper->size() - 16));
    for (int i = 0; i < 4; ++i) (*wrapper)[12 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
    std::vector<std::string> values;
    auto messages = messages_of(*wrapper, values);
    REQUIRE(messages.size() == 3);
    CHECK(messages[0].offset == 0);
    CHECK(messages[2].offset == 2);
    CHECK(values[2] == "value-2");
    auto batch = upconvert_message_set(*wrapper, one_mib);
    REQUIRE(batch);
    auto check = validate_batch(*batch, one_mib, batch_source::client);
    REQUIRE(check.error == batch_error::none);
    CHECK(check.header.codec() == compression_codec::gzip);
    CHECK(check.header.records_count == 3);
    // The wrapper's offset (outside the CRC) comes from the peer: the smallest one makes
    // the inner offsets wrap, as Java's longs do, and the up-conversion still works.
    auto lowest = *wrapper;
    lowest[0] = 0x80;
    for (int i = 1; i < 8; ++i) lowest[i] = 0;
    std::vector<std::string> lowest_values;
    auto wrapped = messages_of(lowest, lowest_values);
    REQUIRE(wrapped.size() == 3);
    CHECK(wrapped[2].offset == std::numeric_limits<int64_t>::min());
    CHECK(wrapped[0].offset == std::numeric_limits<int64_t>::max() - 1);
    CHECK(upconvert_message_set(lowest, one_mib));
    // A wrapper inside a wrapper is refused.
    auto nested_packed = compress(compression_codec::gzip, *wrapper);
    REQUIRE(nested_packed);
    batch_builder nested_builder(compression_codec::none, t0);
    nested_builder.add(std::nullopt, std::span<const uint8_t>(*nested_packed), {}, t0);
    auto nested = downconvert_batches(nested_builder.build(0), 1, one_mib);
    REQUIRE(nested);
    (*nested)[17] = 0x01;
    const uLong nested_crc =
        ::crc32(0L, nested->data() + 16, static_cast<uInt>(nested->size() - 16));
    for (int i = 0; i < 4; ++i)
        (*nested)[12 + i] = static_cast<uint8_t>(nested_crc >> (24 - 8 * i));
    CHECK(upconvert_message_set(*nested, one_mib).failure().code == EINVAL);
}

TEST_CASE("up-conversion refuses malformed sets and ignores an incomplete tail") {
    auto set = downconvert_batches(batch_of(compression_codec::none, 0, 2), 0, one_mib);
    REQUIRE(set);
    auto truncated = *set;
    truncated.resize(truncated.size() - 3);  // the second message is cut off
    auto batch = upconvert_message_set(truncated, one_mib);
    REQUIRE(batch);
    auto check = validate_batch(*batch, one_mib, batch_source::client);
    CHECK(check.header.records_count == 1);
    CHECK_FALSE(upconvert_message_set(std::span<const uint8_t>(set->data(), 5), one_mib));
    auto bad_magic = *set;
    bad_magic[16] = 3;
    CHECK_FALSE(upconvert_message_set(bad_magic, one_mib));
    CHECK(upconvert_message_set(*set, 40).failure().code == EFBIG);
}
