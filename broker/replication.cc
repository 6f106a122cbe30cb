// shard_state: a shard's part in replication — the leader's follower tracking and ISR
// proposals, the acks=all waits it expires, the high watermarks it checkpoints, and the
// replica fetchers of the partitions it follows (CLUSTER.md, Replication).
#include "broker/broker.h"
#include "net/log.h"

namespace spate::broker {

void shard_state::start_fetchers() {
    if (_fetchers) return;
    _fetchers = std::make_unique<cluster::replica_fetchers>(*this, config().node_id);
    if (_metadata) _fetchers->update(*_metadata);
}

void shard_state::wait_acknowledged(const std::string& topic, int32_t index, ack_wait wait,
                                    std::function<void(proto::error_code)> done) {
    // Looked up again after the sync: the partition may be gone by then.
    auto replicate = [this, topic, index, wait, done] {
        partition* p = find_partition(topic, index);
        if (p == nullptr) {
            done(proto::error_code::not_leader_or_follower);
            return;
        }
        p->wait_replicated(wait.end, wait.min_insync_replicas, wait.deadline, done);
    };
    partition* p = find_partition(topic, index);
    if (p == nullptr) {
        done(proto::error_code::not_leader_or_follower);
        return;
    }
    if (!wait.sync_first) {
        if (wait.replicate)
            replicate();
        else
            done(proto::error_code::none);
        return;
    }
    p->wait_durable(_shard, wait.end, [wait, done, replicate](bool ok) {
        if (!ok)
            done(proto::error_code::kafka_storage_error);
        else if (wait.replicate)
            replicate();
        else
            done(proto::error_code::none);
    });
}

void shard_state::follower_fetched(partition& p, int32_t replica, int64_t fetch_offset) {
    p.follower_fetched(replica, fetch_offset, _shard.now());
    // A follower that caught up joins the ISR at once, not at the next housekeeping round.
    if (!p.isr_change_in_flight()) propose_isr_change(p);
}

void shard_state::propose_isr_change(partition& p) {
    cluster::cluster_agent* agent = _broker.cluster();
    if (agent == nullptr) return;
    auto proposal =
        p.isr_proposal(_shard.now(), std::chrono::milliseconds(config().replica_lag_time_max_ms));
    if (!proposal) return;
    if (proposal->size() < p.isr().size()) ++metrics::local().isr_shrinks;
    if (proposal->size() > p.isr().size()) ++metrics::local().isr_expands;
    p.isr_proposed(*proposal);
    net::log_info("replication: %s-%d proposes ISR change (epoch %d)", p.topic().c_str(), p.index(),
                  p.leader_epoch());
    cluster::isr_change change{p.topic(), p.index(), p.leader_epoch(), p.partition_epoch(),
                               std::move(*proposal)};
    broker* process = &_broker;
    const net::shard_id home = id();
    agent->submit([agent, process, home, change] {
        agent->alter_partition(change, [process, home, change] {
            process->state(home).net_shard().post([process, home, change] {
                partition* target = process->state(home).find_partition(change.topic, change.index);
                if (target != nullptr) target->isr_settled();
            });
        });
    });
}

void shard_state::replication_housekeeping(partition& p, bool checkpoint_due) {
    if (!p.replicated()) return;
    p.expire_replication_waits(_shard.now());
    if (p.is_leader() && !p.isr_change_in_flight()) propose_isr_change(p);
    if (checkpoint_due)
        if (auto saved = p.save_high_watermark(); !saved)
            p.note_storage_failure("high watermark checkpoint", saved.failure());
}

}  // namespace spate::broker
