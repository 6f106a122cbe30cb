// Kafka's compression codecs over zlib, snappy, liblz4 and libzstd, with a hard
// cap on decompressed output. See compression.h for the framings.
#include "proto/compression.h"

#include <lz4frame.h>
#include <snappy.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>

namespace spate::proto {
namespace {

// The xerial snappy-java stream header: magic, version 1, compatible version 1.
constexpr uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0x00};
constexpr size_t xerial_header_size = 16;
// snappy-java's default block size; each block is compressed on its own.
constexpr size_t xerial_block_size = 32 * 1024;
// The first output allocation of a streaming decoder, before it doubles.
constexpr size_t output_initial_size = 16 * 1024;

error corrupt(const char* codec, const char* what) {
    return error{EINVAL, std::string(codec) + ": " + what};
}
error over_cap(const char* codec, size_t output_max) {
    return error{EFBIG, std::string(codec) + ": decompressed size exceeds the limit of " +
                            std::to_string(output_max) + " bytes"};
}

uint32_t load_be32(const uint8_t* at) {
    uint32_t value;
    std::memcpy(&value, at, sizeof(value));
    return __builtin_bswap32(value);
}
void store_be32(uint8_t* at, uint32_t value) {
    value = __builtin_bswap32(value);
    std::memcpy(at, &value, sizeof(value));
}

// The output of a decoder, written into a buffer that its caller may reuse from
// call to call: it grows geometrically but never past `max`, and never reserves
// more than it is about to use (std::vector::resize alone may over-allocate, so
// every growth reserves the exact size first). The buffer keeps its size between
// calls (the bytes past used() are stale), so a reused buffer costs no zeroing.
class capped_output {
public:
    // A guess of the output's size from the input's (none when `input_size` is 0)
    // sizes the first growth; grow() and make_room() do the rest.
    capped_output(std::vector<uint8_t>& buffer, size_t max, size_t input_size)
        : _buffer(buffer), _max(max) {
        if (input_size == 0) return;
        const size_t first = std::min(_max, std::max(output_initial_size, input_size * 4));
        if (_buffer.size() < first) grow_to(first);
    }
    uint8_t* free_begin() { return _buffer.data() + _used; }
    size_t free_size() const { return limit() - _used; }
    void commit(size_t bytes) { _used += bytes; }
    // Makes room for more output; false when the buffer already holds `max` bytes.
    bool grow() {
        if (limit() >= _max) return false;
        grow_to(std::min(_max, std::max(output_initial_size, _buffer.size() * 2)));
        return true;
    }
    // Makes at least `bytes` contiguous bytes free; false, allocating nothing, when
    // that would pass `max`.
    bool make_room(size_t bytes) {
        if (bytes > _max - _used) return false;
        while (free_size() < bytes) grow();
        return true;
    }
    std::span<const uint8_t> finish() const { return {_buffer.data(), _used}; }

private:
    // A previous call with a larger cap may have left the buffer bigger than `max`.
    size_t limit() const { return std::min(_buffer.size(), _max); }
    void grow_to(size_t size) {
        _buffer.reserve(size);
        _buffer.resize(size);
    }
    std::vector<uint8_t>& _buffer;
    size_t _max;
    size_t _used = 0;
};

// ---- gzip ----------------------------------------------------------------

result<std::vector<uint8_t>> gzip_compress(std::span<const uint8_t> input) {
    if (input.size() > UINT_MAX) return error{EINVAL, "gzip: input too large"};
    z_stream stream{};
    // 16 + MAX_WBITS selects the gzip wrapper instead of the zlib one.
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return error{ENOMEM, "gzip: deflateInit2 failed"};
    std::vector<uint8_t> output(deflateBound(&stream, static_cast<uLong>(input.size())));
    stream.next_in = const_cast<Bytef*>(input.data());
    stream.avail_in = static_cast<uInt>(input.size());
    stream.next_out = output.data();
    stream.avail_out = static_cast<uInt>(output.size());
    const int status = deflate(&stream, Z_FINISH);
    const size_t produced = stream.total_out;
    deflateEnd(&stream);
    if (status != Z_STREAM_END) return error{EINVAL, "gzip: deflate did not finish"};
    output.resize(produced);
    return output;
}

result<std::span<const uint8_t>> gzip_decompress(std::span<const uint8_t> input, size_t output_max,
                                                 std::vector<uint8_t>& buffer) {
    if (input.size() > UINT_MAX) return corrupt("gzip", "input too large");
    z_stream stream{};
    if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK)
        return error{ENOMEM, "gzip: inflateInit2 failed"};
    std::unique_ptr<z_stream, int (*)(z_stream*)> guard(&stream, inflateEnd);
    stream.next_in = const_cast<Bytef*>(input.data());
    stream.avail_in = static_cast<uInt>(input.size());
    capped_output output(buffer, output_max, input.size());
    for (;;) {
        uint8_t probe = 0;
        const bool probing = output.free_size() == 0 && !output.grow();
        // At the cap, a one-byte probe tells a stream that merely has its trailer
        // left from one that would produce more output.
        stream.next_out = probing ? &probe : output.free_begin();
        stream.avail_out =
            probing ? 1u : static_cast<uInt>(std::min<size_t>(output.free_size(), UINT_MAX));
        const uInt in_before = stream.avail_in;
        const uInt out_before = stream.avail_out;
        const int status = inflate(&stream, Z_NO_FLUSH);
        const uInt produced = out_before - stream.avail_out;
        if (probing && produced > 0) return over_cap("gzip", output_max);
        if (!probing) output.commit(produced);
        if (status == Z_STREAM_END) {
            if (stream.avail_in == 0) break;
            // Another gzip member follows; Kafka's readers accept concatenated members.
            if (inflateReset(&stream) != Z_OK) return corrupt("gzip", "inflateReset failed");
            continue;
        }
        if (status == Z_MEM_ERROR) return error{ENOMEM, "gzip: out of memory"};
        if (status != Z_OK && status != Z_BUF_ERROR) return corrupt("gzip", "corrupt stream");
        if (in_before == stream.avail_in && produced == 0)
            return corrupt("gzip", "truncated stream");
    }
    return output.finish();
}

// ---- snappy --------------------------------------------------------------

result<std::vector<uint8_t>> snappy_compress(std::span<const uint8_t> input) {
    std::vector<uint8_t> output(xerial_header_size);
    std::memcpy(output.data(), xerial_magic, sizeof(xerial_magic));
    store_be32(output.data() + 8, 1);
    store_be32(output.data() + 12, 1);
    for (size_t at = 0; at < input.size(); at += xerial_block_size) {
        const size_t block = std::min(xerial_block_size, input.size() - at);
        const size_t position = output.size();
        output.resize(position + 4 + snappy::MaxCompressedLength(block));
        size_t compressed = 0;
        snappy::RawCompress(reinterpret_cast<const char*>(input.data() + at), block,
                            reinterpret_cast<char*>(output.data() + position + 4), &compressed);
        store_be32(output.data() + position, static_cast<uint32_t>(compressed));
        output.resize(position + 4 + compressed);
    }
    return output;
}

// Appends one raw snappy block to `output`, which refuses to pass its cap. The
// block's header states its decompressed length, so the cap is checked before
// any room is made for it.
result<void> snappy_raw_append(std::span<const uint8_t> block, size_t output_max,
                               capped_output& output) {
    const auto* data = reinterpret_cast<const char*>(block.data());
    size_t length = 0;
    if (!snappy::GetUncompressedLength(data, block.size(), &length))
        return corrupt("snappy", "bad block header");
    if (!output.make_room(length)) return over_cap("snappy", output_max);
    if (!snappy::RawUncompress(data, block.size(), reinterpret_cast<char*>(output.free_begin())))
        return corrupt("snappy", "corrupt block");
    output.commit(length);
    return ok_result();
}

result<std::span<const uint8_t>> snappy_decompress(std::span<const uint8_t> input,
                                                   size_t output_max,
                                                   std::vector<uint8_t>& buffer) {
    // Blocks state their own lengths, so the output starts empty rather than at a
    // guess.
    capped_output output(buffer, output_max, 0);
    const bool xerial = input.size() >= sizeof(xerial_magic) &&
                        std::memcmp(input.data(), xerial_magic, sizeof(xerial_magic)) == 0;
    if (!xerial) {
        auto appended = snappy_raw_append(input, output_max, output);
        if (!appended) return appended.failure();
        return output.finish();
    }
    if (input.size() < xerial_header_size) return corrupt("snappy", "truncated xerial header");
    size_t at = xerial_header_size;
    while (at < input.size()) {
        if (input.size() - at < 4) return corrupt("snappy", "truncated xerial block length");
        const uint32_t block_size = load_be32(input.data() + at);
        at += 4;
        if (block_size > input.size() - at) return corrupt("snappy", "xerial block beyond input");
        auto appended = snappy_raw_append(input.subspan(at, block_size), output_max, output);
        if (!appended) return appended.failure();
        at += block_size;
    }
    return output.finish();
}

// ---- lz4 -----------------------------------------------------------------

LZ4F_preferences_t lz4_preferences() {
    LZ4F_preferences_t preferences;
    std::memset(&preferences, 0, sizeof(preferences));
    preferences.frameInfo.blockSizeID = LZ4F_max64KB;
    preferences.frameInfo.blockMode = LZ4F_blockIndependent;
    preferences.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
    return preferences;
}

result<std::vector<uint8_t>> lz4_compress(std::span<const uint8_t> input) {
    const LZ4F_preferences_t preferences = lz4_preferences();
    std::vector<uint8_t> output(LZ4F_compressFrameBound(input.size(), &preferences));
    const size_t written =
        LZ4F_compressFrame(output.data(), output.size(), input.data(), input.size(), &preferences);
    if (LZ4F_isError(written))
        return error{EINVAL, std::string("lz4: ") + LZ4F_getErrorName(written)};
    output.resize(written);
    return output;
}

result<std::span<const uint8_t>> lz4_decompress(std::span<const uint8_t> input, size_t output_max,
                                                std::vector<uint8_t>& buffer) {
    LZ4F_dctx* raw_context = nullptr;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&raw_context, LZ4F_VERSION)))
        return error{ENOMEM, "lz4: cannot create a decompression context"};
    std::unique_ptr<LZ4F_dctx, LZ4F_errorCode_t (*)(LZ4F_dctx*)> context(
        raw_context, LZ4F_freeDecompressionContext);
    capped_output output(buffer, output_max, input.size());
    size_t at = 0;
    size_t hint = 1;  // LZ4F_decompress returns 0 once a frame is complete.
    for (;;) {
        if (at == input.size() && hint == 0) break;
        uint8_t probe = 0;
        const bool probing = output.free_size() == 0 && !output.grow();
        size_t produced = probing ? 1 : output.free_size();
        size_t consumed = input.size() - at;
        hint = LZ4F_decompress(context.get(), probing ? &probe : output.free_begin(), &produced,
                               input.data() + at, &consumed, nullptr);
        if (LZ4F_isError(hint))
            return error{EINVAL, std::string("lz4: ") + LZ4F_getErrorName(hint)};
        if (probing && produced > 0) return over_cap("lz4", output_max);
        if (!probing) output.commit(produced);
        at += consumed;
        // No progress at all while the frame is unfinished: the input ended early.
        if (consumed == 0 && produced == 0 && hint != 0) return corrupt("lz4", "truncated frame");
    }
    return output.finish();
}

// ---- zstd ----------------------------------------------------------------

// zstd's default compression level, the one Kafka's clients use by default too.
constexpr int zstd_level = 3;
// The decoder's window buffer is sized by the frame header, which the peer
// writes. It is limited to 8 MiB (enough for every client's default levels) or
// to the output cap if that is larger, up to zstd's own default limit of 128 MiB.
constexpr int zstd_window_log_floor = 23;
constexpr int zstd_window_log_ceiling = 27;

result<std::vector<uint8_t>> zstd_compress(std::span<const uint8_t> input) {
    std::vector<uint8_t> output(ZSTD_compressBound(input.size()));
    const size_t written =
        ZSTD_compress(output.data(), output.size(), input.data(), input.size(), zstd_level);
    if (ZSTD_isError(written))
        return error{EINVAL, std::string("zstd: ") + ZSTD_getErrorName(written)};
    output.resize(written);
    return output;
}

// A thread's decompression context keeps the window buffer of the largest frame
// it decoded; one larger than this (a frame declaring a window past 8 MiB, which
// only a large output cap allows) is freed after its stream.
constexpr size_t zstd_context_retained_bytes_max = (size_t{1} << zstd_window_log_floor) + (1 << 20);

result<std::span<const uint8_t>> zstd_decompress_with(ZSTD_DCtx* context,
                                                      std::span<const uint8_t> input,
                                                      size_t output_max,
                                                      std::vector<uint8_t>& buffer) {
    if (ZSTD_isError(ZSTD_DCtx_reset(context, ZSTD_reset_session_only)))
        return error{EINVAL, "zstd: cannot reset the decompression context"};
    const int cap_log = output_max <= 1 ? 0 : std::bit_width(output_max - 1);
    const int window_log = std::clamp(cap_log, zstd_window_log_floor, zstd_window_log_ceiling);
    if (ZSTD_isError(ZSTD_DCtx_setParameter(context, ZSTD_d_windowLogMax, window_log)))
        return error{EINVAL, "zstd: cannot limit the window size"};
    capped_output output(buffer, output_max, input.size());
    ZSTD_inBuffer source{input.data(), input.size(), 0};
    size_t hint = 1;  // ZSTD_decompressStream returns 0 once a frame is complete.
    for (;;) {
        if (source.pos == source.size && hint == 0) break;
        uint8_t probe = 0;
        const bool probing = output.free_size() == 0 && !output.grow();
        ZSTD_outBuffer target{probing ? &probe : output.free_begin(),
                              probing ? 1 : output.free_size(), 0};
        hint = ZSTD_decompressStream(context, &target, &source);
        if (ZSTD_isError(hint)) {
            if (ZSTD_getErrorCode(hint) == ZSTD_error_memory_allocation)
                return error{ENOMEM, "zstd: out of memory"};
            return error{EINVAL, std::string("zstd: ") + ZSTD_getErrorName(hint)};
        }
        if (probing && target.pos > 0) return over_cap("zstd", output_max);
        if (!probing) output.commit(target.pos);
        // With input exhausted and room left over, a decoder that still wants
        // input has been handed a truncated frame.
        if (hint != 0 && source.pos == source.size && target.pos < target.size)
            return corrupt("zstd", "truncated frame");
    }
    return output.finish();
}

result<std::span<const uint8_t>> zstd_decompress(std::span<const uint8_t> input, size_t output_max,
                                                 std::vector<uint8_t>& buffer) {
    // One context per thread, reset for every stream: creating one (and its window
    // buffer) per batch was most of the cost of decompressing a small batch.
    using context_ptr = std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)>;
    thread_local context_ptr context(nullptr, ZSTD_freeDCtx);
    if (!context) context = context_ptr(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!context) return error{ENOMEM, "zstd: cannot create a decompression context"};
    auto output = zstd_decompress_with(context.get(), input, output_max, buffer);
    if (ZSTD_sizeof_DCtx(context.get()) > zstd_context_retained_bytes_max) context.reset();
    return output;
}

}  // namespace

const char* to_string(compression_codec codec) {
    switch (codec) {
        case compression_codec::none:
            return "none";
        case compression_codec::gzip:
            return "gzip";
        case compression_codec::snappy:
            return "snappy";
        case compression_codec::lz4:
            return "lz4";
        case compression_codec::zstd:
            return "zstd";
    }
    return "unknown";
}

result<std::vector<uint8_t>> compress(compression_codec codec, std::span<const uint8_t> input) {
    switch (codec) {
        case compression_codec::none:
            return std::vector<uint8_t>(input.begin(), input.end());
        case compression_codec::gzip:
            return gzip_compress(input);
        case compression_codec::snappy:
            return snappy_compress(input);
        case compression_codec::lz4:
            return lz4_compress(input);
        case compression_codec::zstd:
            return zstd_compress(input);
    }
    return error{ENOTSUP, "unknown compression codec " + std::to_string(static_cast<int>(codec))};
}

result<std::span<const uint8_t>> decompress_into(compression_codec codec,
                                                 std::span<const uint8_t> input, size_t output_max,
                                                 std::vector<uint8_t>& buffer) {
    switch (codec) {
        case compression_codec::none: {
            capped_output output(buffer, output_max, 0);
            if (!output.make_room(input.size())) return over_cap("none", output_max);
            if (!input.empty()) std::memcpy(output.free_begin(), input.data(), input.size());
            output.commit(input.size());
            return output.finish();
        }
        case compression_codec::gzip:
            return gzip_decompress(input, output_max, buffer);
        case compression_codec::snappy:
            return snappy_decompress(input, output_max, buffer);
        case compression_codec::lz4:
            return lz4_decompress(input, output_max, buffer);
        case compression_codec::zstd:
            return zstd_decompress(input, output_max, buffer);
    }
    return error{ENOTSUP, "unknown compression codec " + std::to_string(static_cast<int>(codec))};
}

result<std::vector<uint8_t>> decompress(compression_codec codec, std::span<const uint8_t> input,
                                        size_t output_max) {
    std::vector<uint8_t> buffer;
    auto output = decompress_into(codec, input, output_max, buffer);
    if (!output) return output.failure();
    buffer.resize(output->size());
    return buffer;
}

}  // namespace spate::proto
