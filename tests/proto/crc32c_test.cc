#include "proto/crc32c.h"

#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string_view>
#include <vector>

using namespace spate::proto;

namespace {

std::span<const uint8_t> bytes_of(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Every implementation must agree on the published vectors, so each check runs
// against all that this CPU can execute.
void check_all(std::span<const uint8_t> input, uint32_t expected) {
    CHECK(crc32c_portable(input) == expected);
    CHECK(crc32c(input) == expected);
    if (crc32c_hardware_available()) CHECK(crc32c_hardware(input) == expected);
    if (crc32c_wide_available()) CHECK(crc32c_wide(input) == expected);
}

}  // namespace

TEST_CASE("crc32c of the standard check string and the empty input") {
    check_all(bytes_of("123456789"), 0xE3069283u);
    check_all({}, 0u);
}

TEST_CASE("crc32c matches the RFC 3720 (iSCSI) test vectors") {
    std::vector<uint8_t> buffer(32, 0x00);
    check_all(buffer, 0x8A9136AAu);
    std::fill(buffer.begin(), buffer.end(), 0xff);
    check_all(buffer, 0x62A8AB43u);
    for (size_t i = 0; i < 32; ++i) buffer[i] = static_cast<uint8_t>(i);
    check_all(buffer, 0x46DD794Eu);
    for (size_t i = 0; i < 32; ++i) buffer[i] = static_cast<uint8_t>(31 - i);
    check_all(buffer, 0x113FDB5Cu);
    // The iSCSI SCSI Read (10) command PDU from the same appendix.
    const std::vector<uint8_t> read_pdu{0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
                                        0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
                                        0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    check_all(read_pdu, 0xD9963A56u);
}

TEST_CASE("crc32c continues across pieces") {
    const auto whole = bytes_of("123456789");
    for (size_t split = 0; split <= whole.size(); ++split) {
        const uint32_t first = crc32c(whole.first(split));
        CHECK(crc32c(whole.subspan(split), first) == 0xE3069283u);
        CHECK(crc32c_portable(whole.subspan(split), crc32c_portable(whole.first(split))) ==
              0xE3069283u);
    }
}

TEST_CASE("hardware crc32c equals the portable one for every length and alignment") {
    if (!crc32c_hardware_available()) return;
    std::mt19937_64 random(20240601);
    // Large enough that the three-stream paths (long and short strides) run with
    // every kind of remainder after them.
    std::vector<uint8_t> buffer(3 * 2048 * 2 + 4096);
    for (auto& b : buffer) b = static_cast<uint8_t>(random());
    for (size_t length = 0; length <= 2048; ++length) {
        const size_t start = length % 8;
        const auto piece = std::span<const uint8_t>(buffer).subspan(start, length);
        const uint32_t seed = static_cast<uint32_t>(random());
        REQUIRE(crc32c_hardware(piece, seed) == crc32c_portable(piece, seed));
    }
    for (size_t start = 0; start < 16; ++start) {
        for (size_t length : {3071u, 3072u, 4095u, 4096u, 6143u, 6144u, 6145u, 12289u, 16000u}) {
            const auto piece = std::span<const uint8_t>(buffer).subspan(start, length);
            REQUIRE(crc32c_hardware(piece) == crc32c_portable(piece));
        }
    }
}

TEST_CASE("wide (AVX-512 folding) crc32c equals the portable one for every length and alignment") {
    if (!crc32c_wide_available()) {
        MESSAGE("skipped: this CPU has no AVX-512 VPCLMULQDQ");
        return;
    }
    std::mt19937_64 random(20261207);
    std::vector<uint8_t> buffer(70000);
    for (auto& b : buffer) b = static_cast<uint8_t>(random());
    // Around the 512-byte threshold, one and many 256-byte blocks, every tail length.
    for (size_t length = 0; length <= 1600; ++length) {
        const size_t start = length % 64;
        const auto piece = std::span<const uint8_t>(buffer).subspan(start, length);
        const uint32_t seed = static_cast<uint32_t>(random());
        REQUIRE(crc32c_wide(piece, seed) == crc32c_portable(piece, seed));
        REQUIRE(crc32c(piece, seed) == crc32c_portable(piece, seed));
    }
    for (size_t start = 0; start < 64; start += 3) {
        for (size_t length : {4096u, 16383u, 65536u, 69000u}) {
            const auto piece = std::span<const uint8_t>(buffer).subspan(start, length);
            REQUIRE(crc32c_wide(piece) == crc32c_portable(piece));
        }
    }
    // A register whose bits all matter, over a block of zeros and of ones.
    std::vector<uint8_t> zeros(1024, 0x00), ones(1024, 0xff);
    for (uint32_t seed : {0u, 1u, 0x80000000u, 0xffffffffu, 0x12345678u}) {
        REQUIRE(crc32c_wide(zeros, seed) == crc32c_portable(zeros, seed));
        REQUIRE(crc32c_wide(ones, seed) == crc32c_portable(ones, seed));
    }
}
