#pragma once
// Cluster metadata of a single node: topics, their ids, configs and the owner shard
// of every partition.
//
// Ownership: the `metadata_store` lives on shard 0 (the controller) and is the only
// writer; every change is persisted to `<data_dir>/metadata.toml` atomically (temp
// file, fsync, rename, fsync dir) before it is published. Each shard holds an
// immutable `metadata_snapshot` (shared_ptr to const) that the controller replaces by
// sending the new one to every shard: Metadata requests are answered locally.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/error_code.h"
#include "proto/result.h"
#include "proto/types.h"

namespace spate::broker {

using topic_configs = std::map<std::string, std::string>;  // Kafka config name -> value

// A partition's replicas as the cluster's controller last reported them (UpdateMetadata
// and LeaderAndIsr, broker/cluster/agent.h). A single node has none: it leads everything.
struct partition_replicas {
    int32_t leader = -1;  // -1: no leader (offline)
    int32_t leader_epoch = 0;
    // The version of the partition's state (the ZooKeeper version of its state node):
    // AlterPartition names it, so the controller refuses an ISR change based on an old state.
    int32_t partition_epoch = 0;
    std::vector<int32_t> replicas;  // the first is the preferred leader
    std::vector<int32_t> isr;
    std::vector<int32_t> offline;
};

// Whether a list of broker ids (replicas, an ISR) names `id`.
inline bool has_broker(const std::vector<int32_t>& ids, int32_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// partition_shards' value for a partition this broker does not lead (in a cluster): it has
// no local log to serve, and requests for it get NOT_LEADER_OR_FOLLOWER.
constexpr uint32_t not_hosted = UINT32_MAX;

struct topic_info {
    std::string name;
    proto::uuid id;
    std::vector<uint32_t> partition_shards;  // partition index -> owner shard, or not_hosted
    // In a cluster: partition index -> owner shard of every replica this broker hosts, led
    // or followed (partition_shards names only the led ones, which clients may use).
    // Empty on a single node, where partition_shards says it all.
    std::vector<uint32_t> hosted_shards;
    topic_configs configs;                     // topic-level overrides only
    std::vector<partition_replicas> replicas;  // per partition in a cluster; empty on one node

    int32_t partition_count() const { return static_cast<int32_t>(partition_shards.size()); }
};

struct uuid_hash {
    size_t operator()(const proto::uuid& id) const {
        uint64_t h = 0;
        for (size_t i = 0; i < 8; ++i) h = (h << 8) | id.bytes[i];
        return static_cast<size_t>(h ^ (h >> 29));
    }
};

// A live broker of the cluster, from the controller's UpdateMetadata.
struct cluster_broker {
    int32_t id = -1;
    std::string host;
    int32_t port = 0;
    std::optional<std::string> rack;
};

struct metadata_snapshot {
    uint64_t version = 0;
    // In a cluster (zookeeper_connect set): the live brokers, the controller and the
    // cluster id as the controller last reported them. A single node leaves them empty and
    // answers with itself.
    bool clustered = false;
    int32_t controller_id = -1;
    std::string cluster_id;
    std::vector<cluster_broker> brokers;
    // Topics this snapshot removes because the controller deleted them (StopReplica with
    // delete): only these lose their data when they vanish from a cluster's snapshot.
    std::set<std::string> deleting;
    // Single partitions this snapshot removes from this broker while their topic stays
    // (StopReplica with delete after a reassignment moved them away), each with the shard
    // that removes its directory (the one that owned it), so exactly one shard does.
    std::map<std::pair<std::string, int32_t>, uint32_t> deleting_partitions;
    std::map<std::string, std::shared_ptr<const topic_info>> topics;
    // Topic id -> topic (Fetch v13+ names topics by id); rebuilt by index_ids().
    std::unordered_map<proto::uuid, const topic_info*, uuid_hash> by_id;

    const topic_info* find(const std::string& name) const {
        auto found = topics.find(name);
        return found == topics.end() ? nullptr : found->second.get();
    }
    const topic_info* find(const proto::uuid& id) const {
        auto found = by_id.find(id);
        return found == by_id.end() ? nullptr : found->second;
    }
    // Rebuilds by_id from topics: called on every snapshot before it is published.
    void index_ids() {
        by_id.clear();
        for (const auto& [name, topic] : topics) by_id.emplace(topic->id, topic.get());
    }
    // The partition replicas this broker hosts, which is what partitions_max limits.
    // Kafka's and Redpanda's operators cap replicas per broker, not partitions, because
    // each replica costs a log, descriptors and memory wherever it lives; on a single
    // node every partition is one replica here. When broker/cluster/ arrives, this
    // counts the replicas assigned to this broker and nothing else needs to change.
    int64_t hosted_replica_count() const;
};
using snapshot_ptr = std::shared_ptr<const metadata_snapshot>;

// The shard that owns partition `index` of `topic`; nullopt when the topic is unknown
// (nullptr) or has no such partition. Handlers answer UNKNOWN_TOPIC_OR_PARTITION then.
inline std::optional<uint32_t> owner_of(const topic_info* topic, int32_t index) {
    if (topic == nullptr || index < 0 || index >= topic->partition_count()) return std::nullopt;
    const uint32_t owner = topic->partition_shards[static_cast<size_t>(index)];
    if (owner == not_hosted) return std::nullopt;
    return owner;
}

// Why owner_of found no shard: the partition does not exist (UNKNOWN_TOPIC_OR_PARTITION),
// or it exists in the cluster but another broker leads it (NOT_LEADER_OR_FOLLOWER, which
// makes clients refresh their metadata and go to the leader).
inline proto::error_code route_error(const topic_info* topic, int32_t index) {
    if (topic == nullptr || index < 0 || index >= topic->partition_count())
        return proto::error_code::unknown_topic_or_partition;
    return proto::error_code::not_leader_or_follower;
}

// Whether `adding` more partition replicas fit under `partitions_max` beside the ones
// `current` already hosts. The refusal carries POLICY_VIOLATION and a message naming the
// key, the current count and the request, so an operator knows what to raise.
result<void> check_partitions_max(const metadata_snapshot& current, int64_t adding,
                                  int64_t partitions_max);

// The partition replicas one admin request adds, topic by topic, checked against
// partitions_max with the topics accepted earlier in the same request counted (a refused
// topic counts nothing). Lives for one request on the shard handling it.
class partitions_reservation {
public:
    partitions_reservation(const metadata_snapshot& current, int64_t partitions_max)
        : _current(current), _partitions_max(partitions_max) {}
    // Counts `replicas` more when they fit; otherwise check_partitions_max's refusal.
    result<void> reserve(int64_t replicas) {
        auto fits = check_partitions_max(_current, _adding + replicas, _partitions_max);
        if (fits) _adding += replicas;
        return fits;
    }

private:
    const metadata_snapshot& _current;
    int64_t _partitions_max;
    int64_t _adding = 0;
};

// Kafka's rules for topic names: 1..249 chars of [a-zA-Z0-9._-], not "." or "..".
bool valid_topic_name(const std::string& name);

class metadata_store {
public:
    // `partitions_max` bounds the replicas of every topic together (broker_config); the
    // store enforces it on every creation and growth, since handlers on other shards
    // check against snapshots that may be one change behind. Data loaded at start-up is
    // never refused: a lowered limit only stops new partitions.
    metadata_store(std::string data_dir, uint32_t shard_count,
                   int64_t partitions_max = std::numeric_limits<int64_t>::max());

    // Reads metadata.toml if present. Errors name the file and what is wrong.
    result<void> load();
    snapshot_ptr snapshot() const { return _current; }

    // Mutations persist before they return; on error nothing changed. Their failures
    // carry a Kafka error code, since handlers answer with it: POLICY_VIOLATION beyond
    // partitions_max, KAFKA_STORAGE_ERROR when metadata.toml could not be written (the
    // message names the errno; an errno passed on as a code would read as an unrelated
    // Kafka error, ENOSPC = 28 as INVALID_COMMIT_OFFSET_SIZE).
    result<snapshot_ptr> create_topic(const std::string& name, int32_t partitions,
                                      const topic_configs& configs);
    result<snapshot_ptr> delete_topic(const std::string& name);
    result<snapshot_ptr> add_partitions(const std::string& name, int32_t total_partitions);
    result<snapshot_ptr> set_topic_configs(const std::string& name, const topic_configs& configs);

    // In a cluster the metadata comes from the controller (broker/cluster/agent.h), which
    // sends it whole: the store takes it as the current snapshot, unpersisted (ZooKeeper
    // holds it, and the controller sends it again after a restart).
    snapshot_ptr replace(std::shared_ptr<metadata_snapshot> next);

    // Which shard owns partition `index` of a new topic: spreads partitions over shards,
    // starting at a hash of the name so small topics do not all land on shard 0.
    uint32_t owner_for(const std::string& name, int32_t index) const;

private:
    result<void> persist(const metadata_snapshot& next) const;
    result<snapshot_ptr> publish(std::shared_ptr<metadata_snapshot> next);

    std::string _data_dir;
    uint32_t _shard_count;
    int64_t _partitions_max;
    snapshot_ptr _current;
};

proto::uuid random_uuid();
std::string uuid_to_string(const proto::uuid& id);
std::optional<proto::uuid> uuid_from_string(const std::string& text);

}  // namespace spate::broker
