#pragma once
// Cluster metadata of a single node: topics, their ids, configs and the owner shard
// of every partition.
//
// Ownership: the `metadata_store` lives on shard 0 (the controller) and is the only
// writer; every change is persisted to `<data_dir>/metadata.toml` atomically (temp
// file, fsync, rename, fsync dir) before it is published. Each shard holds an
// immutable `metadata_snapshot` (shared_ptr to const) that the controller replaces by
// sending the new one to every shard: Metadata requests are answered locally.

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/result.h"
#include "proto/types.h"

namespace spate::broker {

using topic_configs = std::map<std::string, std::string>;  // Kafka config name -> value

struct topic_info {
    std::string name;
    proto::uuid id;
    std::vector<uint32_t> partition_shards;  // partition index -> owner shard
    topic_configs configs;                   // topic-level overrides only

    int32_t partition_count() const { return static_cast<int32_t>(partition_shards.size()); }
};

struct uuid_hash {
    size_t operator()(const proto::uuid& id) const {
        uint64_t h = 0;
        for (size_t i = 0; i < 8; ++i) h = (h << 8) | id.bytes[i];
        return static_cast<size_t>(h ^ (h >> 29));
    }
};

struct metadata_snapshot {
    uint64_t version = 0;
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
    return topic->partition_shards[static_cast<size_t>(index)];
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
