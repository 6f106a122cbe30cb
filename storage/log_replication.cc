// partition_log's side of replication (see "Replication" in storage/log.h): appends that
// keep their leader's offsets, the leader epoch cache (its load at open, its updates and
// its persistence) and the two truncations.
#include <algorithm>
#include <string>

#include "net/clock.h"
#include "net/log.h"
#include "proto/assert.h"
#include "storage/checkpoint.h"
#include "storage/leader_epoch.h"
#include "storage/log.h"
#include "storage/segment.h"

namespace spate::storage {

namespace fs = std::filesystem;

result<append_result> partition_log::append_replicated(std::span<uint8_t> batch) {
    std::span<uint8_t> one[] = {batch};
    auto appended = append_batches(one, offsets_mode::keep);
    if (!appended) return appended.failure();
    return appended->front();
}

result<void> partition_log::note_replicated_gap(int64_t base_offset) {
    if (_replicated_gaps_from >= 0 && _replicated_gaps_from <= base_offset) return {};
    if (auto written = write_checkpoint(_dir / replicated_gaps_file_name, base_offset); !written)
        return written;
    _replicated_gaps_from = base_offset;
    return {};
}

// ---- the leader epoch cache --------------------------------------------------------

result<void> partition_log::assign_epoch(int32_t epoch, int64_t start_offset) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    if (start_offset < _log_start || start_offset > _log_end)
        return error{offset_out_of_range, "assign epoch " + std::to_string(epoch) + ": offset " +
                                              std::to_string(start_offset) + " outside [" +
                                              std::to_string(_log_start) + ", " +
                                              std::to_string(_log_end) + "]"};
    if (_epochs.assign(epoch, start_offset)) _epochs_unpersisted = true;
    // Also when the epoch was ignored: an earlier failed write is retried here.
    if (auto persisted = persist_epochs(); !persisted) return persisted;
    check_marks();
    return {};
}

result<void> partition_log::persist_epochs() {
    if (!_epochs_unpersisted) return {};
    if (auto written = _epochs.write_file_unsynced(_dir / leader_epoch_file_name); !written)
        return written;
    _epochs_unpersisted = false;
    _epochs_unsynced = true;
    return {};
}

result<void> partition_log::sync_epochs() {
    if (!_epochs_unpersisted && !_epochs_unsynced) return {};
    if (auto written = _epochs.write_file(_dir / leader_epoch_file_name); !written) return written;
    _epochs_unpersisted = false;
    _epochs_unsynced = false;
    return {};
}

result<void> partition_log::load_leader_epochs(leader_epoch_cache::read_status status,
                                               const std::vector<epoch_entry>& scanned) {
    bool save = false;
    bool completed = false;
    if (status == leader_epoch_cache::read_status::missing && size_bytes() == 0) {
        // A new partition: the file is written before its first batch, whatever epoch
        // that carries, so that a log with batches always has one.
        _epochs_unpersisted = true;
    } else if (status != leader_epoch_cache::read_status::loaded) {
        // Rebuilt from the batches themselves (a log written before epochs were kept,
        // or a damaged file) and saved, once. A segment whose headers cannot be read is
        // skipped (and logged): an epoch that started in it is then recorded where its
        // next readable batch is, which is the best the log can still tell.
        std::vector<epoch_entry> starts;
        for (const auto& seg : _segments) {
            if (auto collected = seg->collect_epoch_starts(starts, _log_start); !collected)
                net::log_warn("%s: rebuilding %s skipped segment %s: %s", _dir.c_str(),
                              leader_epoch_file_name, seg->path().filename().c_str(),
                              collected.failure().message.c_str());
            // Closed segments keep nothing in memory after the walk.
            if (seg.get() != &active()) {
                seg->release_indexes();
                seg->release_file();
            }
        }
        _epochs = leader_epoch_cache(std::move(starts));
        save = true;
        net::log_warn("%s: %s was %s; rebuilt from the log: %zu entries", _dir.c_str(),
                      leader_epoch_file_name,
                      status == leader_epoch_cache::read_status::damaged ? "damaged" : "missing",
                      _epochs.entries().size());
    } else {
        // The file was written unsynced after the recovery point (see storage/log.h): a
        // power loss may have undone entries the scanned batches still carry.
        size_t added = 0;
        for (const epoch_entry& start : scanned)
            if (_epochs.assign(start.epoch, start.start_offset)) ++added;
        completed = added > 0;
        if (completed)
            net::log_warn("%s: %s lacked %zu epoch(s) that start in the scanned batches; added",
                          _dir.c_str(), leader_epoch_file_name, added);
    }
    // Entries naming epochs whose batches never reached the log (a crash between the
    // file's write and the batch's, or a truncation cut short) go, and the log start
    // applies.
    _epochs.truncate_from_start(_log_start);
    if (_epochs.truncate_from_end(_log_end)) _epochs_unpersisted = true;
    if (completed) {
        // Durable before the open's recovery point passes those batches, or no open.
        _epochs_unpersisted = true;
        return sync_epochs();
    }
    if (save) {
        _epochs_unpersisted = true;
        // A failure is not fatal: the write is retried before the next batch, and the
        // next open rebuilds the file again.
        if (auto persisted = sync_epochs(); !persisted)
            net::log_warn("%s: saving the rebuilt %s: %s", _dir.c_str(), leader_epoch_file_name,
                          persisted.failure().message.c_str());
    }
    return {};
}

// ---- truncation ----------------------------------------------------------------------

result<int64_t> partition_log::truncate_to(int64_t offset) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    if (offset < _log_start)
        return error{offset_out_of_range, "truncate: offset " + std::to_string(offset) +
                                              " below the log start " + std::to_string(_log_start)};
    if (offset >= _log_end) return _log_end;
    abort_compaction();
    ++_truncations;
    // Past this point the files may be anywhere between the old and the new log (each
    // a valid log, see the header comment), so an error stops the log until a reopen
    // recovers whichever it finds.
    const auto stop = [&](const error& failure) -> result<int64_t> {
        _usable = false;
        return failure;
    };
    if (auto retired = retire_clean_marker(); !retired) return stop(retired.failure());
    // The segment that will hold the new end: the last one starting at or below offset
    // (the first one starts at or below the log start).
    auto holding = std::upper_bound(
        _segments.begin(), _segments.end(), offset,
        [](int64_t value, const std::unique_ptr<segment>& s) { return value < s->base_offset(); });
    SPATE_ASSERT(holding != _segments.begin(),
                 "the first segment starts at or below the log start");
    const auto kept = static_cast<size_t>(std::prev(holding) - _segments.begin()) + 1;
    segment& holder = *_segments[kept - 1];
    // A closed holder takes appends again: its indexes must be in memory.
    if (auto loaded = holder.load_indexes(); !loaded) return stop(loaded.failure());

    // Step 2: the later segments, newest first, then the directory.
    const bool deleting = _segments.size() > kept;
    while (_segments.size() > kept) {
        if (auto removed = _segments.back()->remove_files(); !removed)
            return stop(removed.failure());
        _segments.pop_back();
    }
    std::erase_if(_syncs, [&](const pending_sync& pending) {
        return pending.segment_base >= holder.base_offset();
    });
    if (_syncs.empty()) _syncs.shrink_to_fit();
    if (deleting) {
        if (auto synced = sync_directory(_dir); !synced) return stop(synced.failure());
    }

    // Step 3: the cut, durable before a checkpoint describes the log without it.
    auto new_end = holder.truncate_before(offset);
    if (!new_end) return stop(new_end.failure());
    auto file = holder.file();
    if (!file) return stop(file.failure());
    if (auto synced = sync_data((*file)->fd, holder.path()); !synced) return stop(synced.failure());

    // The marks: everything kept in the holder is on disk now, and the segments before
    // it are as far as their outstanding requests say.
    const int64_t old_start = _log_start;
    _log_end = *new_end;
    _log_start = std::min(_log_start, _log_end);
    _active_synced = _log_end;
    _durable = std::min(_durable, _log_end);
    _recovery_point = _syncs.empty() ? _log_end : std::min(_recovery_point, _log_end);
    _dirty_start = std::min(_dirty_start, _log_end);
    _compaction_considered_end = std::min(_compaction_considered_end, _log_end);
    if (_epochs.truncate_from_end(_log_end)) _epochs_unpersisted = true;
    update_durable();

    // Step 4: checkpoints naming offsets beyond the new end.
    if (_log_start != old_start) {
        if (auto written = write_checkpoint(_dir / log_start_file_name, _log_start); !written)
            return stop(written.failure());
    }
    if (_cleaned_through > _log_end) {
        if (auto written = write_checkpoint(_dir / cleaned_through_file_name, _log_end); !written)
            return stop(written.failure());
        _cleaned_through = _log_end;
    }
    if (_checkpointed_recovery_point != _recovery_point) {
        if (auto written = write_checkpoint(_dir / recovery_point_file_name, _recovery_point);
            !written)
            return stop(written.failure());
        _checkpointed_recovery_point = _recovery_point;
    }
    // Step 5.
    if (auto persisted = sync_epochs(); !persisted) return stop(persisted.failure());
    net::log_info("%s: truncated to offset %lld (asked %lld)", _dir.c_str(),
                  static_cast<long long>(_log_end), static_cast<long long>(offset));
    return _log_end;
}

result<void> partition_log::truncate_fully_and_start_at(int64_t offset) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    if (offset < 0)
        return error{offset_out_of_range,
                     "truncate fully: negative offset " + std::to_string(offset)};
    abort_compaction();
    ++_truncations;
    const auto stop = [&](const error& failure) -> result<void> {
        _usable = false;
        return failure;
    };
    if (auto retired = retire_clean_marker(); !retired) return stop(retired.failure());
    if (auto written = write_checkpoint(_dir / log_start_file_name, offset); !written)
        return stop(written.failure());
    _epochs.clear();
    _epochs_unpersisted = true;
    if (auto persisted = sync_epochs(); !persisted) return stop(persisted.failure());
    // Oldest first, as retention deletes: a crash in between leaves the newest segments
    // under a log start past them, so the old log end, with nothing readable. The
    // segment objects stay until the new one exists, so that the log always has an
    // active segment, even after a failure here.
    for (const auto& seg : _segments) {
        if (auto removed = seg->remove_files(); !removed) return stop(removed.failure());
    }
    const int64_t preallocate_bytes = _config.preallocate ? _config.segment_bytes : 0;
    auto created = segment::create(_dir, offset, net::wall_clock_ms(), preallocate_bytes,
                                   _config.index_interval_bytes, _descriptors);
    if (!created) return stop(created.failure());
    _segments.clear();
    _segments.push_back(std::move(*created));
    _syncs.clear();
    _syncs.shrink_to_fit();
    // Nothing is left that compaction rewrote or that followed a gap.
    if (auto removed = remove_file(_dir / cleaned_through_file_name); !removed)
        return stop(removed.failure());
    if (auto removed = remove_file(_dir / replicated_gaps_file_name); !removed)
        return stop(removed.failure());
    if (auto synced = sync_directory(_dir); !synced) return stop(synced.failure());
    _log_start = offset;
    _log_end = offset;
    _durable = offset;
    _active_synced = offset;
    _recovery_point = offset;
    _cleaned_through = 0;
    _dirty_start = offset;
    _compaction_considered_end = offset;
    _replicated_gaps_from = -1;
    check_marks();
    if (_checkpointed_recovery_point != offset) {
        if (auto written = write_checkpoint(_dir / recovery_point_file_name, offset); !written)
            return stop(written.failure());
        _checkpointed_recovery_point = offset;
    }
    net::log_info("%s: emptied, restarting at offset %lld", _dir.c_str(),
                  static_cast<long long>(offset));
    return {};
}

}  // namespace spate::storage
