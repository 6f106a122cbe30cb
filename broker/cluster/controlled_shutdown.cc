// cluster_agent: controlled shutdown (ControlledShutdown, 7). A broker stopping cleanly
// (SIGTERM) first asks the controller to move every leadership it holds to another live
// in-sync replica and to drop it from every ISR, so that producers meet one
// NOT_LEADER_OR_FOLLOWER and a new leader at once instead of a session timeout's outage,
// and acks=all stops waiting for it. Partitions with no other in-sync replica stay (the
// answer lists them); the broker stops anyway after a bounded number of tries.
#include <algorithm>
#include <future>

#include "broker/cluster/agent.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;

constexpr int controlled_shutdown_attempts = 3;

}  // namespace

void cluster_agent::apply_controlled_shutdown(
    const proto::controlled_shutdown_request& request,
    std::function<void(proto::controlled_shutdown_response)> done) {
    proto::controlled_shutdown_response response;
    if (!is_controller()) {
        response.error_code = proto::code(error_code::not_controller);
        done(response);
        return;
    }
    const int32_t leaving = request.broker_id;
    auto sender = _live.find(leaving);
    if (sender == _live.end() ||
        (request.broker_epoch != -1 && request.broker_epoch != sender->second.epoch)) {
        response.error_code = proto::code(error_code::stale_broker_epoch);
        done(response);
        return;
    }
    _shutting_down.insert(leaving);
    std::vector<std::pair<std::string, int32_t>> changed;
    for (auto& [name, topic] : _controlled) {
        for (auto& [index, state] : topic.states) {
            const auto& replicas = topic.assignment.partitions.at(index);
            if (!has_broker(replicas, leaving)) continue;
            partition_state next = state;
            std::erase(next.isr, leaving);
            if (state.leader == leaving) {
                next.leader = -1;
                for (int32_t r : replicas)
                    if (r != leaving && has_broker(state.isr, r) && _live.count(r) != 0 &&
                        _shutting_down.count(r) == 0) {
                        next.leader = r;
                        break;
                    }
                if (next.leader < 0) {
                    response.remaining_partitions.push_back({name, index});
                    continue;
                }
            } else if (!has_broker(state.isr, leaving) || next.isr.empty()) {
                continue;
            }
            next.leader_epoch += 1;
            next.controller_epoch = _controller_epoch;
            zk_op set{zk_op::kind::set, paths::partition_state(name, index),
                      encode_partition_state(next), state.zk_version, 0};
            if (!fenced({set})) {
                response.error_code = proto::code(error_code::not_controller);
                break;
            }
            next.zk_version = state.zk_version + 1;
            state = next;
            changed.emplace_back(name, index);
        }
    }
    net::log_info("cluster: broker %d shuts down: %zu partitions moved, %zu remain", leaving,
                  changed.size(), response.remaining_partitions.size());
    // Answered first: the stopping broker's agent waits for this answer, and the
    // LeaderAndIsr below goes to it too.
    done(response);
    if (!changed.empty()) send_partition_changes(changed);
}

bool cluster_agent::controlled_shutdown() {
    auto finished = std::make_shared<std::promise<bool>>();
    auto outcome = finished->get_future();
    submit([this, finished] {
        proto::controlled_shutdown_request request;
        request.broker_id = _config.node_id;
        request.broker_epoch = _broker_epoch;
        for (int attempt = 0; attempt < controlled_shutdown_attempts; ++attempt) {
            proto::controlled_shutdown_response response;
            response.error_code = proto::code(error_code::not_controller);
            if (_controller_id == _config.node_id && is_controller()) {
                apply_controlled_shutdown(
                    request, [&response](proto::controlled_shutdown_response r) { response = r; });
            } else {
                const cluster_broker* controller = nullptr;
                for (const cluster_broker& b : _brokers)
                    if (b.id == _controller_id) controller = &b;
                if (controller != nullptr) {
                    broker_client client(controller->id, controller->host, controller->port,
                                         _config.node_id, _config.request_timeout_ms,
                                         _config.call_broker);
                    auto answer = client.call<proto::controlled_shutdown_request,
                                              proto::controlled_shutdown_response>(request, 3);
                    if (answer) response = *answer;
                }
            }
            if (response.error_code == 0 && response.remaining_partitions.empty()) {
                finished->set_value(true);
                return;
            }
            net::log_info("cluster: controlled shutdown: %s, %zu partitions still led here",
                          proto::error_name(response.error_code),
                          response.remaining_partitions.size());
            if (response.error_code == 0 && attempt + 1 == controlled_shutdown_attempts) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
        finished->set_value(false);
    });
    // Bounded whatever happens on the agent's thread: a stop never hangs on the cluster.
    if (outcome.wait_for(std::chrono::seconds(30)) != std::future_status::ready) return false;
    return outcome.get();
}

}  // namespace spate::broker::cluster
