// FindCoordinator (10): a single node coordinates every group, so the answer is always
// this broker (the group's shard is chosen inside the process). In a cluster, every
// broker names the same coordinator for a group: the live broker at position
// (abs(Java hashCode of the id) mod 50) mod n among the live brokers by id — Kafka's
// partition of __consumer_offsets, mapped onto the brokers until that topic is replicated
// (committed offsets stay on the coordinator's disk until then). Transactions are
// not supported: key type 1 gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as InitProducerId
// answers a transactional id, so a transactional producer fails at once with a clear,
// fatal error instead of retrying COORDINATOR_NOT_AVAILABLE until it times out. v4
// answers a batch of keys.
#include <algorithm>

#include "broker/group/coordinator.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

struct endpoint {
    int32_t node_id;
    std::string host;
    int32_t port;
};

endpoint coordinator_of(shard_state& shard, const std::string& group_id) {
    const metadata_snapshot& snapshot = *shard.metadata();
    const broker& process = shard.owner();
    if (!snapshot.clustered || snapshot.brokers.empty())
        return {process.config().node_id, process.advertised_host(), process.advertised_port()};
    std::vector<const cluster_broker*> live;
    for (const cluster_broker& b : snapshot.brokers) live.push_back(&b);
    std::sort(live.begin(), live.end(),
              [](const cluster_broker* a, const cluster_broker* b) { return a->id < b->id; });
    const int32_t partition = group::offsets_partition_of(group_id, 50);
    const cluster_broker& chosen = *live[static_cast<size_t>(partition) % live.size()];
    return {chosen.id, chosen.host, chosen.port};
}

}  // namespace

void handle_find_coordinator(request_ptr req) {
    proto::find_coordinator_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed FindCoordinator request");
        return;
    }
    shard_state& shard = *req->shard;
    auto error_for = [&](const std::string& key) {
        if (body.key_type == 1) return proto::error_code::transactional_id_authorization_failed;
        if (body.key_type != 0) return proto::error_code::invalid_request;
        if (key.empty()) return proto::error_code::invalid_group_id;
        return proto::error_code::none;
    };
    proto::find_coordinator_response response;
    if (req->version() >= 4) {
        for (const std::string& key : body.coordinator_keys) {
            proto::find_coordinator_response::coordinator entry;
            entry.key_ = key;
            const proto::error_code error = error_for(key);
            entry.error_code = proto::code(error);
            if (error == proto::error_code::none) {
                const endpoint coordinator = coordinator_of(shard, key);
                entry.node_id = coordinator.node_id;
                entry.host = coordinator.host;
                entry.port = coordinator.port;
            } else {
                entry.node_id = -1;
                entry.port = -1;
            }
            response.coordinators.push_back(std::move(entry));
        }
    } else {
        const proto::error_code error = error_for(body.key_);
        response.error_code = proto::code(error);
        if (error == proto::error_code::none) {
            const endpoint coordinator = coordinator_of(shard, body.key_);
            response.node_id = coordinator.node_id;
            response.host = coordinator.host;
            response.port = coordinator.port;
        } else {
            response.node_id = -1;
            response.port = -1;
        }
    }
    shard.respond(*req, response);
}

}  // namespace spate::broker
