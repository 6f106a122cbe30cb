// cluster_agent: session, registration, election, and what the controller tells us.
#include "broker/cluster/agent.h"

#include <algorithm>
#include <chrono>

#include "net/clock.h"
#include "net/log.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;

// The znodes every broker may need; Kafka creates the same persistent paths at start.
const std::vector<std::string> persistent_paths = {
    paths::broker_ids,     paths::topics,        "/cluster", paths::topic_configs,
    paths::config_changes, paths::delete_topics, "/admin",
};

std::string session_text(int64_t id) {
    char text[32];
    std::snprintf(text, sizeof(text), "0x%llx", static_cast<unsigned long long>(id));
    return text;
}

// std::hash of the name plus the index, over the shards: the same spread as a single
// node's metadata_store::owner_for, so a topic's partitions land on every shard.
uint32_t owner_shard(const std::string& name, int32_t index, uint32_t shards) {
    const size_t start = std::hash<std::string>{}(name);
    return static_cast<uint32_t>((start + static_cast<size_t>(index)) % std::max(shards, 1u));
}

}  // namespace

cluster_agent::cluster_agent(agent_config config, snapshot_publisher publish)
    : _config(std::move(config)), _publish(std::move(publish)) {}

cluster_agent::~cluster_agent() { stop(); }

result<void> cluster_agent::start() {
    if (auto opened = open_session(); !opened) return opened;
    if (auto registered = register_broker(); !registered) return registered;
    net::log_info(
        "cluster: broker %d registered in ZooKeeper at %s (cluster id %s, epoch %lld, "
        "session timeout %d ms)",
        _config.node_id, _config.zookeeper_connect.c_str(), _cluster_id.c_str(),
        static_cast<long long>(_broker_epoch), _session->negotiated_timeout_ms());
    _thread = std::thread([this] { run(); });
    submit([this] {
        elect();
        refresh_topic_configs();
    });
    return {};
}

void cluster_agent::stop() {
    {
        std::lock_guard<std::mutex> lock(_mutex);
        if (_stopping && !_thread.joinable()) return;
        _stopping = true;
    }
    _wake.notify_all();
    if (_thread.joinable()) _thread.join();
    // Closing the session removes the registration (and /controller, if ours) at once, so
    // the others notice now rather than after the session timeout.
    _session.reset();
}

void cluster_agent::submit(std::function<void()> work) {
    {
        std::lock_guard<std::mutex> lock(_mutex);
        _tasks.push_back(std::move(work));
    }
    _wake.notify_one();
}

void cluster_agent::run() {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock<std::mutex> lock(_mutex);
            // A second's wait: the controller retries brokers its requests did not reach.
            _wake.wait_for(lock, std::chrono::seconds(1),
                           [this] { return _stopping || !_tasks.empty(); });
            if (_stopping) return;
            if (!_tasks.empty()) {
                task = std::move(_tasks.front());
                _tasks.pop_front();
            }
        }
        if (task) task();
        // Once a second whatever the load: a busy agent must not starve these.
        const auto now = std::chrono::steady_clock::now();
        if (now < _next_tick) continue;
        _next_tick = now + std::chrono::seconds(1);
        if (_session && _session->expired()) {
            renew_session();
        } else if (is_controller()) {
            retry_failed_brokers();
            release_held_update_metadata();
            rebalance_leaders_when_due();
        }
    }
}

void cluster_agent::on_zk_event(const zk_event& event) {
    submit([this, event] { handle_event(event); });
}

void cluster_agent::handle_event(const zk_event& event) {
    if (event.type == ZOO_SESSION_EVENT) {
        if (event.state == ZOO_EXPIRED_SESSION_STATE) {
            renew_session();
        } else if (event.state == ZOO_CONNECTING_STATE) {
            net::log_warn(
                "cluster: lost the connection to ZooKeeper at %s; reconnecting (the "
                "session survives %d ms)",
                _config.zookeeper_connect.c_str(),
                _session ? _session->negotiated_timeout_ms() : _config.session_timeout_ms);
        } else if (event.state == ZOO_CONNECTED_STATE) {
            net::log_info("cluster: connected to ZooKeeper at %s",
                          _config.zookeeper_connect.c_str());
        }
        return;
    }
    if (event.path == paths::controller) {
        elect();
    } else if (event.path == paths::config_changes) {
        refresh_topic_configs();
    } else if (!is_controller()) {
        return;  // a watch the controller set before it resigned
    } else if (event.path == paths::broker_ids) {
        on_brokers_changed();
    } else if (event.path == paths::topics) {
        on_topics_changed();
    } else if (event.path == paths::delete_topics) {
        on_delete_topics();
    } else if (event.path == paths::reassign_partitions) {
        on_reassign_partitions();
    } else if (event.path.rfind(paths::topics + "/", 0) == 0) {
        const std::string name = event.path.substr(paths::topics.size() + 1);
        if (name.find('/') == std::string::npos) on_topic_changed(name);
    }
}

result<void> cluster_agent::open_session() {
    auto session = zk_session::connect(_config.zookeeper_connect, _config.session_timeout_ms,
                                       _config.connect_timeout_ms,
                                       [this](zk_event event) { on_zk_event(event); });
    if (!session) return session.failure();
    _session = std::move(session.value());
    for (const std::string& path : persistent_paths)
        if (auto made = _session->ensure_path(path); !made) return made;
    // The cluster id: the first broker ever creates it, everyone else reads it.
    auto existing = _session->get(paths::cluster_id);
    if (!existing && existing.failure().code == ZNONODE) {
        const std::string id = uuid_to_base64(random_uuid());
        auto made = _session->create(paths::cluster_id, encode_cluster_id(id));
        if (!made && made.failure().code != ZNODEEXISTS) return made.failure();
        existing = _session->get(paths::cluster_id);
    }
    if (!existing) return existing.failure();
    auto id = decode_cluster_id(existing->data);
    if (!id) return error{-1, "/cluster/id: " + id.failure().message};
    _cluster_id = *id;
    return {};
}

result<void> cluster_agent::register_broker() {
    broker_registration self;
    self.id = _config.node_id;
    self.host = _config.host;
    self.port = _config.port;
    self.rack = _config.rack;
    self.timestamp_ms = net::wall_clock_ms();
    const std::string path = paths::broker(_config.node_id);
    // After a kill -9 the previous process's registration stays until its session times
    // out: wait that long for it to go before calling the id taken.
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(_config.session_timeout_ms + 2000);
    for (;;) {
        auto made = _session->create(path, encode_broker(self), ZOO_EPHEMERAL);
        if (made) break;
        if (made.failure().code != ZNODEEXISTS) return made.failure();
        auto stat = _session->exists(path);
        if (!stat) return stat.failure();
        if (*stat && (*stat)->ephemeralOwner == _session->session_id()) break;  // ours
        if (std::chrono::steady_clock::now() > deadline)
            return error{ZNODEEXISTS,
                         "broker id " + std::to_string(_config.node_id) +
                             " is already registered in ZooKeeper by a live broker (session " +
                             session_text(*stat ? (*stat)->ephemeralOwner : 0) +
                             "): give this broker another node_id"};
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    auto stat = _session->exists(path);
    if (!stat || !*stat) return error{-1, "registration " + path + " vanished at once"};
    _broker_epoch = (*stat)->czxid;
    return {};
}

void cluster_agent::renew_session() {
    net::log_warn("cluster: ZooKeeper session expired; opening a new one and registering again");
    resign();
    _session.reset();
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(_mutex);
            if (_stopping) return;
        }
        auto opened = open_session();
        if (opened) opened = register_broker();
        if (opened) break;
        net::log_warn("cluster: %s; retrying in a second", opened.failure().message.c_str());
        _session.reset();
        std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    net::log_info("cluster: broker %d registered again (epoch %lld)", _config.node_id,
                  static_cast<long long>(_broker_epoch));
    elect();
    refresh_topic_configs();
}

void cluster_agent::elect() {
    if (!_session) return;
    auto current = _session->get(paths::controller, true);
    if (current) {
        auto id = decode_controller(current->data);
        const int32_t controller = id ? *id : -1;
        if (controller != _config.node_id && is_controller()) resign();
        if (controller != _controller_id) {
            _controller_id = controller;
            publish();
        }
        return;
    }
    if (current.failure().code != ZNONODE) {
        net::log_warn("cluster: reading /controller: %s", current.failure().message.c_str());
        return;
    }
    auto made = _session->create(
        paths::controller, encode_controller(_config.node_id, net::wall_clock_ms()), ZOO_EPHEMERAL);
    if (!made) {
        // Someone else won (or the session is in trouble): watch the winner instead.
        (void)_session->exists(paths::controller, true);
        auto winner = _session->get(paths::controller, true);
        if (winner) {
            auto id = decode_controller(winner->data);
            _controller_id = id ? *id : -1;
            publish();
        }
        return;
    }
    // Won: bump /controller_epoch with a version check, so two winners in a row (one of
    // them a zombie) never share an epoch.
    for (;;) {
        auto epoch_node = _session->get(paths::controller_epoch);
        if (!epoch_node && epoch_node.failure().code == ZNONODE) {
            auto created = _session->create(paths::controller_epoch, "0");
            if (!created && created.failure().code != ZNODEEXISTS) return;
            continue;
        }
        if (!epoch_node) return;
        const int32_t epoch = std::atoi(epoch_node->data.c_str()) + 1;
        auto written =
            _session->set(paths::controller_epoch, std::to_string(epoch), epoch_node->stat.version);
        if (!written && written.failure().code == ZBADVERSION) continue;
        if (!written) return;
        _controller_id = _config.node_id;
        become_controller(epoch, epoch_node->stat.version + 1);
        return;
    }
}

bool cluster_agent::read_topic_config(const std::string& name) {
    topic_configs configs;
    if (auto node = _session->get(paths::topic_config(name)); node) {
        auto decoded = decode_topic_config(node->data);
        if (decoded) configs = *decoded;
    }
    auto& known = _topic_configs[name];
    if (known == configs) return false;
    known = std::move(configs);
    return true;
}

void cluster_agent::refresh_topic_configs() {
    if (!_session) return;
    auto changes = _session->children(paths::config_changes, true);  // re-arms the watch
    if (!changes) return;
    std::sort(changes->begin(), changes->end());  // sequence numbers sort as text
    std::set<std::string> named;
    bool everything = _last_config_change.empty();
    for (const std::string& change : *changes) {
        if (change <= _last_config_change) continue;
        auto node = _session->get(paths::config_changes + "/" + change);
        if (!node) continue;
        if (auto topic = decode_config_change(node->data)) named.insert(*topic);
    }
    if (!changes->empty()) _last_config_change = changes->back();
    bool changed = false;
    for (const auto& [name, topic] : _topics)
        if (everything || named.count(name) != 0) changed |= read_topic_config(name);
    if (changed) publish();
}

void cluster_agent::publish(std::function<void()> installed) {
    auto next = std::make_shared<metadata_snapshot>();
    next->clustered = true;
    next->controller_id = _controller_id;
    next->cluster_id = _cluster_id;
    next->brokers = _brokers;
    next->deleting = std::move(_deleting);
    _deleting.clear();
    for (const auto& [name, index] : _deleting_partitions)
        next->deleting_partitions[{name, index}] = owner_shard(name, index, _config.shard_count);
    _deleting_partitions.clear();
    for (const auto& [name, known] : _topics) {
        auto topic = std::make_shared<topic_info>();
        topic->name = name;
        topic->id = known.id;
        topic->replicas = known.partitions;
        topic->partition_shards.assign(known.partitions.size(), not_hosted);
        topic->hosted_shards.assign(known.partitions.size(), not_hosted);
        for (const std::set<int32_t>* hosted : {&known.led, &known.followed})
            for (int32_t index : *hosted) {
                if (index < 0 || static_cast<size_t>(index) >= known.partitions.size()) continue;
                const uint32_t shard = owner_shard(name, index, _config.shard_count);
                topic->hosted_shards[static_cast<size_t>(index)] = shard;
                if (hosted == &known.led)
                    topic->partition_shards[static_cast<size_t>(index)] = shard;
            }
        if (auto configs = _topic_configs.find(name); configs != _topic_configs.end())
            topic->configs = configs->second;
        next->topics.emplace(name, std::move(topic));
    }
    _publish(
        std::move(next), installed ? std::move(installed) : [] {});
}

bool cluster_agent::stale(int32_t controller_epoch, int64_t broker_epoch, error_code& code) {
    if (controller_epoch < _latest_controller_epoch) {
        code = error_code::stale_controller_epoch;
        return true;
    }
    // -1: a sender that does not know our epoch; anything else must be this registration.
    if (broker_epoch != -1 && broker_epoch < _broker_epoch) {
        code = error_code::stale_broker_epoch;
        return true;
    }
    _latest_controller_epoch = controller_epoch;
    return false;
}

void cluster_agent::apply_update_metadata(
    const proto::update_metadata_request& request,
    std::function<void(proto::update_metadata_response)> done) {
    if (refuse_stale<proto::update_metadata_response>(request, done)) return;
    proto::update_metadata_response response;
    _controller_id = request.controller_id;
    _brokers.clear();
    for (const auto& live : request.live_brokers) {
        if (live.endpoints.empty()) continue;
        _brokers.push_back({live.id, live.endpoints.front().host, live.endpoints.front().port,
                            live.rack ? std::optional<std::string>(*live.rack) : std::nullopt});
    }
    // Every UpdateMetadata spate's controller sends is complete: a topic it leaves out is
    // gone (Kafka's are deltas with a deletion marker; a whole view is simpler to trust).
    std::set<std::string> named;
    std::vector<std::string> new_topics;
    for (const auto& topic : request.topic_states) {
        named.insert(topic.topic_name);
        auto [entry, inserted] = _topics.try_emplace(topic.topic_name);
        if (inserted || _topic_configs.count(topic.topic_name) == 0)
            new_topics.push_back(topic.topic_name);
        known_topic& known = entry->second;
        if (known.id != topic.topic_id) {  // re-created under the same name
            known.led.clear();
            known.followed.clear();
        }
        known.id = topic.topic_id;
        for (const auto& p : topic.partition_states) {
            if (p.partition_index < 0) continue;
            if (static_cast<size_t>(p.partition_index) >= known.partitions.size())
                known.partitions.resize(static_cast<size_t>(p.partition_index) + 1);
            partition_replicas& out = known.partitions[static_cast<size_t>(p.partition_index)];
            out.leader = p.leader;
            out.leader_epoch = p.leader_epoch;
            out.replicas = p.replicas;
            out.isr = p.isr;
            out.partition_epoch = p.zk_version;
            out.offline = p.offline_replicas;
        }
    }
    for (auto it = _topics.begin(); it != _topics.end();)
        it = named.count(it->first) != 0 ? std::next(it) : _topics.erase(it);
    for (const std::string& name : new_topics) (void)read_topic_config(name);
    publish([done, response] { done(response); });
}

void cluster_agent::apply_leader_and_isr(const proto::leader_and_isr_request& request,
                                         std::function<void(proto::leader_and_isr_response)> done) {
    if (refuse_stale<proto::leader_and_isr_response>(request, done)) return;
    proto::leader_and_isr_response response;
    for (const auto& topic : request.topic_states) {
        known_topic& known = _topics[topic.topic_name];
        if (known.id != topic.topic_id) {
            known = known_topic{};
            known.id = topic.topic_id;
        }
        proto::leader_and_isr_response::leader_and_isr_topic_error errors;
        errors.topic_id = topic.topic_id;
        for (const auto& p : topic.partition_states) {
            proto::leader_and_isr_response::leader_and_isr_partition_error outcome;
            outcome.partition_index = p.partition_index;
            if (p.partition_index < 0) continue;
            if (static_cast<size_t>(p.partition_index) >= known.partitions.size())
                known.partitions.resize(static_cast<size_t>(p.partition_index) + 1);
            partition_replicas& out = known.partitions[static_cast<size_t>(p.partition_index)];
            // An older leader epoch than one already applied is a delayed request: Kafka
            // ignores it too (the same epoch is a resend and harmless).
            if (p.leader_epoch < out.leader_epoch && !out.replicas.empty()) {
                outcome.error_code = proto::code(error_code::stale_controller_epoch);
                errors.partition_errors.push_back(outcome);
                continue;
            }
            out.leader = p.leader;
            out.leader_epoch = p.leader_epoch;
            out.replicas = p.replicas;
            out.isr = p.isr;
            out.partition_epoch = p.zk_version;
            if (p.leader == _config.node_id)
                known.led.insert(p.partition_index);
            else
                known.led.erase(p.partition_index);
            // A replica led elsewhere is followed here: its log stays open and fetches.
            const bool follows = p.leader != _config.node_id &&
                                 std::find(p.replicas.begin(), p.replicas.end(), _config.node_id) !=
                                     p.replicas.end();
            if (follows)
                known.followed.insert(p.partition_index);
            else
                known.followed.erase(p.partition_index);
            errors.partition_errors.push_back(outcome);
        }
        response.topics.push_back(std::move(errors));
    }
    publish([done, response] { done(response); });
}

void cluster_agent::apply_stop_replica(const proto::stop_replica_request& request,
                                       std::function<void(proto::stop_replica_response)> done) {
    if (refuse_stale<proto::stop_replica_response>(request, done)) return;
    proto::stop_replica_response response;
    for (const auto& topic : request.topic_states) {
        auto known = _topics.find(topic.topic_name);
        // A topic's deletion comes without a leader epoch (-1, or Kafka's -2 "during
        // delete"); a replica moved away by a reassignment is deleted under its current
        // leader epoch, and its topic stays.
        bool deleting = !topic.partition_states.empty();
        for (const auto& p : topic.partition_states) {
            deleting &= p.delete_partition && p.leader_epoch < 0;
            if (known != _topics.end()) {
                known->second.led.erase(p.partition_index);
                known->second.followed.erase(p.partition_index);
                if (p.delete_partition && p.leader_epoch >= 0)
                    _deleting_partitions.emplace(known->first, p.partition_index);
            }
            response.partition_errors.push_back({topic.topic_name, p.partition_index, 0});
        }
        // The topic deleted (the controller sends each broker only the partitions it
        // hosts): it leaves the snapshot, and the shards remove its logs.
        if (deleting && known != _topics.end()) {
            _deleting.insert(known->first);
            _topic_configs.erase(known->first);
            _topics.erase(known);
        }
    }
    publish([done, response] { done(response); });
}

}  // namespace spate::broker::cluster
