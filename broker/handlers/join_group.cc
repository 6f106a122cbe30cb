// JoinGroup (11): a member joins a classic group; the answer may wait for the rebalance
// to complete (up to the rebalance timeout). The group's shard does the work
// (broker/group/coordinator.h).
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_join_group(request_ptr req) {
    auto body = std::make_shared<proto::join_group_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed JoinGroup request");
        return;
    }
    const group::member_context context = group::context_of(*req);
    group::on_group_shard<proto::join_group_response>(
        req, body->group_id,
        [body, context](group::group_coordinator& groups,
                        std::function<void(proto::join_group_response)> reply) {
            groups.join(*body, context, std::move(reply));
        });
}

}  // namespace spate::broker
