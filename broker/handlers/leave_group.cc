// LeaveGroup (13): members leave a group, which rebalances. v0-2 name one member and
// answer with a top-level error; v3+ name a batch and answer per member.
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_leave_group(request_ptr req) {
    auto body = std::make_shared<proto::leave_group_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed LeaveGroup request");
        return;
    }
    const bool batch = req->version() >= 3;
    if (!batch) {
        proto::leave_group_request::member_identity single;
        single.member_id = body->member_id;
        body->members = {single};
    }
    group::on_group_shard<proto::leave_group_response>(
        req, body->group_id,
        [body, batch](group::group_coordinator& groups,
                      std::function<void(proto::leave_group_response)> reply) {
            proto::leave_group_response response = groups.leave(body->group_id, body->members);
            if (!batch && !response.members.empty()) {
                response.error_code = response.members.front().error_code;
                response.members.clear();
            }
            reply(std::move(response));
        });
}

}  // namespace spate::broker
