// partition: producer-state snapshots and their rebuild from the log.
#include "broker/partition.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "broker/metrics/counters.h"
#include "net/log.h"
#include "proto/assert.h"
#include "storage/file.h"

namespace spate::broker {
namespace {

constexpr const char* snapshot_name = "producer_state.snapshot";
constexpr size_t snapshot_bytes_max = 64u << 20;
constexpr int32_t scan_chunk_bytes = 1 << 20;

}  // namespace

std::optional<std::string> storage_error_log::failed(const char* operation, const error& failure,
                                                     clock::time_point now) {
    auto it = std::find_if(_causes.begin(), _causes.end(), [&](const cause& c) {
        return std::strcmp(c.operation, operation) == 0 && c.code == failure.code;
    });
    if (it == _causes.end()) {
        _causes.push_back({operation, failure.code, now, 0, 1});
        return std::string(operation) + " failed: " + failure.message;
    }
    ++it->failures;
    ++it->unlogged;
    if (now - it->logged_at < interval) return std::nullopt;
    std::string line = std::string(operation) + " still failing (" + std::to_string(it->unlogged) +
                       " failures since the last line): " + failure.message;
    it->logged_at = now;
    it->unlogged = 0;
    return line;
}

std::optional<std::string> storage_error_log::succeeded(const char* operation) {
    int64_t failures = 0;
    std::erase_if(_causes, [&](const cause& c) {
        if (std::strcmp(c.operation, operation) != 0) return false;
        failures += c.failures;
        return true;
    });
    if (failures == 0) return std::nullopt;
    return std::string(operation) + " works again after " + std::to_string(failures) + " failures";
}

void partition::note_storage_failure(const char* operation, const error& failure) {
    metrics::local().storage_error(failure.code);
    if (auto line = _storage_errors.failed(operation, failure, storage_error_log::clock::now()))
        net::log_warn("%s-%d: %s (clients get KAFKA_STORAGE_ERROR)", _topic.c_str(), _index,
                      line->c_str());
}

void partition::log_storage_success(const char* operation) {
    if (auto line = _storage_errors.succeeded(operation))
        net::log_info("%s-%d: %s", _topic.c_str(), _index, line->c_str());
}

void partition::restore_producer_state() {
    _producers = producer_state{};
    int64_t from = _log->log_start_offset();
    auto bytes = storage::read_small_file(_dir / snapshot_name, snapshot_bytes_max);
    // Whether the files alone reproduce the state restored here (see the header).
    bool reproducible = !bytes && from == _log->log_end_offset();
    bool beyond_log_end = false;
    if (bytes) {
        std::span<const uint8_t> view(reinterpret_cast<const uint8_t*>(bytes->data()),
                                      bytes->size());
        auto loaded = _producers.load_snapshot(view);
        if (loaded && *loaded <= _log->log_end_offset()) {
            from = std::max(from, *loaded);
            reproducible = *loaded == _log->log_end_offset();
        } else {
            beyond_log_end = loaded.ok();
            _producers = producer_state{};
        }
    }
    // Re-read every batch written after the snapshot: only their headers are needed.
    while (from < _log->log_end_offset()) {
        const int64_t before = from;
        from = scan_batches(from, scan_chunk_bytes,
                            [&](std::span<const uint8_t>, const proto::batch_header& header) {
                                _producers.observe(header);
                            });
        if (from == before) {
            net::log_warn("%s-%d: producer state rebuild stopped at offset %lld", _topic.c_str(),
                          _index, static_cast<long long>(from));
            break;
        }
    }
    _producers_saved_at = reproducible ? _log->log_end_offset() : -1;
    if (beyond_log_end) replace_producer_snapshot("its offset is beyond the log end");
}

void partition::discard_producer_state() {
    _producers = producer_state{};
    replace_producer_snapshot("the log was emptied");
}

void partition::replace_producer_snapshot(const char* why) {
    // The state in memory is the log's own now: saved, it replaces the snapshot
    // atomically. Should that fail, the snapshot goes, and the next restore reads the
    // whole log; a snapshot left in place would be taken for valid later.
    auto saved = save_producer_state(storage::file_durability::synced);
    if (saved) return;
    if (auto removed = storage::remove_file(_dir / snapshot_name); removed)
        net::log_warn("%s-%d: producer snapshot removed (%s), saving one failed: %s",
                      _topic.c_str(), _index, why, saved.failure().message.c_str());
    else
        net::log_error(
            "%s-%d: producer snapshot no longer valid (%s) but neither replaced (%s) "
            "nor removed (%s)",
            _topic.c_str(), _index, why, saved.failure().message.c_str(),
            removed.failure().message.c_str());
}

int64_t partition::scan_batches(
    int64_t from, int32_t max_bytes,
    const std::function<void(std::span<const uint8_t>, const proto::batch_header&)>& fn) {
    auto got = _log->read(from, max_bytes);
    if (!got) return from;
    std::vector<uint8_t> buffer;
    for (const auto& slice : got->slices) {
        buffer.resize(static_cast<size_t>(slice.length));
        const ssize_t n = ::pread(slice.file->fd, buffer.data(), buffer.size(), slice.position);
        if (n != static_cast<ssize_t>(buffer.size())) break;
        (void)proto::for_each_batch(
            buffer, [&](std::span<const uint8_t> batch, const proto::batch_header& header) {
                if (header.last_offset() < from) return;
                fn(batch, header);
                from = header.last_offset() + 1;
            });
    }
    return from;
}

result<storage::append_result> partition::append_as_leader(std::span<uint8_t> batch,
                                                           int32_t records_count) {
    proto::set_partition_leader_epoch(batch, _leader_epoch);
    auto appended = _log->append(batch, records_count);
    if (!appended) {
        note_storage_failure("append", appended.failure());
        return appended;
    }
    note_storage_success("append");
    _produced.bytes_in += batch.size();
    _produced.records_in += static_cast<uint64_t>(std::max(records_count, 0));
    ++metrics::local().appends;
    advance_high_watermark();
    wake_waiters();
    return appended;
}

result<void> partition::save_producer_state(storage::file_durability durability) {
    const int64_t offset = _log->log_end_offset();
    const std::vector<uint8_t> bytes = _producers.encode_snapshot(offset);
    const auto write = durability == storage::file_durability::synced
                           ? storage::write_file_atomically
                           : storage::replace_file_unsynced;
    if (auto written = write(_dir / snapshot_name, bytes); !written) return written;
    _producers_saved_at = offset;
    return {};
}

void partition::wait_durable(net::shard& shard, int64_t end, std::function<void(bool)> done) {
    if (_log->durable_offset() >= end) {
        done(true);
        return;
    }
    _durability_waiters.push_back({end, std::move(done)});
    if (!_sync_in_flight) start_sync(shard);
}

void partition::start_sync(net::shard& shard) {
    SPATE_ASSERT(!_sync_in_flight, "one group-commit sync per partition at a time");
    _sync_in_flight = true;
    const int64_t end = _log->log_end_offset();
    auto file = _log->active_file();
    if (!file) {
        // The active segment could not be reopened (EMFILE, ENOENT): every waiter's data
        // is at or below `end`, so they all fail now, as after a failed fdatasync.
        SPATE_ASSERT(file.failure().code > 0, "a failed reopen carries its errno");
        finish_sync(shard, end, -file.failure().code);
        return;
    }
    std::weak_ptr<bool> alive = _alive;
    const int fd = (*file)->fd;
    // A follower's log may be truncated while the fdatasync runs: `end` then names data
    // that is gone, and its completion must not mark what was appended since as synced.
    const uint64_t truncations = _log->truncation_count();
    // The callback holds the file until the fdatasync completes: the shard's descriptor
    // cache may close the segment's own reference meanwhile, and the descriptor number
    // must not be reused for another file while the ring still has it.
    shard.submit_waited_fdatasync(
        fd, [this, &shard, alive, end, truncations, held = std::move(*file)](int res) {
            if (alive.expired()) return;
            if (_log->truncation_count() != truncations) {
                restart_sync_after_truncation(shard);
                return;
            }
            finish_sync(shard, end, res);
        });
}

void partition::restart_sync_after_truncation(net::shard& shard) {
    // The sync covered data a truncation removed: waiters for data that is gone fail
    // (a leader that became a follower: its produces are retried elsewhere), the others
    // wait for a new sync of what the log holds now.
    _sync_in_flight = false;
    const int64_t end = _log->log_end_offset();
    std::vector<durability_waiter> waiting;
    waiting.swap(_durability_waiters);
    for (durability_waiter& w : waiting) {
        if (w.end > end)
            w.done(false);
        else
            _durability_waiters.push_back(std::move(w));
    }
    if (!_durability_waiters.empty()) start_sync(shard);
}

void partition::finish_sync(net::shard& shard, int64_t end, int res) {
    _sync_in_flight = false;
    if (res == 0) {
        _log->mark_durable(end);
        note_storage_success("fdatasync");
    } else {
        note_storage_failure("fdatasync", error{-res, "fdatasync of the active segment: " +
                                                          std::string(std::strerror(-res))});
    }
    const int64_t durable = _log->durable_offset();
    std::vector<durability_waiter> waiting;
    waiting.swap(_durability_waiters);
    for (durability_waiter& w : waiting) {
        if (w.end <= durable)
            w.done(true);
        else if (res < 0 && w.end <= end)
            w.done(false);
        else
            _durability_waiters.push_back(std::move(w));
    }
    if (_durability_waiters.empty()) return;
    if (durable < end && res == 0) {
        // The synced data is held back by a rolled segment whose own background sync
        // is still running (the durable mark cannot pass it): look again shortly.
        std::weak_ptr<bool> alive = _alive;
        _sync_in_flight = true;
        const uint64_t truncations = _log->truncation_count();
        shard.add_timer(std::chrono::milliseconds(1), [this, &shard, alive, end, truncations] {
            if (alive.expired()) return;
            if (_log->truncation_count() != truncations) {
                restart_sync_after_truncation(shard);
                return;
            }
            finish_sync(shard, end, 0);
        });
        return;
    }
    start_sync(shard);
}

}  // namespace spate::broker
