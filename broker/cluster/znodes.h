#pragma once
// Kafka's ZooKeeper layout: the paths and the JSON of every znode spate reads or writes,
// exactly as Kafka's ZooKeeper mode (1.0 to 2.8) writes them, so Kafka's own ZooKeeper
// tools and spate brokers understand each other (the table in CLUSTER.md).
//
// Pure functions, no ZooKeeper calls: encoding never fails; decoding checks types and
// says what is wrong, since any tool may have written the node.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"
#include "proto/types.h"

namespace spate::broker::cluster {

namespace paths {
inline const std::string cluster_id = "/cluster/id";
inline const std::string broker_ids = "/brokers/ids";
inline const std::string topics = "/brokers/topics";
inline const std::string controller = "/controller";
inline const std::string controller_epoch = "/controller_epoch";
inline const std::string topic_configs = "/config/topics";
inline const std::string config_changes = "/config/changes";
inline const std::string delete_topics = "/admin/delete_topics";
inline const std::string reassign_partitions = "/admin/reassign_partitions";
inline const std::string producer_id_block = "/latest_producer_id_block";
inline std::string broker(int32_t id) { return broker_ids + "/" + std::to_string(id); }
inline std::string topic(const std::string& name) { return topics + "/" + name; }
inline std::string partition_state(const std::string& topic_name, int32_t partition) {
    return topic(topic_name) + "/partitions/" + std::to_string(partition) + "/state";
}
inline std::string topic_config(const std::string& name) { return topic_configs + "/" + name; }
// The sequential node ZooKeeper numbers ("config_change_0000000012").
inline const std::string config_change_prefix = config_changes + "/config_change_";
}  // namespace paths

// /brokers/ids/<id> (ephemeral). `epoch` is not in the JSON: it is the node's czxid,
// Kafka's broker epoch, which grows with every registration.
struct broker_registration {
    int32_t id = -1;
    std::string host;
    int32_t port = 0;
    std::optional<std::string> rack;
    int64_t timestamp_ms = 0;
    int64_t epoch = -1;
};
std::string encode_broker(const broker_registration& broker);
// Accepts versions 1 to 5 (host/port from the PLAINTEXT endpoint when the fields are absent).
result<broker_registration> decode_broker(int32_t id, const std::string& json);

// /brokers/topics/<t>: the replicas of each partition, the first being the preferred
// leader. A version-1 node (Kafka 1.0's tool) has no topic id: `id` is then all zero.
// A partition being reassigned (KIP-455) lists the replicas it is adding and removing
// beside its replica set (which holds both), as Kafka's version-2+ node does; partitions
// not being reassigned have no entry there.
struct topic_assignment {
    proto::uuid id{};
    std::map<int32_t, std::vector<int32_t>> partitions;
    std::map<int32_t, std::vector<int32_t>> adding;
    std::map<int32_t, std::vector<int32_t>> removing;
    bool has_id() const;
};
std::string encode_topic(const topic_assignment& topic);
result<topic_assignment> decode_topic(const std::string& json);

// /brokers/topics/<t>/partitions/<p>/state. Its stat version is the partition's
// zk_version, carried beside it.
struct partition_state {
    int32_t leader = -1;
    int32_t leader_epoch = 0;
    std::vector<int32_t> isr;
    int32_t controller_epoch = 0;
    int32_t zk_version = 0;
};
std::string encode_partition_state(const partition_state& state);
result<partition_state> decode_partition_state(const std::string& json);

// /controller (ephemeral): the broker id of the controller.
std::string encode_controller(int32_t broker_id, int64_t timestamp_ms);
result<int32_t> decode_controller(const std::string& json);

// /cluster/id.
std::string encode_cluster_id(const std::string& id);
result<std::string> decode_cluster_id(const std::string& json);

// /config/topics/<t>: topic-level overrides, values as strings.
std::string encode_topic_config(const std::map<std::string, std::string>& configs);
result<std::map<std::string, std::string>> decode_topic_config(const std::string& json);
// /config/changes/config_change_<seq>: which entity's config changed.
std::string encode_config_change(const std::string& topic_name);
// The topic a change notification names; nullopt for other entities (brokers, users).
std::optional<std::string> decode_config_change(const std::string& json);

// /admin/reassign_partitions, written by Kafka's kafka-reassign-partitions.sh
// --zookeeper: the target replicas of each partition to move.
struct partition_move {
    std::string topic;
    int32_t partition = 0;
    std::vector<int32_t> replicas;
};
std::string encode_reassign_partitions(const std::vector<partition_move>& moves);
result<std::vector<partition_move>> decode_reassign_partitions(const std::string& json);

// /latest_producer_id_block: the last block of producer ids taken (inclusive bounds).
struct producer_id_block {
    int32_t broker = -1;
    int64_t start = 0;
    int64_t end = -1;
};
std::string encode_producer_id_block(const producer_id_block& block);
result<producer_id_block> decode_producer_id_block(const std::string& json);

// Kafka prints a Uuid as URL-safe base64 without padding (22 characters).
std::string uuid_to_base64(const proto::uuid& id);
std::optional<proto::uuid> uuid_from_base64(const std::string& text);

}  // namespace spate::broker::cluster
