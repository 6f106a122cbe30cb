#include "storage/segment.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <limits>
#include <span>
#include <vector>

#include "proto/assert.h"

namespace spate::storage {

namespace {

// Whether a batch read from the file has offsets a log can hold (the base offset is outside
// the CRC, so a damaged file may carry any).
bool offsets_plausible(const proto::batch_header& h) {
    return h.base_offset >= 0 && h.next_offset_fits();
}

// The index rule of every writer of a segment (appends, compaction's rewrites), which
// load_indexes' plausibility check relies on: an offset-index entry (and a time-index
// entry for the largest timestamp so far) before the first batch past every
// index_interval_bytes of batches.
void index_batch(const proto::batch_header& header, int64_t position, int64_t base_offset,
                 int32_t index_interval_bytes, int64_t& bytes_since_entry, offset_index& index,
                 time_index& times, std::optional<time_index_entry>& max_timestamp) {
    const auto relative = static_cast<int32_t>(header.last_offset() - base_offset);
    if (!max_timestamp || header.max_timestamp > max_timestamp->timestamp)
        max_timestamp = time_index_entry{header.max_timestamp, relative};
    if (bytes_since_entry >= index_interval_bytes) {
        index.append(relative, static_cast<int32_t>(position));
        times.maybe_append(max_timestamp->timestamp, max_timestamp->relative_offset);
        bytes_since_entry = 0;
    }
    bytes_since_entry += header.total_size();
}

// Recovery reads the log in chunks of this size; a larger batch grows the buffer to
// its own size, which is bounded by the bytes left in the file.
constexpr size_t scan_chunk_bytes = 1 << 20;

// Reads a file front to back through one reusable buffer, so that recovery costs one
// read per chunk rather than two per batch.
class chunked_reader {
public:
    chunked_reader(int fd, int64_t file_size, const std::filesystem::path& path)
        : _fd(fd), _file_size(file_size), _path(path) {}

    // The `length` bytes at `position`, which the caller checked lie inside the file.
    result<std::span<const uint8_t>> get(int64_t position, int64_t length) {
        SPATE_ASSERT(position + length <= _file_size, "chunked read beyond the file");
        if (position < _start || position + length > _start + _filled) {
            const int64_t want = std::min<int64_t>(std::max<int64_t>(length, scan_chunk_bytes),
                                                   _file_size - position);
            if (_buffer.size() < static_cast<size_t>(want))
                _buffer.resize(static_cast<size_t>(want));
            auto got =
                pread_exact(_fd, std::span<uint8_t>(_buffer.data(), static_cast<size_t>(want)),
                            position, _path);
            if (!got) return got.failure();
            _start = position;
            _filled = want;
        }
        return std::span<const uint8_t>(_buffer.data() + (position - _start),
                                        static_cast<size_t>(length));
    }

private:
    int _fd;
    int64_t _file_size;
    const std::filesystem::path& _path;
    std::vector<uint8_t> _buffer;
    int64_t _start = 0;
    int64_t _filled = 0;
};

int64_t file_size_of(int fd) {
    struct stat info {};
    if (::fstat(fd, &info) != 0) return -1;
    return static_cast<int64_t>(info.st_size);
}

// A free name for the bytes of `log_path` from `position` on (see segment.h): an
// earlier recovery's file at the same place is kept, never replaced.
std::filesystem::path corrupt_path_for(const std::filesystem::path& log_path, int64_t position) {
    const std::string stem = log_path.string() + "." + std::to_string(position);
    std::filesystem::path candidate = stem + corrupt_file_extension;
    std::error_code ec;
    for (int copy = 1; std::filesystem::exists(candidate, ec); ++copy)
        candidate = stem + "." + std::to_string(copy) + corrupt_file_extension;
    return candidate;
}

result<std::vector<uint8_t>> read_index_file(const std::filesystem::path& path, size_t size_max) {
    auto content = read_small_file(path, size_max);
    if (!content) return content.failure();
    return std::vector<uint8_t>(content->begin(), content->end());
}

// Whether the file's bytes from `position` (where its valid batches end) to its end are
// tail padding a crash left behind: fewer zeros than tail_padding_bytes, ending on a
// multiple of it (segment.h).
result<bool> is_padding(chunked_reader& reader, int64_t position, int64_t file_size) {
    if (file_size % tail_padding_bytes != 0 || file_size - position >= tail_padding_bytes)
        return false;
    auto tail = reader.get(position, file_size - position);
    if (!tail) return tail.failure();
    return std::all_of(tail->begin(), tail->end(), [](uint8_t b) { return b == 0; });
}

// Reserves the file's blocks in [from, from + length) without moving its end (KEEP_SIZE:
// recovery and readers never see the reserved zeros); true, or false with errno set.
bool reserve_blocks(int fd, int64_t from, int64_t length) {
    while (::fallocate(fd, FALLOC_FL_KEEP_SIZE, from, length) != 0)
        if (errno != EINTR) return false;
    return true;
}

}  // namespace

segment::segment(std::filesystem::path log_path, int64_t base_offset, int64_t size_bytes,
                 int64_t created_ms, int32_t index_interval_bytes, fd_cache* descriptors)
    : cached_descriptor(drop_descriptor),
      _log_path(std::move(log_path)),
      _base_offset(base_offset),
      _size(size_bytes),
      _created_ms(created_ms),
      _index_interval_bytes(index_interval_bytes),
      _descriptors(descriptors) {}

segment::~segment() { release_file(); }

void segment::note_file_use() const {
    SPATE_ASSERT(_file != nullptr, "only a segment holding its descriptor is cached");
    // Segments are never const objects (the log holds them by unique_ptr<segment>); file()
    // is const only because caching a descriptor does not change what the segment holds.
    if (_descriptors != nullptr) _descriptors->touch(*const_cast<segment*>(this));
}

void segment::release_file() const {
    if (_descriptors != nullptr) _descriptors->forget(*const_cast<segment*>(this));
    _file.reset();
}

std::filesystem::path segment::log_path(const std::filesystem::path& directory,
                                        int64_t base_offset) {
    std::array<char, 32> name{};
    std::snprintf(name.data(), name.size(), "%020lld.log", static_cast<long long>(base_offset));
    return directory / name.data();
}

std::filesystem::path segment::index_path() const {
    std::filesystem::path p = _log_path;
    p.replace_extension(".index");
    return p;
}

std::filesystem::path segment::time_index_path() const {
    std::filesystem::path p = _log_path;
    p.replace_extension(".timeindex");
    return p;
}

result<std::unique_ptr<segment>> segment::create(const std::filesystem::path& directory,
                                                 int64_t base_offset, int64_t created_ms,
                                                 int64_t preallocate_bytes,
                                                 int32_t index_interval_bytes,
                                                 fd_cache* descriptors) {
    std::filesystem::path path = log_path(directory, base_offset);
    int fd = -1;
    while ((fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        // Out of descriptors: cached ones of idle segments go first (none is in use here).
        if ((errno == EMFILE || errno == ENFILE) && descriptors != nullptr &&
            descriptors->evict_one_except(nullptr))
            continue;
        return errno_error("create segment", path);
    }
    auto file = std::make_shared<segment_file>(fd);
    // File systems without fallocate simply do not preallocate.
    const bool reserved = preallocate_bytes > 0 && reserve_blocks(fd, 0, preallocate_bytes);
    if (preallocate_bytes > 0 && !reserved && errno != EOPNOTSUPP && errno != ENOSYS) {
        auto failure = errno_error("fallocate", path);
        (void)remove_file(path);
        return failure;
    }
    std::unique_ptr<segment> created(new segment(std::move(path), base_offset, 0, created_ms,
                                                 index_interval_bytes, descriptors));
    created->_reserved_end = reserved ? preallocate_bytes : 0;
    created->_file = std::move(file);
    created->note_file_use();
    created->_indexes_loaded = true;
    return created;
}

std::unique_ptr<segment> segment::attach(const std::filesystem::path& directory,
                                         int64_t base_offset, int64_t size_bytes,
                                         int64_t created_ms, int32_t index_interval_bytes,
                                         fd_cache* descriptors) {
    return std::unique_ptr<segment>(new segment(log_path(directory, base_offset), base_offset,
                                                size_bytes, created_ms, index_interval_bytes,
                                                descriptors));
}

result<std::shared_ptr<segment_file>> segment::file() const {
    if (!_file) {
        int fd = -1;
        while ((fd = ::open(_log_path.c_str(), O_RDWR | O_CLOEXEC)) < 0) {
            // Connections and transfers may have taken the descriptors the budget left
            // free: the cache gives up idle segments' ones until the open succeeds.
            if ((errno == EMFILE || errno == ENFILE) && _descriptors != nullptr &&
                _descriptors->evict_one_except(this))
                continue;
            return errno_error("open segment", _log_path);
        }
        _file = std::make_shared<segment_file>(fd);
    }
    note_file_use();
    return _file;
}

void segment::release_indexes() const {
    _index.clear_and_release();
    _time_index.clear_and_release();
    _indexes_loaded = false;
}

result<void> segment::load_indexes() const {
    if (_indexes_loaded) return {};
    if (_size == 0) {
        // An empty segment has empty indexes whatever its index files hold (a crash or
        // a recovery cut may have left older ones): nothing to read, nothing to rebuild.
        _index.clear_and_release();
        _time_index.clear_and_release();
        _indexes_loaded = true;
        return {};
    }
    // An index has at most one entry per batch, and a batch is at least a header.
    const size_t batches_max = static_cast<size_t>(_size / proto::batch_header_size) + 1;
    auto offsets = read_index_file(index_path(), batches_max * offset_index_entry_size);
    auto times = read_index_file(time_index_path(), batches_max * time_index_entry_size);
    if (offsets && times && _index.parse(*offsets, _size) && _time_index.parse(*times)) {
        // Index files written at a roll are not fsync'ed, so a machine crash can leave
        // them empty. A sealed non-empty segment always has a time-index entry (seal
        // adds its largest timestamp), and an empty offset index is genuine only when
        // everything before the last batch is below one index interval: so an empty
        // index over more than that is rebuilt, which costs little when it was genuine.
        const bool plausible = (_size == 0 || _time_index.entry_count() > 0) &&
                               (_index.entry_count() > 0 ||
                                _size <= std::max<int64_t>(_index_interval_bytes, 0) +
                                             static_cast<int64_t>(proto::batch_header_size));
        if (plausible) {
            _indexes_loaded = true;
            return {};
        }
    }
    // Missing or insane index files are rebuilt from the log itself; a sealed segment
    // was fully valid when it was sealed, so this never shortens the log. Segments are
    // never const objects (the log holds them by unique_ptr<segment>); lookups are const
    // only because loading an index does not change what the segment holds.
    // Gaps are accepted: a compacted segment has them, and a rebuild never cuts a file.
    auto rebuilt =
        const_cast<segment*>(this)->scan(scan_mode::rebuild_only, offset_rule::increasing);
    if (!rebuilt) return rebuilt.failure();
    if (_max_timestamp)
        _time_index.maybe_append(_max_timestamp->timestamp, _max_timestamp->relative_offset);
    return save_indexes(index_durability::synced);
}

result<scan_outcome> segment::scan(scan_mode mode, offset_rule rule) {
    auto opened = file();
    if (!opened) return opened.failure();
    const int fd = (*opened)->fd;
    const int64_t file_size = file_size_of(fd);
    if (file_size < 0) return errno_error("fstat", _log_path);

    _index.clear_and_release();
    _time_index.clear_and_release();
    _max_timestamp.reset();
    _size = 0;
    _bytes_since_index_entry = 0;
    _indexes_loaded = true;

    chunked_reader reader(fd, file_size, _log_path);
    int64_t position = 0;
    int64_t next_offset = _base_offset;
    while (position + static_cast<int64_t>(proto::batch_header_size) <= file_size) {
        auto header_bytes = reader.get(position, proto::batch_header_size);
        if (!header_bytes) return header_bytes.failure();
        auto header = proto::read_batch_header(*header_bytes);
        if (!header) break;
        const int64_t total = header->total_size();
        if (total < static_cast<int64_t>(proto::batch_header_size) || total > file_size - position)
            break;
        auto batch = reader.get(position, total);
        if (!batch) return batch.failure();
        const proto::batch_check check =
            proto::validate_batch(*batch, static_cast<size_t>(total), proto::batch_source::log);
        if (check.error != proto::batch_error::none) break;
        const proto::batch_header& h = check.header;
        // Offsets must continue where the previous batch ended (exactly, or after a gap
        // left by compaction), and stay within the int32 reach of the indexes' relative
        // offsets.
        const bool in_order = rule == offset_rule::contiguous ? h.base_offset == next_offset
                                                              : h.base_offset >= next_offset;
        if (!in_order || !offsets_plausible(h) ||
            h.last_offset() - _base_offset > std::numeric_limits<int32_t>::max())
            break;
        record_append(h, position);
        position += total;
        next_offset = h.last_offset() + 1;
    }
    SPATE_ASSERT(position == _size, "scan bookkeeping must match the scanned bytes");
    scan_outcome outcome{position, next_offset, position < file_size, file_size, -1, {}, {}};
    if (!outcome.tail_was_invalid || mode != scan_mode::truncate_invalid) return outcome;
    auto padding = is_padding(reader, position, file_size);
    if (!padding) return padding.failure();
    if (*padding) {
        if (auto cut = truncate_to(position); !cut) return cut.failure();
        outcome.tail_was_invalid = false;
        outcome.padding_bytes = file_size - position;
        return outcome;
    }
    // For the log line only: the offsets the cut-off bytes seem to hold, from the
    // headers that still look like a chain of batches (no CRC: they are damaged).
    for (int64_t at = position; at + static_cast<int64_t>(proto::batch_header_size) <= file_size;) {
        auto header_bytes = reader.get(at, proto::batch_header_size);
        if (!header_bytes) break;
        auto header = proto::read_batch_header(*header_bytes);
        if (!header || header->magic != proto::batch_magic_v2 || header->last_offset_delta < 0 ||
            header->total_size() < static_cast<int64_t>(proto::batch_header_size) ||
            header->total_size() > file_size - at ||
            header->base_offset < std::max(next_offset, outcome.dropped_last_offset + 1))
            break;
        outcome.dropped_last_offset = header->last_offset();
        at += header->total_size();
    }
    // The cut-off bytes are kept aside first: they may hold acknowledged records behind
    // a single damaged batch, which an operator may still want. Only a full disk (or
    // quota) may stop the copy without stopping the recovery: a partition that cannot
    // open because its damaged tail does not fit twice would be worse, and the caller
    // logs what was lost. Any other error fails the open.
    auto kept = copy_aside_from(position);
    const bool no_space = !kept && (kept.failure().code == ENOSPC || kept.failure().code == EDQUOT);
    if (!kept && !no_space) return kept.failure();
    if (auto cut = truncate_to(position); !cut) return cut.failure();
    if (kept)
        outcome.moved_to = std::move(*kept);
    else
        outcome.aside_failure = kept.failure().message;
    return outcome;
}

result<std::filesystem::path> segment::copy_aside_from(int64_t position) {
    auto opened = file();
    if (!opened) return opened.failure();
    const int64_t file_size = file_size_of((*opened)->fd);
    if (file_size < 0) return errno_error("fstat", _log_path);
    const std::filesystem::path aside = corrupt_path_for(_log_path, position);
    const int fd = ::open(aside.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return errno_error("create", aside);
    segment_file out(fd);
    // A copy that did not complete is no evidence of anything and only takes space.
    auto give_up = [&](error failure) -> result<std::filesystem::path> {
        (void)remove_file(aside);
        return failure;
    };
    std::vector<uint8_t> buffer(static_cast<size_t>(
        std::clamp<int64_t>(file_size - position, 1, static_cast<int64_t>(scan_chunk_bytes))));
    for (int64_t at = position; at < file_size;) {
        const auto want = static_cast<size_t>(
            std::min<int64_t>(file_size - at, static_cast<int64_t>(buffer.size())));
        std::span<uint8_t> chunk(buffer.data(), want);
        if (auto got = pread_exact((*opened)->fd, chunk, at, _log_path); !got)
            return give_up(got.failure());
        if (auto put = pwrite_all(out.fd, chunk, at - position, aside); !put)
            return give_up(put.failure());
        at += static_cast<int64_t>(want);
    }
    // The copy and its directory entry are durable before the caller cuts the original.
    if (auto synced = sync_data(out.fd, aside); !synced) return give_up(synced.failure());
    if (auto synced = sync_directory(_log_path.parent_path()); !synced) return synced.failure();
    return aside;
}

result<std::filesystem::path> segment::move_aside() {
    const std::filesystem::path aside = corrupt_path_for(_log_path, 0);
    if (::rename(_log_path.c_str(), aside.c_str()) != 0) return errno_error("rename", _log_path);
    if (auto removed = remove_file(index_path()); !removed) return removed.failure();
    if (auto removed = remove_file(time_index_path()); !removed) return removed.failure();
    return aside;
}

result<bool> segment::adopt_clean_state(int64_t next_offset, offset_rule rule) {
    auto opened = file();
    if (!opened) return opened.failure();
    const int64_t file_size = file_size_of((*opened)->fd);
    if (file_size < 0) return errno_error("fstat", _log_path);
    _size = file_size;
    if (next_offset < _base_offset) return false;
    if ((next_offset == _base_offset) != (file_size == 0)) return false;
    if (next_offset - 1 - _base_offset > std::numeric_limits<int32_t>::max()) return false;
    if (auto loaded = load_indexes(); !loaded) return loaded.failure();
    const auto& entries = _index.entries();
    if (!entries.empty() && entries.back().relative_offset > next_offset - 1 - _base_offset)
        return false;
    // The tail check: every batch from the last index entry (a batch boundary whose
    // batch ends at the entry's offset) to the end of the file is read and validated.
    chunked_reader reader((*opened)->fd, file_size, _log_path);
    int64_t position = entries.empty() ? 0 : entries.back().position;
    int64_t expected_base = _base_offset;
    bool first = true;
    while (position < file_size) {
        if (file_size - position < static_cast<int64_t>(proto::batch_header_size)) return false;
        auto header_bytes = reader.get(position, proto::batch_header_size);
        if (!header_bytes) return header_bytes.failure();
        auto header = proto::read_batch_header(*header_bytes);
        if (!header) return false;
        const int64_t total = header->total_size();
        if (total < static_cast<int64_t>(proto::batch_header_size) || total > file_size - position)
            return false;
        auto batch = reader.get(position, total);
        if (!batch) return batch.failure();
        const proto::batch_check check =
            proto::validate_batch(*batch, static_cast<size_t>(total), proto::batch_source::log);
        if (check.error != proto::batch_error::none || !offsets_plausible(check.header))
            return false;
        const proto::batch_header& h = check.header;
        if (first && !entries.empty()) {
            if (h.last_offset() != _base_offset + entries.back().relative_offset) return false;
        } else if (rule == offset_rule::contiguous ? h.base_offset != expected_base
                                                   : h.base_offset < expected_base) {
            // Compaction leaves gaps only in closed segments, never the active one this
            // is called for; a follower's appends may leave them anywhere (the caller's
            // rule says whether this log has any).
            return false;
        }
        first = false;
        expected_base = h.last_offset() + 1;
        position += total;
    }
    if (position == 0 ? next_offset != _base_offset : expected_base != next_offset) return false;
    // The time index of a sealed segment ends with its largest timestamp.
    if (const time_index_entry* last = _time_index.last())
        _max_timestamp = time_index_entry{last->timestamp, last->relative_offset};
    _bytes_since_index_entry = entries.empty() ? file_size : file_size - entries.back().position;
    return true;
}

void segment::record_append(const proto::batch_header& header, int64_t position) {
    SPATE_ASSERT(_indexes_loaded, "appending to a segment whose indexes are not loaded");
    SPATE_ASSERT(position == _size, "appends go to the end of the segment");
    index_batch(header, position, _base_offset, _index_interval_bytes, _bytes_since_index_entry,
                _index, _time_index, _max_timestamp);
    _size += header.total_size();
}

void segment::reserve_ahead(int fd, int64_t end, int64_t ahead_max, int64_t limit) {
    if (ahead_max <= 0 || _reserve_failed || end <= _reserved_end) return;
    constexpr int64_t step_min = 64 << 10;  // an idle partition holds little ahead
    const int64_t step = std::clamp<int64_t>(_size, step_min, std::max(ahead_max, step_min));
    const int64_t target = std::max(end, std::min(end + step, limit));
    const int64_t from = std::max(_reserved_end, _size);
    if (!reserve_blocks(fd, from, target - from)) {
        _reserve_failed = true;  // unsupported, or no space: plain writes from here on
        return;
    }
    _reserved_end = target;
}

int64_t segment::padding_end(int64_t position, int64_t end, int64_t limit) const {
    if (end - position >= tail_padding_bytes || end <= _padded_end || _size < tail_padding_bytes)
        return end;
    const int64_t padded = (end + tail_padding_bytes - 1) / tail_padding_bytes * tail_padding_bytes;
    return padded <= limit ? padded : end;
}

result<void> segment::release_reserve() {
    if (std::max(_reserved_end, _padded_end) <= _size) return {};
    auto opened = file();
    if (!opened) return opened.failure();
    // A truncation to the size it has frees the blocks past the end (a punched hole
    // would not: ext4 ignores one beyond the end of the file).
    while (::ftruncate((*opened)->fd, static_cast<off_t>(_size)) != 0) {
        if (errno == EINTR) continue;
        // Blocks left reserved cost space only; padding left would be read as data.
        if (_padded_end > _size) return errno_error("ftruncate", _log_path);
        break;
    }
    note_cut(_size);
    return {};
}

void segment::note_cut(int64_t file_size) {
    // Reserved blocks and padding past a cut go with it.
    _reserved_end = std::min(_reserved_end, file_size);
    _padded_end = std::min(_padded_end, file_size);
}

result<void> segment::truncate_to(int64_t size_bytes) {
    auto opened = file();
    if (!opened) return opened.failure();
    while (::ftruncate((*opened)->fd, static_cast<off_t>(size_bytes)) != 0) {
        if (errno != EINTR) return errno_error("ftruncate", _log_path);
    }
    _size = size_bytes;
    note_cut(size_bytes);
    _index.truncate_to_position(size_bytes);
    return {};
}

result<int64_t> segment::truncate_before(int64_t offset) {
    if (auto loaded = load_indexes(); !loaded) return loaded.failure();
    // Walk from the last index entry whose batch ends below `offset` (it is kept, and so
    // is everything before it) to the first batch that reaches `offset`.
    const int64_t relative_kept = offset - 1 - _base_offset;
    int64_t position = relative_kept < 0
                           ? 0
                           : _index.position_floor(static_cast<int32_t>(std::min<int64_t>(
                                 relative_kept, std::numeric_limits<int32_t>::max())));
    int64_t next_offset = _base_offset;
    while (position < _size) {
        auto header = header_at(position);
        if (!header) return header.failure();
        if (header->last_offset() >= offset) break;
        next_offset = header->last_offset() + 1;
        position += header->total_size();
    }
    if (position < _size) {
        auto opened = file();
        if (!opened) return opened.failure();
        while (::ftruncate((*opened)->fd, static_cast<off_t>(position)) != 0) {
            if (errno != EINTR) return errno_error("ftruncate", _log_path);
        }
    }
    if (position < _size) note_cut(position);
    _size = position;
    _index.truncate_to_position(position);
    // (Every entry's relative offset fits an int32; one past the largest would not.)
    if (next_offset - _base_offset <= std::numeric_limits<int32_t>::max())
        _time_index.truncate_to_offset(static_cast<int32_t>(next_offset - _base_offset));
    // The largest timestamp: the kept time-index entries cover the batches up to the
    // last kept offset-index entry; the batches after it are read again.
    const auto& entries = _index.entries();
    const int64_t indexed = entries.empty() ? 0 : entries.back().position;
    _max_timestamp.reset();
    if (const time_index_entry* last = _time_index.last()) _max_timestamp = *last;
    for (int64_t at = indexed; at < _size;) {
        auto header = header_at(at);
        if (!header) return header.failure();
        if (!_max_timestamp || header->max_timestamp > _max_timestamp->timestamp)
            _max_timestamp = time_index_entry{
                header->max_timestamp, static_cast<int32_t>(header->last_offset() - _base_offset)};
        at += header->total_size();
    }
    // As if the kept batches had just been appended (see index_batch).
    _bytes_since_index_entry = _size - indexed;
    return next_offset;
}

result<void> segment::collect_epoch_starts(std::vector<epoch_entry>& starts,
                                           int64_t from_offset) const {
    if (_size == 0) return {};
    if (auto loaded = load_indexes(); !loaded) return loaded.failure();
    const std::vector<offset_index_entry>& all = _index.entries();
    // The batches wholly below from_offset do not count (they may carry any epoch, higher
    // ones too): skip the index entries whose batch ends below it, then walk the few
    // unindexed batches after the last of them.
    const auto kept =
        std::partition_point(all.begin(), all.end(), [&](const offset_index_entry& e) {
            return _base_offset + e.relative_offset < from_offset;
        });
    int64_t start = kept == all.begin() ? 0 : std::prev(kept)->position;
    for (;;) {
        if (start >= _size) return {};
        auto header = header_at(start);
        if (!header) return header.failure();
        if (header->last_offset() >= from_offset) break;
        start += header->total_size();
    }
    const std::span<const offset_index_entry> entries(kept, all.end());
    // Boundary k is where a batch starts: `start`, then each later index entry's position.
    const size_t boundaries = entries.size() + 1;
    const auto boundary = [&](size_t k) -> int64_t {
        return k == 0 ? start : entries[k - 1].position;
    };
    const auto note = [&](const proto::batch_header& header) {
        const int32_t latest = starts.empty() ? undefined_epoch : starts.back().epoch;
        if (header.partition_leader_epoch > latest)
            starts.push_back({header.partition_leader_epoch, header.base_offset});
    };
    const auto walk = [&](int64_t from, int64_t to) -> result<void> {
        for (int64_t position = from; position < to;) {
            auto header = header_at(position);
            if (!header) return header.failure();
            note(*header);
            position += header->total_size();
        }
        return {};
    };
    // Notes the batches strictly between boundaries `low` (already noted, epoch
    // `low_epoch`) and `high` (epoch `high_epoch`, noted by the caller afterwards). Equal
    // epochs at both ends mean no epoch starts in between. Depth: log2(boundaries).
    const auto bisect = [&](const auto& self, size_t low, size_t high, int32_t low_epoch,
                            int32_t high_epoch) -> result<void> {
        const int32_t latest = starts.empty() ? undefined_epoch : starts.back().epoch;
        if (low_epoch >= high_epoch || high_epoch <= latest) return {};
        if (high == low + 1) return walk(boundary(low), boundary(high));
        const size_t middle = low + (high - low) / 2;
        auto header = header_at(boundary(middle));
        if (!header) return header.failure();
        if (auto before = self(self, low, middle, low_epoch, header->partition_leader_epoch);
            !before)
            return before;
        note(*header);
        return self(self, middle, high, header->partition_leader_epoch, high_epoch);
    };
    auto first = header_at(start);
    if (!first) return first.failure();
    note(*first);
    int64_t tail = start + first->total_size();
    if (boundaries > 1) {
        auto last = header_at(boundary(boundaries - 1));
        if (!last) return last.failure();
        if (auto between = bisect(bisect, 0, boundaries - 1, first->partition_leader_epoch,
                                  last->partition_leader_epoch);
            !between)
            return between;
        note(*last);
        tail = boundary(boundaries - 1) + last->total_size();
    }
    return walk(tail, _size);
}

result<void> segment::save_indexes(index_durability durability) const {
    const auto write =
        durability == index_durability::synced ? write_file_atomically : replace_file_unsynced;
    const std::vector<uint8_t> offsets = _index.serialize();
    if (auto written = write(index_path(), offsets); !written) return written;
    const std::vector<uint8_t> times = _time_index.serialize();
    return write(time_index_path(), times);
}

void segment::append_final_time_entry() {
    SPATE_ASSERT(_indexes_loaded, "sealing a segment whose indexes are not loaded");
    if (_max_timestamp)
        _time_index.maybe_append(_max_timestamp->timestamp, _max_timestamp->relative_offset);
}

result<void> segment::seal() {
    append_final_time_entry();
    if (auto released = release_reserve(); !released) return released;
    // Empty indexes need no files (load_indexes of an empty segment reads none), which
    // spares a shutdown two file writes per partition that was created and left empty.
    if (_size > 0) {
        if (auto saved = save_indexes(index_durability::synced); !saved) return saved;
    }
    auto opened = file();
    if (!opened) return opened.failure();
    return sync_data((*opened)->fd, _log_path);
}

result<void> segment::seal_without_sync() {
    append_final_time_entry();
    if (auto released = release_reserve(); !released) return released;
    if (_size == 0) return {};  // see seal()
    return save_indexes(index_durability::unsynced);
}

result<proto::batch_header> segment::header_at(int64_t position) const {
    auto opened = file();
    if (!opened) return opened.failure();
    std::array<uint8_t, proto::batch_header_size> bytes{};
    if (position + static_cast<int64_t>(bytes.size()) > _size)
        return error{EIO, "segment " + _log_path.string() + ": batch header beyond the end"};
    if (auto got = pread_exact((*opened)->fd, bytes, position, _log_path); !got)
        return got.failure();
    auto header = proto::read_batch_header(bytes);
    if (!header || header->total_size() < static_cast<int64_t>(bytes.size()) ||
        header->total_size() > _size - position)
        return error{EIO, "segment " + _log_path.string() + ": corrupt batch header"};
    return header;
}

result<std::optional<batch_location>> segment::find_batch(int64_t offset) const {
    if (auto loaded = load_indexes(); !loaded) return loaded.failure();
    const int64_t relative =
        std::clamp<int64_t>(offset - _base_offset, 0, std::numeric_limits<int32_t>::max());
    int64_t position = _index.position_floor(static_cast<int32_t>(relative));
    while (position < _size) {
        auto header = header_at(position);
        if (!header) return header.failure();
        if (header->last_offset() >= offset)
            return std::optional<batch_location>(batch_location{position, *header});
        position += header->total_size();
    }
    return std::optional<batch_location>();
}

result<int64_t> segment::extent_end(int64_t start, int64_t first_size, int64_t max_bytes,
                                    int64_t max_offset) const {
    int64_t end = start + first_size;
    if (max_bytes <= first_size) return end;
    // Index entries sit on batch boundaries: everything before the last entry that lies
    // within the budget (and whose batch ends below max_offset) is whole batches below
    // max_offset, so only the tail after it needs headers read.
    const int64_t indexed =
        _index.position_at_or_below(start + max_bytes, max_offset - _base_offset);
    if (indexed > end) end = indexed;
    while (end < _size) {
        auto header = header_at(end);
        // Damaged bytes after the first batch end the run: the batches before them are
        // served, and the reader learns of the damage when it asks for that batch.
        if (!header) break;
        if (end + header->total_size() - start > max_bytes) break;
        if (header->last_offset() >= max_offset) break;
        end += header->total_size();
    }
    return end;
}

result<time_index_entry> segment::max_timestamp() const {
    if (_max_timestamp) return *_max_timestamp;
    if (_size == 0) return time_index_entry{-1, -1};
    if (auto loaded = load_indexes(); !loaded) return loaded.failure();
    const time_index_entry* last = _time_index.last();
    _max_timestamp = last ? *last : time_index_entry{-1, -1};
    return *_max_timestamp;
}

result<int64_t> segment::scan_start_for_timestamp(int64_t timestamp) const {
    if (auto loaded = load_indexes(); !loaded) return loaded.failure();
    const int32_t relative = _time_index.offset_before(timestamp);
    if (relative < 0) return int64_t{0};
    return int64_t{_index.position_floor(relative)};
}

result<int64_t> segment::modified_ms() const {
    struct stat info {};
    if (::stat(_log_path.c_str(), &info) != 0) return errno_error("stat", _log_path);
    return static_cast<int64_t>(info.st_mtim.tv_sec) * 1000 + info.st_mtim.tv_nsec / 1000000;
}

void segment::adopt_rewritten(int64_t size_bytes) {
    release_file();
    release_indexes();
    _max_timestamp.reset();
    _size = size_bytes;
    _bytes_since_index_entry = 0;
}

void index_builder::add(const proto::batch_header& header, int64_t position) {
    index_batch(header, position, _base_offset, _index_interval_bytes, _bytes_since_index_entry,
                _index, _time_index, _max_timestamp);
}

std::vector<uint8_t> index_builder::time_index_bytes() {
    if (_max_timestamp)
        _time_index.maybe_append(_max_timestamp->timestamp, _max_timestamp->relative_offset);
    return _time_index.serialize();
}

result<void> segment::remove_files() const {
    if (auto removed = remove_file(_log_path); !removed) return removed;
    if (auto removed = remove_file(index_path()); !removed) return removed;
    return remove_file(time_index_path());
}

size_t segment::memory_bytes() const {
    size_t bytes = sizeof(segment) + _log_path.native().capacity() + _index.memory_bytes() +
                   _time_index.memory_bytes();
    // The shared_ptr control block and the segment_file it holds.
    if (_file) bytes += sizeof(segment_file) + 2 * sizeof(void*);
    return bytes;
}

}  // namespace spate::storage
