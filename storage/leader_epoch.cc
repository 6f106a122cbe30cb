#include "storage/leader_epoch.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>

#include "proto/assert.h"
#include "proto/record_batch.h"
#include "storage/file.h"

namespace spate::storage {

namespace {

// The version on the file's first line; Kafka has only ever written 0.
constexpr std::string_view leader_epoch_file_version = "0";

// Parses a whole field as a non-negative decimal integer of type T (no sign, no spaces,
// no leading '+', at most what T holds).
template <class T>
std::optional<T> parse_decimal(std::string_view text) {
    if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// Splits off the next line (without its "\n"); nullopt when `text` holds no complete line.
std::optional<std::string_view> next_line(std::string_view& text) {
    const size_t newline = text.find('\n');
    if (newline == std::string_view::npos) return std::nullopt;
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline + 1);
    return line;
}

}  // namespace

leader_epoch_cache::leader_epoch_cache(std::vector<epoch_entry> entries)
    : _entries(std::move(entries)) {
    check_order();
}

void leader_epoch_cache::check_order() const {
    for (size_t i = 1; i < _entries.size(); ++i) {
        SPATE_ASSERT(_entries[i - 1].epoch < _entries[i].epoch,
                     "leader epochs must increase from entry to entry");
        SPATE_ASSERT(_entries[i - 1].start_offset < _entries[i].start_offset,
                     "leader epoch start offsets must increase from entry to entry");
    }
    for (const epoch_entry& entry : _entries) {
        SPATE_ASSERT(entry.epoch >= 0, "a leader epoch entry has a defined epoch");
        SPATE_ASSERT(entry.start_offset >= 0, "a leader epoch entry has a defined offset");
    }
}

std::pair<int32_t, int64_t> leader_epoch_cache::end_offset_for(int32_t requested,
                                                               int64_t log_end) const {
    // The first entry whose epoch is > requested; the one before it is the answer.
    auto after = std::upper_bound(
        _entries.begin(), _entries.end(), requested,
        [](int32_t value, const epoch_entry& entry) { return value < entry.epoch; });
    if (after == _entries.begin()) return {undefined_epoch, undefined_epoch_offset};
    const epoch_entry& found = *std::prev(after);
    return {found.epoch, after == _entries.end() ? log_end : after->start_offset};
}

bool leader_epoch_cache::assign(int32_t epoch, int64_t start_offset) {
    if (epoch < 0 || epoch <= latest_epoch()) return false;
    SPATE_ASSERT(start_offset >= 0, "a leader epoch starts at a defined offset");
    while (!_entries.empty() && _entries.back().start_offset >= start_offset) _entries.pop_back();
    _entries.push_back({epoch, start_offset});
    check_order();
    return true;
}

bool leader_epoch_cache::truncate_from_end(int64_t end_offset) {
    const size_t before = _entries.size();
    while (!_entries.empty() && _entries.back().start_offset >= end_offset) _entries.pop_back();
    return _entries.size() != before;
}

bool leader_epoch_cache::truncate_from_start(int64_t start_offset) {
    // The last entry starting at or before the new start covers it; older ones go.
    auto after = std::upper_bound(
        _entries.begin(), _entries.end(), start_offset,
        [](int64_t value, const epoch_entry& entry) { return value < entry.start_offset; });
    if (after == _entries.begin()) return false;  // every entry starts after it
    auto covering = std::prev(after);
    const bool raised = covering->start_offset != start_offset;
    const bool removed = covering != _entries.begin();
    covering->start_offset = start_offset;
    _entries.erase(_entries.begin(), covering);
    check_order();
    return raised || removed;
}

bool leader_epoch_cache::clear() {
    const bool had = !_entries.empty();
    std::vector<epoch_entry>().swap(_entries);
    return had;
}

std::string leader_epoch_cache::serialize() const {
    std::string text;
    text.reserve(16 + _entries.size() * 24);
    text += leader_epoch_file_version;
    text += '\n';
    text += std::to_string(_entries.size());
    text += '\n';
    for (const epoch_entry& entry : _entries) {
        text += std::to_string(entry.epoch);
        text += ' ';
        text += std::to_string(entry.start_offset);
        text += '\n';
    }
    return text;
}

std::optional<leader_epoch_cache> leader_epoch_cache::parse(std::string_view text) {
    const std::optional<std::string_view> version = next_line(text);
    if (!version || *version != leader_epoch_file_version) return std::nullopt;
    const std::optional<std::string_view> count_line = next_line(text);
    if (!count_line) return std::nullopt;
    const std::optional<size_t> count = parse_decimal<size_t>(*count_line);
    // Each entry takes at least four bytes ("0 0\n"): a count beyond that is damage,
    // caught before anything is allocated for it.
    if (!count || *count > text.size() / 4) return std::nullopt;
    std::vector<epoch_entry> entries;
    entries.reserve(*count);
    for (size_t i = 0; i < *count; ++i) {
        const std::optional<std::string_view> line = next_line(text);
        if (!line) return std::nullopt;
        const size_t space = line->find(' ');
        if (space == std::string_view::npos) return std::nullopt;
        const std::optional<int32_t> epoch = parse_decimal<int32_t>(line->substr(0, space));
        const std::optional<int64_t> start = parse_decimal<int64_t>(line->substr(space + 1));
        if (!epoch || !start) return std::nullopt;
        if (!entries.empty() &&
            (entries.back().epoch >= *epoch || entries.back().start_offset >= *start))
            return std::nullopt;
        entries.push_back({*epoch, *start});
    }
    if (!text.empty()) return std::nullopt;  // lines beyond the count
    return leader_epoch_cache(std::move(entries));
}

result<void> leader_epoch_cache::write_file(const std::filesystem::path& path) const {
    const std::string text = serialize();
    return write_file_atomically(path, proto::byte_view(text));
}

result<void> leader_epoch_cache::write_file_unsynced(const std::filesystem::path& path) const {
    const std::string text = serialize();
    return replace_file_unsynced(path, proto::byte_view(text));
}

leader_epoch_cache::read_status leader_epoch_cache::read_file(const std::filesystem::path& path,
                                                              leader_epoch_cache& out) {
    out.clear();
    auto content = read_small_file(path, leader_epoch_file_bytes_max);
    if (!content)
        return content.failure().code == ENOENT ? read_status::missing : read_status::damaged;
    std::optional<leader_epoch_cache> parsed = parse(*content);
    if (!parsed) return read_status::damaged;
    out = std::move(*parsed);
    return read_status::loaded;
}

}  // namespace spate::storage
