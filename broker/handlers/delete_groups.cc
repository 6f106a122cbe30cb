// DeleteGroups (42): deletes groups without members (NON_EMPTY_GROUP otherwise) and
// their committed offsets, each on its group's shard.
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_delete_groups(request_ptr req) {
    auto body = std::make_shared<proto::delete_groups_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DeleteGroups request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<proto::delete_groups_response>();
    if (body->groups_names.empty()) {
        shard.respond(*req, *response);
        return;
    }
    response->results.resize(body->groups_names.size());
    auto remaining = std::make_shared<size_t>(body->groups_names.size());
    for (size_t i = 0; i < body->groups_names.size(); ++i) {
        const std::string group_id = body->groups_names[i];
        response->results[i].group_id = group_id;
        shard.call_on<int16_t>(
            group::coordinator_shard(shard, group_id),
            [group_id](shard_state& target, std::function<void(int16_t)> reply) {
                target.groups().delete_group(
                    group_id, [reply](proto::error_code error) { reply(proto::code(error)); });
            },
            [req, response, remaining, i](int16_t error) {
                response->results[i].error_code = error;
                if (--*remaining == 0) req->shard->respond(*req, *response);
            });
    }
}

}  // namespace spate::broker
