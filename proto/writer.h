#pragma once
// writer: encodes Kafka primitive types into a growable buffer.
// size_counter: the same interface, counting bytes only; generated encoders are
// templates over the output, so one description yields both encode and size.
//
// External records (see proto::records) are not copied: the writer records a
// gap {position in the buffer, length, id} and the sender splices the bytes in
// at that position. `external_bytes()` counts them so the frame size is right.

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "proto/types.h"

namespace spate::proto {

struct external_gap {
    size_t position;  // buffer offset at which the external bytes belong
    int32_t length;
    uint32_t id;
};

size_t unsigned_varint_size(uint64_t value);
inline uint32_t zigzag32(int32_t value) {
    return (static_cast<uint32_t>(value) << 1) ^ static_cast<uint32_t>(value >> 31);
}
inline uint64_t zigzag64(int64_t value) {
    return (static_cast<uint64_t>(value) << 1) ^ static_cast<uint64_t>(value >> 63);
}

class writer {
public:
    writer() = default;
    explicit writer(size_t reserve_bytes) { _buffer.reserve(reserve_bytes); }

    void int8(int8_t v) { _buffer.push_back(static_cast<uint8_t>(v)); }
    void int16(int16_t v) { fixed(__builtin_bswap16(static_cast<uint16_t>(v))); }
    void int32(int32_t v) { fixed(__builtin_bswap32(static_cast<uint32_t>(v))); }
    void int64(int64_t v) { fixed(__builtin_bswap64(static_cast<uint64_t>(v))); }
    void uint16(uint16_t v) { fixed(__builtin_bswap16(v)); }
    void uint32(uint32_t v) { fixed(__builtin_bswap32(v)); }
    void boolean(bool v) { int8(v ? 1 : 0); }
    void float64(double v);
    void uuid_value(const uuid& v) { raw(v.bytes); }

    void unsigned_varint(uint64_t v);
    void varint(int32_t v) { unsigned_varint(zigzag32(v)); }
    void varlong(int64_t v) { unsigned_varint(zigzag64(v)); }

    void string(std::string_view v, bool compact);
    void nullable_string(const std::optional<std::string>& v, bool compact);
    void bytes(std::span<const uint8_t> v, bool compact);
    void nullable_bytes(const std::optional<std::span<const uint8_t>>& v, bool compact);
    void records_field(const records& v, bool compact);
    void array_count(int32_t count, bool compact);  // count −1 = null
    void empty_tagged_fields() { _buffer.push_back(0); }

    void raw(std::span<const uint8_t> v) { _buffer.insert(_buffer.end(), v.begin(), v.end()); }

    // Total encoded size, including external bytes spliced in by the sender.
    size_t size() const { return _buffer.size() + _external_bytes; }
    size_t buffer_size() const { return _buffer.size(); }
    std::vector<uint8_t>& buffer() { return _buffer; }
    const std::vector<uint8_t>& buffer() const { return _buffer; }
    const std::vector<external_gap>& gaps() const { return _gaps; }
    size_t external_bytes() const { return _external_bytes; }

    // Overwrites a big-endian int32 written earlier (frame sizes, batch lengths).
    void patch_int32(size_t position, int32_t v);

private:
    template <class T>
    void fixed(T v) {
        const size_t at = _buffer.size();
        _buffer.resize(at + sizeof(T));
        std::memcpy(_buffer.data() + at, &v, sizeof(T));
    }

    std::vector<uint8_t> _buffer;
    std::vector<external_gap> _gaps;
    size_t _external_bytes = 0;
};

// Counts what a writer would produce.
class size_counter {
public:
    void int8(int8_t) { _size += 1; }
    void int16(int16_t) { _size += 2; }
    void int32(int32_t) { _size += 4; }
    void int64(int64_t) { _size += 8; }
    void uint16(uint16_t) { _size += 2; }
    void uint32(uint32_t) { _size += 4; }
    void boolean(bool) { _size += 1; }
    void float64(double) { _size += 8; }
    void uuid_value(const uuid&) { _size += 16; }
    void unsigned_varint(uint64_t v) { _size += unsigned_varint_size(v); }
    void varint(int32_t v) { unsigned_varint(zigzag32(v)); }
    void varlong(int64_t v) { unsigned_varint(zigzag64(v)); }
    void string(std::string_view v, bool compact) { length(v.size(), compact, 2); }
    void nullable_string(const std::optional<std::string>& v, bool compact) {
        if (v)
            string(*v, compact);
        else
            _size += compact ? 1 : 2;
    }
    void bytes(std::span<const uint8_t> v, bool compact) { length(v.size(), compact, 4); }
    void nullable_bytes(const std::optional<std::span<const uint8_t>>& v, bool compact) {
        if (v)
            bytes(*v, compact);
        else
            _size += compact ? 1 : 4;
    }
    void records_field(const records& v, bool compact) {
        if (v.is_null)
            _size += compact ? 1 : 4;
        else
            length(static_cast<size_t>(v.size()), compact, 4);
    }
    void array_count(int32_t count, bool compact) {
        _size += compact ? unsigned_varint_size(static_cast<uint64_t>(count) + 1) : 4;
    }
    void empty_tagged_fields() { _size += 1; }
    void raw(std::span<const uint8_t> v) { _size += v.size(); }
    size_t size() const { return _size; }

private:
    void length(size_t n, bool compact, size_t classic_prefix) {
        _size += n + (compact ? unsigned_varint_size(n + 1) : classic_prefix);
    }
    size_t _size = 0;
};

}  // namespace spate::proto
