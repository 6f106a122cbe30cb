// CRC-32C: a portable slicing-by-8 version and an SSE4.2 version with three
// interleaved streams. Both work on the raw (not inverted) CRC register; the
// public functions invert on entry and exit.
#include "proto/crc32c.h"

#include <nmmintrin.h>
#include <wmmintrin.h>

#include <array>
#include <bit>
#include <cstring>

#include "proto/assert.h"

namespace spate::proto {
namespace {

// The Castagnoli polynomial, bit-reversed: bit 31 stands for x^0.
constexpr uint32_t polynomial = 0x82F63B78u;

using crc_tables = std::array<std::array<uint32_t, 256>, 8>;

// tables[0][b] advances the register over one byte b; tables[k][b] over byte b
// followed by k zero bytes, which lets the portable loop consume 8 bytes with
// eight independent lookups.
constexpr crc_tables make_tables() {
    crc_tables tables{};
    for (uint32_t byte = 0; byte < 256; ++byte) {
        uint32_t value = byte;
        for (int bit = 0; bit < 8; ++bit)
            value = (value & 1) ? (value >> 1) ^ polynomial : value >> 1;
        tables[0][byte] = value;
    }
    for (size_t k = 1; k < 8; ++k)
        for (size_t byte = 0; byte < 256; ++byte) {
            const uint32_t previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][previous & 0xff];
        }
    return tables;
}

constexpr crc_tables tables = make_tables();

uint64_t load_le64(const uint8_t* at) {
    uint64_t value;
    std::memcpy(&value, at, sizeof(value));
    if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap64(value);
    return value;
}

uint32_t portable_raw(uint32_t state, const uint8_t* at, size_t size) {
    while (size > 0 && (reinterpret_cast<uintptr_t>(at) & 7) != 0) {
        state = (state >> 8) ^ tables[0][(state ^ *at) & 0xff];
        ++at;
        --size;
    }
    while (size >= 8) {
        const uint64_t word = load_le64(at) ^ state;
        const auto low = static_cast<uint32_t>(word);
        const auto high = static_cast<uint32_t>(word >> 32);
        state = tables[7][low & 0xff] ^ tables[6][(low >> 8) & 0xff] ^
                tables[5][(low >> 16) & 0xff] ^ tables[4][low >> 24] ^ tables[3][high & 0xff] ^
                tables[2][(high >> 8) & 0xff] ^ tables[1][(high >> 16) & 0xff] ^
                tables[0][high >> 24];
        at += 8;
        size -= 8;
    }
    while (size > 0) {
        state = (state >> 8) ^ tables[0][(state ^ *at) & 0xff];
        ++at;
        --size;
    }
    return state;
}

// Multiplication of two polynomials modulo the CRC polynomial, both in the
// bit-reversed representation. Used only to derive the shift constants below.
constexpr uint32_t multiply_mod(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int i = 0; i < 32; ++i) {
        if (a & (0x80000000u >> i)) product ^= b;
        b = (b & 1) ? (b >> 1) ^ polynomial : b >> 1;
    }
    return product;
}

// x^n modulo the CRC polynomial, bit-reversed, by square and multiply.
constexpr uint32_t x_power_mod(uint64_t n) {
    uint32_t result = 0x80000000u;  // x^0
    uint32_t base = 0x40000000u;    // x^1
    while (n != 0) {
        if (n & 1) result = multiply_mod(result, base);
        base = multiply_mod(base, base);
        n >>= 1;
    }
    return result;
}

// The three-stream loop computes stream A from the incoming register and B and
// C from zero; since the raw CRC is linear in its register,
//   crc(A ++ B ++ C) = shift(crc(A), |B|+|C|) ^ shift(crc(B), |C|) ^ crc(C),
// where shift(r, n) multiplies r by x^(8n). A carry-less product of r and
// K = x^(8n-33) followed by the crc32 instruction on the 64-bit product (which
// multiplies by x^32 and reduces; the product itself carries one more x) yields
// exactly shift(r, n).
//
// Strides come in tiers, longest first: the longest keeps the merge cost
// negligible on big inputs, and the shorter ones let a 4 KiB page run almost
// entirely in three streams instead of falling back to one.
struct stride_tier {
    size_t stride_bytes;
    uint32_t shift_once;   // shift by one stride
    uint32_t shift_twice;  // shift by two strides
};
constexpr uint32_t shift_constant(size_t stride_bytes) {
    return x_power_mod(8 * stride_bytes - 33);
}
constexpr stride_tier make_tier(size_t stride_bytes) {
    return {stride_bytes, shift_constant(stride_bytes), shift_constant(2 * stride_bytes)};
}
constexpr std::array<stride_tier, 6> stride_tiers = {make_tier(2048), make_tier(1024),
                                                     make_tier(512),  make_tier(256),
                                                     make_tier(128),  make_tier(64)};

__attribute__((target("sse4.2,pclmul"))) uint32_t shift_register(uint32_t state,
                                                                 uint32_t constant) {
    const __m128i product = _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(state)),
                                                 _mm_cvtsi32_si128(static_cast<int>(constant)), 0);
    return static_cast<uint32_t>(
        _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(product))));
}

__attribute__((target("sse4.2,pclmul"))) uint32_t three_streams(uint32_t state, const uint8_t*& at,
                                                                size_t& size, size_t stride,
                                                                uint32_t shift_once,
                                                                uint32_t shift_twice) {
    while (size >= 3 * stride) {
        uint64_t a = state, b = 0, c = 0;
        for (size_t i = 0; i < stride; i += 8) {
            a = _mm_crc32_u64(a, load_le64(at + i));
            b = _mm_crc32_u64(b, load_le64(at + stride + i));
            c = _mm_crc32_u64(c, load_le64(at + 2 * stride + i));
        }
        state = shift_register(static_cast<uint32_t>(a), shift_twice) ^
                shift_register(static_cast<uint32_t>(b), shift_once) ^ static_cast<uint32_t>(c);
        at += 3 * stride;
        size -= 3 * stride;
    }
    return state;
}

__attribute__((target("sse4.2,pclmul"))) uint32_t hardware_raw(uint32_t state, const uint8_t* at,
                                                               size_t size) {
    while (size > 0 && (reinterpret_cast<uintptr_t>(at) & 7) != 0) {
        state = _mm_crc32_u8(state, *at);
        ++at;
        --size;
    }
    for (const stride_tier& tier : stride_tiers)
        state =
            three_streams(state, at, size, tier.stride_bytes, tier.shift_once, tier.shift_twice);
    uint64_t wide = state;
    while (size >= 8) {
        wide = _mm_crc32_u64(wide, load_le64(at));
        at += 8;
        size -= 8;
    }
    state = static_cast<uint32_t>(wide);
    while (size > 0) {
        state = _mm_crc32_u8(state, *at);
        ++at;
        --size;
    }
    return state;
}

bool detect_hardware() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
}

}  // namespace

bool crc32c_hardware_available() {
    static const bool available = detect_hardware();
    return available;
}

uint32_t crc32c_portable(std::span<const uint8_t> bytes, uint32_t crc) {
    return ~portable_raw(~crc, bytes.data(), bytes.size());
}

uint32_t crc32c_hardware(std::span<const uint8_t> bytes, uint32_t crc) {
    SPATE_ASSERT(crc32c_hardware_available(), "crc32c_hardware on a CPU without SSE4.2");
    return ~hardware_raw(~crc, bytes.data(), bytes.size());
}

uint32_t crc32c(std::span<const uint8_t> bytes, uint32_t crc) {
    if (crc32c_hardware_available()) return ~hardware_raw(~crc, bytes.data(), bytes.size());
    return ~portable_raw(~crc, bytes.data(), bytes.size());
}

}  // namespace spate::proto
