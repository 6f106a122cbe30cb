#pragma once
// partition: one topic partition as its owner shard sees it — the log, the effective
// config, idempotent-producer state and the fetches waiting for new data.
//
// Ownership: created, used and destroyed only on its owner shard (recorded in the
// metadata); other shards reach it by sending work to that shard. Lives from the
// metadata snapshot that assigns it until the one that deletes its topic.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/metadata.h"
#include "broker/producer_state.h"
#include "broker/topic_config.h"
#include "net/shard.h"
#include "proto/error_code.h"
#include "proto/types.h"
#include "storage/log.h"

namespace spate::broker {

// The storage errors of one partition as the broker log tells them. Every failure still
// reaches its client (KAFKA_STORAGE_ERROR), but a full disk fails every produce request
// of the partition, thousands a second, so the log gets the first failure of each cause
// (operation and error code) at once, then at most one line per interval while the
// cause persists, each saying how many failures it stands for, and one line when the
// operation succeeds again. The caller logs the returned lines.
//
// Ownership: a member of its partition, used on the owner shard only.
class storage_error_log {
public:
    using clock = std::chrono::steady_clock;
    static constexpr clock::duration interval = std::chrono::seconds(60);

    // The line to log for a failure of `operation` (a static string), or nullopt when
    // this cause was logged less than `interval` ago.
    std::optional<std::string> failed(const char* operation, const error& failure,
                                      clock::time_point now);
    // The line to log when `operation` succeeds after failures, else nullopt.
    std::optional<std::string> succeeded(const char* operation);
    bool quiet() const { return _causes.empty(); }

private:
    struct cause {
        const char* operation;
        int code;
        clock::time_point logged_at;
        int64_t unlogged = 0;  // failures since the last line
        int64_t failures = 0;  // failures since the first
    };
    std::vector<cause> _causes;
};

class partition {
public:
    partition(std::string topic, int32_t index, proto::uuid topic_id, std::filesystem::path dir,
              std::unique_ptr<storage::partition_log> log, effective_topic_config config)
        : _topic(std::move(topic)),
          _index(index),
          _topic_id(topic_id),
          _dir(std::move(dir)),
          _log(std::move(log)),
          _config(config) {}

    // Idempotent-producer state survives restarts: a snapshot file in the partition's
    // directory (saved at clean shutdown and periodically), then the batches written
    // after it, read back from the log. A missing or damaged snapshot means a scan
    // from the log start. The state counts as saved (not dirty) after a restore only
    // when the files alone give it back without reading batches: a snapshot at the log
    // end, or no snapshot and an empty log; so an idle partition's close writes none.
    // An unsynced save is for a shutdown that syncs the file system afterwards, and for
    // the periodic save (a power loss before writeback leaves the old snapshot or a
    // damaged one: a longer rebuild, no harm; or one beyond the lost log tail, which the
    // restore replaces), which synced stalled the shard for two fsyncs per partition.
    // The restore replaces whatever state the partition held, so a follower calls it
    // again after truncating its log. A snapshot taken beyond the log end (the log was
    // truncated below it, or lost its tail in a crash) describes batches the log no longer
    // holds: the restore rebuilds from the log start and overwrites that snapshot at once
    // (or removes it), because once the log grows past its offset again with other
    // batches it would pass for valid and bring the lost batches' sequences back.
    void restore_producer_state();
    // A follower whose log was emptied to restart at its leader's log start: nothing of
    // the old log's producers remains, in memory or in the snapshot (Kafka's
    // truncateFullyAndStartAt).
    void discard_producer_state();
    result<void> save_producer_state(storage::file_durability durability);
    bool producer_state_dirty() const { return _producers_saved_at != _log->log_end_offset(); }

    // Group commit: calls `done(true)` once everything below `end` is on disk, or
    // `done(false)` if the fdatasync failed. At most one fdatasync of the active segment
    // is in flight per partition; it covers every append made before it was submitted,
    // and the waiters that arrive meanwhile share the next one.
    void wait_durable(net::shard& shard, int64_t end, std::function<void(bool)> done);

    // A partition deleted with produce requests waiting for its sync fails them rather
    // than leaving them unanswered.
    ~partition() {
        *_alive = false;
        for (auto& w : _durability_waiters) w.done(false);
        fail_replication_waits(proto::error_code::not_leader_or_follower);
    }

    const std::string& topic() const { return _topic; }
    int32_t index() const { return _index; }
    const proto::uuid& topic_id() const { return _topic_id; }
    storage::partition_log& log() { return *_log; }
    const storage::partition_log& log() const { return *_log; }
    const effective_topic_config& config() const { return _config; }
    void set_config(const effective_topic_config& config) {
        _config = config;
        _log->set_config(config.log);
    }
    producer_state& producers() { return _producers; }
    // What produce brought this partition (as its leader) since it was opened here, for
    // /metrics (Kafka's BytesIn and MessagesIn per topic).
    struct traffic {
        uint64_t bytes_in = 0;
        uint64_t records_in = 0;
    };
    const traffic& produced() const { return _produced; }

    // Leader: appends a batch built or validated here, stamped with this leader's epoch
    // (KIP-101); a storage failure is noted. Then moves the high watermark and wakes the
    // fetches waiting for data.
    result<storage::append_result> append_as_leader(std::span<uint8_t> batch,
                                                    int32_t records_count);
    // Reads whole batches from `from` (at most about `max_bytes`) and calls
    // fn(batch, header) for each one ending at or after `from`. Returns the offset after
    // the last batch seen: `from` itself when nothing could be read.
    int64_t scan_batches(
        int64_t from, int32_t max_bytes,
        const std::function<void(std::span<const uint8_t>, const proto::batch_header&)>& fn);

    // Storage errors: `operation` names what failed ("append", "read", ...), a static
    // string. Failures are logged at WARN as storage_error_log allows; a success after
    // failures of the same operation is logged once.
    void note_storage_failure(const char* operation, const error& failure);
    void note_storage_success(const char* operation) {
        if (!_storage_errors.quiet()) log_storage_success(operation);
    }

    // ---- replication (broker/partition_replication.cc; CLUSTER.md, Replication) ----
    // A single node's partition is never replicated: it leads, its ISR is itself and its
    // high watermark is its log end. In a cluster apply_role() gives it its role from each
    // metadata snapshot.
    using clock = std::chrono::steady_clock;
    // The role the controller gave this replica (`self` is this broker's id). Becoming
    // leader records the new epoch's start offset; losing leadership fails the produces
    // waiting for replication with NOT_LEADER_OR_FOLLOWER.
    void apply_role(const partition_replicas& role, int32_t self, clock::time_point now);
    bool replicated() const { return _replicated; }
    bool is_leader() const { return !_replicated || _leader_id == _self; }
    int32_t leader_id() const { return _leader_id; }
    int32_t leader_epoch() const { return _leader_epoch; }
    int32_t partition_epoch() const { return _partition_epoch; }
    const std::vector<int32_t>& isr() const { return _isr; }
    const std::vector<int32_t>& replicas() const { return _replicas; }
    // Whether `replica` follows this partition while this replica leads it.
    bool has_follower(int32_t replica) const {
        return std::any_of(_followers.begin(), _followers.end(),
                           [replica](const follower& f) { return f.id == replica; });
    }
    // The ISR the high watermark and min.insync.replicas count: the larger of the current
    // and a proposed one while an AlterPartition is in flight (Kafka's maximal ISR).
    size_t isr_size() const;
    // Everything below it is on every in-sync replica; consumers read only below it.
    int64_t high_watermark() const {
        return _replicated ? _high_watermark : _log->log_end_offset();
    }

    // Leader: a follower fetched from `fetch_offset` (its log end), which is what it has.
    // Moves the high watermark when it can and completes the produces it releases.
    void follower_fetched(int32_t replica, int64_t fetch_offset, clock::time_point now);
    // Leader: recomputes the high watermark (after appends, ISR changes).
    void advance_high_watermark();
    // Leader: the ISR to propose to the controller now, if it should change: followers
    // not caught up for `lag_max` leave it, followers that reached the high watermark (and
    // the start of this leader's epoch) join it. Nothing while a proposal is in flight.
    std::optional<std::vector<int32_t>> isr_proposal(clock::time_point now,
                                                     std::chrono::milliseconds lag_max) const;
    void isr_proposed(std::vector<int32_t> isr) { _proposed_isr = std::move(isr); }
    // The controller answered (or failed) a proposal: the next one may go.
    void isr_settled() { _proposed_isr.reset(); }
    bool isr_change_in_flight() const { return _proposed_isr.has_value(); }
    // Leader, acks=all: `done(code)` once the high watermark reaches `end` (none, or
    // NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR has fewer than `min_isr` members by
    // then), NOT_LEADER_OR_FOLLOWER when leadership goes first, REQUEST_TIMED_OUT after
    // `deadline` (checked by expire_replication_waits).
    void wait_replicated(int64_t end, int32_t min_isr, clock::time_point deadline,
                         std::function<void(proto::error_code)> done);
    void expire_replication_waits(clock::time_point now);
    // Follower: the leader's high watermark, as its fetch answer reported it.
    void follower_high_watermark(int64_t leader_high_watermark);
    // Follower: after truncation the high watermark is at most the log end.
    void clamp_high_watermark();
    // replication-offset checkpoint of this partition (its high watermark), written by
    // housekeeping when it moved; read back at open.
    result<void> save_high_watermark();
    void restore_high_watermark();

    // Long polling: a fetch waiting for data registers a wake-up here. Each is called
    // once, on this (the owner) shard, at the next append, then forgotten. The callback
    // itself forwards to the fetch's shard. `alive` expires when the fetch has been
    // answered (by a timeout, say): such waiters are pruned when new ones arrive, so an
    // idle partition polled by long-waiting consumers does not accumulate them. A fetch
    // registers again after every round that finds too little, while its waiters on the
    // partitions that saw no append are still here: a partition keeps one waiter per
    // fetch (the one `alive` points to), so a fetch woken round after round by a busy
    // partition does not pile up waiters, and wake-ups, on the quiet ones. One wake-up
    // is shared by every partition a fetch waits on (a reference each, no copy).
    using wake_fn = std::shared_ptr<const std::function<void()>>;
    void add_waiter(std::weak_ptr<void> alive, wake_fn wake) {
        std::erase_if(_waiters, [](const waiter& w) { return w.alive.expired(); });
        const bool registered = std::any_of(_waiters.begin(), _waiters.end(), [&](const waiter& w) {
            return !w.alive.owner_before(alive) && !alive.owner_before(w.alive);
        });
        if (registered) return;
        _waiters.push_back({std::move(alive), std::move(wake)});
    }
    void wake_waiters() {
        if (_waiters.empty()) return;
        auto waiters = std::move(_waiters);
        _waiters.clear();
        for (auto& w : waiters)
            if (!w.alive.expired()) (*w.wake)();
    }
    size_t waiter_count() const { return _waiters.size(); }

private:
    void fail_replication_waits(proto::error_code code);
    struct follower {
        int32_t id;
        int64_t end_offset = -1;  // -1: not fetched since this leadership began
        clock::time_point last_caught_up{};
        clock::time_point last_fetch{};
        int64_t leader_end_at_last_fetch = -1;
    };
    struct replication_waiter {
        int64_t end;
        int32_t min_isr;
        clock::time_point deadline;
        std::function<void(proto::error_code)> done;
    };
    bool _replicated = false;
    int32_t _self = -1;
    int32_t _leader_id = -1;
    int32_t _leader_epoch = 0;
    int32_t _partition_epoch = 0;
    std::vector<int32_t> _replicas;
    std::vector<int32_t> _isr;
    std::optional<std::vector<int32_t>> _proposed_isr;
    std::vector<follower> _followers;
    int64_t _high_watermark = 0;
    int64_t _saved_high_watermark = -1;
    int64_t _leader_epoch_start = 0;
    std::vector<replication_waiter> _replication_waiters;

    std::string _topic;
    int32_t _index;
    proto::uuid _topic_id;
    std::filesystem::path _dir;
    int64_t _producers_saved_at = 0;
    std::unique_ptr<storage::partition_log> _log;
    effective_topic_config _config;
    producer_state _producers;
    storage_error_log _storage_errors;
    traffic _produced;
    void log_storage_success(const char* operation);
    void replace_producer_snapshot(const char* why);
    void start_sync(net::shard& shard);
    void finish_sync(net::shard& shard, int64_t end, int res);
    void restart_sync_after_truncation(net::shard& shard);

    struct durability_waiter {
        int64_t end;
        std::function<void(bool)> done;
    };
    std::vector<durability_waiter> _durability_waiters;
    bool _sync_in_flight = false;
    // Set while the partition is alive; sync completions check it, since the partition
    // may be deleted while its fdatasync is in flight.
    std::shared_ptr<bool> _alive = std::make_shared<bool>(true);

    struct waiter {
        std::weak_ptr<void> alive;
        wake_fn wake;
    };
    std::vector<waiter> _waiters;
};

}  // namespace spate::broker
