// CRC-32C: a portable slicing-by-8 version, an SSE4.2 version with three
// interleaved streams, and for long inputs an AVX-512 version folding 256 bytes
// at a time with carry-less multiplications. All work on the raw (not inverted)
// CRC register; the public functions invert on entry and exit.
#include "proto/crc32c.h"

#include <immintrin.h>
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

// Folding (Intel's "Fast CRC Computation Using PCLMULQDQ", for a reflected CRC). A
// 16-byte block X holds the polynomial H*x^64 + L: its first 8 bytes H (the low lane,
// bit i standing for x^(127-i)), then L. Moving X forward by F bits multiplies it by
// x^F, and modulo the polynomial
//   X*x^F = H*x^(F+64) + L*x^F = clmul(H, x^(F+63) mod P) + clmul(L, x^(F-1) mod P),
// since a carry-less product of two bit-reversed 64-bit values is their product times
// x. The result (degree < 96) is XORed into the block F bits further on. A constant
// K of degree < 32 sits in the top half of its 64-bit lane (bit 63-d for x^d), which
// is x_power_mod's 32-bit form shifted up by 32.
struct fold_constants {
    uint64_t high_half;  // x^(F+63) mod P, multiplies the block's first 8 bytes
    uint64_t low_half;   // x^(F-1) mod P, its last 8
};
constexpr fold_constants fold_by_bytes(size_t bytes) {
    const uint64_t bits = 8 * bytes;
    return {uint64_t{x_power_mod(bits + 63)} << 32, uint64_t{x_power_mod(bits - 1)} << 32};
}
constexpr size_t wide_block = 256;  // four 64-byte registers, folded together
// Below this the three-stream loop is as fast (measured: bench/proto_crc32c_bench).
constexpr size_t wide_bytes_min = 2 * wide_block;
constexpr fold_constants fold_block = fold_by_bytes(wide_block);
constexpr fold_constants fold_192 = fold_by_bytes(192);
constexpr fold_constants fold_128 = fold_by_bytes(128);
constexpr fold_constants fold_64 = fold_by_bytes(64);
constexpr fold_constants fold_48 = fold_by_bytes(48);
constexpr fold_constants fold_32 = fold_by_bytes(32);
constexpr fold_constants fold_16 = fold_by_bytes(16);

__attribute__((target("sse4.2,pclmul"))) __m128i constants128(fold_constants k) {
    return _mm_set_epi64x(static_cast<long long>(k.low_half), static_cast<long long>(k.high_half));
}

__attribute__((target("avx512f,vpclmulqdq"))) __m512i constants512(fold_constants k) {
    // The masked form: GCC 12 warns on the plain one's undefined source.
    return _mm512_maskz_broadcast_i32x4(static_cast<__mmask16>(0xffff), constants128(k));
}

// fold(x) ^ y, for each of the four 16-byte lanes.
__attribute__((target("avx512f,vpclmulqdq"))) __m512i fold512(__m512i x, __m512i k, __m512i y) {
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), y, 0x96);
}

__attribute__((target("sse4.2,pclmul"))) __m128i fold128(__m128i x, fold_constants k, __m128i y) {
    const __m128i constants = constants128(k);
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, constants, 0x00),
                                       _mm_clmulepi64_si128(x, constants, 0x11)),
                         y);
}

// Consumes whole 256-byte blocks (at least two) and returns the register after them.
__attribute__((target("avx512f,vpclmulqdq,sse4.2,pclmul"))) uint32_t wide_raw(uint32_t state,
                                                                              const uint8_t*& at,
                                                                              size_t& size) {
    SPATE_ASSERT(size >= 2 * wide_block, "the wide path folds at least one block");
    // The register goes into the message's first 32 bits (the rest of the vector is zero).
    const __m512i first = _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(state)));
    __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(at), first);
    __m512i a1 = _mm512_loadu_si512(at + 64);
    __m512i a2 = _mm512_loadu_si512(at + 128);
    __m512i a3 = _mm512_loadu_si512(at + 192);
    at += wide_block;
    size -= wide_block;
    const __m512i k_block = constants512(fold_block);
    while (size >= wide_block) {
        a0 = fold512(a0, k_block, _mm512_loadu_si512(at));
        a1 = fold512(a1, k_block, _mm512_loadu_si512(at + 64));
        a2 = fold512(a2, k_block, _mm512_loadu_si512(at + 128));
        a3 = fold512(a3, k_block, _mm512_loadu_si512(at + 192));
        at += wide_block;
        size -= wide_block;
    }
    // Everything into the last 64 bytes, then into its last 16.
    a3 = fold512(a0, constants512(fold_192), a3);
    a3 = fold512(a1, constants512(fold_128), a3);
    a3 = fold512(a2, constants512(fold_64), a3);
    alignas(64) __m128i lanes[4];
    _mm512_store_si512(lanes, a3);
    __m128i last = lanes[3];
    last = fold128(lanes[0], fold_48, last);
    last = fold128(lanes[1], fold_32, last);
    last = fold128(lanes[2], fold_16, last);
    // The register after those 16 bytes, all earlier ones being folded into them.
    uint64_t wide = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(last)));
    wide = _mm_crc32_u64(wide, static_cast<uint64_t>(_mm_extract_epi64(last, 1)));
    return static_cast<uint32_t>(wide);
}

bool detect_wide() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") &&
           __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
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

bool crc32c_wide_available() {
    static const bool available = detect_wide();
    return available;
}

uint32_t crc32c_wide(std::span<const uint8_t> bytes, uint32_t crc) {
    SPATE_ASSERT(crc32c_wide_available(), "crc32c_wide on a CPU without AVX-512 VPCLMULQDQ");
    const uint8_t* at = bytes.data();
    size_t size = bytes.size();
    uint32_t state = ~crc;
    if (size >= wide_bytes_min) state = wide_raw(state, at, size);
    return ~hardware_raw(state, at, size);
}

uint32_t crc32c(std::span<const uint8_t> bytes, uint32_t crc) {
    // The wide version takes short inputs to the hardware loop itself.
    if (crc32c_wide_available()) return crc32c_wide(bytes, crc);
    if (crc32c_hardware_available()) return ~hardware_raw(~crc, bytes.data(), bytes.size());
    return ~portable_raw(~crc, bytes.data(), bytes.size());
}

}  // namespace spate::proto
