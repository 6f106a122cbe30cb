#include "proto/compression.h"

#include <doctest/doctest.h>
#include <snappy.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace spate::proto;

namespace {

constexpr compression_codec all_codecs[] = {compression_codec::none, compression_codec::gzip,
                                            compression_codec::snappy, compression_codec::lz4,
                                            compression_codec::zstd};

// Text-like input: compressible, yet not a single repeated byte.
std::vector<uint8_t> sample(size_t size, uint64_t seed) {
    std::mt19937_64 random(seed);
    static constexpr std::string_view words[] = {"kafka ",  "spate ",     "record ", "batch ",
                                                 "offset ", "partition ", "leader "};
    std::vector<uint8_t> out;
    out.reserve(size);
    while (out.size() < size) {
        const auto word = words[random() % std::size(words)];
        for (char c : word) {
            if (out.size() == size) break;
            out.push_back(static_cast<uint8_t>(c));
        }
    }
    return out;
}

void append_be32(std::vector<uint8_t>& out, uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<uint8_t>(value >> shift));
}

std::vector<uint8_t> raw_snappy(std::span<const uint8_t> input) {
    std::string compressed;
    snappy::Compress(reinterpret_cast<const char*>(input.data()), input.size(), &compressed);
    return {compressed.begin(), compressed.end()};
}

}  // namespace

TEST_CASE("every codec round-trips empty, small and multi-block inputs") {
    for (size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{70000}, size_t{300000}}) {
        const auto input = sample(size, size);
        for (auto codec : all_codecs) {
            CAPTURE(to_string(codec));
            CAPTURE(size);
            auto packed = compress(codec, input);
            REQUIRE(packed.ok());
            if (codec != compression_codec::none && size >= 70000) CHECK(packed->size() < size / 2);
            auto unpacked = decompress(codec, *packed, size);
            REQUIRE(unpacked.ok());
            CHECK(*unpacked == input);
        }
    }
}

TEST_CASE("snappy writes the xerial framing of the Java client") {
    const auto input = sample(80000, 7);
    auto packed = compress(compression_codec::snappy, input);
    REQUIRE(packed.ok());
    const std::vector<uint8_t> header(packed->begin(), packed->begin() + 16);
    const std::vector<uint8_t> expected{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0,
                                        0,    0,   0,   1,   0,   0,   0,   1};
    CHECK(header == expected);
}

TEST_CASE("snappy decodes a hand-built xerial frame and a plain raw block") {
    // Two blocks compressed separately, framed as magic, version 1, compatible
    // version 1, then [int32 length][raw snappy block] per block.
    const auto first = sample(1000, 1);
    const auto second = sample(500, 2);
    std::vector<uint8_t> frame{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
    append_be32(frame, 1);
    append_be32(frame, 1);
    for (const auto* block : {&first, &second}) {
        const auto packed = raw_snappy(*block);
        append_be32(frame, static_cast<uint32_t>(packed.size()));
        frame.insert(frame.end(), packed.begin(), packed.end());
    }
    auto unpacked = decompress(compression_codec::snappy, frame, 1 << 20);
    REQUIRE(unpacked.ok());
    auto expected = first;
    expected.insert(expected.end(), second.begin(), second.end());
    CHECK(*unpacked == expected);

    // librdkafka and others may send one raw snappy block without framing.
    auto raw = decompress(compression_codec::snappy, raw_snappy(first), 1 << 20);
    REQUIRE(raw.ok());
    CHECK(*raw == first);

    // A block length that runs past the input is corrupt.
    auto cut = frame;
    cut.resize(cut.size() - 3);
    auto failed = decompress(compression_codec::snappy, cut, 1 << 20);
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.failure().code == EINVAL);
}

TEST_CASE("decompression beyond the cap fails without growing past it") {
    // 8 MiB of zeros compress to a few KiB: a classic decompression bomb.
    const std::vector<uint8_t> zeros(8 << 20, 0);
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        auto packed = compress(codec, zeros);
        REQUIRE(packed.ok());
        auto bomb = decompress(codec, *packed, 1 << 20);
        REQUIRE_FALSE(bomb.ok());
        CHECK(bomb.failure().code == EFBIG);
        // Exactly at the cap is fine; one byte short is not.
        auto exact = decompress(codec, *packed, zeros.size());
        REQUIRE(exact.ok());
        CHECK(exact->size() == zeros.size());
        auto short_by_one = decompress(codec, *packed, zeros.size() - 1);
        REQUIRE_FALSE(short_by_one.ok());
        CHECK(short_by_one.failure().code == EFBIG);
    }
}

TEST_CASE("corrupt and truncated input is an error, not a crash") {
    const auto input = sample(5000, 3);
    for (auto codec : all_codecs) {
        if (codec == compression_codec::none) continue;
        CAPTURE(to_string(codec));
        auto packed = compress(codec, input);
        REQUIRE(packed.ok());
        auto truncated = *packed;
        truncated.resize(truncated.size() / 2);
        CHECK_FALSE(decompress(codec, truncated, 1 << 20).ok());
        CHECK_FALSE(decompress(codec, {}, 1 << 20).ok());
        auto garbage = *packed;
        for (size_t i = 0; i < garbage.size(); i += 7) garbage[i] ^= 0x5a;
        auto result = decompress(codec, garbage, 1 << 20);
        if (result.ok()) CHECK(*result != input);
    }
    auto unknown = decompress(static_cast<compression_codec>(6), input, 1 << 20);
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.failure().code == ENOTSUP);
}

TEST_CASE("concatenated gzip members and lz4/zstd frames decode as one stream") {
    const auto first = sample(3000, 4);
    const auto second = sample(2000, 5);
    auto expected = first;
    expected.insert(expected.end(), second.begin(), second.end());
    for (auto codec : {compression_codec::gzip, compression_codec::lz4, compression_codec::zstd}) {
        CAPTURE(to_string(codec));
        auto joined = compress(codec, first).value();
        const auto tail = compress(codec, second).value();
        joined.insert(joined.end(), tail.begin(), tail.end());
        auto unpacked = decompress(codec, joined, 1 << 20);
        REQUIRE(unpacked.ok());
        CHECK(*unpacked == expected);
    }
}

// Regression (issue 10, defect 4): the broker validates compressed batches by
// decompressing them into one buffer per shard. A bomb, a few KiB that expand to
// far more than the cap, must fail with EFBIG while the buffer stays within the
// cap: output is written only as it arrives, into room grown geometrically up to
// the cap and no further, and snappy's stated block length is checked before any
// room is made. A decoder that sized its output from the input's claim, or grew
// it without the cap, would show a capacity past it here.
TEST_CASE("decompress_into refuses a bomb without growing its buffer past the cap") {
    constexpr size_t cap = 1 << 20;
    const std::vector<uint8_t> zeros(32 << 20, 0);
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        auto packed = compress(codec, zeros);
        REQUIRE(packed.ok());
        std::vector<uint8_t> buffer;
        auto bomb = decompress_into(codec, *packed, cap, buffer);
        REQUIRE_FALSE(bomb.ok());
        CHECK(bomb.failure().code == EFBIG);
        CHECK(buffer.capacity() <= cap);
    }
    // A single raw snappy block states its whole length up front.
    std::vector<uint8_t> buffer;
    auto raw = decompress_into(compression_codec::snappy, raw_snappy(zeros), cap, buffer);
    REQUIRE_FALSE(raw.ok());
    CHECK(raw.failure().code == EFBIG);
    CHECK(buffer.capacity() == 0);
}

TEST_CASE("decompress_into reuses its buffer and returns only this call's output") {
    const auto large = sample(200000, 11);
    const auto small = sample(300, 12);
    for (auto codec : all_codecs) {
        CAPTURE(to_string(codec));
        std::vector<uint8_t> buffer;
        auto first = decompress_into(codec, *compress(codec, large), 1 << 20, buffer);
        REQUIRE(first.ok());
        CHECK(std::vector<uint8_t>(first->begin(), first->end()) == large);
        const size_t grown = buffer.capacity();
        auto second = decompress_into(codec, *compress(codec, small), 1 << 20, buffer);
        REQUIRE(second.ok());
        CHECK(std::vector<uint8_t>(second->begin(), second->end()) == small);
        CHECK(second->data() == buffer.data());
        CHECK(buffer.capacity() == grown);
        // A smaller cap on a buffer left larger by an earlier call still holds.
        auto capped = decompress_into(codec, *compress(codec, large), 1000, buffer);
        REQUIRE_FALSE(capped.ok());
        CHECK(capped.failure().code == EFBIG);
    }
}

// zstd keeps one decompression context per thread and frees it after a stream
// whose window made it large; the next stream must decode on a fresh one.
TEST_CASE("zstd decodes after a large-window frame released the thread's context") {
    const auto large = sample(24 << 20, 21);
    std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    REQUIRE(ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, 25)) == 0);
    // Streaming without a pledged size: the frame declares its 32 MiB window.
    std::vector<uint8_t> packed(ZSTD_compressBound(large.size()));
    ZSTD_inBuffer in{large.data(), large.size(), 0};
    ZSTD_outBuffer out{packed.data(), packed.size(), 0};
    REQUIRE(ZSTD_compressStream2(cctx.get(), &out, &in, ZSTD_e_end) == 0);
    packed.resize(out.pos);
    std::vector<uint8_t> buffer;
    auto first = decompress_into(compression_codec::zstd, packed, 32 << 20, buffer);
    REQUIRE(first.ok());
    CHECK(std::equal(first->begin(), first->end(), large.begin(), large.end()));
    const auto small = sample(5000, 22);
    auto second = decompress_into(compression_codec::zstd,
                                  *compress(compression_codec::zstd, small), 1 << 20, buffer);
    REQUIRE(second.ok());
    CHECK(std::equal(second->begin(), second->end(), small.begin(), small.end()));
}
