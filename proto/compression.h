#pragma once
// The compression codecs of Kafka's record batches, framed exactly as Kafka
// clients frame them inside a batch's records section:
//
//   gzip    RFC 1952 gzip members (zlib with the gzip wrapper). Several members
//           in a row decode as their concatenation.
//   snappy  Two framings exist. The Java client writes the xerial snappy-java
//           stream: an 8-byte magic 0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00, a
//           big-endian int32 version and int32 compatible version, then blocks
//           of a big-endian int32 compressed length followed by one raw snappy
//           block each. Other clients may send a single raw snappy block. Decoding
//           detects the magic and accepts both; encoding writes the xerial form,
//           which is what the Java client writes and every client reads.
//   lz4     The LZ4 frame format (lz4frame.h), independent 64 KiB blocks, no
//           content size and no checksums beyond the frame header's, the shape
//           the Java client writes. Concatenated frames decode in sequence.
//   zstd    zstd frames, decoded as a stream because producers need not record
//           the content size in the frame header.
//
// Decompression takes a hard cap on its output: input that would decode to more
// than `output_max` bytes fails, and no more than `output_max` bytes of output
// are ever allocated. A peer chooses the input, so this cap is what keeps a small
// "decompression bomb" from exhausting memory.
//
// Errors (result's `error.code`): EINVAL for corrupt or truncated input, EFBIG
// when the output would exceed the cap, ENOTSUP for a codec value Kafka does not
// define, ENOMEM when a library cannot allocate its state.
//
// Stateless free functions; any thread may call them.

#include <cstdint>
#include <span>
#include <vector>

#include "proto/result.h"

namespace spate::proto {

// Attribute bits 0-2 of a record batch.
enum class compression_codec : uint8_t { none = 0, gzip = 1, snappy = 2, lz4 = 3, zstd = 4 };

// The codec's name as Kafka's `compression.type` spells it ("none", "gzip", ...).
const char* to_string(compression_codec codec);

// Compresses `input` whole. `none` returns a copy.
result<std::vector<uint8_t>> compress(compression_codec codec, std::span<const uint8_t> input);

// Decompresses `input` into `buffer`, which the caller owns and may reuse from
// call to call (a shard keeps one for every batch it validates), and returns the
// output as a view of its first bytes. Fails with EFBIG if the output would
// exceed `output_max`; the buffer then holds at most `output_max` bytes, because
// it grows only as output arrives and never past the cap. The buffer keeps its
// size between calls: only the returned view is output, what follows is stale.
// `none` copies (subject to the same cap).
result<std::span<const uint8_t>> decompress_into(compression_codec codec,
                                                 std::span<const uint8_t> input, size_t output_max,
                                                 std::vector<uint8_t>& buffer);

// decompress_into a fresh vector of exactly the output's size.
result<std::vector<uint8_t>> decompress(compression_codec codec, std::span<const uint8_t> input,
                                        size_t output_max);

}  // namespace spate::proto
