// OffsetCommit (8): stores a group's committed offsets on the group's shard; the answer
// comes once the records are in the offsets file (and fdatasync'ed under
// acks_all_policy = "fsync").
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_offset_commit(request_ptr req) {
    auto body = std::make_shared<proto::offset_commit_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed OffsetCommit request");
        return;
    }
    group::on_group_shard<proto::offset_commit_response>(
        req, body->group_id,
        [body](group::group_coordinator& groups,
               std::function<void(proto::offset_commit_response)> reply) {
            groups.commit(*body, std::move(reply));
        });
}

}  // namespace spate::broker
