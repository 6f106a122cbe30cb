// cluster_agent: partition reassignment (KIP-455, the controller's algorithm of Kafka 2.4 to
// 2.8 in ZooKeeper mode). A partition with original replicas ORS moves to target replicas
// TRS in two steps:
//  1. The replica set becomes RS = TRS + (ORS − TRS), with adding = TRS − ORS and
//     removing = ORS − TRS recorded in the topic znode beside it (Kafka's version-2+
//     fields), the leader epoch goes up, and every replica of RS learns it (LeaderAndIsr):
//     the new replicas start following and fetch.
//  2. Once every TRS member is in the ISR (checked on each ISR change), the replica set
//     becomes TRS, the ISR loses the removed replicas, a TRS member leads (the first live
//     one in the ISR when the leader is being removed), the leader epoch goes up again, and
//     the removed replicas stop and delete their data (StopReplica with delete).
// Both znodes of a step are written in one fenced multi, so the state in ZooKeeper is
// always one of the two and a new controller goes on from it (resume_reassignments). A
// cancel (null target) is a move back to ORS, finished at once.
//
// Requests come from admin clients (AlterPartitionReassignments, 45;
// ListPartitionReassignments, 46) and from Kafka's ZooKeeper tool, which writes
// /admin/reassign_partitions; the controller takes what that node asks for and deletes it,
// as Kafka 2.8 does. All of it runs on the agent's thread, on the controller only.
#include <algorithm>

#include "broker/cluster/agent.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;

// `from` without the members of `without`, in from's order.
std::vector<int32_t> minus(const std::vector<int32_t>& from, const std::vector<int32_t>& without) {
    std::vector<int32_t> out;
    for (int32_t r : from)
        if (!has_broker(without, r)) out.push_back(r);
    return out;
}

std::vector<int32_t> list_of(const std::map<int32_t, std::vector<int32_t>>& lists, int32_t index) {
    auto found = lists.find(index);
    return found == lists.end() ? std::vector<int32_t>{} : found->second;
}

std::string text_of(const std::vector<int32_t>& ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out += ',';
        out += std::to_string(ids[i]);
    }
    return out + "]";
}

std::string partition_name(const std::string& name, int32_t index) {
    return name + "-" + std::to_string(index);
}

admin_outcome failed(error_code code, std::string message) { return {code, std::move(message)}; }

}  // namespace

admin_outcome cluster_agent::reassign(const std::string& name, int32_t index,
                                      const std::optional<std::vector<int32_t>>& target) {
    auto topic = _controlled.find(name);
    if (topic == _controlled.end() || topic->second.assignment.partitions.count(index) == 0)
        return failed(error_code::unknown_topic_or_partition,
                      "partition " + partition_name(name, index) + " does not exist");
    const topic_assignment& assignment = topic->second.assignment;
    const std::vector<int32_t> current = assignment.partitions.at(index);
    const std::vector<int32_t> adding = list_of(assignment.adding, index);
    const std::vector<int32_t> removing = list_of(assignment.removing, index);
    const bool moving = !adding.empty() || !removing.empty();
    // The replicas the partition had before any reassignment now in progress: a new target
    // replaces the old one, measured from the same origin (Kafka's rule).
    const std::vector<int32_t> original = minus(current, adding);
    std::vector<int32_t> wanted;
    if (!target) {
        if (!moving)
            return failed(error_code::no_reassignment_in_progress,
                          "no reassignment of " + partition_name(name, index) + " in progress");
        wanted = original;
    } else {
        wanted = *target;
        if (wanted.empty())
            return failed(error_code::invalid_replica_assignment, "the replica list is empty");
        for (size_t i = 0; i < wanted.size(); ++i) {
            const int32_t r = wanted[i];
            if (r < 0)
                return failed(error_code::invalid_replica_assignment,
                              "broker id " + std::to_string(r) + " is negative");
            if (std::find(wanted.begin(), wanted.begin() + static_cast<std::ptrdiff_t>(i), r) !=
                wanted.begin() + static_cast<std::ptrdiff_t>(i))
                return failed(error_code::invalid_replica_assignment,
                              "broker " + std::to_string(r) + " is listed twice");
            if (_live.count(r) == 0)
                return failed(error_code::invalid_replica_assignment,
                              "broker " + std::to_string(r) + " is not live");
        }
    }
    std::vector<int32_t> replicas = wanted;
    for (int32_t r : minus(original, wanted)) replicas.push_back(r);
    const std::vector<int32_t> next_adding = minus(wanted, original);
    const std::vector<int32_t> next_removing = minus(original, wanted);
    if (!moving && replicas == current) return {};  // already there
    auto written = write_replicas(name, index, replicas, next_adding, next_removing);
    if (written.code != error_code::none) return written;
    if (!target)
        net::log_info("cluster: reassignment of %s cancelled: replicas %s again",
                      partition_name(name, index).c_str(), text_of(replicas).c_str());
    else
        net::log_info("cluster: reassigning %s from %s to %s (adding %s, removing %s)",
                      partition_name(name, index).c_str(), text_of(original).c_str(),
                      text_of(wanted).c_str(), text_of(next_adding).c_str(),
                      text_of(next_removing).c_str());
    finish_reassignment_when_in_sync(name, index);
    return {};
}

admin_outcome cluster_agent::write_replicas(const std::string& name, int32_t index,
                                            const std::vector<int32_t>& replicas,
                                            const std::vector<int32_t>& adding,
                                            const std::vector<int32_t>& removing) {
    controlled_topic& topic = _controlled.at(name);
    const std::vector<int32_t> before = topic.assignment.partitions.at(index);
    topic_assignment next = topic.assignment;
    next.partitions[index] = replicas;
    next.adding.erase(index);
    next.removing.erase(index);
    if (!adding.empty()) next.adding[index] = adding;
    if (!removing.empty()) next.removing[index] = removing;
    std::vector<zk_op> ops;
    ops.push_back({zk_op::kind::set, paths::topic(name), encode_topic(next), topic.zk_version, 0});
    auto state = topic.states.find(index);
    std::optional<partition_state> next_state;
    if (state != topic.states.end()) {
        partition_state s = state->second;
        std::vector<int32_t> isr;
        for (int32_t r : s.isr)
            if (has_broker(replicas, r)) isr.push_back(r);
        // A leader being removed hands over to the first live target replica in sync
        // (a reassignment's end, or a cancel back to the original replicas).
        if (s.leader >= 0 && !has_broker(replicas, s.leader)) {
            s.leader = -1;
            for (int32_t r : replicas)
                if (_live.count(r) != 0 && has_broker(isr, r) && _shutting_down.count(r) == 0) {
                    s.leader = r;
                    break;
                }
            if (s.leader < 0)
                return failed(error_code::reassignment_in_progress,
                              "no replica of " + text_of(replicas) + " is live and in sync with " +
                                  partition_name(name, index) + " yet");
        }
        s.isr = std::move(isr);
        // Every change of the replica set is a new leader epoch (KIP-455), so each replica
        // learns the new set and no request based on the old one is taken.
        s.leader_epoch += 1;
        s.controller_epoch = _controller_epoch;
        ops.push_back({zk_op::kind::set, paths::partition_state(name, index),
                       encode_partition_state(s), state->second.zk_version, 0});
        next_state = s;
    }
    if (auto written = fenced(ops); !written) {
        // Not the controller any more (fenced() resigned: nothing here may be touched),
        // or the topic node changed meanwhile (its watch re-reads it).
        if (!is_controller())
            return failed(error_code::not_controller, "the controller moved meanwhile");
        return failed(error_code::reassignment_in_progress,
                      "topic " + name + " changed meanwhile; retry: " + written.failure().message);
    }
    topic.assignment = std::move(next);
    topic.zk_version += 1;
    if (next_state) {
        next_state->zk_version = state->second.zk_version + 1;
        state->second = *next_state;
    }
    // LeaderAndIsr to every replica of the new set (new ones start following), and
    // UpdateMetadata to all; replicas that left stop and delete the partition.
    send_partition_changes({{name, index}});
    send_stop_replica_delete(name, index, minus(before, replicas));
    return {};
}

void cluster_agent::send_stop_replica_delete(const std::string& name, int32_t index,
                                             const std::vector<int32_t>& brokers) {
    const auto& states = _controlled.at(name).states;
    auto state = states.find(index);
    // The current leader epoch (never negative): a negative one would mean the whole
    // topic is being deleted (apply_stop_replica).
    const int32_t epoch = state == states.end() ? 0 : std::max(state->second.leader_epoch, 0);
    for (int32_t r : brokers) {
        auto live = _live.find(r);
        if (live == _live.end()) {
            net::log_warn("cluster: broker %d is down: its replica of %s stays on its disk", r,
                          partition_name(name, index).c_str());
            continue;
        }
        proto::stop_replica_request request;
        request.controller_id = _config.node_id;
        request.controller_epoch = _controller_epoch;
        request.broker_epoch = live->second.epoch;
        request.topic_states.emplace_back();
        request.topic_states.back().topic_name = name;
        request.topic_states.back().partition_states.push_back({index, epoch, true});
        deliver<proto::stop_replica_response>(r, request, 3, "StopReplica",
                                              &cluster_agent::apply_stop_replica);
    }
}

void cluster_agent::finish_reassignment_when_in_sync(const std::string& name, int32_t index) {
    auto topic = _controlled.find(name);
    if (topic == _controlled.end()) return;
    const topic_assignment& assignment = topic->second.assignment;
    const std::vector<int32_t> removing = list_of(assignment.removing, index);
    if (assignment.adding.count(index) == 0 && removing.empty()) return;
    auto state = topic->second.states.find(index);
    if (state == topic->second.states.end()) return;
    const std::vector<int32_t> target = minus(assignment.partitions.at(index), removing);
    for (int32_t r : target)
        if (!has_broker(state->second.isr, r)) return;  // not caught up yet
    auto written = write_replicas(name, index, target, {}, {});
    if (written.code != error_code::none) {
        net::log_warn("cluster: reassignment of %s cannot finish yet: %s",
                      partition_name(name, index).c_str(), written.message.c_str());
        return;
    }
    net::log_info("cluster: reassignment of %s finished: replicas %s",
                  partition_name(name, index).c_str(), text_of(target).c_str());
}

void cluster_agent::resume_reassignments() {
    std::set<std::pair<std::string, int32_t>> moving;
    for (const auto& [name, topic] : _controlled) {
        for (const auto& entry : topic.assignment.adding) moving.emplace(name, entry.first);
        for (const auto& entry : topic.assignment.removing) moving.emplace(name, entry.first);
    }
    if (!moving.empty())
        net::log_info("cluster: %zu partition reassignments in progress go on", moving.size());
    // Every replica of the moving partitions already had its LeaderAndIsr (the new
    // controller sends every broker its full state); those in sync finish now.
    for (const auto& [name, index] : moving) {
        if (!is_controller()) return;
        finish_reassignment_when_in_sync(name, index);
    }
}

void cluster_agent::on_reassign_partitions() {
    if (!_session || !is_controller()) return;
    auto node = _session->get(paths::reassign_partitions, true);
    if (!node) {
        // Absent: watched for its creation.
        if (node.failure().code == ZNONODE)
            (void)_session->exists(paths::reassign_partitions, true);
        return;
    }
    auto moves = decode_reassign_partitions(node->data);
    if (!moves) {
        net::log_warn("cluster: %s: %s (ignored)", paths::reassign_partitions.c_str(),
                      moves.failure().message.c_str());
    } else {
        for (const partition_move& move : *moves) {
            auto outcome = reassign(move.topic, move.partition, move.replicas);
            if (!is_controller()) return;
            if (outcome.code != error_code::none)
                net::log_warn("cluster: %s: reassignment of %s refused: %s: %s",
                              paths::reassign_partitions.c_str(),
                              partition_name(move.topic, move.partition).c_str(),
                              proto::error_name(outcome.code), outcome.message.c_str());
        }
    }
    // Kafka 2.8 deletes the node once it has taken the reassignments: their progress is in
    // the topic nodes from then on. A node rewritten meanwhile stays (its watch fires).
    (void)_session->remove(paths::reassign_partitions, node->stat.version);
    (void)_session->exists(paths::reassign_partitions, true);
}

void cluster_agent::apply_alter_partition_reassignments(
    const proto::alter_partition_reassignments_request& request,
    std::function<void(proto::alter_partition_reassignments_response)> done) {
    proto::alter_partition_reassignments_response response;
    if (!is_controller()) {
        response.error_code = proto::code(error_code::not_controller);
        response.error_message =
            "broker " + std::to_string(_config.node_id) + " is not the controller";
        done(response);
        return;
    }
    for (const auto& topic : request.topics) {
        proto::alter_partition_reassignments_response::reassignable_topic_response topic_out;
        topic_out.name = topic.name;
        for (const auto& p : topic.partitions) {
            proto::alter_partition_reassignments_response::reassignable_partition_response out;
            out.partition_index = p.partition_index;
            admin_outcome outcome =
                is_controller() ? reassign(topic.name, p.partition_index, p.replicas)
                                : failed(error_code::not_controller, "the controller moved");
            out.error_code = proto::code(outcome.code);
            if (outcome.code != error_code::none) out.error_message = outcome.message;
            topic_out.partitions.push_back(std::move(out));
        }
        response.responses.push_back(std::move(topic_out));
    }
    done(response);
}

void cluster_agent::apply_list_partition_reassignments(
    const proto::list_partition_reassignments_request& request,
    std::function<void(proto::list_partition_reassignments_response)> done) {
    using response_type = proto::list_partition_reassignments_response;
    response_type response;
    if (!is_controller()) {
        response.error_code = proto::code(error_code::not_controller);
        response.error_message =
            "broker " + std::to_string(_config.node_id) + " is not the controller";
        done(response);
        return;
    }
    std::map<std::string, std::vector<response_type::ongoing_partition_reassignment>> found;
    auto list = [&](const std::string& name, int32_t index) {
        auto topic = _controlled.find(name);
        if (topic == _controlled.end()) return;
        const topic_assignment& assignment = topic->second.assignment;
        auto replicas = assignment.partitions.find(index);
        if (replicas == assignment.partitions.end()) return;
        response_type::ongoing_partition_reassignment out;
        out.partition_index = index;
        out.replicas = replicas->second;
        out.adding_replicas = list_of(assignment.adding, index);
        out.removing_replicas = list_of(assignment.removing, index);
        if (out.adding_replicas.empty() && out.removing_replicas.empty()) return;
        auto& partitions = found[name];
        if (std::none_of(partitions.begin(), partitions.end(),
                         [index](const auto& p) { return p.partition_index == index; }))
            partitions.push_back(std::move(out));
    };
    if (request.topics) {
        for (const auto& topic : *request.topics)
            for (int32_t index : topic.partition_indexes) list(topic.name, index);
    } else {
        for (const auto& [name, topic] : _controlled)
            for (const auto& entry : topic.assignment.partitions) list(name, entry.first);
    }
    for (auto& [name, partitions] : found) {
        response_type::ongoing_topic_reassignment topic_out;
        topic_out.name = name;
        topic_out.partitions = std::move(partitions);
        response.topics.push_back(std::move(topic_out));
    }
    done(response);
}

}  // namespace spate::broker::cluster
