// Heartbeat (12): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
// rejoin.
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_heartbeat(request_ptr req) {
    auto body = std::make_shared<proto::heartbeat_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed Heartbeat request");
        return;
    }
    group::on_group_shard<proto::heartbeat_response>(
        req, body->group_id,
        [body](group::group_coordinator& groups,
               std::function<void(proto::heartbeat_response)> reply) {
            proto::heartbeat_response response;
            response.error_code = proto::code(groups.heartbeat(*body));
            reply(response);
        });
}

}  // namespace spate::broker
