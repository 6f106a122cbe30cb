// DescribeGroups (15): state, protocol and members (metadata and assignment bytes as
// stored) of each named group, read on the group's shard.
#include "broker/fan_out.h"
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

struct describe_query {
    size_t slot;
    std::string group_id;
    proto::describe_groups_response::described_group answer;
};

}  // namespace

void handle_describe_groups(request_ptr req) {
    auto body = std::make_shared<proto::describe_groups_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeGroups request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<proto::describe_groups_response>();
    response->groups.resize(body->groups.size());
    std::map<net::shard_id, std::vector<describe_query>> by_owner;
    for (size_t i = 0; i < body->groups.size(); ++i) {
        by_owner[group::coordinator_shard(shard, body->groups[i])].push_back(
            {i, body->groups[i], {}});
    }
    fan_out<describe_query>(
        shard, std::move(by_owner),
        [](shard_state& owner, describe_query& q) {
            q.answer = owner.groups().describe(q.group_id);
        },
        [response](std::vector<describe_query>& done) {
            for (describe_query& q : done) response->groups[q.slot] = std::move(q.answer);
        },
        [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
