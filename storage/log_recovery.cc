// partition_log's recovery at open (see "Recovery" in storage/log.h): segments found on
// disk, the clean-shutdown marker, the scan of what lies after the recovery point, and
// what is moved aside or cut; then the leader epoch cache is loaded (log_replication.cc).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <string>
#include <system_error>

#include "net/clock.h"
#include "net/log.h"
#include "proto/assert.h"
#include "proto/record_batch.h"
#include "storage/checkpoint.h"
#include "storage/leader_epoch.h"
#include "storage/log.h"
#include "storage/segment.h"

namespace spate::storage {
namespace {

namespace fs = std::filesystem;
using net::wall_clock_ms;

// The digits of a segment file name: Kafka's zero-padded 20-digit base offset.
constexpr size_t segment_name_digits = 20;

// Parses "<20 digits>" into an offset; nullopt for any other name.
std::optional<int64_t> parse_base_offset(const std::string& stem) {
    if (stem.size() != segment_name_digits) return std::nullopt;
    int64_t value = 0;
    for (char c : stem) {
        if (c < '0' || c > '9') return std::nullopt;
        if (value > (std::numeric_limits<int64_t>::max() - (c - '0')) / 10) return std::nullopt;
        value = value * 10 + (c - '0');
    }
    return value;
}

}  // namespace

result<void> partition_log::recover() {
    const int64_t now_ms = wall_clock_ms();
    struct found_segment {
        int64_t base;
        int64_t size;
    };
    std::vector<found_segment> found;
    std::vector<std::pair<int64_t, fs::path>> index_files;
    // The checkpoint files the listing found: a start-up opens every partition, and
    // looking up files that are not there costs as much as reading those that are.
    bool clean_present = false;
    bool recovery_point_present = false;
    bool log_start_present = false;
    bool cleaned_through_present = false;
    bool replicated_gaps_present = false;
    bool leader_epochs_present = false;
    bool compaction_leftovers = false;
    std::error_code ec;
    const auto list = [&]() -> result<void> {
        found.clear();
        index_files.clear();
        for (const fs::directory_entry& entry : fs::directory_iterator(_dir, ec)) {
            const fs::path& path = entry.path();
            const std::string extension = path.extension().string();
            if (extension == ".tmp") {
                if (auto removed = remove_file(path); !removed) return removed;
                continue;
            }
            if (extension == ".cleaned" || extension == ".swap") {
                compaction_leftovers = true;
                continue;
            }
            const std::string name = path.filename().string();
            clean_present = clean_present || name == clean_shutdown_file_name;
            recovery_point_present = recovery_point_present || name == recovery_point_file_name;
            log_start_present = log_start_present || name == log_start_file_name;
            cleaned_through_present = cleaned_through_present || name == cleaned_through_file_name;
            replicated_gaps_present = replicated_gaps_present || name == replicated_gaps_file_name;
            leader_epochs_present = leader_epochs_present || name == leader_epoch_file_name;
            const std::optional<int64_t> base = parse_base_offset(path.stem().string());
            if (!base) continue;
            if (extension == ".log") {
                const auto size = static_cast<int64_t>(entry.file_size(ec));
                if (ec) return error{ec.value(), "stat " + path.string() + ": " + ec.message()};
                found.push_back({*base, size});
            } else if (extension == ".index" || extension == ".timeindex") {
                index_files.emplace_back(*base, path);
            }
        }
        if (ec) return error{ec.value(), "list " + _dir.string() + ": " + ec.message()};
        return {};
    };
    if (auto listed = list(); !listed) return listed;
    if (compaction_leftovers) {
        // Completing or rolling back a swap renames segment files: list them again.
        if (auto leftovers = recover_compaction_leftovers(); !leftovers) return leftovers;
        if (auto listed = list(); !listed) return listed;
    }
    std::sort(found.begin(), found.end(),
              [](const found_segment& a, const found_segment& b) { return a.base < b.base; });
    // Index files whose log is gone are leftovers of an interrupted deletion.
    for (const auto& [base, path] : index_files) {
        const bool has_log =
            std::any_of(found.begin(), found.end(),
                        [base = base](const found_segment& s) { return s.base == base; });
        if (!has_log) {
            if (auto removed = remove_file(path); !removed) return removed;
        }
    }

    const auto read_if = [&](bool present, const char* name) -> std::optional<int64_t> {
        if (!present) return std::nullopt;
        return read_checkpoint(_dir / name);
    };
    const std::optional<int64_t> clean_end = read_if(clean_present, clean_shutdown_file_name);
    const int64_t recovery_point =
        read_if(recovery_point_present, recovery_point_file_name).value_or(0);
    const int64_t checkpointed_start =
        std::max<int64_t>(read_if(log_start_present, log_start_file_name).value_or(0), 0);
    const int64_t preallocate_bytes = _config.preallocate ? _config.segment_bytes : 0;
    _cleaned_through = std::max<int64_t>(
        read_if(cleaned_through_present, cleaned_through_file_name).value_or(0), 0);
    _dirty_start = _cleaned_through;
    // Compaction rewrites only segments ending at or below the recovery point of the
    // time, and both marks only grow, so below either of them gaps are legitimate.
    const int64_t gaps_allowed_below = std::max(_cleaned_through, recovery_point);
    // A follower's appends may have left gaps anywhere from the first one on.
    _replicated_gaps_from = std::max<int64_t>(
        read_if(replicated_gaps_present, replicated_gaps_file_name).value_or(-1), -1);
    const auto rule_for = [&](size_t i) {
        const bool last = i + 1 == _segments.size();
        const bool compacted = !last && _segments[i + 1]->base_offset() <= gaps_allowed_below;
        const bool replicated = _replicated_gaps_from >= 0 &&
                                (last || _segments[i + 1]->base_offset() >= _replicated_gaps_from);
        return compacted || replicated ? offset_rule::increasing : offset_rule::contiguous;
    };
    bool clean = false;
    // The epochs that start in the batches the scan kept from the log start on, in log
    // order: a file written unsynced may lack them (storage/log.h), and the recovery point
    // is about to pass them. Batches wholly below the checkpointed start lie below the log
    // start whatever it turns out to be (at least that, at most the log end).
    std::vector<epoch_entry> scanned_epochs;

    if (found.empty()) {
        auto created = segment::create(_dir, checkpointed_start, now_ms, preallocate_bytes,
                                       _config.index_interval_bytes, _descriptors);
        if (!created) return created.failure();
        _segments.push_back(std::move(*created));
        _log_end = checkpointed_start;
    } else {
        for (const found_segment& s : found)
            _segments.push_back(segment::attach(_dir, s.base, s.size, now_ms,
                                                _config.index_interval_bytes, _descriptors));
        if (clean_end) {
            auto adopted = active().adopt_clean_state(*clean_end, rule_for(_segments.size() - 1));
            clean = adopted && *adopted;
            if (!clean) {
                _recovery_stats.clean_marker_rejected = true;
                net::log_warn(
                    "%s: the active segment %s does not end on a whole batch at "
                    "offset %lld as recorded at the clean shutdown%s%s; scanning it",
                    _dir.c_str(), active().path().filename().c_str(),
                    static_cast<long long>(*clean_end), adopted ? "" : ": ",
                    adopted ? "" : adopted.failure().message.c_str());
            }
        }
        if (clean) {
            _log_end = *clean_end;
        } else {
            // The segment holding the recovery point and every later one are scanned.
            size_t first = 0;
            while (first + 1 < _segments.size() &&
                   _segments[first + 1]->base_offset() <= recovery_point)
                ++first;
            for (size_t i = first; i < _segments.size(); ++i) {
                segment& seg = *_segments[i];
                const bool last = i + 1 == _segments.size();
                const offset_rule rule = rule_for(i);
                auto outcome = seg.scan(scan_mode::truncate_invalid, rule);
                if (!outcome) return outcome.failure();
                // What the scan kept is valid, and its indexes are loaded.
                if (auto collected = seg.collect_epoch_starts(scanned_epochs, checkpointed_start);
                    !collected)
                    net::log_warn("%s: reading the epochs of scanned segment %s: %s", _dir.c_str(),
                                  seg.path().filename().c_str(),
                                  collected.failure().message.c_str());
                _log_end = outcome->next_offset;
                _recovery_stats.padding_bytes += outcome->padding_bytes;
                // Junk after the last valid batch loses no offset when the next segment
                // starts right where the valid data ends; a cut before that loses them.
                const bool continues =
                    !last && (rule == offset_rule::contiguous
                                  ? _segments[i + 1]->base_offset() == outcome->next_offset
                                  : _segments[i + 1]->base_offset() >= outcome->next_offset);
                if (outcome->tail_was_invalid) {
                    const int64_t dropped = outcome->file_bytes - outcome->valid_bytes;
                    ++_recovery_stats.truncations;
                    _recovery_stats.bytes_dropped += dropped;
                    if (!outcome->aside_failure.empty()) _recovery_stats.bytes_lost += dropped;
                    // The dropped offsets are known only as far as the damaged headers
                    // still chain; "-" says that nothing there looks like a batch.
                    const std::string through = outcome->dropped_last_offset >= 0
                                                    ? std::to_string(outcome->dropped_last_offset)
                                                    : std::string("-");
                    net::log_warn(
                        "%s: recovery cut segment %s at byte %lld: offsets %lld..%s (as far "
                        "as the damaged headers tell), %lld bytes from the first invalid "
                        "batch on, %s%s",
                        _dir.c_str(), seg.path().filename().c_str(),
                        static_cast<long long>(outcome->valid_bytes),
                        static_cast<long long>(outcome->next_offset), through.c_str(),
                        static_cast<long long>(dropped),
                        outcome->aside_failure.empty() ? "were moved to "
                                                       : "were deleted, as keeping them failed: ",
                        outcome->aside_failure.empty() ? outcome->moved_to.filename().c_str()
                                                       : outcome->aside_failure.c_str());
                }
                if (!last && !continues) {
                    // The log ends at the first lost offset: the later segments go aside.
                    if (auto moved = move_newest_segments_aside(_segments.size() - i - 1); !moved)
                        return moved;
                    break;
                }
                if (last && outcome->tail_was_invalid)
                    _recovery_stats.first_dropped_offset = outcome->next_offset;
                if (!last) {
                    if (auto sealed = seg.seal(); !sealed) return sealed;
                    seg.release_indexes();
                    seg.release_file();
                }
            }
            // What the scan kept (and any truncation) reaches the disk before the log
            // is considered recovered, since the pages may have come from a crashed
            // process rather than from the disk.
            auto opened = active().file();
            if (!opened) return opened.failure();
            if (auto synced = sync_data((*opened)->fd, active().path()); !synced) return synced;
        }
    }

    // Segments wholly below the checkpointed log start were being deleted.
    size_t below = 0;
    while (below + 1 < _segments.size() &&
           _segments[below + 1]->base_offset() <= checkpointed_start)
        ++below;
    if (below > 0) {
        if (auto deleted = delete_oldest_segments(below); !deleted) return deleted;
    }
    _log_start = std::min(std::max(checkpointed_start, _segments.front()->base_offset()), _log_end);
    _durable = _log_end;
    _active_synced = _log_end;

    // Looked up only when the listing found it, as the checkpoints are.
    const auto epochs_read = leader_epochs_present ? leader_epoch_cache::read_file(
                                                         _dir / leader_epoch_file_name, _epochs)
                                                   : leader_epoch_cache::read_status::missing;
    if (auto loaded = load_leader_epochs(epochs_read, scanned_epochs); !loaded) return loaded;

    if (clean) {
        // The marker stays: it describes the files as they are, and is removed durably
        // before the first change (retire_clean_marker), so an idle partition opens and
        // closes without writing. The clean close wrote the recovery point (the log end)
        // before the marker; should the checkpoint read otherwise (damaged, or a crash
        // between the two unsynced writes of a batched close), it is written again.
        _clean_marker = true;
        if (recovery_point != _log_end) {
            if (auto written = write_checkpoint(_dir / recovery_point_file_name, _log_end);
                !written)
                return written;
        }
    } else {
        if (clean_end) {
            if (auto removed = remove_file(_dir / clean_shutdown_file_name); !removed)
                return removed;
        }
        // Writing the recovery point also fsyncs the directory, which makes the marker's
        // removal and any segment creation or deletion above durable. A new partition's
        // log (no checkpoint, which reads as 0, and an empty segment at 0) skips it: its
        // segment file vanishing in a crash costs nothing, the next open creates it again,
        // and creating 100,000 partitions then costs no fsync per partition here.
        if (clean_end || recovery_point != _log_end) {
            if (auto written = write_checkpoint(_dir / recovery_point_file_name, _log_end);
                !written)
                return written;
        }
    }
    _recovery_point = _log_end;
    _checkpointed_recovery_point = _log_end;
    // A run after every start picks up tombstones and young segments whose time came
    // while the partition was closed.
    _compaction_due_ms = 0;
    check_marks();
    return {};
}

result<void> partition_log::move_newest_segments_aside(size_t count) {
    SPATE_ASSERT(count < _segments.size(), "the active segment is never moved aside");
    const int64_t first_base = _segments[_segments.size() - count]->base_offset();
    int64_t bytes = 0;
    for (size_t i = _segments.size() - count; i < _segments.size(); ++i)
        bytes += _segments[i]->size_bytes();
    while (count-- > 0) {
        auto moved = _segments.back()->move_aside();
        if (!moved) return moved.failure();
        _segments.pop_back();
        ++_recovery_stats.segments_moved_aside;
    }
    _recovery_stats.bytes_dropped += bytes;
    _recovery_stats.first_dropped_offset = _log_end;
    net::log_warn(
        "%s: recovery ended the log at offset %lld; the segments from base offset "
        "%lld on (%lld bytes) were renamed to <segment>.log.0%s",
        _dir.c_str(), static_cast<long long>(_log_end), static_cast<long long>(first_base),
        static_cast<long long>(bytes), corrupt_file_extension);
    return sync_directory(_dir);
}

result<void> partition_log::retire_clean_marker() {
    if (!_clean_marker) return {};
    // The unlink is durable before the caller changes anything: a marker left on disk
    // next to changed files would make the next open trust a tail it did not check
    // against the change (a roll, a moved log start, a rewritten segment).
    if (auto removed = remove_file(_dir / clean_shutdown_file_name); !removed) return removed;
    if (auto synced = sync_directory(_dir); !synced) return synced;
    _clean_marker = false;
    return {};
}

result<void> partition_log::delete_oldest_segments(size_t count) {
    SPATE_ASSERT(count < _segments.size(), "the active segment is never deleted");
    if (auto retired = retire_clean_marker(); !retired) return retired;
    for (size_t i = 0; i < count; ++i) {
        if (auto removed = _segments[i]->remove_files(); !removed) return removed;
    }
    _segments.erase(_segments.begin(), _segments.begin() + static_cast<std::ptrdiff_t>(count));
    return sync_directory(_dir);
}

}  // namespace spate::storage
