// partition_log's compaction (see "Compaction" in storage/log.h): recovery of an
// interrupted run's files, then the map and clean steps housekeeping runs in bounded
// amounts. Split from storage/log.cc, code unchanged.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <system_error>

#include "net/log.h"
#include "proto/assert.h"
#include "proto/record_batch.h"
#include "storage/checkpoint.h"
#include "storage/compaction.h"
#include "storage/log.h"
#include "storage/log_compaction_run.h"
#include "storage/segment.h"

namespace spate::storage {

namespace fs = std::filesystem;

// ---- compaction --------------------------------------------------------------------

namespace {

// After a failed compaction step the next run waits this long, so a persistent error
// (ENOSPC) does not turn every housekeeping tick into a failing rewrite.
constexpr int64_t compaction_retry_delay_ms = 30 * 1000;

fs::path with_suffix(const fs::path& path, const char* suffix) {
    fs::path out = path;
    out += suffix;
    return out;
}

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() &&
           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

result<void> rename_file(const fs::path& from, const fs::path& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) return errno_error("rename", from);
    return {};
}

// Reads the whole batches stored in [position, end) of `fd`, about `budget_bytes` of
// them but at least one (a batch larger than the budget is read whole). A header that
// cannot start a batch is an error: the caller reads only segments already verified.
result<std::vector<uint8_t>> read_whole_batches(int fd, const fs::path& path, int64_t position,
                                                int64_t end, int64_t budget_bytes) {
    const auto header_bytes = static_cast<int64_t>(proto::batch_header_size);
    if (end - position < header_bytes)
        return error{EIO, "segment " + path.string() + ": partial batch at its end"};
    int64_t want = std::clamp(budget_bytes, header_bytes, end - position);
    std::vector<uint8_t> bytes(static_cast<size_t>(want));
    if (auto got = pread_exact(fd, bytes, position, path); !got) return got.failure();
    auto header = proto::read_batch_header(bytes);
    if (!header || header->total_size() < header_bytes || header->total_size() > end - position)
        return error{EIO, "segment " + path.string() + ": corrupt batch header at " +
                              std::to_string(position)};
    if (header->total_size() > want) {
        want = header->total_size();
        bytes.resize(static_cast<size_t>(want));
        if (auto got = pread_exact(fd, bytes, position, path); !got) return got.failure();
    }
    auto split =
        proto::for_each_batch(bytes, [](std::span<const uint8_t>, const proto::batch_header&) {});
    if (!split || split->batches == 0)
        return error{EIO,
                     "segment " + path.string() + ": corrupt batch at " + std::to_string(position)};
    bytes.resize(split->consumed_bytes);
    return bytes;
}

}  // namespace

result<void> partition_log::recover_compaction_leftovers() {
    std::vector<fs::path> cleaned;
    std::vector<fs::path> log_swaps;
    std::vector<fs::path> index_swaps;
    std::error_code ec;
    for (const fs::directory_entry& entry : fs::directory_iterator(_dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (ends_with(name, ".cleaned"))
            cleaned.push_back(entry.path());
        else if (ends_with(name, ".log.swap"))
            log_swaps.push_back(entry.path());
        else if (ends_with(name, ".index.swap") || ends_with(name, ".timeindex.swap"))
            index_swaps.push_back(entry.path());
    }
    if (ec) return error{ec.value(), "list " + _dir.string() + ": " + ec.message()};
    if (cleaned.empty() && log_swaps.empty() && index_swaps.empty()) return {};
    // A .cleaned file is a rewrite that never reached its commit point.
    for (const fs::path& path : cleaned)
        if (auto removed = remove_file(path); !removed) return removed;
    // A .log.swap file is a committed rewrite: finish step 3, index files first, in
    // name order so that the outcome does not depend on the directory's order.
    std::sort(log_swaps.begin(), log_swaps.end());
    for (const fs::path& swap : log_swaps) {
        fs::path log = swap;
        log.replace_extension();  // <base>.log
        for (const char* extension : {".index", ".timeindex"}) {
            fs::path index = log;
            index.replace_extension(extension);
            const fs::path index_swap = with_suffix(index, ".swap");
            if (fs::exists(index_swap, ec)) {
                if (auto renamed = rename_file(index_swap, index); !renamed) return renamed;
            }
        }
        if (auto renamed = rename_file(swap, log); !renamed) return renamed;
    }
    // Index .swap files without their log's .swap belong to a rewrite that had not
    // committed: the old index files still match the old log.
    for (const fs::path& path : index_swaps) {
        if (fs::exists(path, ec)) {
            if (auto removed = remove_file(path); !removed) return removed;
        }
    }
    return sync_directory(_dir);
}

segment* partition_log::find_segment(int64_t base_offset) const {
    auto it = std::lower_bound(
        _segments.begin(), _segments.end(), base_offset,
        [](const std::unique_ptr<segment>& s, int64_t base) { return s->base_offset() < base; });
    if (it == _segments.end() || (*it)->base_offset() != base_offset) return nullptr;
    return it->get();
}

void partition_log::release_closed_file(segment& seg) const {
    // A closed segment keeps no descriptor unless someone reads it again; sync
    // requests and transfers hold their own references.
    if (&seg != &active()) seg.release_file();
}

int64_t partition_log::closed_synced_end() const {
    int64_t end = 0;
    for (size_t i = 0; i + 1 < _segments.size(); ++i) {
        const int64_t next = _segments[i + 1]->base_offset();
        if (next > _recovery_point) break;
        end = next;
    }
    return end;
}

bool partition_log::compaction_due(int64_t now_ms) const {
    const int64_t closed_end = closed_synced_end();
    if (closed_end == 0) return false;  // no closed segment is synced yet
    if (now_ms >= _compaction_due_ms) return true;
    return closed_end > std::max(_dirty_start, _compaction_considered_end);
}

void partition_log::abort_compaction() {
    if (!_compaction) return;
    if (_compaction->current) {
        compaction_run::rewrite& current = *_compaction->current;
        current.output.reset();
        // Leftovers are harmless: the next open deletes every .cleaned file.
        (void)remove_file(current.output_path);
    }
    _compaction.reset();
    ++_compaction_stats.runs_aborted;
}

result<bool> partition_log::compact_step(int64_t now_ms) {
    if (!_usable) return error{log_closed, "log " + _dir.string() + " is closed"};
    if (!_config.cleanup_compact) {
        abort_compaction();
        return false;
    }
    if (!_compaction) {
        if (now_ms < _compaction_retry_ms || !compaction_due(now_ms)) return false;
        if (auto started = start_compaction(now_ms); !started) return started.failure();
    }
    int64_t budget = std::max<int64_t>(_config.compaction_step_bytes, 1);
    while (_compaction && budget > 0) {
        auto worked = _compaction->step == compaction_run::phase::mapping
                          ? map_step(budget, now_ms)
                          : clean_step(budget, now_ms);
        if (!worked) {
            abort_compaction();
            _compaction_retry_ms = now_ms + compaction_retry_delay_ms;
            return worked.failure();
        }
    }
    return _compaction != nullptr;
}

result<void> partition_log::start_compaction(int64_t /*now_ms*/) {
    // Mapping starts at the first segment not wholly below the dirty start.
    int64_t first = active().base_offset();
    for (const auto& seg : _segments) {
        if (seg->base_offset() >= _dirty_start) {
            first = seg->base_offset();
            break;
        }
    }
    _compaction = std::make_unique<compaction_run>(
        static_cast<size_t>(std::max<int64_t>(_config.compaction_map_entries_max, 1)), _log_end,
        first);
    _compaction_considered_end = closed_synced_end();
    _compaction_due_ms = std::numeric_limits<int64_t>::max();
    return {};
}

result<void> partition_log::map_step(int64_t& budget_bytes, int64_t now_ms) {
    compaction_run& run = *_compaction;
    bool map_full = false;
    bool done = false;
    while (budget_bytes > 0 && !done) {
        // The segment being mapped, or the next one if retention deleted it.
        auto it = std::lower_bound(_segments.begin(), _segments.end(), run.map_segment,
                                   [](const std::unique_ptr<segment>& s, int64_t base) {
                                       return s->base_offset() < base;
                                   });
        if (it == _segments.end() || (*it)->base_offset() >= run.map_end) {
            done = true;
            break;
        }
        segment& seg = **it;
        if (seg.base_offset() != run.map_segment) {
            run.map_segment = seg.base_offset();
            run.map_position = 0;
        }
        if (run.map_position >= seg.size_bytes()) {
            release_closed_file(seg);
            if (std::next(it) == _segments.end()) {
                done = true;
            } else {
                run.map_segment = (*std::next(it))->base_offset();
                run.map_position = 0;
            }
            continue;
        }
        auto file = seg.file();
        if (!file) return file.failure();
        auto bytes = read_whole_batches((*file)->fd, seg.path(), run.map_position, seg.size_bytes(),
                                        budget_bytes);
        if (!bytes) return bytes.failure();
        budget_bytes -= static_cast<int64_t>(bytes->size());
        size_t consumed = 0;
        auto walked = proto::for_each_batch(
            *bytes, [&](std::span<const uint8_t> batch, const proto::batch_header& header) {
                if (header.base_offset >= run.map_end) {
                    done = true;
                    return false;
                }
                consumed += batch.size();
                const proto::batch_check check =
                    proto::validate_batch(batch, batch.size(), proto::batch_source::log);
                if (check.error != proto::batch_error::none) return true;
                bool full = false;
                // Undecodable records are simply not mapped (see compaction.h).
                (void)for_each_keyed_record(batch, [&](const key_hash& key, int64_t offset) {
                    if (!full && !run.map.put(key, offset)) full = true;
                });
                if (full) {
                    // Everything before this batch is mapped; its own records partly.
                    run.covered_end = header.base_offset;
                    map_full = true;
                    done = true;
                    return false;
                }
                return true;
            });
        if (!walked) return walked.failure();
        run.map_position += static_cast<int64_t>(consumed);
    }
    if (!done) return {};
    if (!map_full) run.covered_end = run.map_end;

    // The cleanable range: closed segments ending at or below both the recovery point
    // (synced, no sync request outstanding) and the mapped prefix, oldest first, up to
    // the first one holding records younger than min.compaction.lag.ms.
    int64_t range_end = 0;
    for (size_t i = 0; i + 1 < _segments.size(); ++i) {
        const int64_t end = _segments[i + 1]->base_offset();
        if (end > run.covered_end || end > _recovery_point) break;
        if (_config.min_compaction_lag_ms > 0) {
            auto largest = _segments[i]->max_timestamp();
            if (!largest) return largest.failure();
            if (largest->timestamp >= 0 &&
                largest->timestamp > now_ms - _config.min_compaction_lag_ms) {
                run.due_ms =
                    std::min(run.due_ms, largest->timestamp + _config.min_compaction_lag_ms);
                break;
            }
        }
        run.to_clean.push_back(_segments[i]->base_offset());
        range_end = end;
    }
    // With a full map the next run continues after the covered prefix right away.
    if (map_full && range_end > _dirty_start) run.due_ms = now_ms;
    if (run.to_clean.empty()) {
        _compaction_due_ms = run.due_ms;
        _compaction.reset();
        ++_compaction_stats.runs_completed;
        return {};
    }
    if (range_end > _cleaned_through) {
        if (auto retired = retire_clean_marker(); !retired) return retired;
        // Recovery must know that gaps may exist below range_end before any exists.
        if (auto written = write_checkpoint(_dir / cleaned_through_file_name, range_end); !written)
            return written;
        _cleaned_through = range_end;
    }
    run.step = compaction_run::phase::cleaning;
    // The map is final; the range end is where the next run starts mapping once this
    // one completes.
    run.map_end = range_end;
    return {};
}

result<void> partition_log::clean_step(int64_t& budget_bytes, int64_t now_ms) {
    compaction_run& run = *_compaction;
    const clean_rules rules{now_ms, _config.delete_retention_ms};
    while (budget_bytes > 0) {
        if (!run.current) {
            if (run.next_clean == run.to_clean.size()) {
                _dirty_start = std::max(_dirty_start, run.map_end);
                _compaction_due_ms = run.due_ms;
                _compaction.reset();
                ++_compaction_stats.runs_completed;
                return {};
            }
            const int64_t base = run.to_clean[run.next_clean++];
            segment* seg = find_segment(base);
            if (seg == nullptr || seg == &active()) continue;  // deleted by retention meanwhile
            auto source = seg->file();
            if (!source) return source.failure();
            const fs::path output_path = with_suffix(seg->path(), ".cleaned");
            const int fd =
                ::open(output_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd < 0) return errno_error("create", output_path);
            run.current.emplace(compaction_run::rewrite{
                base, seg->size_bytes(), 0, std::move(*source), std::make_unique<segment_file>(fd),
                output_path, 0, index_builder(base, _config.index_interval_bytes), 0, false});
        }
        compaction_run::rewrite& current = *run.current;
        segment* seg = find_segment(current.base);
        if (seg == nullptr || seg == &active() || seg->size_bytes() != current.source_size) {
            // Retention or DeleteRecords removed the segment: its rewrite is moot.
            current.output.reset();
            if (auto removed = remove_file(current.output_path); !removed) return removed;
            run.current.reset();
            continue;
        }
        if (current.position >= current.source_size) {
            if (auto finished = finish_cleaned_segment(); !finished) return finished;
            continue;
        }
        auto bytes = read_whole_batches(current.source->fd, seg->path(), current.position,
                                        current.source_size, budget_bytes);
        if (!bytes) return bytes.failure();
        budget_bytes -= static_cast<int64_t>(bytes->size());
        std::vector<uint8_t> out;
        out.reserve(bytes->size());
        result<void> failed = ok_result();
        auto keep = [&](std::span<const uint8_t> batch) {
            const int64_t position = current.output_size + static_cast<int64_t>(out.size());
            current.indexes.add(*proto::read_batch_header(batch), position);
            out.insert(out.end(), batch.begin(), batch.end());
        };
        auto walked = proto::for_each_batch(
            *bytes, [&](std::span<const uint8_t> batch, const proto::batch_header&) {
                const proto::batch_check check =
                    proto::validate_batch(batch, batch.size(), proto::batch_source::log);
                if (check.error != proto::batch_error::none) {
                    keep(batch);  // not compaction's business: copied as it is
                    return true;
                }
                auto cleaned = clean_batch(batch, run.map, rules);
                if (!cleaned) {
                    failed = cleaned.failure();
                    return false;
                }
                run.due_ms = std::min(run.due_ms, cleaned->tombstone_due_ms);
                current.records_removed += cleaned->records_removed;
                switch (cleaned->result) {
                    case cleaned_batch::outcome::unchanged:
                        keep(batch);
                        break;
                    case cleaned_batch::outcome::rewritten:
                        keep(cleaned->bytes);
                        current.changed = true;
                        break;
                    case cleaned_batch::outcome::dropped:
                        current.changed = true;
                        break;
                }
                return true;
            });
        if (!walked) return walked.failure();
        if (!failed) return failed;
        if (!out.empty()) {
            if (auto written =
                    pwrite_all(current.output->fd, out, current.output_size, current.output_path);
                !written)
                return written;
            // Start the write-back now, so the fdatasync at the swap waits for little.
            (void)::sync_file_range(current.output->fd, current.output_size,
                                    static_cast<off_t>(out.size()), SYNC_FILE_RANGE_WRITE);
            current.output_size += static_cast<int64_t>(out.size());
        }
        current.position += static_cast<int64_t>(bytes->size());
    }
    return {};
}

result<void> partition_log::finish_cleaned_segment() {
    compaction_run& run = *_compaction;
    compaction_run::rewrite& current = *run.current;
    segment* seg = find_segment(current.base);
    SPATE_ASSERT(seg != nullptr, "the rewritten segment was checked before finishing");
    current.source.reset();
    if (!current.changed) {
        current.output.reset();
        if (auto removed = remove_file(current.output_path); !removed) return removed;
        run.current.reset();
        release_closed_file(*seg);
        return {};
    }
    if (auto retired = retire_clean_marker(); !retired) return retired;
    // Step 1: the new files are on disk before anything refers to them.
    if (auto synced = sync_data(current.output->fd, current.output_path); !synced) return synced;
    current.output.reset();
    const fs::path index_cleaned = with_suffix(seg->index_path(), ".cleaned");
    const fs::path time_cleaned = with_suffix(seg->time_index_path(), ".cleaned");
    if (auto written = write_file_atomically(index_cleaned, current.indexes.offset_index_bytes());
        !written)
        return written;
    if (auto written = write_file_atomically(time_cleaned, current.indexes.time_index_bytes());
        !written)
        return written;
    // Step 2: the commit point is the rename of the log to .swap, after its indexes.
    const fs::path index_swap = with_suffix(seg->index_path(), ".swap");
    const fs::path time_swap = with_suffix(seg->time_index_path(), ".swap");
    const fs::path log_swap = with_suffix(seg->path(), ".swap");
    if (auto renamed = rename_file(index_cleaned, index_swap); !renamed) return renamed;
    if (auto renamed = rename_file(time_cleaned, time_swap); !renamed) return renamed;
    if (auto renamed = rename_file(current.output_path, log_swap); !renamed) return renamed;
    if (auto synced = sync_directory(_dir); !synced) {
        // Committed or not, the directory may be in any state in between: only a
        // reopen (which completes or rolls back the swap) knows what the disk holds.
        _usable = false;
        return synced;
    }
    // Step 3. A failure from here on leaves a committed swap half done; the log stops
    // until it is reopened, and recovery completes the swap.
    for (const auto& [from, to] :
         {std::pair{index_swap, seg->index_path()}, std::pair{time_swap, seg->time_index_path()},
          std::pair{log_swap, seg->path()}}) {
        if (auto renamed = rename_file(from, to); !renamed) {
            _usable = false;
            return renamed;
        }
    }
    if (auto synced = sync_directory(_dir); !synced) {
        _usable = false;
        return synced;
    }
    seg->adopt_rewritten(current.output_size);
    ++_compaction_stats.segments_rewritten;
    _compaction_stats.records_removed += current.records_removed;
    run.current.reset();
    return {};
}

}  // namespace spate::storage
