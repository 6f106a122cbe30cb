#pragma once
// Routing of group requests: a group lives on the shard that leads its partition of
// __consumer_offsets (broker/group/offsets_topic.h), so a handler runs its group work
// there with call_on and answers on the request's shard. A group whose partition is not
// led in this process goes to the request's own shard, whose coordinator answers
// NOT_COORDINATOR.

#include <functional>
#include <string>

#include "broker/broker.h"
#include "broker/group/coordinator.h"
#include "broker/group/offset_store.h"
#include "broker/group/offsets_topic.h"

namespace spate::broker::group {

// The shard that coordinates `group_id` in this process.
inline net::shard_id coordinator_shard(shard_state& shard, const std::string& group_id) {
    const topic_info* topic = shard.metadata()->find(offsets_topic_name);
    if (topic == nullptr || topic->partition_count() == 0) return shard.id();
    const int32_t partition = offsets_partition_of(group_id, topic->partition_count());
    const uint32_t owner = topic->partition_shards[static_cast<size_t>(partition)];
    return owner < shard.owner().shard_count() ? owner : shard.id();
}

// Runs `work(coordinator, reply)` on the group's shard; `reply(response)` (possibly
// later, e.g. when a rebalance completes) sends `response` for `req`.
template <class Response>
void on_group_shard(const request_ptr& req, const std::string& group_id,
                    std::function<void(group_coordinator&, std::function<void(Response)>)> work) {
    shard_state& shard = *req->shard;
    shard.call_on<Response>(
        coordinator_shard(shard, group_id),
        [work = std::move(work)](shard_state& target, std::function<void(Response)> reply) {
            work(target.groups(), std::move(reply));
        },
        [req](Response response) { req->shard->respond(*req, response); });
}

// The requesting client, for DescribeGroups: its client id and address ("/127.0.0.1").
inline member_context context_of(const request& req) {
    member_context context;
    context.client_id = req.header.client_id.value_or(std::string());
    context.client_host = req.shard->net_shard().peer_of(req.conn).text();
    context.version = req.version();
    return context;
}

}  // namespace spate::broker::group
