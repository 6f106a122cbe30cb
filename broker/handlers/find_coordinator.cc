// FindCoordinator (10): this single node coordinates every group, so the answer is
// always this broker (the group's shard is chosen inside the process). Transactions are
// not supported: key type 1 gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as InitProducerId
// answers a transactional id, so a transactional producer fails at once with a clear,
// fatal error instead of retrying COORDINATOR_NOT_AVAILABLE until it times out. v4
// answers a batch of keys.
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_find_coordinator(request_ptr req) {
    proto::find_coordinator_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed FindCoordinator request");
        return;
    }
    shard_state& shard = *req->shard;
    const broker& process = shard.owner();
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
                entry.node_id = process.config().node_id;
                entry.host = process.advertised_host();
                entry.port = process.advertised_port();
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
            response.node_id = process.config().node_id;
            response.host = process.advertised_host();
            response.port = process.advertised_port();
        } else {
            response.node_id = -1;
            response.port = -1;
        }
    }
    shard.respond(*req, response);
}

}  // namespace spate::broker
