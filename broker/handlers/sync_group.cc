// SyncGroup (14): the leader hands out assignments and every member receives its own;
// followers wait on the group's shard until the leader's assignments arrive.
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_sync_group(request_ptr req) {
    auto body = std::make_shared<proto::sync_group_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed SyncGroup request");
        return;
    }
    group::on_group_shard<proto::sync_group_response>(
        req, body->group_id,
        [body](group::group_coordinator& groups,
               std::function<void(proto::sync_group_response)> reply) {
            groups.sync(*body, std::move(reply));
        });
}

}  // namespace spate::broker
