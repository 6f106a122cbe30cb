// Primitive encoders and decoders of the Kafka wire format.
#include <bit>

#include "proto/reader.h"
#include "proto/writer.h"

namespace spate::proto {

const char* to_string(decode_error error) {
    switch (error) {
        case decode_error::none:
            return "none";
        case decode_error::truncated:
            return "truncated";
        case decode_error::negative_length:
            return "negative length";
        case decode_error::too_large:
            return "length or count too large";
        case decode_error::bad_varint:
            return "malformed varint";
        case decode_error::bad_value:
            return "value out of range";
    }
    return "unknown";
}

double reader::float64() { return std::bit_cast<double>(fixed<uint64_t>()); }

uuid reader::uuid_value() {
    uuid out;
    auto view = raw(out.bytes.size());
    if (!view.empty()) std::memcpy(out.bytes.data(), view.data(), out.bytes.size());
    return out;
}

uint64_t reader::unsigned_varlong_long() {
    uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (remaining() == 0) {
            fail(decode_error::truncated);
            return 0;
        }
        const uint8_t byte = _data[_position++];
        if (shift == 63 && (byte & 0xfe) != 0) break;  // more than 64 bits
        value |= static_cast<uint64_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return value;
    }
    fail(decode_error::bad_varint);
    return 0;
}

uint32_t reader::unsigned_varint_long() {
    uint32_t value = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (remaining() == 0) {
            fail(decode_error::truncated);
            return 0;
        }
        const uint8_t byte = _data[_position++];
        if (shift == 28 && (byte & 0xf0) != 0) break;  // more than 32 bits
        value |= static_cast<uint32_t>(byte & 0x7f) << shift;
        if ((byte & 0x80) == 0) return value;
    }
    fail(decode_error::bad_varint);
    return 0;
}

int64_t reader::length_prefix(bool compact, bool wide) {
    int64_t length;
    if (compact) {
        length = static_cast<int64_t>(unsigned_varint()) - 1;
    } else {
        length = wide ? int32() : int16();
    }
    if (!ok()) return 0;
    if (length < -1) {
        fail(decode_error::negative_length);
        return 0;
    }
    if (length > static_cast<int64_t>(remaining())) {
        fail(decode_error::too_large);
        return 0;
    }
    return length;
}

std::optional<std::string> reader::nullable_string(bool compact) {
    const int64_t length = length_prefix(compact, false);
    if (!ok() || length < 0) return std::nullopt;
    auto view = raw(static_cast<size_t>(length));
    return std::string(reinterpret_cast<const char*>(view.data()), view.size());
}

std::string reader::string(bool compact) {
    const int64_t length = length_prefix(compact, false);
    if (!ok()) return {};
    if (length < 0) {
        fail(decode_error::negative_length);
        return {};
    }
    auto view = raw(static_cast<size_t>(length));
    return std::string(reinterpret_cast<const char*>(view.data()), view.size());
}

std::optional<std::span<const uint8_t>> reader::nullable_bytes(bool compact) {
    const int64_t length = length_prefix(compact, true);
    if (!ok() || length < 0) return std::nullopt;
    return raw(static_cast<size_t>(length));
}

std::span<const uint8_t> reader::bytes(bool compact) {
    const int64_t length = length_prefix(compact, true);
    if (!ok()) return {};
    if (length < 0) {
        fail(decode_error::negative_length);
        return {};
    }
    return raw(static_cast<size_t>(length));
}

int32_t reader::array_count(bool compact, size_t element_size_min) {
    int64_t count = compact ? static_cast<int64_t>(unsigned_varint()) - 1 : int32();
    if (!ok()) return 0;
    if (count < -1) {
        fail(decode_error::negative_length);
        return 0;
    }
    if (element_size_min == 0) element_size_min = 1;
    if (count > 0 && static_cast<uint64_t>(count) > remaining() / element_size_min) {
        fail(decode_error::too_large);
        return 0;
    }
    return static_cast<int32_t>(count);
}

std::span<const uint8_t> reader::raw(size_t length) {
    if (length > remaining()) {
        fail(decode_error::truncated);
        return {};
    }
    std::span<const uint8_t> view(_data + _position, length);
    _position += length;
    return view;
}

void reader::skip_tagged_fields() {
    const uint32_t count = unsigned_varint();
    if (!ok()) return;
    if (count > remaining()) {
        fail(decode_error::too_large);
        return;
    }
    for (uint32_t i = 0; i < count && ok(); ++i) {
        (void)unsigned_varint();  // tag
        const uint32_t size = unsigned_varint();
        skip(size);
    }
}

size_t unsigned_varint_size(uint64_t value) {
    size_t size = 1;
    while (value >= 0x80) {
        value >>= 7;
        ++size;
    }
    return size;
}

void writer::float64(double v) { fixed(__builtin_bswap64(std::bit_cast<uint64_t>(v))); }

void writer::unsigned_varint(uint64_t v) {
    while (v >= 0x80) {
        _buffer.push_back(static_cast<uint8_t>(v | 0x80));
        v >>= 7;
    }
    _buffer.push_back(static_cast<uint8_t>(v));
}

void writer::string(std::string_view v, bool compact) {
    if (compact)
        unsigned_varint(v.size() + 1);
    else
        int16(static_cast<int16_t>(v.size()));
    raw({reinterpret_cast<const uint8_t*>(v.data()), v.size()});
}

void writer::nullable_string(const std::optional<std::string>& v, bool compact) {
    if (v)
        string(*v, compact);
    else if (compact)
        unsigned_varint(0);
    else
        int16(-1);
}

void writer::bytes(std::span<const uint8_t> v, bool compact) {
    if (compact)
        unsigned_varint(v.size() + 1);
    else
        int32(static_cast<int32_t>(v.size()));
    raw(v);
}

void writer::nullable_bytes(const std::optional<std::span<const uint8_t>>& v, bool compact) {
    if (v)
        bytes(*v, compact);
    else if (compact)
        unsigned_varint(0);
    else
        int32(-1);
}

void writer::records_field(const records& v, bool compact) {
    if (v.is_null) {
        if (compact)
            unsigned_varint(0);
        else
            int32(-1);
        return;
    }
    if (v.external_length < 0) {
        bytes(v.bytes, compact);
        return;
    }
    if (compact)
        unsigned_varint(static_cast<uint64_t>(v.external_length) + 1);
    else
        int32(v.external_length);
    _gaps.push_back({_buffer.size(), v.external_length, v.external_id});
    _external_bytes += static_cast<size_t>(v.external_length);
}

void writer::array_count(int32_t count, bool compact) {
    if (compact)
        unsigned_varint(static_cast<uint64_t>(static_cast<int64_t>(count) + 1));
    else
        int32(count);
}

void writer::patch_int32(size_t position, int32_t v) {
    const uint32_t big = __builtin_bswap32(static_cast<uint32_t>(v));
    std::memcpy(_buffer.data() + position, &big, sizeof(big));
}

}  // namespace spate::proto
