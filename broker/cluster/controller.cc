// The controller: the broker that won /controller keeps the cluster's partition states
// (CLUSTER.md "The controller"): it elects leaders, writes the state nodes with fenced
// writes, and tells brokers with LeaderAndIsr, UpdateMetadata and StopReplica.
#include <algorithm>
#include <utility>

#include "broker/cluster/agent.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {}  // namespace

template <class Response, class Request>
void cluster_agent::deliver(int32_t broker_id, const Request& request, int16_t version,
                            const char* name,
                            void (cluster_agent::*apply)(const Request&,
                                                         std::function<void(Response)>),
                            std::function<void()> answered) {
    if (broker_id == _config.node_id) {
        (this->*apply)(request, [this, answered = std::move(answered)](Response) {
            if (answered) submit(answered);
        });
        return;
    }
    // Sent without waiting: a broker that is slow or paused must not hold up the
    // controller's other work (AlterPartition answers, elections) for its timeout. The
    // requests to one broker go out in order on one connection and it applies them in
    // that order; one that fails gets the broker's whole state sent again.
    ++_requests_in_flight[broker_id];
    client_of(broker_id).send<Request, Response>(
        request, version,
        [this, broker_id, name, answered = std::move(answered)](result<Response> answer) {
            std::string failure;
            if (!answer)
                failure = answer.failure().message;
            else if (answer->error_code != 0)
                failure = proto::error_name(answer->error_code);
            submit([this, broker_id, name, failure = std::move(failure), answered] {
                --_requests_in_flight[broker_id];
                if (answered) answered();
                if (failure.empty()) return;
                net::log_warn("cluster: %s to broker %d: %s", name, broker_id, failure.c_str());
                _needs_full_state.insert(broker_id);
            });
        });
}

// StopReplica is also sent by reassignment.cc.
template void cluster_agent::deliver<proto::stop_replica_response>(
    int32_t, const proto::stop_replica_request&, int16_t, const char*,
    void (cluster_agent::*)(const proto::stop_replica_request&,
                            std::function<void(proto::stop_replica_response)>),
    std::function<void()>);

void cluster_agent::become_controller(int32_t epoch, int32_t epoch_zk_version) {
    _controller_epoch = epoch;
    _controller_epoch_zk_version = epoch_zk_version;
    _latest_controller_epoch = std::max(_latest_controller_epoch, epoch);
    ++_leader_answers_generation;  // nothing held from an earlier term as controller
    _leader_answers_awaited = 0;
    _update_metadata_held = false;
    _held_leader_and_isr.clear();  // the full state goes to every broker below
    _held_full_state.clear();
    net::log_info("cluster: broker %d is the controller (epoch %d)", _config.node_id, epoch);
    read_brokers();
    read_topics();
    auto changed = reconcile_all();
    // Every broker learns everything, the leaders elected now first (tell_leaders_first).
    for (const auto& [id, broker] : _live) _held_full_state.insert(id);
    tell_leaders_first(changed);
    on_delete_topics();
    resume_reassignments();
    on_reassign_partitions();
}

void cluster_agent::resign() {
    if (!is_controller()) return;
    net::log_info("cluster: broker %d is no longer the controller", _config.node_id);
    _controller_epoch_zk_version = -1;
    _live.clear();
    _controlled.clear();
    _clients.clear();
    _needs_full_state.clear();
}

result<void> cluster_agent::fenced(std::vector<zk_op> ops) {
    zk_op check;
    check.what = zk_op::kind::check;
    check.path = paths::controller_epoch;
    check.version = _controller_epoch_zk_version;
    ops.insert(ops.begin(), check);
    auto written = _session->multi(ops);
    if (!written && written.failure().message.find(paths::controller_epoch) != std::string::npos) {
        // Another controller was elected since: stop acting as one at once.
        net::log_warn("cluster: fenced: %s", written.failure().message.c_str());
        resign();
        elect();
    }
    return written;
}

result<std::map<int32_t, broker_registration>> read_registrations(zk_session& session, bool watch) {
    auto ids = session.children(paths::broker_ids, watch);
    if (!ids) return ids.failure();
    std::map<int32_t, broker_registration> live;
    for (const std::string& name : *ids) {
        const int32_t id = std::atoi(name.c_str());
        auto node = session.get(paths::broker(id));
        if (!node) continue;  // gone between the listing and the read
        auto decoded = decode_broker(id, node->data);
        if (!decoded) {
            net::log_warn("cluster: %s", decoded.failure().message.c_str());
            continue;
        }
        decoded->epoch = node->stat.czxid;
        live.emplace(id, *decoded);
    }
    return live;
}

void cluster_agent::read_brokers() {
    if (auto live = read_registrations(*_session, true)) _live = std::move(live.value());
}

void cluster_agent::read_topics() {
    auto names = _session->children(paths::topics, true);
    if (!names) return;
    for (auto it = _controlled.begin(); it != _controlled.end();)
        it = std::find(names->begin(), names->end(), it->first) == names->end()
                 ? _controlled.erase(it)
                 : std::next(it);
    for (const std::string& name : *names)
        if (_controlled.count(name) == 0) (void)read_topic(name);
}

bool cluster_agent::read_topic(const std::string& name) {
    auto node = _session->get(paths::topic(name), true);
    if (!node) return false;
    auto decoded = decode_topic(node->data);
    if (!decoded) {
        net::log_warn("cluster: topic %s: %s", name.c_str(), decoded.failure().message.c_str());
        return false;
    }
    controlled_topic& topic = _controlled[name];
    topic.assignment = *decoded;
    topic.zk_version = node->stat.version;
    // A node written by Kafka 1.0's tool has no topic id: give it one, so every broker
    // and every restart agree on it (KIP-516).
    if (!topic.assignment.has_id()) {
        topic.assignment.id = random_uuid();
        zk_op set;
        set.what = zk_op::kind::set;
        set.path = paths::topic(name);
        set.data = encode_topic(topic.assignment);
        set.version = topic.zk_version;
        if (!fenced({set})) {
            _controlled.erase(name);
            return false;
        }
        ++topic.zk_version;
    }
    for (const auto& [index, replicas] : topic.assignment.partitions) {
        if (topic.states.count(index) != 0) continue;
        auto state = _session->get(paths::partition_state(name, index));
        if (!state) continue;
        auto parsed = decode_partition_state(state->data);
        if (!parsed) continue;
        parsed->zk_version = state->stat.version;
        topic.states[index] = *parsed;
    }
    return true;
}

std::vector<std::pair<std::string, int32_t>> cluster_agent::reconcile(const std::string& name) {
    std::vector<std::pair<std::string, int32_t>> changed;
    auto found = _controlled.find(name);
    if (found == _controlled.end()) return changed;
    controlled_topic& topic = found->second;
    for (const auto& [index, replicas] : topic.assignment.partitions) {
        std::vector<int32_t> live;
        for (int32_t r : replicas)
            if (_live.count(r) != 0) live.push_back(r);
        auto existing = topic.states.find(index);
        if (existing == topic.states.end()) {
            // A new partition: its first live replica leads, the live ones are in sync.
            if (live.empty()) continue;  // elected when one of its brokers registers
            partition_state state;
            state.leader = live.front();
            state.isr = live;
            state.controller_epoch = _controller_epoch;
            const std::string partitions_path = paths::topic(name) + "/partitions";
            std::vector<zk_op> ops;
            for (const std::string& parent :
                 {partitions_path, partitions_path + "/" + std::to_string(index)}) {
                auto there = _session->exists(parent);
                if (there && !*there) ops.push_back({zk_op::kind::create, parent, "", -1, 0});
            }
            ops.push_back({zk_op::kind::create, paths::partition_state(name, index),
                           encode_partition_state(state), -1, 0});
            if (!fenced(ops)) return changed;
            topic.states[index] = state;
            changed.emplace_back(name, index);
            continue;
        }
        partition_state next = existing->second;
        std::vector<int32_t> isr;
        for (int32_t r : next.isr)
            if (_live.count(r) != 0) isr.push_back(r);
        const bool leader_live = next.leader >= 0 && _live.count(next.leader) != 0;
        if (!leader_live) {
            // The first live replica, in assignment order, that is in the ISR (clean
            // election only: a replica outside the ISR may lack acknowledged records).
            int32_t leader = -1;
            for (int32_t r : replicas)
                if (_live.count(r) != 0 && has_broker(next.isr, r) &&
                    _shutting_down.count(r) == 0) {
                    leader = r;
                    break;
                }
            // unclean.leader.election.enable (off by default): availability over
            // durability, the first live replica leads with an ISR of itself.
            bool unclean = false;
            if (leader < 0 && unclean_election_enabled(name)) {
                for (int32_t r : replicas)
                    if (_live.count(r) != 0) {
                        leader = r;
                        unclean = true;
                        break;
                    }
            }
            if (leader < 0 && next.leader < 0) continue;  // still offline, nothing new
            if (unclean) {
                net::log_warn("cluster: %s-%d: unclean election of broker %d (records may be lost)",
                              name.c_str(), index, leader);
                isr = {leader};
            }
            next.leader = leader;
            // With no live ISR member the ISR keeps its last members, so one of them
            // leads again when it comes back.
            if (leader >= 0) next.isr = isr;
        } else if (isr != next.isr) {
            next.isr = isr;  // dead followers leave the ISR at once
        } else {
            continue;
        }
        next.leader_epoch += 1;
        next.controller_epoch = _controller_epoch;
        zk_op set{zk_op::kind::set, paths::partition_state(name, index),
                  encode_partition_state(next), existing->second.zk_version, 0};
        if (!fenced({set})) return changed;
        next.zk_version = existing->second.zk_version + 1;
        existing->second = next;
        changed.emplace_back(name, index);
    }
    return changed;
}

bool cluster_agent::unclean_election_enabled(const std::string& name) const {
    auto configs = _topic_configs.find(name);
    if (configs == _topic_configs.end()) return false;
    auto value = configs->second.find("unclean.leader.election.enable");
    return value != configs->second.end() && value->second == "true";
}

std::vector<std::pair<std::string, int32_t>> cluster_agent::elect_preferred_leaders(
    const std::set<std::pair<std::string, int32_t>>* only) {
    std::vector<std::pair<std::string, int32_t>> changed;
    for (auto& [name, topic] : _controlled) {
        for (auto& [index, state] : topic.states) {
            if (only != nullptr && only->count({name, index}) == 0) continue;
            const auto& replicas = topic.assignment.partitions.at(index);
            if (replicas.empty()) continue;
            // A partition being reassigned gets its leader when the move finishes (Kafka's way).
            if (topic.assignment.adding.count(index) != 0 ||
                topic.assignment.removing.count(index) != 0)
                continue;
            const int32_t preferred = replicas.front();
            // Kafka's rule: the preferred replica leads again once it is live and in sync.
            if (state.leader == preferred || _live.count(preferred) == 0 ||
                _shutting_down.count(preferred) != 0 || !has_broker(state.isr, preferred))
                continue;
            partition_state next = state;
            next.leader = preferred;
            next.leader_epoch += 1;
            next.controller_epoch = _controller_epoch;
            zk_op set{zk_op::kind::set, paths::partition_state(name, index),
                      encode_partition_state(next), state.zk_version, 0};
            if (!fenced({set})) return changed;
            next.zk_version = state.zk_version + 1;
            state = next;
            changed.emplace_back(name, index);
        }
    }
    if (!changed.empty())
        net::log_info("cluster: preferred leaders elected for %zu partitions", changed.size());
    return changed;
}

std::vector<std::pair<std::string, int32_t>> cluster_agent::reconcile_all() {
    std::vector<std::pair<std::string, int32_t>> changed;
    std::vector<std::string> names;
    for (const auto& entry : _controlled) names.push_back(entry.first);
    for (const std::string& name : names) {
        auto more = reconcile(name);
        changed.insert(changed.end(), more.begin(), more.end());
        if (!is_controller()) break;
    }
    return changed;
}

broker_client& cluster_agent::client_of(int32_t broker_id) {
    const broker_registration& target = _live.at(broker_id);
    auto& client = _clients[broker_id];
    if (!client || client->host() != target.host || client->port() != target.port)
        client =
            std::make_unique<broker_client>(broker_id, target.host, target.port, _config.node_id,
                                            _config.request_timeout_ms, _config.call_broker);
    return *client;
}

bool cluster_agent::send_leader_and_isr(
    int32_t broker_id, const std::vector<std::pair<std::string, int32_t>>& partitions,
    std::function<void()> answered) {
    if (partitions.empty() || _live.count(broker_id) == 0) return false;
    proto::leader_and_isr_request request;
    request.controller_id = _config.node_id;
    request.controller_epoch = _controller_epoch;
    request.broker_epoch = _live.at(broker_id).epoch;
    std::set<int32_t> leaders;
    for (const auto& [name, index] : partitions) {
        auto topic = _controlled.find(name);
        if (topic == _controlled.end()) continue;
        auto state = topic->second.states.find(index);
        if (state == topic->second.states.end()) continue;
        if (request.topic_states.empty() || request.topic_states.back().topic_name != name) {
            request.topic_states.emplace_back();
            request.topic_states.back().topic_name = name;
            request.topic_states.back().topic_id = topic->second.assignment.id;
        }
        proto::leader_and_isr_request::leader_and_isr_partition_state p;
        p.partition_index = index;
        p.controller_epoch = state->second.controller_epoch;
        p.leader = state->second.leader;
        p.leader_epoch = state->second.leader_epoch;
        p.isr = state->second.isr;
        p.zk_version = state->second.zk_version;
        p.replicas = topic->second.assignment.partitions.at(index);
        request.topic_states.back().partition_states.push_back(std::move(p));
        if (state->second.leader >= 0) leaders.insert(state->second.leader);
    }
    for (int32_t leader : leaders) {
        auto found = _live.find(leader);
        if (found == _live.end()) continue;
        request.live_leaders.push_back({leader, found->second.host, found->second.port});
    }
    deliver<proto::leader_and_isr_response>(broker_id, request, 5, "LeaderAndIsr",
                                            &cluster_agent::apply_leader_and_isr,
                                            std::move(answered));
    return true;
}

proto::update_metadata_request cluster_agent::build_update_metadata() const {
    proto::update_metadata_request request;
    request.controller_id = _config.node_id;
    request.controller_epoch = _controller_epoch;
    for (const auto& [name, topic] : _controlled) {
        proto::update_metadata_request::update_metadata_topic_state out;
        out.topic_name = name;
        out.topic_id = topic.assignment.id;
        for (const auto& [index, replicas] : topic.assignment.partitions) {
            proto::update_metadata_request::update_metadata_partition_state p;
            p.partition_index = index;
            p.replicas = replicas;
            for (int32_t r : replicas)
                if (_live.count(r) == 0) p.offline_replicas.push_back(r);
            if (auto state = topic.states.find(index); state != topic.states.end()) {
                p.controller_epoch = state->second.controller_epoch;
                p.leader = state->second.leader;
                p.leader_epoch = state->second.leader_epoch;
                p.isr = state->second.isr;
                p.zk_version = state->second.zk_version;
            } else {
                p.leader = -1;  // not elected yet: no live replica
            }
            out.partition_states.push_back(std::move(p));
        }
        request.topic_states.push_back(std::move(out));
    }
    for (const auto& [id, broker] : _live) {
        proto::update_metadata_request::update_metadata_broker out;
        out.id = id;
        out.endpoints.push_back({broker.port, broker.host, "PLAINTEXT", 0});
        if (broker.rack) out.rack = *broker.rack;
        request.live_brokers.push_back(std::move(out));
    }
    return request;
}

void cluster_agent::send_update_metadata_to_all() {
    if (_update_metadata_held) return;  // send_held_requests sends it
    proto::update_metadata_request request = build_update_metadata();
    for (const auto& [id, broker] : _live) {
        request.broker_epoch = broker.epoch;
        deliver<proto::update_metadata_response>(id, request, 7, "UpdateMetadata",
                                                 &cluster_agent::apply_update_metadata);
    }
}

void cluster_agent::send_partition_changes(
    const std::vector<std::pair<std::string, int32_t>>& changed, bool leaders_first) {
    std::map<int32_t, std::vector<std::pair<std::string, int32_t>>> by_broker;  // replicas
    for (const auto& [name, index] : changed) {
        auto topic = _controlled.find(name);
        if (topic == _controlled.end()) continue;
        for (int32_t r : topic->second.assignment.partitions.at(index))
            by_broker[r].emplace_back(name, index);
    }
    if (leaders_first) {
        for (const auto& [id, partitions] : by_broker) {
            auto& held = _held_leader_and_isr[id];
            held.insert(held.end(), partitions.begin(), partitions.end());
        }
        tell_leaders_first(changed);
        return;
    }
    // New topics or partitions: a leader told only of its own would show a topic short of
    // partitions (and hash group ids over too few partitions of __consumer_offsets) until
    // UpdateMetadata, so every replica is told at once, as Kafka does.
    for (const auto& [id, partitions] : by_broker) send_leader_and_isr(id, partitions);
    send_update_metadata_to_all();
}

void cluster_agent::tell_leaders_first(
    const std::vector<std::pair<std::string, int32_t>>& changed) {
    // Kafka sends LeaderAndIsr to every replica and UpdateMetadata to every broker at once,
    // so a client can hear of a new leader from another broker (or a follower) before that
    // leader leads, and be refused by it (NOT_LEADER_OR_FOLLOWER; librdkafka before 2.3 can
    // then fail an idempotent producer for good, librdkafka#4438). Here each leader is first
    // told of the partitions it leads, alone; what is held (the replicas' LeaderAndIsr, every
    // broker's UpdateMetadata) goes once those leaders have answered (their shards lead by
    // then), or after update_metadata_hold_max. An old leader still alive leads on until
    // then; its acks=all writes cannot commit meanwhile (the new leader no longer fetches).
    std::map<int32_t, std::vector<std::pair<std::string, int32_t>>> led;
    for (const auto& [name, index] : changed) {
        auto topic = _controlled.find(name);
        if (topic == _controlled.end()) continue;
        auto state = topic->second.states.find(index);
        if (state != topic->second.states.end() && state->second.leader >= 0)
            led[state->second.leader].emplace_back(name, index);
    }
    if (!_update_metadata_held) _update_metadata_held_since = std::chrono::steady_clock::now();
    _update_metadata_held = true;
    for (const auto& [id, partitions] : led) {
        const uint64_t generation = _leader_answers_generation;
        if (send_leader_and_isr(id, partitions, [this, generation] {
                if (generation != _leader_answers_generation || _leader_answers_awaited == 0)
                    return;
                if (--_leader_answers_awaited == 0) send_held_requests();
            }))
            ++_leader_answers_awaited;
    }
    if (_leader_answers_awaited == 0) send_held_requests();
}

void cluster_agent::send_held_requests() {
    std::set<int32_t> full;
    full.swap(_held_full_state);
    std::map<int32_t, std::vector<std::pair<std::string, int32_t>>> held;
    held.swap(_held_leader_and_isr);
    // Each request is built from the partitions' states now, the newest.
    for (int32_t id : full) send_leader_and_isr(id, hosted_by(id));
    for (auto& [id, partitions] : held) {
        if (full.count(id) != 0) continue;
        std::sort(partitions.begin(), partitions.end());
        partitions.erase(std::unique(partitions.begin(), partitions.end()), partitions.end());
        send_leader_and_isr(id, partitions);
    }
    _update_metadata_held = false;
    send_update_metadata_to_all();
}

void cluster_agent::release_held_update_metadata() {
    if (!_update_metadata_held ||
        std::chrono::steady_clock::now() - _update_metadata_held_since < update_metadata_hold_max)
        return;
    net::log_warn(
        "cluster: %d leaders did not answer LeaderAndIsr within %lld ms; the other brokers "
        "are told without waiting for them",
        _leader_answers_awaited, static_cast<long long>(update_metadata_hold_max.count()));
    ++_leader_answers_generation;  // their answers, when they come, release nothing
    _leader_answers_awaited = 0;
    send_held_requests();
}

std::vector<std::pair<std::string, int32_t>> cluster_agent::hosted_by(int32_t broker_id) const {
    std::vector<std::pair<std::string, int32_t>> hosted;
    for (const auto& [name, topic] : _controlled)
        for (const auto& [index, replicas] : topic.assignment.partitions)
            if (has_broker(replicas, broker_id)) hosted.emplace_back(name, index);
    return hosted;
}

void cluster_agent::send_full_state(int32_t broker_id) {
    if (_update_metadata_held) {  // new leaders first: it goes with the held requests
        _held_full_state.insert(broker_id);
        return;
    }
    send_leader_and_isr(broker_id, hosted_by(broker_id));
    auto found = _live.find(broker_id);
    if (found == _live.end()) return;
    proto::update_metadata_request request = build_update_metadata();
    request.broker_epoch = found->second.epoch;
    deliver<proto::update_metadata_response>(broker_id, request, 7, "UpdateMetadata",
                                             &cluster_agent::apply_update_metadata);
}

void cluster_agent::rebalance_leaders_when_due() {
    const int32_t interval = _config.leader_imbalance_check_interval_seconds;
    if (interval <= 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (_next_preferred_election == std::chrono::steady_clock::time_point{})
        _next_preferred_election = now + std::chrono::seconds(interval);
    if (now < _next_preferred_election) return;
    _next_preferred_election = now + std::chrono::seconds(interval);
    auto changed = elect_preferred_leaders();
    if (!changed.empty()) send_partition_changes(changed);
}

void cluster_agent::retry_failed_brokers() {
    std::set<int32_t> pending;
    pending.swap(_needs_full_state);
    for (int32_t id : pending) {
        if (_live.count(id) == 0) continue;
        // Requests still on their way (a paused broker): retried once they are answered
        // or timed out, so they do not pile up on its connection.
        if (_requests_in_flight[id] > 0) {
            _needs_full_state.insert(id);
            continue;
        }
        send_full_state(id);
    }
}

void cluster_agent::on_brokers_changed() {
    std::map<int32_t, broker_registration> before = _live;
    read_brokers();
    for (auto it = _clients.begin(); it != _clients.end();)
        it = _live.count(it->first) == 0 ? _clients.erase(it) : std::next(it);
    auto changed = reconcile_all();
    if (!is_controller()) return;
    send_partition_changes(changed);  // includes UpdateMetadata to everyone
    // A broker that (re)registered learns everything it hosts, whatever changed.
    for (const auto& [id, broker] : _live) {
        auto old = before.find(id);
        if (old == before.end() || old->second.epoch != broker.epoch) {
            net::log_info("cluster: broker %d registered (%s:%d)", id, broker.host.c_str(),
                          broker.port);
            send_full_state(id);
        }
    }
    for (const auto& [id, broker] : before)
        if (_live.count(id) == 0) net::log_info("cluster: broker %d is gone", id);
    // A broker that left, or registered again, is no longer shutting down.
    std::erase_if(_shutting_down, [&](int32_t id) {
        auto now = _live.find(id);
        auto old = before.find(id);
        return now == _live.end() || old == before.end() || old->second.epoch != now->second.epoch;
    });
    on_delete_topics();  // deletions that waited for a broker may go on now
}

void cluster_agent::on_topics_changed() {
    std::set<std::string> before;
    for (const auto& entry : _controlled) before.insert(entry.first);
    read_topics();
    std::vector<std::pair<std::string, int32_t>> changed;
    for (const auto& entry : _controlled) {
        if (before.count(entry.first) != 0) continue;
        auto more = reconcile(entry.first);
        changed.insert(changed.end(), more.begin(), more.end());
    }
    if (!is_controller()) return;
    send_partition_changes(changed, /*leaders_first=*/false);
}

void cluster_agent::on_topic_changed(const std::string& name) {
    if (!read_topic(name)) return;
    auto changed = reconcile(name);
    if (!is_controller()) return;
    send_partition_changes(changed, /*leaders_first=*/false);
}

void cluster_agent::on_delete_topics() {
    auto names = _session->children(paths::delete_topics, true);
    if (!names || names->empty()) return;
    bool deleted = false;
    for (const std::string& name : *names) {
        auto topic = _controlled.find(name);
        if (topic != _controlled.end()) {
            // Kafka's rule: a topic whose replicas are not all live waits, so that every
            // broker deletes its data (a broker that missed the StopReplica would keep it);
            // the deletion resumes when the broker registers again.
            std::vector<int32_t> offline;
            for (const auto& [index, replicas] : topic->second.assignment.partitions)
                for (int32_t r : replicas)
                    if (_live.count(r) == 0 &&
                        std::find(offline.begin(), offline.end(), r) == offline.end())
                        offline.push_back(r);
            if (!offline.empty()) {
                net::log_info("cluster: deleting topic %s waits for broker %d to come back",
                              name.c_str(), offline.front());
                continue;
            }
            // Replicas stop serving and delete their logs first, then the znodes go.
            std::map<int32_t, proto::stop_replica_request> requests;
            for (const auto& [index, replicas] : topic->second.assignment.partitions) {
                for (int32_t r : replicas) {
                    auto& request = requests[r];
                    if (request.topic_states.empty()) {
                        request.controller_id = _config.node_id;
                        request.controller_epoch = _controller_epoch;
                        request.topic_states.emplace_back();
                        request.topic_states.back().topic_name = name;
                    }
                    request.topic_states.back().partition_states.push_back({index, -1, true});
                }
            }
            for (auto& [id, request] : requests) {
                auto live = _live.find(id);
                if (live == _live.end()) continue;  // its logs go when it learns the topic is gone
                request.broker_epoch = live->second.epoch;
                deliver<proto::stop_replica_response>(id, request, 3, "StopReplica",
                                                      &cluster_agent::apply_stop_replica);
            }
            _controlled.erase(topic);
        }
        (void)_session->remove_recursive(paths::topic(name));
        (void)_session->remove(paths::topic_config(name));
        (void)_session->remove(paths::delete_topics + "/" + name);
        net::log_info("cluster: topic %s deleted", name.c_str());
        deleted = true;
    }
    if (!deleted) return;
    // The topics' own watches fire on deletion; the list is re-read when they do.
    (void)_session->children(paths::topics, true);
    send_update_metadata_to_all();
}

}  // namespace spate::broker::cluster
