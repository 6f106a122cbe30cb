// Admin requests in a cluster: any broker writes the znodes itself, as Kafka's
// AdminZkClient (and kafka-topics.sh --zookeeper) does, and the controller, watching
// them, elects leaders and tells the brokers. So CreateTopics and friends work whichever
// broker a client sends them to, without forwarding.
#include <algorithm>
#include <random>

#include "broker/cluster/agent.h"
#include "broker/cluster/placement.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;

admin_outcome failed(error_code code, std::string message) { return {code, std::move(message)}; }

admin_outcome zk_failed(const error& failure) {
    // ZooKeeper out of reach for longer than the calls retried: the client may retry too.
    const bool transient = failure.code == ZCONNECTIONLOSS || failure.code == ZOPERATIONTIMEOUT ||
                           failure.code == ZSESSIONEXPIRED;
    return failed(transient ? error_code::request_timed_out : error_code::unknown_server_error,
                  "ZooKeeper: " + failure.message);
}

// The live brokers as placement sees them, read from ZooKeeper (not from the last
// UpdateMetadata, which may lag a registration).
result<std::vector<placement_broker>> live_brokers(zk_session& session) {
    auto registered = read_registrations(session, false);
    if (!registered) return registered.failure();
    std::vector<placement_broker> out;
    for (const auto& [id, broker] : *registered) out.push_back({id, broker.rack});
    return out;
}

// An explicit replica list: live brokers, none twice, within the available factor.
admin_outcome check_assignment(const std::vector<placement_broker>& brokers,
                               const std::vector<int32_t>& replicas) {
    if (replicas.empty()) return failed(error_code::invalid_replica_assignment, "no replicas");
    for (size_t i = 0; i < replicas.size(); ++i) {
        const int32_t r = replicas[i];
        if (std::none_of(brokers.begin(), brokers.end(),
                         [r](const placement_broker& b) { return b.id == r; }))
            return failed(error_code::invalid_replica_assignment,
                          "broker " + std::to_string(r) + " is not live");
        if (std::find(replicas.begin(), replicas.begin() + static_cast<std::ptrdiff_t>(i), r) !=
            replicas.begin() + static_cast<std::ptrdiff_t>(i))
            return failed(error_code::invalid_replica_assignment,
                          "broker " + std::to_string(r) + " is listed twice");
    }
    return {};
}

}  // namespace

admin_outcome cluster_agent::create_topic(const std::string& name, int32_t partitions,
                                          int32_t replication_factor,
                                          const std::map<int32_t, std::vector<int32_t>>& replicas,
                                          const topic_configs& configs, bool validate_only) {
    if (!_session) return failed(error_code::unknown_server_error, "no ZooKeeper session");
    auto exists = _session->exists(paths::topic(name));
    if (!exists) return zk_failed(exists.failure());
    if (*exists)
        return failed(error_code::topic_already_exists, "topic " + name + " already exists");
    auto brokers = live_brokers(*_session);
    if (!brokers) return zk_failed(brokers.failure());
    topic_assignment topic;
    if (!replicas.empty()) {
        for (const auto& [index, list] : replicas)
            if (auto refused = check_assignment(*brokers, list); refused.code != error_code::none)
                return refused;
        topic.partitions = replicas;
    } else {
        // Kafka draws the first broker and the follower shift at random per topic.
        std::random_device random;
        placement_request request;
        request.partitions = partitions;
        request.replication_factor = replication_factor;
        const auto n = static_cast<int32_t>(std::max<size_t>(brokers->size(), 1));
        request.start_index = static_cast<int32_t>(random() % static_cast<uint32_t>(n));
        request.shift = static_cast<int32_t>(random() % static_cast<uint32_t>(n));
        auto placed = place_replicas(*brokers, request);
        if (!placed)
            return failed(static_cast<error_code>(placed.failure().code), placed.failure().message);
        topic.partitions = std::move(placed.value());
    }
    if (validate_only) return {};
    topic.id = random_uuid();
    // The config first, then the topic node: the controller reacts to the topic node and
    // must find the config in place (Kafka's order).
    auto config_there = _session->exists(paths::topic_config(name));
    if (!config_there) return zk_failed(config_there.failure());
    std::vector<zk_op> ops;
    ops.push_back({*config_there ? zk_op::kind::set : zk_op::kind::create,
                   paths::topic_config(name), encode_topic_config(configs), -1, 0});
    ops.push_back({zk_op::kind::create, paths::topic(name), encode_topic(topic), -1, 0});
    auto written = _session->multi(ops);
    if (!written) {
        if (written.failure().code == ZNODEEXISTS)
            return failed(error_code::topic_already_exists, "topic " + name + " already exists");
        return zk_failed(written.failure());
    }
    _topic_configs[name] = configs;
    return {};
}

admin_outcome cluster_agent::delete_topic(const std::string& name) {
    if (!_session) return failed(error_code::unknown_server_error, "no ZooKeeper session");
    auto exists = _session->exists(paths::topic(name));
    if (!exists) return zk_failed(exists.failure());
    if (!*exists)
        return failed(error_code::unknown_topic_or_partition, "topic " + name + " does not exist");
    auto made = _session->create(paths::delete_topics + "/" + name, "");
    if (!made && made.failure().code != ZNODEEXISTS) return zk_failed(made.failure());
    return {};
}

admin_outcome cluster_agent::add_partitions(const std::string& name, int32_t total_partitions,
                                            const std::vector<std::vector<int32_t>>& assignments,
                                            bool validate_only) {
    if (!_session) return failed(error_code::unknown_server_error, "no ZooKeeper session");
    auto node = _session->get(paths::topic(name));
    if (!node) {
        if (node.failure().code == ZNONODE)
            return failed(error_code::unknown_topic_or_partition,
                          "topic " + name + " does not exist");
        return zk_failed(node.failure());
    }
    auto topic = decode_topic(node->data);
    if (!topic) return failed(error_code::unknown_server_error, topic.failure().message);
    const auto current = static_cast<int32_t>(topic->partitions.size());
    if (total_partitions <= current)
        return failed(error_code::invalid_partitions,
                      "topic " + name + " has " + std::to_string(current) +
                          " partitions; the new count must be larger");
    auto brokers = live_brokers(*_session);
    if (!brokers) return zk_failed(brokers.failure());
    placement_request request;
    request.partitions = total_partitions - current;
    request.first_partition = current;
    request.replication_factor = static_cast<int32_t>(topic->partitions.begin()->second.size());
    std::random_device random;
    const auto n = static_cast<uint32_t>(std::max<size_t>(brokers->size(), 1));
    request.start_index = static_cast<int32_t>(random() % n);
    request.shift = static_cast<int32_t>(random() % n);
    std::map<int32_t, std::vector<int32_t>> added;
    if (!assignments.empty()) {
        for (size_t i = 0; i < assignments.size(); ++i) {
            if (auto refused = check_assignment(*brokers, assignments[i]);
                refused.code != error_code::none)
                return refused;
            added[current + static_cast<int32_t>(i)] = assignments[i];
        }
    } else {
        auto placed = place_replicas(*brokers, request);
        if (!placed)
            return failed(static_cast<error_code>(placed.failure().code), placed.failure().message);
        added = std::move(placed.value());
    }
    if (validate_only) return {};
    for (auto& [index, replicas] : added) topic->partitions[index] = replicas;
    // A conditional write: a concurrent change of the same topic makes this one fail
    // rather than overwrite it.
    auto written = _session->set(paths::topic(name), encode_topic(*topic), node->stat.version);
    if (!written)
        return written.failure().code == ZBADVERSION
                   ? failed(error_code::reassignment_in_progress,
                            "topic " + name + " changed meanwhile; retry")
                   : zk_failed(written.failure());
    return {};
}

result<int64_t> cluster_agent::next_producer_id() {
    constexpr int64_t block_size = 1000;
    while (_producer_id_next > _producer_id_end) {
        if (!_session) return error{-1, "no ZooKeeper session"};
        auto node = _session->get(paths::producer_id_block);
        producer_id_block block{_config.node_id, 0, block_size - 1};
        zk_result<void> taken;
        if (!node && node.failure().code == ZNONODE) {
            if (auto made =
                    _session->create(paths::producer_id_block, encode_producer_id_block(block));
                !made)
                taken = made.failure();
        } else if (!node) {
            return node.failure();
        } else {
            auto last = decode_producer_id_block(node->data);
            if (!last) return last.failure();
            block.start = last->end + 1;
            block.end = block.start + block_size - 1;
            taken = _session->set(paths::producer_id_block, encode_producer_id_block(block),
                                  node->stat.version);
        }
        if (!taken && (taken.failure().code == ZBADVERSION || taken.failure().code == ZNODEEXISTS))
            continue;  // another broker took a block meanwhile: take the next one
        if (!taken) return taken.failure();
        _producer_id_next = block.start;
        _producer_id_end = block.end;
    }
    return _producer_id_next++;
}

admin_outcome cluster_agent::alter_topic_configs(const std::string& name,
                                                 const config_changes& changes,
                                                 topic_configs& result) {
    if (!_session) return failed(error_code::unknown_server_error, "no ZooKeeper session");
    auto there = _session->exists(paths::topic(name));
    if (!there) return zk_failed(there.failure());
    if (!*there)
        return failed(error_code::unknown_topic_or_partition, "topic " + name + " does not exist");
    // Read, change, write back conditionally: two alterations racing on one topic cannot
    // lose one another's keys.
    for (int attempt = 0; attempt < 10; ++attempt) {
        auto node = _session->get(paths::topic_config(name));
        if (!node && node.failure().code != ZNONODE) return zk_failed(node.failure());
        topic_configs configs;
        if (node) {
            auto decoded = decode_topic_config(node->data);
            if (decoded) configs = *decoded;
        }
        for (const auto& [key, value] : changes) {
            if (value)
                configs[key] = *value;
            else
                configs.erase(key);
        }
        zk_result<void> written;
        if (node) {
            written = _session->set(paths::topic_config(name), encode_topic_config(configs),
                                    node->stat.version);
        } else if (auto made =
                       _session->create(paths::topic_config(name), encode_topic_config(configs));
                   !made) {
            written = made.failure();
        }
        if (!written &&
            (written.failure().code == ZBADVERSION || written.failure().code == ZNODEEXISTS))
            continue;
        if (!written) return zk_failed(written.failure());
        // Every broker watches /config/changes and re-reads the configs it serves.
        auto notified = _session->create(paths::config_change_prefix, encode_config_change(name),
                                         ZOO_PERSISTENT_SEQUENTIAL);
        if (!notified) return zk_failed(notified.failure());
        result = std::move(configs);
        return {};
    }
    return failed(error_code::unknown_server_error, "the config of " + name + " kept changing");
}

}  // namespace spate::broker::cluster
