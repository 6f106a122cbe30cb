// Metadata (3): brokers, topics and partitions (this node leads them all). Topics that
// do not exist are created first when the request allows it (v4+ flag; always before
// v4) and the broker's auto_create_topics_enable says so, like Kafka.
#include <algorithm>

#include "broker/group/offsets_topic.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using response_type = proto::metadata_response;

// `may_create`: this request asked a cluster to create the topic, whose leaders may not
// have reached this broker yet.
void add_topic(const topic_info* topic, const std::string& name, bool may_create,
               response_type& response, int32_t node) {
    response_type::metadata_response_topic out;
    out.name = name;
    if (topic == nullptr) {
        // In a cluster a topic may exist in ZooKeeper before its leaders reach us (just
        // auto-created): clients retry on LEADER_NOT_AVAILABLE, not on an unknown topic.
        const bool pending = may_create;
        out.error_code =
            proto::code(!valid_topic_name(name) ? proto::error_code::invalid_topic_exception
                        : pending               ? proto::error_code::leader_not_available
                                                : proto::error_code::unknown_topic_or_partition);
        response.topics.push_back(std::move(out));
        return;
    }
    out.topic_id = topic->id;
    out.is_internal = name == group::offsets_topic_name;
    for (int32_t i = 0; i < topic->partition_count(); ++i) {
        response_type::metadata_response_partition p;
        p.partition_index = i;
        if (topic->replicas.empty()) {  // a single node leads everything
            p.leader_id = node;
            p.leader_epoch = 0;
            p.replica_nodes = {node};
            p.isr_nodes = {node};
        } else {
            const partition_replicas& replicas = topic->replicas[static_cast<size_t>(i)];
            p.leader_id = replicas.leader;
            p.leader_epoch = replicas.leader_epoch;
            p.replica_nodes = replicas.replicas;
            p.isr_nodes = replicas.isr;
            p.offline_replicas = replicas.offline;
            // Kafka's answer for a partition without a live leader: clients retry.
            if (replicas.leader < 0)
                p.error_code = proto::code(proto::error_code::leader_not_available);
        }
        out.partitions.push_back(std::move(p));
    }
    response.topics.push_back(std::move(out));
}

void answer(request_ptr req, const std::optional<std::vector<std::string>>& names,
            const std::vector<std::string>& creating = {}) {
    shard_state& shard = *req->shard;
    response_type response;
    const metadata_snapshot& snapshot = *shard.metadata();
    const int32_t node = shard.config().node_id;
    // Until the controller's first UpdateMetadata arrives a cluster's broker knows only
    // itself, and says so rather than listing no broker at all.
    if (snapshot.clustered && !snapshot.brokers.empty()) {
        for (const cluster_broker& broker : snapshot.brokers) {
            response_type::metadata_response_broker out;
            out.node_id = broker.id;
            out.host = broker.host;
            out.port = broker.port;
            out.rack = broker.rack;
            response.brokers.push_back(std::move(out));
        }
        response.cluster_id = snapshot.cluster_id;
        response.controller_id = snapshot.controller_id;
    } else {
        response_type::metadata_response_broker self;
        self.node_id = shard.config().node_id;
        self.host = shard.owner().advertised_host();
        self.port = shard.owner().advertised_port();
        response.brokers.push_back(self);
        // A cluster's broker not yet told the cluster id names none (null), rather than one
        // a client would take for a different cluster's.
        if (snapshot.clustered)
            response.cluster_id = snapshot.cluster_id.empty()
                                      ? std::nullopt
                                      : std::optional<std::string>(snapshot.cluster_id);
        else
            response.cluster_id = shard.config().cluster_id;
        response.controller_id =
            snapshot.clustered ? snapshot.controller_id : shard.config().node_id;
    }
    // Until then it knows no topic either: a named one may well exist, and clients retry
    // LEADER_NOT_AVAILABLE rather than forget the topic.
    const bool unsynced = snapshot.clustered && snapshot.brokers.empty();
    if (!names) {
        for (const auto& [name, topic] : snapshot.topics)
            add_topic(topic.get(), name, false, response, node);
    } else {
        for (const std::string& name : *names)
            add_topic(
                snapshot.find(name), name,
                unsynced || std::find(creating.begin(), creating.end(), name) != creating.end(),
                response, node);
    }
    shard.respond(*req, response);
}

// In a cluster: the agent writes the missing topics' znodes; the answer lists them with
// LEADER_NOT_AVAILABLE until the controller elected their leaders (Kafka's answer too),
// and clients ask again.
void create_in_cluster_then_answer(request_ptr req, std::vector<std::string> missing,
                                   std::optional<std::vector<std::string>> names) {
    const int32_t partitions = req->shard->config().num_partitions;
    const int32_t replicas = default_replication_factor(*req->shard);
    ask_cluster_agent<int>(
        std::move(req),
        [missing, partitions, replicas](cluster::cluster_agent& agent) {
            for (const std::string& name : missing)
                (void)agent.create_topic(name, partitions, replicas, {}, {}, false);
            return 0;
        },
        [names = std::move(names), missing](request_ptr req, int) {
            answer(std::move(req), names, missing);
        });
}

// Creates the missing topics one after another, then answers.
void create_then_answer(request_ptr req, std::vector<std::string> missing,
                        std::optional<std::vector<std::string>> names) {
    if (missing.empty()) {
        answer(std::move(req), names);
        return;
    }
    const std::string name = missing.back();
    missing.pop_back();
    const int32_t partitions = req->shard->config().num_partitions;
    req->shard->change_metadata(
        [name, partitions](metadata_store& store) -> result<snapshot_ptr> {
            if (store.snapshot()->find(name) != nullptr) return store.snapshot();
            return store.create_topic(name, partitions, {});
        },
        [req, missing = std::move(missing),
         names = std::move(names)](result<snapshot_ptr>) mutable {
            create_then_answer(std::move(req), std::move(missing), std::move(names));
        });
}

}  // namespace

void handle_metadata(request_ptr req) {
    proto::metadata_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed Metadata request");
        return;
    }
    // v0: an empty list means all topics; v1+: null means all topics.
    std::optional<std::vector<std::string>> names;
    if (body.topics && !(req->version() == 0 && body.topics->empty())) {
        names.emplace();
        for (const auto& topic : *body.topics)
            if (topic.name) names->push_back(*topic.name);
    }
    const bool allowed = req->version() < 4 || body.allow_auto_topic_creation;
    std::vector<std::string> missing;
    if (names && allowed && req->shard->config().auto_create_topics_enable) {
        for (const std::string& name : *names)
            // __consumer_offsets is created by the first FindCoordinator, never here.
            if (req->shard->metadata()->find(name) == nullptr && valid_topic_name(name) &&
                name != group::offsets_topic_name)
                missing.push_back(name);
    }
    if (!missing.empty() && req->shard->owner().cluster() != nullptr) {
        create_in_cluster_then_answer(std::move(req), std::move(missing), std::move(names));
        return;
    }
    create_then_answer(std::move(req), std::move(missing), std::move(names));
}

}  // namespace spate::broker
