#include "storage/log.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>

#include "net/clock.h"
#include "net/log.h"
#include "proto/assert.h"
#include "proto/record_batch.h"
#include "storage/checkpoint.h"
#include "storage/compaction.h"
#include "storage/log_compaction_run.h"
#include "storage/segment.h"

namespace spate::storage {

namespace {

namespace fs = std::filesystem;

// The vectored write of one group is limited by the kernel's iovec limit.
constexpr size_t iovecs_per_write_max = IOV_MAX;

using net::wall_clock_ms;

log_config sanitized(log_config config) {
    // Positions in the index are int32, so a segment stays below 2 GiB; a segment must
    // hold at least one batch header to ever be "full" in a meaningful way.
    config.segment_bytes =
        std::clamp<int64_t>(config.segment_bytes, static_cast<int64_t>(proto::batch_header_size),
                            std::numeric_limits<int32_t>::max());
    config.segment_ms = std::max<int64_t>(config.segment_ms, 1);
    config.index_interval_bytes = std::max<int32_t>(config.index_interval_bytes, 0);
    config.flush_messages = std::max<int64_t>(config.flush_messages, 1);
    config.flush_ms = std::max<int64_t>(config.flush_ms, 0);
    return config;
}

// `length` (< tail_padding_bytes) zeros to pad a segment with (segment.h). Never
// written, the array's .bss pages are read as the kernel's shared zero page.
iovec padding(int64_t length) {
    static std::array<uint8_t, tail_padding_bytes> zeros{};
    SPATE_ASSERT(length > 0 && length < tail_padding_bytes, "padding stays below a granule");
    return iovec{zeros.data(), static_cast<size_t>(length)};
}

// Writes the iovecs at `position`, resuming short writes mid-vector.
result<void> pwritev_all(int fd, std::vector<iovec>& vectors, int64_t position,
                         const fs::path& path) {
    size_t first = 0;
    while (first < vectors.size()) {
        const ssize_t n =
            ::pwritev(fd, vectors.data() + first, static_cast<int>(vectors.size() - first),
                      static_cast<off_t>(position));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("pwritev", path);
        }
        position += n;
        auto left = static_cast<size_t>(n);
        while (first < vectors.size() && left >= vectors[first].iov_len) {
            left -= vectors[first].iov_len;
            ++first;
        }
        if (first < vectors.size() && left > 0) {
            vectors[first].iov_base = static_cast<uint8_t*>(vectors[first].iov_base) + left;
            vectors[first].iov_len -= left;
        }
    }
    return {};
}

// Decompressing a batch to find a timestamp inside it is bounded by this many bytes;
// a batch whose records expand beyond it answers with its first offset.
constexpr size_t timestamp_search_decompressed_bytes_max = 64 << 20;

// The first record of the batch at `location` whose timestamp is >= `timestamp`. For
// LogAppendTime batches every record carries the batch's timestamp; otherwise the
// records are decoded (decompressed if needed). A batch whose records cannot be
// decoded answers with its first offset and largest timestamp: a consumer starting
// there merely skips the earlier records.
result<partition_log::offset_and_timestamp> first_record_at_or_after(const segment& seg,
                                                                     const batch_location& location,
                                                                     int64_t timestamp) {
    const proto::batch_header& h = location.header;
    partition_log::offset_and_timestamp found{h.base_offset, h.max_timestamp};
    if (h.has_log_append_time()) return found;
    auto opened = seg.file();
    if (!opened) return opened.failure();
    std::vector<uint8_t> bytes(static_cast<size_t>(h.total_size()));
    if (auto got = pread_exact((*opened)->fd, bytes, location.position, seg.path()); !got)
        return got.failure();
    auto walked = proto::for_each_record(
        bytes, timestamp_search_decompressed_bytes_max, [&](const proto::record_view& record) {
            if (proto::record_timestamp(h.base_timestamp, record.timestamp_delta) < timestamp)
                return true;
            found = {proto::record_offset(h.base_offset, record.offset_delta),
                     proto::record_timestamp(h.base_timestamp, record.timestamp_delta)};
            return false;
        });
    (void)walked;  // A decoding failure keeps the whole-batch answer, as documented.
    return found;
}

}  // namespace

partition_log::partition_log(std::filesystem::path dir, const log_config& config,
                             fd_cache* descriptors)
    : _dir(std::move(dir)),
      _config(sanitized(config)),
      _descriptors(descriptors),
      _last_flush(std::chrono::steady_clock::now()) {}

partition_log::~partition_log() = default;

result<std::unique_ptr<partition_log>> partition_log::open(std::filesystem::path dir,
                                                           const log_config& config,
                                                           fd_cache* descriptors) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return error{ec.value(), "create directory " + dir.string() + ": " + ec.message()};
    std::unique_ptr<partition_log> log(new partition_log(std::move(dir), config, descriptors));
    if (auto recovered = log->recover(); !recovered) return recovered.failure();
    return log;
}

void partition_log::check_marks() const {
    SPATE_ASSERT(_log_start <= _log_end, "log start must not pass the log end");
    SPATE_ASSERT(_durable <= _log_end, "durable offset must not pass the log end");
    SPATE_ASSERT(!_segments.empty(), "a log always has an active segment");
    SPATE_ASSERT(active().base_offset() <= _log_end,
                 "the active segment starts at or below the log end");
    SPATE_ASSERT(_recovery_point <= _durable,
                 "the recovery point must not pass the durable offset");
    SPATE_ASSERT(_syncs.empty() || _syncs.front().segment_base <= _recovery_point,
                 "the recovery point must not pass an unsynced segment");
    SPATE_ASSERT(_syncs.empty() || _recovery_point <= _syncs.front().durable_offset,
                 "the oldest outstanding sync request is the next step of the recovery point");
    const std::vector<epoch_entry>& epochs = _epochs.entries();
    SPATE_ASSERT(epochs.empty() || epochs.front().start_offset >= _log_start,
                 "no leader epoch starts before the log start");
    SPATE_ASSERT(epochs.empty() || epochs.back().start_offset <= _log_end,
                 "no leader epoch starts after the log end");
}

result<std::shared_ptr<segment_file>> partition_log::active_file() const { return active().file(); }

void partition_log::mark_durable(int64_t offset) {
    SPATE_ASSERT(offset <= _log_end,
                 "durable offset beyond the log end (an fdatasync from before a truncation? "
                 "see truncation_count())");
    _active_synced = std::max(_active_synced, offset);
    _last_flush = std::chrono::steady_clock::now();
    update_durable();
}

void partition_log::update_durable() {
    // Data in the active segment counts only once every older segment is synced and the
    // directory entries of the newer ones are durable: both hold when no request is
    // outstanding, because the checkpoint write of the last completion fsynced the
    // directory after the active segment was created.
    const int64_t reachable =
        _syncs.empty() ? std::max(_recovery_point, _active_synced) : _recovery_point;
    _durable = std::max(_durable, reachable);
    check_marks();
}

result<void> partition_log::sync() {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    if (auto ran = run_sync_requests(); !ran) return ran;
    const int64_t end = _log_end;
    // Nothing written since the last fdatasync: an idle partition's close (100,000 of
    // them at shutdown) need not reopen and sync its evicted active segment.
    if (_syncs.empty() && _durable >= end) return {};
    auto file = active_file();
    if (!file) return file.failure();
    if (auto synced = sync_data((*file)->fd, active().path()); !synced) return synced;
    mark_durable(end);
    return {};
}

std::vector<sync_request> partition_log::take_sync_requests() {
    std::vector<sync_request> taken;
    for (pending_sync& pending : _syncs) {
        if (pending.state != sync_state::queued) continue;
        pending.state = sync_state::taken;
        taken.push_back(sync_request{pending.file, pending.durable_offset});
    }
    return taken;
}

bool partition_log::has_sync_requests() const {
    return std::any_of(_syncs.begin(), _syncs.end(), [](const pending_sync& pending) {
        return pending.state == sync_state::queued;
    });
}

result<void> partition_log::fail_sync(size_t request, int errno_value) {
    pending_sync& pending = _syncs[request];
    const std::string what = "fdatasync " + segment::log_path(_dir, pending.segment_base).string() +
                             ": " + std::strerror(errno_value);
    const bool retryable = errno_value == EINTR || errno_value == EAGAIN ||
                           errno_value == ECANCELED || errno_value == ENOMEM;
    if (retryable) {
        // The kernel did not get to write anything back: the same request can simply
        // be submitted again.
        pending.state = sync_state::queued;
        return error{errno_value, what + " (will be retried)"};
    }
    // After a writeback error the kernel may have marked the lost pages clean, so a
    // second fdatasync could report success over data that never reached the disk.
    // The request stays taken forever, which pins the recovery point and the durable
    // offset below this segment, and the log takes no more appends.
    pending.state = sync_state::taken;
    _usable = false;
    return error{errno_value, what + " (the log refuses appends until it is reopened)"};
}

result<void> partition_log::complete_sync(int64_t durable_offset, int res) {
    SPATE_ASSERT(res <= 0, "an fdatasync result is 0 or -errno");
    auto it = std::find_if(_syncs.begin(), _syncs.end(), [&](const pending_sync& pending) {
        return pending.durable_offset == durable_offset && pending.state != sync_state::done;
    });
    if (it != _syncs.end()) {
        if (res < 0) return fail_sync(static_cast<size_t>(it - _syncs.begin()), -res);
        it->state = sync_state::done;
    }
    return advance_recovery_point();
}

result<void> partition_log::run_sync_requests() {
    for (size_t i = 0; i < _syncs.size(); ++i) {
        if (_syncs[i].state == sync_state::done) continue;
        const fs::path path = segment::log_path(_dir, _syncs[i].segment_base);
        if (auto synced = sync_data(_syncs[i].file->fd, path); !synced)
            return fail_sync(i, synced.failure().code);
        _syncs[i].state = sync_state::done;
    }
    return advance_recovery_point();
}

result<void> partition_log::advance_recovery_point() {
    size_t completed = 0;
    while (completed < _syncs.size() && _syncs[completed].state == sync_state::done) ++completed;
    if (completed == 0) return {};
    const int64_t point = _syncs[completed - 1].durable_offset;
    // A failed write leaves the requests done and the recovery point where it was; the
    // next completion, sync() or close() writes it again. The epoch file first: once the
    // recovery point passes a batch, no open scans it to complete the file.
    if (_epochs_unsynced) {
        if (auto synced = sync_epochs(); !synced) return synced;
    }
    if (auto written = write_checkpoint(_dir / recovery_point_file_name, point); !written)
        return written;
    _checkpointed_recovery_point = point;
    for (size_t i = 0; i < completed; ++i) {
        // The synced segment keeps no descriptor unless someone reads it again.
        auto it = std::lower_bound(_segments.begin(), _segments.end(), _syncs[i].segment_base,
                                   [](const std::unique_ptr<segment>& s, int64_t base) {
                                       return s->base_offset() < base;
                                   });
        if (it != _segments.end() && (*it)->base_offset() == _syncs[i].segment_base &&
            it->get() != &active())
            (*it)->release_file();
    }
    _syncs.erase(_syncs.begin(), _syncs.begin() + static_cast<std::ptrdiff_t>(completed));
    if (_syncs.empty()) _syncs.shrink_to_fit();
    _recovery_point = point;
    update_durable();
    return {};
}

bool partition_log::flush_due(steady now) const {
    if (_durable >= _log_end) return false;
    if (_log_end - _durable >= _config.flush_messages) return true;
    if (_config.flush_ms == std::numeric_limits<int64_t>::max()) return false;
    const int64_t elapsed_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - _last_flush).count();
    return elapsed_ms >= _config.flush_ms;
}

int64_t partition_log::roll_jitter_ms(int64_t base_offset) const {
    if (_config.segment_jitter_ms <= 0) return 0;
    // A fixed pseudo-random draw per (directory, segment): Kafka draws at random when the
    // segment is created; a hash gives the same spread and survives restarts.
    uint64_t h = std::hash<std::string>{}(_dir.native()) ^
                 (static_cast<uint64_t>(base_offset) * 0x9E3779B97F4A7C15ull);
    h ^= h >> 31;
    const int64_t jitter =
        static_cast<int64_t>(h % static_cast<uint64_t>(_config.segment_jitter_ms));
    return std::min(jitter, _config.segment_ms - 1);
}

bool partition_log::should_roll(int64_t segment_bytes, int64_t batch_bytes, int64_t last_offset,
                                int64_t now_ms) const {
    const segment& seg = active();
    // The indexes' relative offsets must reach the batch, even from an empty segment (a
    // follower's batch after a gap).
    if (last_offset - seg.base_offset() > std::numeric_limits<int32_t>::max()) return true;
    if (segment_bytes == 0) return false;  // an empty segment takes any one batch
    return segment_bytes + batch_bytes > _config.segment_bytes ||
           now_ms - seg.created_ms() >= _config.segment_ms - roll_jitter_ms(seg.base_offset());
}

result<void> partition_log::roll(int64_t now_ms, int64_t base_offset) {
    SPATE_ASSERT(base_offset >= _log_end, "a new segment starts at or after the log end");
    const int64_t preallocate_bytes = _config.preallocate ? _config.segment_bytes : 0;
    auto created = segment::create(_dir, base_offset, now_ms, preallocate_bytes,
                                   _config.index_interval_bytes, _descriptors);
    if (!created) return created.failure();
    ++_rolls;
    // Nothing here waits for the disk: the closed segment's data is synced through a
    // sync request, and the recovery point stays below it until that completes, so a
    // crash meanwhile makes recovery scan it (and the new segment) again.
    segment& closed = active();
    auto file = closed.file();
    if (!file) {
        (void)(*created)->remove_files();
        return file.failure();
    }
    if (auto sealed = closed.seal_without_sync(); !sealed) {
        (void)(*created)->remove_files();
        return sealed;
    }
    closed.release_indexes();
    // Offsets in a gap before the new segment exist nowhere: once the closed segment is
    // synced, everything below the new base offset is.
    _syncs.push_back(
        pending_sync{std::move(*file), closed.base_offset(), base_offset, sync_state::queued});
    _segments.push_back(std::move(*created));
    _log_end = base_offset;
    check_marks();
    return {};
}

result<append_result> partition_log::append(std::span<uint8_t> batch, int32_t records_count) {
    auto header = proto::read_batch_header(batch);
    if (!header || header->last_offset_delta + 1 != records_count)
        return error{invalid_batch, "append: records_count does not match the batch"};
    std::span<uint8_t> one[] = {batch};
    auto appended = append_many(one);
    if (!appended) return appended.failure();
    return appended->front();
}

result<std::vector<append_result>> partition_log::append_many(
    std::span<std::span<uint8_t>> batches) {
    return append_batches(batches, offsets_mode::assign);
}

result<std::vector<append_result>> partition_log::append_batches(
    std::span<std::span<uint8_t>> batches, offsets_mode mode) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    int64_t expected_end = _log_end;
    for (std::span<uint8_t> batch : batches) {
        auto header = proto::read_batch_header(batch);
        if (!header || header->total_size() != static_cast<int64_t>(batch.size()) ||
            header->last_offset_delta < 0)
            return error{invalid_batch, "append: not one whole record batch"};
        if (mode == offsets_mode::keep) {
            if (header->base_offset < expected_end)
                return error{offset_out_of_order,
                             "append: batch at offset " + std::to_string(header->base_offset) +
                                 " below the log end " + std::to_string(expected_end)};
            if (!header->next_offset_fits())
                return error{invalid_batch, "append: batch offsets beyond int64"};
            expected_end = header->last_offset() + 1;
        }
    }
    if (auto retired = retire_clean_marker(); !retired) return retired.failure();
    std::vector<append_result> results;
    results.reserve(batches.size());
    std::vector<iovec> vectors;
    const int64_t now_ms = wall_clock_ms();
    // The epoch cache as it was before the batches being written, restored when their
    // write fails (copied only when a batch brings a new epoch, which is rare).
    std::optional<leader_epoch_cache> epochs_before;
    const auto restore_epochs = [&] {
        if (!epochs_before) return;
        _epochs = std::move(*epochs_before);
        epochs_before.reset();
        // The file may hold the entries just removed (a write that failed after its
        // rename, or a batch write that failed after it): rewritten before the next batch.
        _epochs_unpersisted = true;
    };
    size_t next = 0;
    while (next < batches.size()) {
        const auto header_of = [&](size_t i) { return *proto::read_batch_header(batches[i]); };
        const auto base_of = [&](size_t i, int64_t assigned) {
            return mode == offsets_mode::assign ? assigned : header_of(i).base_offset;
        };
        const int64_t first_base = base_of(next, _log_end);
        if (first_base > _log_end) {
            if (auto noted = note_replicated_gap(first_base); !noted) return noted.failure();
        }
        if (should_roll(active().size_bytes(), static_cast<int64_t>(batches[next].size()),
                        first_base + header_of(next).last_offset_delta, now_ms)) {
            if (auto rolled = roll(now_ms, first_base); !rolled) return rolled.failure();
        }
        // Gather the run of batches that fit in the active segment into one write.
        segment& seg = active();
        const int64_t position = seg.size_bytes();
        int64_t bytes = 0;
        int64_t offset = _log_end;
        size_t end = next;
        vectors.clear();
        // (One iovec is left for the tail padding.)
        while (end < batches.size() && end - next + 1 < iovecs_per_write_max) {
            const proto::batch_header header = header_of(end);
            const auto size = static_cast<int64_t>(batches[end].size());
            const int64_t base = base_of(end, offset);
            const int64_t last = base + header.last_offset_delta;
            if (end > next && should_roll(position + bytes, size, last, now_ms)) break;
            if (base > offset) {
                if (auto noted = note_replicated_gap(base); !noted) {
                    restore_epochs();
                    return noted.failure();
                }
            }
            if (mode == offsets_mode::assign) proto::set_base_offset(batches[end], base);
            const int32_t epoch = header.partition_leader_epoch;
            if (epoch >= 0 && epoch > _epochs.latest_epoch()) {
                if (!epochs_before) epochs_before = _epochs;
                _epochs.assign(epoch, base);
                _epochs_unpersisted = true;
            }
            vectors.push_back(iovec{batches[end].data(), batches[end].size()});
            offset = last + 1;
            bytes += size;
            ++end;
        }
        // The epochs of these batches are on disk before the batches are.
        if (auto persisted = persist_epochs(); !persisted) {
            restore_epochs();
            return persisted.failure();
        }
        auto file = seg.file();
        if (!file) {
            restore_epochs();
            return file.failure();
        }
        const int64_t file_end = _config.tail_padding ? seg.padding_end(position, position + bytes,
                                                                        _config.segment_bytes)
                                                      : position + bytes;
        if (file_end > position + bytes) vectors.push_back(padding(file_end - position - bytes));
        seg.reserve_ahead((*file)->fd, file_end, _config.preallocate_ahead_bytes,
                          _config.segment_bytes);
        if (auto written = pwritev_all((*file)->fd, vectors, position, seg.path()); !written) {
            // Cut off whatever part of the group reached the file, so the segment ends
            // on a batch boundary; if even that fails the log refuses further appends.
            if (auto cut = seg.truncate_to(position); !cut) _usable = false;
            restore_epochs();
            return written.failure();
        }
        epochs_before.reset();
        seg.note_padding(file_end);
        int64_t at = position;
        for (size_t i = next; i < end; ++i) {
            const proto::batch_header h = header_of(i);
            seg.record_append(h, at);
            at += h.total_size();
            results.push_back({h.base_offset, h.has_log_append_time() ? h.max_timestamp : -1});
        }
        _log_end = offset;
        next = end;
    }
    check_marks();
    return results;
}

result<read_result> partition_log::read(int64_t offset, int32_t max_bytes) const {
    return read(offset, max_bytes, _log_end);
}

result<read_result> partition_log::read(int64_t offset, int32_t max_bytes,
                                        int64_t max_offset) const {
    if (offset < _log_start || offset > _log_end)
        return error{offset_out_of_range, "read: offset " + std::to_string(offset) + " outside [" +
                                              std::to_string(_log_start) + ", " +
                                              std::to_string(_log_end) + "]"};
    const int64_t bound = std::min(max_offset, _log_end);
    read_result out{{}, bound, _log_start, 0};
    if (offset >= bound) return out;
    auto it = std::upper_bound(
        _segments.begin(), _segments.end(), offset,
        [](int64_t value, const std::unique_ptr<segment>& s) { return value < s->base_offset(); });
    SPATE_ASSERT(it != _segments.begin(), "the first segment starts at or below the log start");
    for (--it; it != _segments.end(); ++it) {
        const segment& seg = **it;
        auto found = seg.find_batch(offset);
        if (!found) return found.failure();
        if (!*found) continue;
        const batch_location& location = **found;
        if (location.header.last_offset() >= bound) return out;
        auto end =
            seg.extent_end(location.position, location.header.total_size(), max_bytes, bound);
        if (!end) return end.failure();
        auto file = seg.file();
        if (!file) return file.failure();
        const auto length = static_cast<int32_t>(*end - location.position);
        out.slices.push_back(file_slice{*file, location.position, length});
        out.bytes = length;
        return out;
    }
    return out;
}

result<partition_log::offset_and_timestamp> partition_log::offset_for_timestamp(
    int64_t timestamp_ms) const {
    constexpr int64_t latest = -1;
    constexpr int64_t earliest = -2;
    constexpr int64_t max_timestamp = -3;
    const offset_and_timestamp none{-1, -1};
    if (timestamp_ms == latest) return offset_and_timestamp{_log_end, -1};
    if (timestamp_ms == earliest) return offset_and_timestamp{_log_start, -1};
    if (timestamp_ms == max_timestamp) {
        offset_and_timestamp best = none;
        for (const auto& seg : _segments) {
            auto largest = seg->max_timestamp();
            if (!largest) return largest.failure();
            if (largest->relative_offset < 0 || largest->timestamp <= best.timestamp) continue;
            const int64_t at = seg->base_offset() + largest->relative_offset;
            if (at < _log_start) continue;
            best = {at, largest->timestamp};
        }
        return best;
    }
    if (timestamp_ms < 0) return none;
    for (const auto& seg : _segments) {
        auto largest = seg->max_timestamp();
        if (!largest) return largest.failure();
        if (largest->timestamp < timestamp_ms) continue;
        auto start = seg->scan_start_for_timestamp(timestamp_ms);
        if (!start) return start.failure();
        for (int64_t position = *start; position < seg->size_bytes();) {
            auto header = seg->header_at(position);
            if (!header) return header.failure();
            if (header->max_timestamp >= timestamp_ms && header->last_offset() >= _log_start) {
                auto found =
                    first_record_at_or_after(*seg, batch_location{position, *header}, timestamp_ms);
                if (!found) return found;
                if (found->offset < _log_start) found->offset = _log_start;
                return found;
            }
            position += header->total_size();
        }
    }
    return none;
}

result<void> partition_log::advance_log_start(int64_t offset) {
    if (offset <= _log_start) return {};
    if (auto retired = retire_clean_marker(); !retired) return retired;
    if (auto written = write_checkpoint(_dir / log_start_file_name, offset); !written)
        return written;
    _log_start = offset;
    // In memory only: the next open applies the checkpointed log start to the cache
    // again (see "Replication" in the header comment).
    _epochs.truncate_from_start(offset);
    check_marks();
    return {};
}

result<void> partition_log::delete_records_before(int64_t offset) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    if (offset < 0 || offset > _log_end)
        return error{offset_out_of_range, "delete records: offset " + std::to_string(offset) +
                                              " beyond the log end " + std::to_string(_log_end)};
    if (auto advanced = advance_log_start(offset); !advanced) return advanced;
    return apply_retention(wall_clock_ms());
}

result<void> partition_log::apply_retention(int64_t now_ms) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    // Without "delete" in cleanup.policy only segments below the log start go.
    const bool by_time_and_size = _config.cleanup_delete;
    int64_t total_bytes = 0;
    for (const auto& seg : _segments) total_bytes += seg->size_bytes();
    size_t doomed = 0;
    // Only closed segments are candidates, oldest first; the scan stops at the first
    // segment that must stay, so the log never gets a hole.
    while (doomed + 1 < _segments.size()) {
        const segment& seg = *_segments[doomed];
        bool expired = _segments[doomed + 1]->base_offset() <= _log_start;
        if (!expired && by_time_and_size && _config.retention_bytes >= 0)
            expired = total_bytes - seg.size_bytes() >= _config.retention_bytes;
        if (!expired && by_time_and_size && _config.retention_ms >= 0) {
            auto largest = seg.max_timestamp();
            if (!largest) return largest.failure();
            int64_t last_ms = largest->timestamp;
            if (last_ms < 0) {
                auto modified = seg.modified_ms();
                if (!modified) return modified.failure();
                last_ms = *modified;
            }
            expired = now_ms - last_ms > _config.retention_ms;
        }
        if (!expired) break;
        total_bytes -= seg.size_bytes();
        ++doomed;
    }
    if (doomed == 0) return {};
    // The log start moves (durably) before any file goes, so a crash in between only
    // leaves files that the next open deletes.
    if (auto advanced = advance_log_start(_segments[doomed]->base_offset()); !advanced)
        return advanced;
    return delete_oldest_segments(doomed);
}

void partition_log::set_config(const log_config& config) {
    _config = sanitized(config);
    for (const auto& seg : _segments) seg->set_index_interval_bytes(_config.index_interval_bytes);
}

result<void> partition_log::close() {
    if (!_usable) return {};
    abort_compaction();
    if (_clean_marker) {
        // Nothing changed since the open adopted the marker: it still says it all.
        _usable = false;
        return {};
    }
    if (auto synced = sync(); !synced) return synced;
    if (auto sealed = active().seal(); !sealed) return sealed;
    // The marker's open reads the epoch file and scans nothing.
    if (_epochs_unsynced) {
        if (auto synced = sync_epochs(); !synced) return synced;
    }
    if (_checkpointed_recovery_point != _log_end) {
        if (auto written = write_checkpoint(_dir / recovery_point_file_name, _log_end); !written)
            return written;
        _checkpointed_recovery_point = _log_end;
    }
    _recovery_point = _log_end;
    if (auto written = write_checkpoint(_dir / clean_shutdown_file_name, _log_end); !written)
        return written;
    _usable = false;
    return {};
}

result<bool> partition_log::close_unsynced() {
    if (!_usable) return false;
    abort_compaction();
    _usable = false;
    if (_clean_marker) return false;
    // Everything from here on is made durable by the caller's syncfs (the epoch file
    // too); a failure leaves the log stopped without a marker, which the next open scans.
    if (auto sealed = active().seal_without_sync(); !sealed) return sealed.failure();
    _awaiting_close_sync = true;
    return true;
}

result<void> partition_log::close_after_sync() {
    SPATE_ASSERT(_awaiting_close_sync, "close_after_sync follows a close_unsynced that needs it");
    _awaiting_close_sync = false;
    // The syncfs flushed every dirty page of the file system, so the closed segments of
    // the outstanding requests (taken or not) and the active segment are on disk.
    _syncs.clear();
    _syncs.shrink_to_fit();
    _epochs_unsynced = false;
    _durable = _log_end;
    _active_synced = _log_end;
    _recovery_point = _log_end;
    check_marks();
    // The recovery point first, then the marker: the marker's open trusts the recovery
    // point, and rewrites it if the caller's second syncfs did not make it durable. A
    // log that appended nothing since its recovery point was written (a partition
    // created and left empty, say) need not write it again.
    if (_checkpointed_recovery_point != _log_end) {
        if (auto written = write_checkpoint_unsynced(_dir / recovery_point_file_name, _log_end);
            !written)
            return written;
        _checkpointed_recovery_point = _log_end;
    }
    return write_checkpoint_unsynced(_dir / clean_shutdown_file_name, _log_end);
}

int64_t partition_log::size_bytes() const {
    int64_t total = 0;
    for (const auto& seg : _segments) total += seg->size_bytes();
    return total;
}

size_t partition_log::memory_bytes() const {
    size_t bytes = sizeof(partition_log) + _dir.native().capacity() +
                   _segments.capacity() * sizeof(std::unique_ptr<segment>) +
                   _syncs.capacity() * sizeof(pending_sync) + _epochs.memory_bytes();
    for (const auto& seg : _segments) bytes += seg->memory_bytes();
    if (_compaction)
        bytes += sizeof(compaction_run) + _compaction->map.memory_bytes() +
                 _compaction->to_clean.capacity() * sizeof(int64_t);
    return bytes;
}

size_t partition_log::open_file_count() const {
    size_t count = 0;
    for (const auto& seg : _segments)
        if (seg->file_open()) ++count;
    // A request whose segment released its file (or was deleted) holds one more.
    for (const pending_sync& pending : _syncs) {
        const bool shared = std::any_of(_segments.begin(), _segments.end(), [&](const auto& seg) {
            return seg->holds_file(pending.file.get());
        });
        if (!shared) ++count;
    }
    return count;
}

}  // namespace spate::storage
