#pragma once
// reader: decodes Kafka primitive types from a byte span without trusting it.
//
// Every length and count read from the bytes is checked against the bytes that
// remain (and against an explicit maximum) before anything is allocated: the
// lesson of CVE-2022-34917. Errors are sticky: after the first failure every
// read returns a zero value and `ok()` stays false, so a decoder checks once per
// message instead of after every field. Nothing here throws or asserts on input.

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proto/types.h"

namespace spate::proto {

enum class decode_error : uint8_t {
    none = 0,
    truncated,        // fewer bytes than a field needs
    negative_length,  // a length below -1, or -1 where null is not allowed
    too_large,        // a length or count beyond the remaining bytes or a limit
    bad_varint,       // a varint longer than its type allows
    bad_value,        // a value outside its domain (e.g. unknown enum)
};

const char* to_string(decode_error error);

class reader {
public:
    explicit reader(std::span<const uint8_t> bytes) : _data(bytes.data()), _size(bytes.size()) {}
    reader(const uint8_t* data, size_t size) : _data(data), _size(size) {}

    bool ok() const { return _error == decode_error::none; }
    decode_error error() const { return _error; }
    size_t remaining() const { return _size - _position; }
    size_t position() const { return _position; }
    const uint8_t* cursor() const { return _data + _position; }
    void fail(decode_error error) {
        if (_error == decode_error::none) _error = error;
        _position = _size;
    }

    int8_t int8() { return static_cast<int8_t>(fixed<uint8_t>()); }
    int16_t int16() { return static_cast<int16_t>(fixed<uint16_t>()); }
    int32_t int32() { return static_cast<int32_t>(fixed<uint32_t>()); }
    int64_t int64() { return static_cast<int64_t>(fixed<uint64_t>()); }
    uint16_t uint16() { return fixed<uint16_t>(); }
    uint32_t uint32() { return fixed<uint32_t>(); }
    bool boolean() { return int8() != 0; }
    double float64();
    uuid uuid_value();

    // Unsigned LEB128, at most 5 bytes for 32 bits. One and two bytes (a record's
    // lengths, deltas and counts mostly) are read inline; longer ones out of line.
    uint32_t unsigned_varint() {
        if (remaining() >= 2) {
            const uint8_t first = _data[_position];
            if (first < 0x80) {
                _position += 1;
                return first;
            }
            const uint8_t second = _data[_position + 1];
            if (second < 0x80) {
                _position += 2;
                return (uint32_t{second} << 7) | (first & 0x7fu);
            }
        }
        return unsigned_varint_long();
    }
    uint64_t unsigned_varlong() {
        if (remaining() >= 1 && _data[_position] < 0x80) return _data[_position++];
        return unsigned_varlong_long();
    }
    // Zig-zag varints as record batches use them.
    int32_t varint() {
        const uint32_t raw_value = unsigned_varint();
        return static_cast<int32_t>((raw_value >> 1) ^ (~(raw_value & 1) + 1));
    }
    int64_t varlong() {
        const uint64_t raw_value = unsigned_varlong();
        return static_cast<int64_t>((raw_value >> 1) ^ (~(raw_value & 1) + 1));
    }

    // Strings: classic (int16 length) or compact (unsigned varint length + 1).
    std::string string(bool compact);
    std::optional<std::string> nullable_string(bool compact);
    // Bytes as a view into the input (no copy); null is represented by nullopt.
    std::span<const uint8_t> bytes(bool compact);
    std::optional<std::span<const uint8_t>> nullable_bytes(bool compact);

    // Array count: classic int32 (−1 = null) or compact (unsigned varint N+1,
    // 0 = null). Returns −1 for null. The count is bounded by the remaining bytes
    // divided by `element_size_min` (at least 1), so a hostile count can never
    // make the caller allocate more than the request could possibly hold.
    int32_t array_count(bool compact, size_t element_size_min);

    // Raw view of the next `length` bytes, or an empty span and an error.
    std::span<const uint8_t> raw(size_t length);
    void skip(size_t length) { (void)raw(length); }

    // Skips a tagged-field section (flexible versions) whose tags the caller
    // does not know. Known tags are handled by generated code before this.
    void skip_tagged_fields();

private:
    uint32_t unsigned_varint_long();
    uint64_t unsigned_varlong_long();

    template <class T>
    T fixed() {
        if (remaining() < sizeof(T)) {
            fail(decode_error::truncated);
            return 0;
        }
        T value;
        std::memcpy(&value, _data + _position, sizeof(T));
        _position += sizeof(T);
        if constexpr (sizeof(T) == 2) return static_cast<T>(__builtin_bswap16(value));
        if constexpr (sizeof(T) == 4) return static_cast<T>(__builtin_bswap32(value));
        if constexpr (sizeof(T) == 8) return static_cast<T>(__builtin_bswap64(value));
        return value;
    }
    // Reads a string/bytes length prefix; −1 means null. Fails on < −1 or a length
    // beyond the remaining bytes.
    int64_t length_prefix(bool compact, bool wide);

    const uint8_t* _data;
    size_t _size;
    size_t _position = 0;
    decode_error _error = decode_error::none;
};

}  // namespace spate::proto
