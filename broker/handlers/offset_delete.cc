// OffsetDelete (47): removes committed offsets of topics a group no longer consumes
// (GROUP_SUBSCRIBED_TO_TOPIC for those its live members still subscribe to).
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_offset_delete(request_ptr req) {
    auto body = std::make_shared<proto::offset_delete_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed OffsetDelete request");
        return;
    }
    group::on_group_shard<proto::offset_delete_response>(
        req, body->group_id,
        [body](group::group_coordinator& groups,
               std::function<void(proto::offset_delete_response)> reply) {
            groups.delete_offsets(*body, std::move(reply));
        });
}

}  // namespace spate::broker
