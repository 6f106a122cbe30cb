// ListGroups (16): every shard lists the groups it coordinates; v4 filters by state.
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_list_groups(request_ptr req) {
    auto body = std::make_shared<proto::list_groups_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed ListGroups request");
        return;
    }
    shard_state& shard = *req->shard;
    using listed = std::vector<proto::list_groups_response::listed_group>;
    auto response = std::make_shared<proto::list_groups_response>();
    const uint32_t shards = shard.owner().shard_count();
    auto remaining = std::make_shared<uint32_t>(shards);
    for (net::shard_id s = 0; s < shards; ++s) {
        shard.call_on<listed>(
            s,
            [body](shard_state& target, std::function<void(listed)> reply) {
                reply(target.groups().list(body->states_filter));
            },
            [req, response, remaining](listed groups) {
                for (auto& g : groups) response->groups.push_back(std::move(g));
                if (--*remaining == 0) req->shard->respond(*req, *response);
            });
    }
}

}  // namespace spate::broker
