// cluster_agent: ISR changes (AlterPartition, Kafka 2.7's AlterIsr). The leader of a
// partition proposes a new ISR — followers that fell behind leave it, followers that
// caught up join it — and the controller, the only writer of partition state, checks the
// proposal against the state it holds (leader, leader epoch, state version), writes it to
// ZooKeeper by a fenced conditional write, answers with the new state, then sends
// UpdateMetadata to every broker. The leader applies the answer at once.
#include <algorithm>

#include "broker/cluster/agent.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;

}  // namespace

void cluster_agent::apply_alter_partition(
    const proto::alter_partition_request& request,
    std::function<void(proto::alter_partition_response)> done) {
    proto::alter_partition_response response;
    if (!is_controller()) {
        response.error_code = proto::code(error_code::not_controller);
        done(response);
        return;
    }
    auto sender = _live.find(request.broker_id);
    if (sender == _live.end() ||
        (request.broker_epoch != -1 && request.broker_epoch != sender->second.epoch)) {
        response.error_code = proto::code(error_code::stale_broker_epoch);
        done(response);
        return;
    }
    bool changed = false;
    std::vector<std::pair<std::string, int32_t>> isr_changed;
    for (const auto& topic : request.topics) {
        proto::alter_partition_response::alter_partition_topic_result topic_out;
        topic_out.topic_name = topic.topic_name;
        auto controlled = _controlled.find(topic.topic_name);
        for (const auto& p : topic.partitions) {
            proto::alter_partition_response::alter_partition_partition_result out;
            out.partition_index = p.partition_index;
            out.leader_id = -1;
            out.leader_epoch = -1;
            out.partition_epoch = -1;
            partition_state* state = nullptr;
            if (controlled != _controlled.end()) {
                auto found = controlled->second.states.find(p.partition_index);
                if (found != controlled->second.states.end()) state = &found->second;
            }
            error_code code = error_code::none;
            if (state == nullptr) {
                code = error_code::unknown_topic_or_partition;
            } else if (state->leader != request.broker_id) {
                code = error_code::not_leader_or_follower;
            } else if (p.leader_epoch != state->leader_epoch) {
                code = error_code::fenced_leader_epoch;
            } else if (p.partition_epoch != state->zk_version) {
                code = error_code::invalid_update_version;
            } else {
                const auto& replicas =
                    controlled->second.assignment.partitions.at(p.partition_index);
                const bool eligible =
                    has_broker(p.new_isr, request.broker_id) &&
                    std::all_of(p.new_isr.begin(), p.new_isr.end(), [&](int32_t r) {
                        return has_broker(replicas, r) && _live.count(r) != 0;
                    });
                if (!eligible) code = error_code::ineligible_replica;
            }
            if (code == error_code::none) {
                partition_state next = *state;
                next.isr = p.new_isr;
                next.controller_epoch = _controller_epoch;
                zk_op set{zk_op::kind::set,
                          paths::partition_state(topic.topic_name, p.partition_index),
                          encode_partition_state(next), state->zk_version, 0};
                if (auto written = fenced({set}); !written) {
                    code = error_code::not_controller;  // lost the controllership meanwhile
                } else {
                    next.zk_version = state->zk_version + 1;
                    *state = next;
                    changed = true;
                    isr_changed.emplace_back(topic.topic_name, p.partition_index);
                    net::log_info("cluster: %s-%d ISR now %zu replicas (leader %d, epoch %d)",
                                  topic.topic_name.c_str(), p.partition_index, next.isr.size(),
                                  next.leader, next.leader_epoch);
                }
            }
            if (state != nullptr) {
                out.leader_id = state->leader;
                out.leader_epoch = state->leader_epoch;
                out.isr = state->isr;
                out.partition_epoch = state->zk_version;
            }
            out.error_code = proto::code(code);
            topic_out.partitions.push_back(std::move(out));
        }
        response.topics.push_back(std::move(topic_out));
    }
    // Answered before the brokers are told: the leader's agent may be the one the
    // UpdateMetadata below waits for.
    done(response);
    if (changed) send_update_metadata_to_all();
    // A reassignment finishes once its target replicas are all in sync (reassignment.cc).
    for (const auto& [name, index] : isr_changed)
        if (is_controller()) finish_reassignment_when_in_sync(name, index);
}

void cluster_agent::alter_partition(const isr_change& change, std::function<void()> done) {
    proto::alter_partition_request request;
    request.broker_id = _config.node_id;
    request.broker_epoch = _broker_epoch;
    request.topics.emplace_back();
    request.topics.back().topic_name = change.topic;
    proto::alter_partition_request::alter_partition_partition p;
    p.partition_index = change.index;
    p.leader_epoch = change.leader_epoch;
    p.new_isr = change.isr;
    p.partition_epoch = change.partition_epoch;
    request.topics.back().partitions.push_back(std::move(p));
    if (_controller_id == _config.node_id && is_controller()) {
        apply_alter_partition(request, [this, done](proto::alter_partition_response response) {
            applied_alter_partition(response, done);
        });
        return;
    }
    const cluster_broker* controller = nullptr;
    for (const cluster_broker& b : _brokers)
        if (b.id == _controller_id) controller = &b;
    if (controller == nullptr) {
        done();  // no controller known: proposed again by the next housekeeping round
        return;
    }
    if (!_controller_client || _controller_client->host() != controller->host ||
        _controller_client->port() != controller->port)
        _controller_client = std::make_unique<broker_client>(
            controller->id, controller->host, controller->port, _config.node_id,
            _config.request_timeout_ms, _config.call_broker);
    _controller_client->send<proto::alter_partition_request, proto::alter_partition_response>(
        request, 0, [this, done](result<proto::alter_partition_response> answer) {
            // On shard 0: the answer is applied on the agent's thread.
            submit([this, done, answer = std::move(answer)] {
                if (!answer) {
                    net::log_warn("cluster: AlterPartition: %s", answer.failure().message.c_str());
                    done();
                    return;
                }
                applied_alter_partition(*answer, done);
            });
        });
}

void cluster_agent::applied_alter_partition(const proto::alter_partition_response& response,
                                            std::function<void()> done) {
    if (response.error_code != 0) {
        net::log_warn("cluster: AlterPartition refused: %s",
                      proto::error_name(response.error_code));
        done();
        return;
    }
    bool changed = false;
    for (const auto& topic : response.topics) {
        auto known = _topics.find(topic.topic_name);
        for (const auto& p : topic.partitions) {
            if (p.error_code != 0) {
                net::log_info("cluster: ISR change of %s-%d refused: %s", topic.topic_name.c_str(),
                              p.partition_index, proto::error_name(p.error_code));
                continue;
            }
            if (known == _topics.end() || p.partition_index < 0 ||
                static_cast<size_t>(p.partition_index) >= known->second.partitions.size())
                continue;
            partition_replicas& out =
                known->second.partitions[static_cast<size_t>(p.partition_index)];
            if (p.partition_epoch <= out.partition_epoch && p.leader_epoch == out.leader_epoch)
                continue;  // UpdateMetadata brought it already
            out.isr = p.isr;
            out.leader_epoch = p.leader_epoch;
            out.partition_epoch = p.partition_epoch;
            changed = true;
        }
    }
    if (changed)
        publish(done);
    else
        done();
}

}  // namespace spate::broker::cluster
