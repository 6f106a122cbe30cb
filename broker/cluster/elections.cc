// cluster_agent: leader elections asked for by an operator (ElectLeaders, 43): preferred
// (type 0, the first assigned replica where it is live and in sync, as the periodic
// rebalance does) or unclean (type 1, any live replica of a partition that has no leader).
#include <algorithm>

#include "broker/cluster/agent.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;

using partition_key = std::pair<std::string, int32_t>;

}  // namespace

std::vector<partition_key> cluster_agent::elect_unclean_leaders(
    const std::set<partition_key>& only) {
    std::vector<partition_key> changed;
    for (const auto& [name, index] : only) {
        auto topic = _controlled.find(name);
        if (topic == _controlled.end()) continue;
        auto state = topic->second.states.find(index);
        if (state == topic->second.states.end() || state->second.leader >= 0) continue;
        partition_state next = state->second;
        for (int32_t r : topic->second.assignment.partitions.at(index))
            if (_live.count(r) != 0 && _shutting_down.count(r) == 0) {
                next.leader = r;
                break;
            }
        if (next.leader < 0) continue;
        net::log_warn(
            "cluster: %s-%d: unclean election of broker %d asked for (records may be lost)",
            name.c_str(), index, next.leader);
        next.isr = {next.leader};
        next.leader_epoch += 1;
        next.controller_epoch = _controller_epoch;
        zk_op set{zk_op::kind::set, paths::partition_state(name, index),
                  encode_partition_state(next), state->second.zk_version, 0};
        if (!fenced({set})) break;
        next.zk_version = state->second.zk_version + 1;
        state->second = next;
        changed.emplace_back(name, index);
    }
    return changed;
}

void cluster_agent::apply_elect_leaders(const proto::elect_leaders_request& request,
                                        std::function<void(proto::elect_leaders_response)> done) {
    proto::elect_leaders_response response;
    const bool controller = is_controller();
    if (!controller) response.error_code = proto::code(error_code::not_controller);
    // What was asked for: the named partitions, or every partition (null).
    std::set<partition_key> asked;
    if (request.topic_partitions) {
        for (const auto& topic : *request.topic_partitions)
            for (int32_t index : topic.partition_id) asked.insert({topic.topic, index});
    } else if (controller) {
        for (const auto& [name, topic] : _controlled)
            for (const auto& [index, state] : topic.states) asked.insert({name, index});
    }
    std::vector<partition_key> changed;
    if (controller)
        changed = request.election_type == 1 ? elect_unclean_leaders(asked)
                                             : elect_preferred_leaders(&asked);
    const std::set<partition_key> elected(changed.begin(), changed.end());
    for (const auto& [name, index] : asked) {
        if (response.replica_election_results.empty() ||
            response.replica_election_results.back().topic != name) {
            response.replica_election_results.emplace_back();
            response.replica_election_results.back().topic = name;
        }
        proto::elect_leaders_response::elect_partition_result out;
        out.partition_id = index;
        error_code code = error_code::none;
        if (!controller) {
            code = error_code::not_controller;
        } else if (elected.count({name, index}) == 0) {
            auto topic = _controlled.find(name);
            const partition_state* state = nullptr;
            if (topic != _controlled.end()) {
                auto found = topic->second.states.find(index);
                if (found != topic->second.states.end()) state = &found->second;
            }
            if (state == nullptr) {
                code = error_code::unknown_topic_or_partition;
            } else if (request.election_type == 1) {
                code = state->leader >= 0 ? error_code::election_not_needed
                                          : error_code::eligible_leaders_not_available;
            } else {
                const auto& replicas = topic->second.assignment.partitions.at(index);
                code = !replicas.empty() && state->leader == replicas.front()
                           ? error_code::election_not_needed
                           : error_code::preferred_leader_not_available;
            }
        }
        out.error_code = proto::code(code);
        if (code != error_code::none) out.error_message = proto::error_name(code);
        // A request for every partition lists only those whose leader moved (Kafka's way).
        if (request.topic_partitions || code == error_code::none)
            response.replica_election_results.back().partition_result.push_back(std::move(out));
    }
    std::erase_if(response.replica_election_results,
                  [](const auto& topic) { return topic.partition_result.empty(); });
    done(response);
    if (!changed.empty()) send_partition_changes(changed);
}

}  // namespace spate::broker::cluster
