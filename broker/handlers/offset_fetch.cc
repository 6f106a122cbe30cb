// OffsetFetch (9): committed offsets of one group (v0-7) or several (v8), each read on
// its group's shard. A null topic list (v2+) asks for every committed partition.
#include "broker/fan_out.h"
#include "broker/group/route.h"
#include "broker/handlers/handlers.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using response_group = proto::offset_fetch_response::offset_fetch_response_group;

struct group_query {
    size_t slot;
    std::string group_id;
    std::optional<std::vector<group::fetch_topic>> topics;
    response_group answer;
};

// v0-7 carry one group in the top-level fields.
void fill_single_group_form(proto::offset_fetch_response& response, response_group& answer) {
    for (auto& topic : answer.topics) {
        proto::offset_fetch_response::offset_fetch_response_topic topic_out;
        topic_out.name = std::move(topic.name);
        for (auto& part : topic.partitions) {
            proto::offset_fetch_response::offset_fetch_response_partition out;
            out.partition_index = part.partition_index;
            out.committed_offset = part.committed_offset;
            out.committed_leader_epoch = part.committed_leader_epoch;
            out.metadata = std::move(part.metadata);
            out.error_code = part.error_code;
            topic_out.partitions.push_back(std::move(out));
        }
        response.topics.push_back(std::move(topic_out));
    }
    response.error_code = answer.error_code;
}

}  // namespace

void handle_offset_fetch(request_ptr req) {
    auto body = std::make_shared<proto::offset_fetch_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed OffsetFetch request");
        return;
    }
    shard_state& shard = *req->shard;
    const bool multi_group = req->version() >= 8;
    std::vector<group_query> queries;
    if (multi_group) {
        for (const auto& g : body->groups) {
            group_query q{queries.size(), g.group_id, std::nullopt, {}};
            if (g.topics) {
                q.topics.emplace();
                for (const auto& t : *g.topics) q.topics->push_back({t.name, t.partition_indexes});
            }
            queries.push_back(std::move(q));
        }
    } else {
        group_query q{0, body->group_id, std::nullopt, {}};
        if (body->topics) {
            q.topics.emplace();
            for (const auto& t : *body->topics) q.topics->push_back({t.name, t.partition_indexes});
        }
        queries.push_back(std::move(q));
    }
    auto response = std::make_shared<proto::offset_fetch_response>();
    response->groups.resize(multi_group ? queries.size() : 0);
    std::map<net::shard_id, std::vector<group_query>> by_owner;
    for (group_query& q : queries)
        by_owner[group::coordinator_shard(shard, q.group_id)].push_back(std::move(q));
    fan_out<group_query>(
        shard, std::move(by_owner),
        [](shard_state& owner, group_query& q) {
            q.answer = owner.groups().fetch(q.group_id, q.topics);
        },
        [response, multi_group](std::vector<group_query>& done) {
            for (group_query& q : done) {
                if (multi_group)
                    response->groups[q.slot] = std::move(q.answer);
                else
                    fill_single_group_form(*response, q.answer);
            }
        },
        [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
