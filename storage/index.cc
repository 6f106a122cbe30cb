#include "storage/index.h"

#include <algorithm>

#include "proto/assert.h"
#include "storage/file.h"

namespace spate::storage {

void offset_index::append(int32_t relative_offset, int32_t position) {
    SPATE_ASSERT(_entries.empty() || _entries.back().relative_offset < relative_offset,
                 "offset index entries must grow in offset");
    SPATE_ASSERT(_entries.empty() || _entries.back().position < position,
                 "offset index entries must grow in position");
    _entries.push_back({relative_offset, position});
}

int32_t offset_index::position_floor(int32_t relative_offset) const {
    auto it = std::upper_bound(
        _entries.begin(), _entries.end(), relative_offset,
        [](int32_t value, const offset_index_entry& e) { return value < e.relative_offset; });
    if (it == _entries.begin()) return 0;
    return std::prev(it)->position;
}

int32_t offset_index::position_at_or_below(int64_t position_limit) const {
    auto it = std::upper_bound(
        _entries.begin(), _entries.end(), position_limit,
        [](int64_t value, const offset_index_entry& e) { return value < e.position; });
    if (it == _entries.begin()) return 0;
    return std::prev(it)->position;
}

int32_t offset_index::position_at_or_below(int64_t position_limit,
                                           int64_t relative_offset_end) const {
    // Both fields grow with the index, so the answer is the earlier of the two bounds.
    auto by_position = std::upper_bound(
        _entries.begin(), _entries.end(), position_limit,
        [](int64_t value, const offset_index_entry& e) { return value < e.position; });
    auto by_offset = std::lower_bound(
        _entries.begin(), _entries.end(), relative_offset_end,
        [](const offset_index_entry& e, int64_t value) { return e.relative_offset < value; });
    auto it = std::min(by_position, by_offset);
    if (it == _entries.begin()) return 0;
    return std::prev(it)->position;
}

void offset_index::truncate_to_position(int64_t position) {
    while (!_entries.empty() && _entries.back().position >= position) _entries.pop_back();
}

std::vector<uint8_t> offset_index::serialize() const {
    std::vector<uint8_t> bytes(_entries.size() * offset_index_entry_size);
    uint8_t* out = bytes.data();
    for (const offset_index_entry& e : _entries) {
        store_be32(out, static_cast<uint32_t>(e.relative_offset));
        store_be32(out + 4, static_cast<uint32_t>(e.position));
        out += offset_index_entry_size;
    }
    return bytes;
}

bool offset_index::parse(const std::vector<uint8_t>& bytes, int64_t segment_size) {
    _entries.clear();
    if (bytes.size() % offset_index_entry_size != 0) return false;
    const size_t count = bytes.size() / offset_index_entry_size;
    _entries.reserve(count);
    for (size_t i = 0; i < count; ++i) {
        const uint8_t* in = bytes.data() + i * offset_index_entry_size;
        const auto relative = static_cast<int32_t>(load_be32(in));
        const auto position = static_cast<int32_t>(load_be32(in + 4));
        const bool sane = relative >= 0 && position >= 0 && position < segment_size &&
                          (_entries.empty() || (_entries.back().relative_offset < relative &&
                                                _entries.back().position < position));
        if (!sane) {
            _entries.clear();
            return false;
        }
        _entries.push_back({relative, position});
    }
    return true;
}

void time_index::maybe_append(int64_t timestamp, int32_t relative_offset) {
    if (!_entries.empty() && _entries.back().timestamp >= timestamp) return;
    SPATE_ASSERT(_entries.empty() || _entries.back().relative_offset <= relative_offset,
                 "time index offsets must not go backwards");
    _entries.push_back({timestamp, relative_offset});
}

int32_t time_index::offset_before(int64_t timestamp) const {
    auto it = std::lower_bound(
        _entries.begin(), _entries.end(), timestamp,
        [](const time_index_entry& e, int64_t value) { return e.timestamp < value; });
    if (it == _entries.begin()) return -1;
    return std::prev(it)->relative_offset;
}

void time_index::truncate_to_offset(int32_t relative_offset) {
    while (!_entries.empty() && _entries.back().relative_offset >= relative_offset)
        _entries.pop_back();
}

std::vector<uint8_t> time_index::serialize() const {
    std::vector<uint8_t> bytes(_entries.size() * time_index_entry_size);
    uint8_t* out = bytes.data();
    for (const time_index_entry& e : _entries) {
        store_be64(out, static_cast<uint64_t>(e.timestamp));
        store_be32(out + 8, static_cast<uint32_t>(e.relative_offset));
        out += time_index_entry_size;
    }
    return bytes;
}

bool time_index::parse(const std::vector<uint8_t>& bytes) {
    _entries.clear();
    if (bytes.size() % time_index_entry_size != 0) return false;
    const size_t count = bytes.size() / time_index_entry_size;
    _entries.reserve(count);
    for (size_t i = 0; i < count; ++i) {
        const uint8_t* in = bytes.data() + i * time_index_entry_size;
        const auto timestamp = static_cast<int64_t>(load_be64(in));
        const auto relative = static_cast<int32_t>(load_be32(in + 8));
        const bool sane =
            relative >= 0 && (_entries.empty() || (_entries.back().timestamp < timestamp &&
                                                   _entries.back().relative_offset <= relative));
        if (!sane) {
            _entries.clear();
            return false;
        }
        _entries.push_back({timestamp, relative});
    }
    return true;
}

}  // namespace spate::storage
