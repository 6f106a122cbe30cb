#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of Kafka's
// record batch v2 and of spate's own on-disk headers.
//
// The `crc` argument is the result of a previous call, so a checksum can be
// computed over several pieces: crc32c(b, crc32c(a)) == crc32c(a ++ b). The
// pre- and post-inversion of the standard CRC are applied inside each call.
//
// All functions are pure and thread-safe; any thread may call them.

#include <cstdint>
#include <span>

namespace spate::proto {

// The checksum with the fastest implementation this CPU supports (decided once, at
// first use): AVX-512 folding for long inputs, the SSE4.2 instruction, else the
// table one.
uint32_t crc32c(std::span<const uint8_t> bytes, uint32_t crc = 0);

// Table-driven (slicing by 8) implementation that runs on any CPU. It is the
// reference the hardware version is tested against.
uint32_t crc32c_portable(std::span<const uint8_t> bytes, uint32_t crc = 0);

// SSE4.2 `crc32` instruction. Large inputs are split into three streams that run
// interleaved (the instruction has a latency of three cycles but a throughput of
// one per cycle) and are joined with a carry-less multiplication. The caller must
// have checked crc32c_hardware_available(); calling it on a CPU without SSE4.2 is
// a programmer error and trips an assertion.
uint32_t crc32c_hardware(std::span<const uint8_t> bytes, uint32_t crc = 0);

// True when the CPU has SSE4.2 and PCLMULQDQ, which crc32c_hardware needs.
bool crc32c_hardware_available();

// AVX-512 VPCLMULQDQ: inputs of 512 bytes and more are folded 256 bytes at a time
// with carry-less multiplications (several times the speed of the crc32
// instruction's three streams); shorter ones and the tail go to crc32c_hardware's
// loop. The caller must have checked crc32c_wide_available().
uint32_t crc32c_wide(std::span<const uint8_t> bytes, uint32_t crc = 0);

// True when the CPU (and the kernel, which must save AVX-512 state) has AVX-512F,
// VPCLMULQDQ, SSE4.2 and PCLMULQDQ.
bool crc32c_wide_available();

}  // namespace spate::proto
