// partition: its replication state — role, ISR, followers' progress, the high watermark
// and the produces waiting for it (CLUSTER.md, Replication; partition.h).
#include <algorithm>

#include "broker/partition.h"
#include "net/log.h"
#include "storage/checkpoint.h"

namespace spate::broker {
namespace {

using proto::error_code;

constexpr const char* high_watermark_file_name = "replication-offset.checkpoint";

}  // namespace

void partition::apply_role(const partition_replicas& role, int32_t self, clock::time_point now) {
    const bool was_leader = _replicated && _leader_id == _self;
    const bool leads = role.leader == self;
    const bool leader_changed = !_replicated || role.leader != _leader_id;
    _replicated = true;
    _self = self;
    if (was_leader && !leads) fail_replication_waits(error_code::not_leader_or_follower);
    const bool new_epoch = role.leader_epoch != _leader_epoch;
    _leader_id = role.leader;
    _leader_epoch = role.leader_epoch;
    _replicas = role.replicas;
    _isr = role.isr;
    if (role.partition_epoch != _partition_epoch) {
        _partition_epoch = role.partition_epoch;
        _proposed_isr.reset();  // the controller's answer, or a newer state, arrived
    }
    if (!leads) {
        _followers.clear();
        return;
    }
    if (!was_leader || new_epoch || leader_changed) {
        // This leadership's epoch starts at the log end: a follower whose log goes further
        // under an older epoch truncates to here (KIP-101).
        const int64_t end = _log->log_end_offset();
        if (auto assigned = _log->assign_epoch(_leader_epoch, end); !assigned)
            note_storage_failure("leader epoch", assigned.failure());
        _leader_epoch_start = end;
    }
    if (!was_leader || leader_changed) _followers.clear();
    // Followers as the assignment names them; a new one starts unknown and caught up now,
    // so the lag clock starts with the leadership (Kafka's rule for ISR members).
    std::erase_if(_followers, [&](const follower& f) { return !has_broker(_replicas, f.id); });
    for (int32_t r : _replicas) {
        if (r == self) continue;
        const bool known = std::any_of(_followers.begin(), _followers.end(),
                                       [r](const follower& f) { return f.id == r; });
        if (!known) _followers.push_back({r, -1, now, now, -1});
    }
    advance_high_watermark();
}

size_t partition::isr_size() const {
    if (!_replicated) return 1;
    size_t size = _isr.size();
    if (_proposed_isr)
        for (int32_t r : *_proposed_isr)
            if (!has_broker(_isr, r)) ++size;
    return size;
}

void partition::follower_fetched(int32_t replica, int64_t fetch_offset, clock::time_point now) {
    auto f = std::find_if(_followers.begin(), _followers.end(),
                          [replica](const follower& x) { return x.id == replica; });
    if (f == _followers.end()) return;
    const int64_t end = _log->log_end_offset();
    // Kafka's caught-up rule: at the leader's end now, or at least at the end the leader
    // had when this follower fetched last (then it was caught up at that time).
    if (fetch_offset >= end)
        f->last_caught_up = now;
    else if (f->leader_end_at_last_fetch >= 0 && fetch_offset >= f->leader_end_at_last_fetch)
        f->last_caught_up = std::max(f->last_caught_up, f->last_fetch);
    f->leader_end_at_last_fetch = end;
    f->last_fetch = now;
    f->end_offset = std::min(fetch_offset, end);
    advance_high_watermark();
}

void partition::advance_high_watermark() {
    if (!_replicated || !is_leader()) return;
    int64_t next = _log->log_end_offset();
    auto bound_by = [&](int32_t id) {
        if (id == _self) return;
        auto f = std::find_if(_followers.begin(), _followers.end(),
                              [id](const follower& x) { return x.id == id; });
        // A member that has not fetched in this leadership holds the watermark where it is.
        if (f == _followers.end() || f->end_offset < 0)
            next = std::min(next, _high_watermark);
        else
            next = std::min(next, f->end_offset);
    };
    for (int32_t id : _isr) bound_by(id);
    if (_proposed_isr)
        for (int32_t id : *_proposed_isr)
            if (!has_broker(_isr, id)) bound_by(id);
    if (next <= _high_watermark) return;
    _high_watermark = next;
    wake_waiters();  // consumers long-polling for data below the new watermark
    if (_replication_waiters.empty()) return;
    std::vector<replication_waiter> released;
    std::erase_if(_replication_waiters, [&](replication_waiter& w) {
        if (w.end > _high_watermark) return false;
        released.push_back(std::move(w));
        return true;
    });
    for (auto& w : released)
        w.done(static_cast<int32_t>(isr_size()) < w.min_isr
                   ? error_code::not_enough_replicas_after_append
                   : error_code::none);
}

std::optional<std::vector<int32_t>> partition::isr_proposal(
    clock::time_point now, std::chrono::milliseconds lag_max) const {
    if (!_replicated || !is_leader() || _proposed_isr) return std::nullopt;
    std::vector<int32_t> next;
    bool changed = false;
    for (int32_t id : _isr) {
        if (id == _self) {
            next.push_back(id);
            continue;
        }
        auto f = std::find_if(_followers.begin(), _followers.end(),
                              [id](const follower& x) { return x.id == id; });
        if (f != _followers.end() && now - f->last_caught_up > lag_max) {
            changed = true;  // stuck or too slow: it leaves, so acks=all no longer waits for it
            continue;
        }
        next.push_back(id);
    }
    if (!has_broker(next, _self)) {
        next.insert(next.begin(), _self);
        changed = true;
    }
    for (const follower& f : _followers) {
        if (has_broker(_isr, f.id)) continue;
        if (f.end_offset >= 0 && f.end_offset >= _high_watermark &&
            f.end_offset >= _leader_epoch_start && now - f.last_caught_up <= lag_max) {
            next.push_back(f.id);
            changed = true;
        }
    }
    if (!changed) return std::nullopt;
    return next;
}

void partition::wait_replicated(int64_t end, int32_t min_isr, clock::time_point deadline,
                                std::function<void(error_code)> done) {
    if (!is_leader()) {
        done(error_code::not_leader_or_follower);
        return;
    }
    if (end <= high_watermark()) {
        done(static_cast<int32_t>(isr_size()) < min_isr
                 ? error_code::not_enough_replicas_after_append
                 : error_code::none);
        return;
    }
    _replication_waiters.push_back({end, min_isr, deadline, std::move(done)});
}

void partition::expire_replication_waits(clock::time_point now) {
    if (_replication_waiters.empty()) return;
    std::vector<replication_waiter> expired;
    std::erase_if(_replication_waiters, [&](replication_waiter& w) {
        if (w.deadline > now) return false;
        expired.push_back(std::move(w));
        return true;
    });
    for (auto& w : expired) w.done(error_code::request_timed_out);
}

void partition::fail_replication_waits(error_code code) {
    auto waiters = std::move(_replication_waiters);
    _replication_waiters.clear();
    for (auto& w : waiters) w.done(code);
}

void partition::follower_high_watermark(int64_t leader_high_watermark) {
    const int64_t next = std::min(leader_high_watermark, _log->log_end_offset());
    if (next > _high_watermark) _high_watermark = next;
}

void partition::clamp_high_watermark() {
    _high_watermark = std::min(_high_watermark, _log->log_end_offset());
}

result<void> partition::save_high_watermark() {
    if (!_replicated || _high_watermark == _saved_high_watermark) return {};
    // Unsynced: a high watermark read back lower than it was only delays what consumers
    // see until the followers fetch again; it never loses data.
    auto saved =
        storage::write_checkpoint_unsynced(_dir / high_watermark_file_name, _high_watermark);
    if (saved) _saved_high_watermark = _high_watermark;
    return saved;
}

void partition::restore_high_watermark() {
    const auto saved = storage::read_checkpoint(_dir / high_watermark_file_name);
    _high_watermark =
        std::clamp<int64_t>(saved.value_or(0), _log->log_start_offset(), _log->log_end_offset());
    _saved_high_watermark = saved.value_or(-1);
}

}  // namespace spate::broker
