#include "proto/record_batch.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "proto/crc32c.h"

using namespace spate::proto;

namespace {

constexpr size_t one_mib = 1 << 20;
constexpr int64_t timestamp = 1700000000000;  // 0x0000018BCFE56800

// One record, key null, value "hi", no headers, as a producer sends it, derived
// byte by byte from the v2 layout (see record_batch.h). The CRC was computed
// with an independent bit-by-bit CRC-32C over bytes 21..69.
const std::vector<uint8_t> hand_batch{
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // base_offset 0
    0x00, 0x00, 0x00, 0x3a,                          // batch_length 58 = 70 - 12
    0xff, 0xff, 0xff, 0xff,                          // partition_leader_epoch -1
    0x02,                                            // magic 2
    0xbb, 0xcc, 0x41, 0x15,                          // crc
    0x00, 0x00,                                      // attributes: no codec, CreateTime
    0x00, 0x00, 0x00, 0x00,                          // last_offset_delta 0
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,  // base_timestamp
    0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,  // max_timestamp
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // producer_id -1
    0xff, 0xff,                                      // producer_epoch -1
    0xff, 0xff, 0xff, 0xff,                          // base_sequence -1
    0x00, 0x00, 0x00, 0x01,                          // records_count 1
    // The record: length 8 (zig-zag 0x10), attributes 0, timestamp_delta 0,
    // offset_delta 0, key_length -1 (zig-zag 0x01), value_length 2 (zig-zag
    // 0x04), 'h' 'i', headers_count 0.
    0x10, 0x00, 0x00, 0x00, 0x01, 0x04, 'h', 'i', 0x00};

std::string text(std::span<const uint8_t> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Kept out of line: once inlined after a vector insert, g++ 12 reports a false
// -Wstringop-overflow on the indexed stores.
[[gnu::noinline]] void put_be32(std::vector<uint8_t>& bytes, size_t at, uint32_t value) {
    for (size_t i = 0; i < 4; ++i) bytes.at(at + i) = static_cast<uint8_t>(value >> (24 - 8 * i));
}

batch_error check_client(std::span<const uint8_t> bytes) {
    return validate_batch(bytes, one_mib, batch_source::client).error;
}

constexpr compression_codec all_codecs[] = {compression_codec::none, compression_codec::gzip,
                                            compression_codec::snappy, compression_codec::lz4,
                                            compression_codec::zstd};

}  // namespace

TEST_CASE("a hand-derived batch validates and every field reads back") {
    auto check = validate_batch(hand_batch, one_mib, true);
    REQUIRE(check.error == batch_error::none);
    const batch_header& h = check.header;
    CHECK(h.base_offset == 0);
    CHECK(h.batch_length == 58);
    CHECK(h.total_size() == 70);
    CHECK(h.partition_leader_epoch == -1);
    CHECK(h.magic == 2);
    CHECK(h.crc == 0xbbcc4115u);
    CHECK(h.attributes == 0);
    CHECK(h.codec() == compression_codec::none);
    CHECK_FALSE(h.is_transactional());
    CHECK_FALSE(h.is_control());
    CHECK_FALSE(h.has_log_append_time());
    CHECK(h.last_offset_delta == 0);
    CHECK(h.base_timestamp == timestamp);
    CHECK(h.max_timestamp == timestamp);
    CHECK(h.producer_id == -1);
    CHECK(h.producer_epoch == -1);
    CHECK(h.base_sequence == -1);
    CHECK(h.records_count == 1);
    CHECK(h.last_offset() == 0);

    int seen = 0;
    auto walked = for_each_record(hand_batch, one_mib, [&](const record_view& r) {
        ++seen;
        CHECK(r.attributes == 0);
        CHECK(r.offset_delta == 0);
        CHECK(r.timestamp_delta == 0);
        CHECK_FALSE(r.key.has_value());
        REQUIRE(r.value.has_value());
        CHECK(text(*r.value) == "hi");
        CHECK(r.headers.empty());
    });
    CHECK(walked.ok());
    CHECK(seen == 1);

    // The builder produces exactly the same bytes.
    batch_builder builder(compression_codec::none, timestamp);
    builder.add(std::nullopt, byte_view("hi"));
    CHECK(builder.build() == hand_batch);
}

TEST_CASE("build, validate and iterate round-trip for every codec") {
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        batch_builder builder(codec, timestamp, 4242, 3, 17);
        const std::string big(5000, 'v');
        const record_header_view headers[] = {{"trace", byte_view("abc")}, {"empty", std::nullopt}};
        builder.add(byte_view("k0"), byte_view("v0"), headers, timestamp + 5);
        builder.add(std::nullopt, std::nullopt);
        builder.add(byte_view(""), byte_view(big), {}, timestamp - 2);
        for (int i = 0; i < 50; ++i) builder.add(byte_view("key"), byte_view("value"));
        auto batch = builder.build();

        auto check = validate_batch(batch, one_mib, batch_source::client);
        REQUIRE(check.error == batch_error::none);
        CHECK(check.header.codec() == codec);
        CHECK(check.header.records_count == 53);
        CHECK(check.header.last_offset_delta == 52);
        CHECK(check.header.max_timestamp == timestamp + 5);
        CHECK(check.header.producer_id == 4242);
        CHECK(check.header.producer_epoch == 3);
        CHECK(check.header.base_sequence == 17);
        if (codec != compression_codec::none)
            CHECK(batch.size() < builder.uncompressed_records_bytes());

        int64_t expected_delta = 0;
        auto walked = for_each_record(batch, one_mib, [&](const record_view& r) {
            CHECK(r.offset_delta == expected_delta);
            if (expected_delta == 0) {
                CHECK(text(*r.key) == "k0");
                CHECK(text(*r.value) == "v0");
                CHECK(r.timestamp_delta == 5);
                REQUIRE(r.headers.size() == 2);
                CHECK(r.headers[0].key == "trace");
                CHECK(text(*r.headers[0].value) == "abc");
                CHECK(r.headers[1].key == "empty");
                CHECK_FALSE(r.headers[1].value.has_value());
            } else if (expected_delta == 1) {
                CHECK_FALSE(r.key.has_value());
                CHECK_FALSE(r.value.has_value());
                CHECK(r.headers.empty());
            } else if (expected_delta == 2) {
                REQUIRE(r.key.has_value());
                CHECK(r.key->empty());
                CHECK(text(*r.value) == big);
                CHECK(r.timestamp_delta == -2);
            } else {
                CHECK(text(*r.value) == "value");
            }
            ++expected_delta;
        });
        CHECK(walked.ok());
        CHECK(expected_delta == 53);

        // Stopping early is not an error.
        int visited = 0;
        auto stopped =
            for_each_record(batch, one_mib, [&](const record_view&) { return ++visited < 3; });
        CHECK(stopped.ok());
        CHECK(visited == 3);
    }
}

TEST_CASE("release hands over the batch build makes, and the builder starts empty") {
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        batch_builder builder(codec, timestamp, 7, 1, 100);
        builder.reserve(1 << 16);
        const record_header_view headers[] = {{"h", byte_view("x")}};
        for (int i = 0; i < 20; ++i)
            builder.add(byte_view("key"), byte_view(std::string(300, 'a' + i % 26)), headers);
        const auto built = builder.build();
        const size_t records_bytes = builder.uncompressed_records_bytes();
        CHECK(builder.records_count() == 20);
        const auto released = builder.release();
        CHECK(released == built);
        CHECK(validate_batch(released, one_mib, batch_source::client).error == batch_error::none);
        CHECK(records_bytes > 20 * 300);
        // Empty again: the next batch numbers its records from 0 and holds only them.
        CHECK(builder.records_count() == 0);
        CHECK(builder.uncompressed_records_bytes() == 0);
        builder.add(std::nullopt, byte_view("again"));
        const auto next = builder.release();
        auto check = validate_batch(next, one_mib, batch_source::client);
        REQUIRE(check.error == batch_error::none);
        CHECK(check.header.records_count == 1);
        int seen = 0;
        CHECK(for_each_record(next, one_mib, [&](const record_view& r) {
                  CHECK(r.offset_delta == 0);
                  CHECK(text(*r.value) == "again");
                  ++seen;
              }).ok());
        CHECK(seen == 1);
    }
}

TEST_CASE("broker-side rewrites keep the batch valid") {
    auto batch = hand_batch;
    set_base_offset(batch, 123456789);
    set_partition_leader_epoch(batch, 7);
    // Neither field is covered by the CRC, so the stored CRC is untouched.
    CHECK(read_batch_header(batch)->crc == 0xbbcc4115u);
    auto check = validate_batch(batch, one_mib, batch_source::log);
    REQUIRE(check.error == batch_error::none);
    CHECK(check.header.base_offset == 123456789);
    CHECK(check.header.last_offset() == 123456789);
    CHECK(check.header.partition_leader_epoch == 7);
    // A client may not choose offsets.
    CHECK(check_client(batch) == batch_error::bad_count);

    set_log_append_time(batch, timestamp + 1000);
    check = validate_batch(batch, one_mib, batch_source::log);
    REQUIRE(check.error == batch_error::none);
    CHECK(check.header.has_log_append_time());
    CHECK(check.header.max_timestamp == timestamp + 1000);
    CHECK(check.header.base_timestamp == timestamp);
    CHECK(check.header.crc != 0xbbcc4115u);
}

TEST_CASE("malformed batch headers are rejected with the right reason") {
    SUBCASE("too short to see the magic") {
        CHECK(check_client(std::span(hand_batch).first(16)) == batch_error::truncated);
        CHECK(check_client({}) == batch_error::truncated);
    }
    SUBCASE("shorter than batch_length announces") {
        CHECK(check_client(std::span(hand_batch).first(69)) == batch_error::truncated);
        CHECK(check_client(std::span(hand_batch).first(40)) == batch_error::truncated);
    }
    SUBCASE("batch_length smaller than a header, or negative") {
        auto batch = hand_batch;
        put_be32(batch, batch_length_offset, 48);
        CHECK(check_client(batch) == batch_error::bad_size);
        put_be32(batch, batch_length_offset, 0x80000000u);
        CHECK(check_client(batch) == batch_error::bad_size);
    }
    SUBCASE("batch_length far beyond the bytes, or beyond the limit") {
        auto batch = hand_batch;
        put_be32(batch, batch_length_offset, 0x7fffffffu);
        CHECK(check_client(batch) == batch_error::too_large);
        CHECK(validate_batch(hand_batch, 69, batch_source::client).error == batch_error::too_large);
        CHECK(validate_batch(hand_batch, 70, batch_source::client).error == batch_error::none);
        auto longer = hand_batch;
        put_be32(longer, batch_length_offset, 59);
        CHECK(check_client(longer) == batch_error::truncated);
    }
    SUBCASE("legacy and unknown magic") {
        auto batch = hand_batch;
        batch[batch_magic_offset] = 0;
        CHECK(check_client(batch) == batch_error::legacy_magic);
        batch[batch_magic_offset] = 1;
        CHECK(check_client(batch) == batch_error::legacy_magic);
        batch[batch_magic_offset] = 3;
        CHECK(check_client(batch) == batch_error::bad_magic);
    }
    SUBCASE("unknown codec bits") {
        auto batch = hand_batch;
        batch[batch_attributes_offset + 1] = 7;
        update_batch_crc(batch);
        CHECK(check_client(batch) == batch_error::bad_magic);
    }
    SUBCASE("bad CRC: any flipped bit after the CRC field") {
        for (size_t at = batch_attributes_offset; at < hand_batch.size(); ++at) {
            auto batch = hand_batch;
            batch[at] ^= 0x10;
            CAPTURE(at);
            CHECK(check_client(batch) == batch_error::bad_crc);
        }
        auto batch = hand_batch;
        batch[batch_crc_offset] ^= 1;
        CHECK(check_client(batch) == batch_error::bad_crc);
    }
    SUBCASE("records_count disagreeing with last_offset_delta") {
        auto batch = hand_batch;
        put_be32(batch, batch_records_count_offset, 2);
        update_batch_crc(batch);
        CHECK(check_client(batch) == batch_error::bad_count);
        put_be32(batch, batch_records_count_offset, 0xffffffffu);
        update_batch_crc(batch);
        CHECK(check_client(batch) == batch_error::bad_count);
        CHECK(validate_batch(batch, one_mib, batch_source::log).error == batch_error::bad_count);
        put_be32(batch, batch_records_count_offset, 0);
        update_batch_crc(batch);
        CHECK(check_client(batch) == batch_error::bad_count);
        // A compacted batch in the log may be empty.
        CHECK(validate_batch(batch, one_mib, batch_source::log).error == batch_error::none);
    }
    SUBCASE("a count that the uncompressed bytes cannot hold") {
        auto batch = hand_batch;
        put_be32(batch, batch_records_count_offset, 1000);
        put_be32(batch, batch_last_offset_delta_offset, 999);
        update_batch_crc(batch);
        CHECK(check_client(batch) == batch_error::bad_count);
    }
}

TEST_CASE("malformed records inside a valid batch fail iteration, never crash") {
    const size_t record_at = batch_header_size;
    auto iterate = [](std::span<const uint8_t> batch) {
        return for_each_record(batch, one_mib, [](const record_view&) {});
    };
    SUBCASE("a record length varint that claims 2 GiB") {
        auto batch = hand_batch;
        // Replace the 1-byte length by a 5-byte varint of INT32_MAX (zig-zag).
        const uint8_t huge[] = {0xfe, 0xff, 0xff, 0xff, 0x0f};
        batch.erase(batch.begin() + static_cast<long>(record_at));
        batch.insert(batch.begin() + static_cast<long>(record_at), std::begin(huge),
                     std::end(huge));
        put_be32(batch, batch_length_offset, static_cast<uint32_t>(batch.size() - 12));
        update_batch_crc(batch);
        REQUIRE(check_client(batch) == batch_error::none);
        auto walked = iterate(batch);
        REQUIRE_FALSE(walked.ok());
        CHECK(walked.failure().code == EINVAL);
    }
    SUBCASE("an over-long varint") {
        auto batch = hand_batch;
        const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
        std::memcpy(batch.data() + record_at, six, sizeof(six));
        update_batch_crc(batch);
        CHECK_FALSE(iterate(batch).ok());
    }
    SUBCASE("a value length beyond the record") {
        auto batch = hand_batch;
        batch[record_at + 5] = 0x7e;  // value_length 63
        update_batch_crc(batch);
        CHECK_FALSE(iterate(batch).ok());
    }
    SUBCASE("a headers count of a billion") {
        batch_builder builder(compression_codec::none, timestamp);
        builder.add(std::nullopt, byte_view("hi"));
        auto batch = builder.build();
        // The last record byte is headers_count 0; widen it to a large varint
        // and fix up the record and batch lengths so only the count is wrong.
        batch.pop_back();
        const uint8_t billion[] = {0x80, 0xa8, 0xd6, 0xb9, 0x07};  // zig-zag 1e9
        batch.insert(batch.end(), std::begin(billion), std::end(billion));
        batch[record_at] = static_cast<uint8_t>(2 * (batch.size() - record_at - 1));
        put_be32(batch, batch_length_offset, static_cast<uint32_t>(batch.size() - 12));
        update_batch_crc(batch);
        REQUIRE(check_client(batch) == batch_error::none);
        CHECK_FALSE(iterate(batch).ok());
    }
    SUBCASE("fewer records than records_count, or bytes after the last one") {
        auto batch = hand_batch;
        put_be32(batch, batch_records_count_offset, 2);
        put_be32(batch, batch_last_offset_delta_offset, 1);
        update_batch_crc(batch);
        CHECK_FALSE(iterate(batch).ok());
        auto trailing = hand_batch;
        trailing.push_back(0);
        put_be32(trailing, batch_length_offset, 59);
        update_batch_crc(trailing);
        CHECK_FALSE(iterate(trailing).ok());
    }
    SUBCASE("a decompression bomb over the cap") {
        batch_builder builder(compression_codec::zstd, timestamp);
        const std::vector<uint8_t> zeros(4 << 20, 0);
        builder.add(std::nullopt, zeros);
        auto batch = builder.build();
        CHECK(batch.size() < 4096);
        REQUIRE(check_client(batch) == batch_error::none);
        auto walked = iterate(batch);
        REQUIRE_FALSE(walked.ok());
        CHECK(walked.failure().code == EFBIG);
        CHECK(for_each_record(batch, 8 << 20, [](const record_view&) {}).ok());
    }
    SUBCASE("compressed bytes that are not a stream of the codec") {
        auto batch = hand_batch;
        batch[batch_attributes_offset + 1] = static_cast<uint8_t>(compression_codec::gzip);
        update_batch_crc(batch);
        REQUIRE(check_client(batch) == batch_error::none);
        CHECK_FALSE(iterate(batch).ok());
    }
}

TEST_CASE("for_each_batch splits a blob into whole batches") {
    std::vector<uint8_t> blob;
    std::vector<size_t> sizes;
    for (int i = 0; i < 3; ++i) {
        batch_builder builder(i == 1 ? compression_codec::lz4 : compression_codec::none, timestamp);
        for (int r = 0; r <= i; ++r) builder.add(std::nullopt, byte_view("record"));
        auto batch = builder.build(10 * i);
        sizes.push_back(batch.size());
        blob.insert(blob.end(), batch.begin(), batch.end());
    }
    const size_t whole = blob.size();

    std::vector<int64_t> bases;
    auto split = for_each_batch(blob, [&](std::span<const uint8_t> batch, const batch_header& h) {
        CHECK(static_cast<int64_t>(batch.size()) == h.total_size());
        bases.push_back(h.base_offset);
    });
    REQUIRE(split.ok());
    CHECK(split->batches == 3);
    CHECK(split->consumed_bytes == whole);
    CHECK(bases == std::vector<int64_t>{0, 10, 20});

    // A partial trailing batch (as at the end of a fetch response) is left over.
    for (size_t cut : {size_t{1}, size_t{30}, size_t{61}, hand_batch.size() - 1}) {
        auto with_tail = blob;
        with_tail.insert(with_tail.end(), hand_batch.begin(),
                         hand_batch.begin() + static_cast<long>(cut));
        auto partial =
            for_each_batch(with_tail, [](std::span<const uint8_t>, const batch_header&) {});
        REQUIRE(partial.ok());
        CHECK(partial->batches == 3);
        CHECK(partial->consumed_bytes == whole);
    }

    // Stopping early.
    auto first_only =
        for_each_batch(blob, [](std::span<const uint8_t>, const batch_header&) { return false; });
    REQUIRE(first_only.ok());
    CHECK(first_only->batches == 1);
    CHECK(first_only->consumed_bytes == sizes[0]);

    // A malformed header in the middle is an error.
    auto broken = blob;
    broken[sizes[0] + batch_magic_offset] = 1;
    auto failed = for_each_batch(broken, [](std::span<const uint8_t>, const batch_header&) {});
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.failure().code == static_cast<int>(batch_error::legacy_magic));
    broken = blob;
    put_be32(broken, sizes[0] + batch_length_offset, 10);
    failed = for_each_batch(broken, [](std::span<const uint8_t>, const batch_header&) {});
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.failure().code == static_cast<int>(batch_error::bad_size));
}

TEST_CASE("read_batch_header needs a whole header") {
    CHECK_FALSE(read_batch_header(std::span(hand_batch).first(60)).ok());
    CHECK(read_batch_header(std::span(hand_batch).first(61)).ok());
}

namespace {

// The records section of an uncompressed batch built from `values` (key "k", or
// no key when `keyed` is false), record offset deltas 0, 1, 2, ...
std::vector<uint8_t> records_section(std::initializer_list<std::string_view> values,
                                     bool keyed = true) {
    batch_builder builder(compression_codec::none, timestamp);
    for (auto value : values)
        builder.add(keyed ? std::optional(byte_view("k")) : std::nullopt, byte_view(value));
    auto batch = builder.build();
    return {batch.begin() + static_cast<long>(batch_header_size), batch.end()};
}

// A producer's batch around `section` (compressed with `codec`) whose header
// claims `count` records and `last_offset_delta`, with a correct CRC: everything
// validate_batch checks agrees, whatever the records say.
std::vector<uint8_t> batch_around(compression_codec codec, std::span<const uint8_t> section,
                                  int32_t count, int32_t last_offset_delta) {
    batch_builder builder(compression_codec::none, timestamp);
    builder.add(std::nullopt, byte_view("x"));
    auto batch = builder.build();
    batch.resize(batch_header_size);
    batch[batch_attributes_offset + 1] = static_cast<uint8_t>(codec);
    put_be32(batch, batch_records_count_offset, static_cast<uint32_t>(count));
    put_be32(batch, batch_last_offset_delta_offset, static_cast<uint32_t>(last_offset_delta));
    auto packed = compress(codec, section);
    REQUIRE(packed.ok());
    batch.insert(batch.end(), packed->begin(), packed->end());
    put_be32(batch, batch_length_offset, static_cast<uint32_t>(batch.size() - batch_log_overhead));
    update_batch_crc(batch);
    return batch;
}

records_check check_records(std::span<const uint8_t> batch, size_t batch_bytes_max = one_mib) {
    std::vector<uint8_t> scratch;
    auto header = read_batch_header(batch);
    REQUIRE(header.ok());
    return validate_records(batch, *header, batch_bytes_max, scratch);
}

}  // namespace

// Regression (issue 10, defect 3): validate_batch checks only the header, so a
// batch claiming 5 records while holding 1 (or a zstd batch claiming 2^31 - 1)
// was appended with its header's count, taking offsets for records that do not
// exist. validate_records walks the (decompressed) records and refuses every
// disagreement with the header; each case below passes validate_batch, so only
// the record walk can catch it.
TEST_CASE("validate_records refuses records that disagree with the header, for every codec") {
    // Records of 64-byte values: large enough that validate_batch's bound (at
    // least 7 bytes per claimed record) lets a claim of 5 through.
    const std::string a(64, 'a');
    const std::string b(64, 'b');
    const auto one = records_section({a});
    const auto two = records_section({a, b});
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        SUBCASE("a count above the records present") {
            auto batch = batch_around(codec, one, 5, 4);
            REQUIRE(check_client(batch) == batch_error::none);
            CHECK(check_records(batch).error == batch_error::bad_records);
            auto huge = batch_around(codec, one, INT32_MAX, INT32_MAX - 1);
            if (codec != compression_codec::none) {
                REQUIRE(check_client(huge) == batch_error::none);
            }
            CHECK(check_records(huge).error == batch_error::bad_records);
        }
        SUBCASE("a count below the records present") {
            auto batch = batch_around(codec, two, 1, 0);
            REQUIRE(check_client(batch) == batch_error::none);
            CHECK(check_records(batch).error == batch_error::bad_records);
        }
        SUBCASE("last_offset_delta not count - 1") {
            auto batch = batch_around(codec, two, 2, 0);
            CHECK(check_records(batch).error == batch_error::bad_count);
            batch = batch_around(codec, two, 2, 2);
            CHECK(check_records(batch).error == batch_error::bad_count);
        }
        SUBCASE("offset deltas out of order") {
            // Both records have the same length, so swapping them leaves deltas 1, 0.
            auto swapped = two;
            const size_t half = swapped.size() / 2;
            std::rotate(swapped.begin(), swapped.begin() + static_cast<long>(half), swapped.end());
            auto batch = batch_around(codec, swapped, 2, 1);
            REQUIRE(check_client(batch) == batch_error::none);
            CHECK(check_records(batch).error == batch_error::bad_records);
            // Deltas 0, 0: the second record repeats the first's offset.
            auto repeated = one;
            repeated.insert(repeated.end(), one.begin(), one.end());
            CHECK(check_records(batch_around(codec, repeated, 2, 1)).error ==
                  batch_error::bad_records);
        }
        SUBCASE("trailing bytes after the last record") {
            auto trailing = one;
            trailing.push_back(0);
            auto batch = batch_around(codec, trailing, 1, 0);
            REQUIRE(check_client(batch) == batch_error::none);
            CHECK(check_records(batch).error == batch_error::bad_records);
        }
        SUBCASE("a record length that does not frame its fields") {
            // The first byte is the record's zig-zag length: +2 claims one byte more.
            std::vector<uint8_t> longer{static_cast<uint8_t>(one.at(0) + 2)};
            longer.insert(longer.end(), one.begin() + 1, one.end());
            longer.push_back(0);
            CHECK(check_records(batch_around(codec, longer, 1, 0)).error ==
                  batch_error::bad_records);
        }
        SUBCASE("the same records, told truthfully, are accepted") {
            auto batch = batch_around(codec, two, 2, 1);
            REQUIRE(check_client(batch) == batch_error::none);
            const auto checked = check_records(batch);
            CHECK(checked.error == batch_error::none);
            CHECK(checked.every_record_keyed);
            const auto keyless = records_section({"a", "b"}, false);
            CHECK_FALSE(check_records(batch_around(codec, keyless, 2, 1)).every_record_keyed);
        }
    }
    // Compressed bytes that are not a stream of the codec.
    auto garbage = batch_around(compression_codec::none, one, 1, 0);
    garbage[batch_attributes_offset + 1] = static_cast<uint8_t>(compression_codec::lz4);
    update_batch_crc(garbage);
    CHECK(check_records(garbage).error == batch_error::bad_records);
}

// Regression (issue 10, defect 4): a 33 KB zstd batch expanding to 1 GiB was
// stored. validate_records bounds the batch as it would be uncompressed (header
// plus decompressed records) by the size limit it is given, the topic's
// max.message.bytes, and decompresses into the caller's scratch, which never
// grows past that bound: the bomb is refused as too_large having cost at most the
// bound in memory, not its expansion.
TEST_CASE("validate_records refuses a decompression bomb for every codec within the bound") {
    batch_builder big(compression_codec::none, timestamp);
    const std::vector<uint8_t> zeros(8 << 20, 0);
    big.add(byte_view("k"), zeros);
    const auto built = big.build();
    const std::span<const uint8_t> section = std::span(built).subspan(batch_header_size);
    for (auto codec : all_codecs) {
        if (codec == compression_codec::none) continue;
        CAPTURE(to_string(codec));
        auto bomb = batch_around(codec, section, 1, 0);
        CHECK(bomb.size() < 512 * 1024);
        REQUIRE(check_client(bomb) == batch_error::none);
        std::vector<uint8_t> scratch;
        const auto checked = validate_records(bomb, *read_batch_header(bomb), one_mib, scratch);
        CHECK(checked.error == batch_error::too_large);
        CHECK(scratch.capacity() <= one_mib);
        // With a bound that fits, the same batch is fine.
        CHECK(validate_records(bomb, *read_batch_header(bomb), 9 << 20, scratch).error ==
              batch_error::none);
    }
}

TEST_CASE("validate_records accepts what batch_builder builds, for every codec") {
    std::vector<uint8_t> scratch;
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        batch_builder builder(codec, timestamp, 7, 1, 0);
        const record_header_view headers[] = {{"h", byte_view("v")}, {"n", std::nullopt}};
        for (int i = 0; i < 100; ++i)
            builder.add(byte_view("key"), byte_view(std::string(static_cast<size_t>(i), 'x')),
                        i % 3 == 0 ? std::span(headers) : std::span<const record_header_view>{});
        const auto batch = builder.build();
        const auto header = validate_batch(batch, one_mib, batch_source::client);
        REQUIRE(header.error == batch_error::none);
        const auto checked = validate_records(batch, header.header, one_mib, scratch);
        CHECK(checked.error == batch_error::none);
        CHECK(checked.why == nullptr);
    }
    CHECK(validate_records(hand_batch, *read_batch_header(hand_batch), one_mib, scratch).error ==
          batch_error::none);
}

TEST_CASE("recompress_batch changes only the codec: header fields and records kept") {
    for (auto from : all_codecs) {
        for (auto to : all_codecs) {
            CAPTURE(to_string(from));
            CAPTURE(to_string(to));
            batch_builder builder(from, timestamp, 77, 2, 40);
            for (int i = 0; i < 30; ++i)
                builder.add(byte_view("key"), byte_view(std::string(100 + i, 'x')), {},
                            timestamp + (i % 3) - 1);
            const auto original = builder.build();
            std::vector<uint8_t> scratch;
            auto converted = recompress_batch(original, to, one_mib, scratch);
            REQUIRE(converted);
            auto check = validate_batch(*converted, one_mib, batch_source::client);
            REQUIRE(check.error == batch_error::none);
            CHECK(check.header.codec() == to);
            CHECK(check.header.producer_id == 77);
            CHECK(check.header.producer_epoch == 2);
            CHECK(check.header.base_sequence == 40);
            CHECK(check.header.records_count == 30);
            CHECK(check.header.base_timestamp == timestamp);
            auto records = validate_records(*converted, check.header, one_mib, scratch);
            CHECK(records.error == batch_error::none);
            CHECK(records.timestamp_delta_min == -1);
            CHECK(records.timestamp_delta_max == 1);
            std::vector<size_t> sizes;
            auto walked = for_each_record(*converted, one_mib, [&](const record_view& r) {
                sizes.push_back(r.value->size());
            });
            CHECK(walked);
            REQUIRE(sizes.size() == 30);
            CHECK(sizes.back() == 129);
        }
    }
}
