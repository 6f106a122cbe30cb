#include <doctest/doctest.h>

#include <climits>
#include <vector>

#include "proto/reader.h"
#include "proto/writer.h"

using namespace spate::proto;

TEST_CASE("fixed-width integers are big-endian and round-trip") {
    writer w;
    w.int8(-2);
    w.int16(0x1234);
    w.int32(-559038737);
    w.int64(INT64_MIN);
    w.uint32(0xdeadbeef);
    const std::vector<uint8_t> expected_prefix{0xfe, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef};
    CHECK(std::vector<uint8_t>(w.buffer().begin(), w.buffer().begin() + 7) == expected_prefix);
    reader r(w.buffer());
    CHECK(r.int8() == -2);
    CHECK(r.int16() == 0x1234);
    CHECK(r.int32() == -559038737);
    CHECK(r.int64() == INT64_MIN);
    CHECK(r.uint32() == 0xdeadbeef);
    CHECK(r.ok());
    CHECK(r.remaining() == 0);
}

TEST_CASE("varints follow the protobuf zig-zag encoding") {
    // Vectors derived by hand from the zig-zag definition: 0->0, -1->1, 1->2, -64->127, 64->128.
    struct vector_case {
        int32_t value;
        std::vector<uint8_t> bytes;
    };
    const vector_case cases[] = {{0, {0x00}},
                                 {-1, {0x01}},
                                 {1, {0x02}},
                                 {-64, {0x7f}},
                                 {64, {0x80, 0x01}},
                                 {INT32_MAX, {0xfe, 0xff, 0xff, 0xff, 0x0f}},
                                 {INT32_MIN, {0xff, 0xff, 0xff, 0xff, 0x0f}}};
    for (const auto& c : cases) {
        writer w;
        w.varint(c.value);
        CHECK(w.buffer() == c.bytes);
        reader r(w.buffer());
        CHECK(r.varint() == c.value);
        CHECK(r.ok());
        size_counter counter;
        counter.varint(c.value);
        CHECK(counter.size() == c.bytes.size());
    }
    writer w;
    w.varlong(INT64_MIN);
    reader r(w.buffer());
    CHECK(r.varlong() == INT64_MIN);
}

TEST_CASE("unsigned varints of every length read alike, alone and followed by more bytes") {
    // The inline paths (one and two bytes) and the long one must agree, whatever follows.
    for (uint64_t value : {0ull, 1ull, 127ull, 128ull, 300ull, 16383ull, 16384ull, 2097151ull,
                           2097152ull, 268435455ull, 268435456ull, 4294967295ull}) {
        writer w;
        w.unsigned_varint(value);
        const size_t encoded = w.buffer().size();
        for (bool trailing : {false, true}) {
            std::vector<uint8_t> bytes = w.buffer();
            if (trailing) bytes.push_back(0x7f);
            reader r(bytes);
            CHECK(r.unsigned_varint() == value);
            CHECK(r.position() == encoded);
            reader l(bytes);
            CHECK(l.unsigned_varlong() == value);
            CHECK(l.position() == encoded);
            CHECK(r.ok());
            CHECK(l.ok());
        }
    }
    // Cut after a continuation byte: truncated, by either path.
    for (const std::vector<uint8_t>& cut :
         {std::vector<uint8_t>{0x80}, std::vector<uint8_t>{0xff, 0xff}}) {
        reader r(cut);
        (void)r.unsigned_varint();
        CHECK(r.error() == decode_error::truncated);
        reader l(cut);
        (void)l.unsigned_varlong();
        CHECK(l.error() == decode_error::truncated);
    }
}

TEST_CASE("an over-long varint is an error, not a crash") {
    const std::vector<uint8_t> six_bytes{0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    reader r(six_bytes);
    (void)r.unsigned_varint();
    CHECK_FALSE(r.ok());
    CHECK(r.error() == decode_error::bad_varint);
    const std::vector<uint8_t> cut{0x80, 0x80};
    reader cut_reader(cut);
    (void)cut_reader.unsigned_varint();
    CHECK(cut_reader.error() == decode_error::truncated);
}

TEST_CASE("strings, compact strings and nulls") {
    writer w;
    w.string("kafka", false);
    w.string("kafka", true);
    w.nullable_string(std::nullopt, false);
    w.nullable_string(std::nullopt, true);
    reader r(w.buffer());
    CHECK(r.string(false) == "kafka");
    CHECK(r.string(true) == "kafka");
    CHECK_FALSE(r.nullable_string(false).has_value());
    CHECK_FALSE(r.nullable_string(true).has_value());
    CHECK(r.ok());
    // Classic string "kafka" is 00 05 'k' 'a' 'f' 'k' 'a'; compact is 06 'k' ...
    CHECK(w.buffer()[0] == 0x00);
    CHECK(w.buffer()[1] == 0x05);
    CHECK(w.buffer()[7] == 0x06);
}

TEST_CASE("lengths are checked against the remaining bytes before allocating") {
    SUBCASE("string longer than the input") {
        const std::vector<uint8_t> bytes{0x7f, 0xff, 'a'};
        reader r(bytes);
        CHECK(r.string(false).empty());
        CHECK(r.error() == decode_error::too_large);
    }
    SUBCASE("negative string length") {
        const std::vector<uint8_t> bytes{0xff, 0xfe};
        reader r(bytes);
        (void)r.nullable_string(false);
        CHECK(r.error() == decode_error::negative_length);
    }
    SUBCASE("null where a string is required") {
        const std::vector<uint8_t> bytes{0xff, 0xff};
        reader r(bytes);
        (void)r.string(false);
        CHECK(r.error() == decode_error::negative_length);
    }
    SUBCASE("huge array count (CVE-2022-34917)") {
        const std::vector<uint8_t> bytes{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0};
        reader r(bytes);
        CHECK(r.array_count(false, 4) == 0);
        CHECK(r.error() == decode_error::too_large);
    }
    SUBCASE("array count bounded by element size") {
        const std::vector<uint8_t> bytes{0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8};
        reader r(bytes);
        CHECK(r.array_count(false, 4) == 0);  // 3 elements of >= 4 bytes need 12
        CHECK_FALSE(r.ok());
        reader fits(bytes);
        CHECK(fits.array_count(false, 2) == 3);
        CHECK(fits.ok());
    }
    SUBCASE("errors are sticky") {
        const std::vector<uint8_t> bytes{0x00};
        reader r(bytes);
        CHECK(r.int32() == 0);
        CHECK(r.int8() == 0);
        CHECK(r.error() == decode_error::truncated);
    }
}

TEST_CASE("external records leave a gap instead of a copy") {
    writer w;
    w.int32(7);
    records external;
    external.external_length = 1000;
    external.external_id = 42;
    w.records_field(external, false);
    w.int16(1);
    REQUIRE(w.gaps().size() == 1);
    CHECK(w.gaps()[0].position == 8);
    CHECK(w.gaps()[0].length == 1000);
    CHECK(w.gaps()[0].id == 42);
    CHECK(w.size() == 4 + 4 + 1000 + 2);
    size_counter counter;
    counter.int32(7);
    counter.records_field(external, false);
    counter.int16(1);
    CHECK(counter.size() == w.size());
}

TEST_CASE("unknown tagged fields are skipped") {
    writer w;
    w.unsigned_varint(2);
    w.unsigned_varint(5);
    w.unsigned_varint(3);
    w.raw(std::vector<uint8_t>{1, 2, 3});
    w.unsigned_varint(9);
    w.unsigned_varint(0);
    w.int8(77);
    reader r(w.buffer());
    r.skip_tagged_fields();
    CHECK(r.int8() == 77);
    CHECK(r.ok());
}
