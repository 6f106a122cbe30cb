#include "tools/cluster.h"

#include <algorithm>

#include "proto/error_code.h"
#include "tools/format.h"

namespace spate::tools {

cluster::cluster(broker_connection bootstrap, int32_t timeout_ms)
    : _bootstrap(std::make_unique<broker_connection>(std::move(bootstrap))),
      _timeout_ms(timeout_ms) {}

result<cluster> cluster::connect(const global_options& global) {
    auto connection = broker_connection::open_any(global.bootstrap, global.timeout_ms);
    if (!connection) return connection.failure();
    return cluster(std::move(connection.value()), global.timeout_ms);
}

result<std::vector<std::pair<int16_t, topic_layout>>> cluster::metadata(
    const std::vector<std::string>& names) {
    auto version = _bootstrap->version_for<proto::metadata_request>();
    if (!version) return version.failure();
    proto::metadata_request request;
    // v0 asks for every topic with an empty list, later versions with a null one.
    if (!names.empty() || version.value() == 0) request.topics.emplace();
    for (const auto& name : names) {
        proto::metadata_request::metadata_request_topic topic;
        topic.name = name;
        request.topics->push_back(std::move(topic));
    }
    // An admin tool must never create a topic by asking about it.
    request.allow_auto_topic_creation = false;
    proto::metadata_response response;
    std::vector<uint8_t> frame;
    auto called = _bootstrap->call(request, version.value(), response, frame);
    if (!called) return called.failure();
    for (const auto& broker : response.brokers)
        _brokers[broker.node_id] = endpoint{broker.host, static_cast<uint16_t>(broker.port)};
    std::vector<std::pair<int16_t, topic_layout>> out;
    for (auto& topic : response.topics) {
        topic_layout layout;
        layout.name = topic.name.value_or("");
        layout.topic_id = topic.topic_id;
        for (auto& partition : topic.partitions) {
            layout.partitions.push_back(partition_layout{
                partition.partition_index, partition.leader_id, partition.error_code,
                std::move(partition.replica_nodes), std::move(partition.isr_nodes)});
        }
        std::sort(layout.partitions.begin(), layout.partitions.end(),
                  [](const auto& a, const auto& b) { return a.partition < b.partition; });
        out.emplace_back(topic.error_code, std::move(layout));
    }
    return out;
}

result<broker_connection*> cluster::controller() {
    auto version = _bootstrap->version_for<proto::metadata_request>();
    if (!version) return version.failure();
    if (version.value() < 1) return error{1, "the broker's Metadata does not name a controller"};
    proto::metadata_request request;
    request.topics.emplace();  // no topics: only the brokers and the controller
    request.allow_auto_topic_creation = false;
    proto::metadata_response response;
    std::vector<uint8_t> frame;
    auto called = _bootstrap->call(request, version.value(), response, frame);
    if (!called) return called.failure();
    for (const auto& broker : response.brokers)
        _brokers[broker.node_id] = endpoint{broker.host, static_cast<uint16_t>(broker.port)};
    if (response.controller_id < 0) return error{1, "the cluster has no controller right now"};
    return leader(response.controller_id);
}

result<topic_layout> cluster::topic(const std::string& name) {
    auto topics = metadata({name});
    if (!topics) return topics.failure();
    for (auto& [code, layout] : topics.value()) {
        if (layout.name != name) continue;
        if (code != 0) return error{1, describe_topic_error(name, code, std::nullopt)};
        if (layout.partitions.empty()) return error{1, "topic \"" + name + "\" has no partitions"};
        return std::move(layout);
    }
    return error{
        1, describe_topic_error(name, proto::code(proto::error_code::unknown_topic_or_partition),
                                std::nullopt)};
}

std::optional<endpoint> cluster::address_of(int32_t node_id) const {
    const auto found = _brokers.find(node_id);
    if (found == _brokers.end()) return std::nullopt;
    return found->second;
}

result<broker_connection*> cluster::leader(int32_t node_id) {
    const auto open = _leaders.find(node_id);
    if (open != _leaders.end()) return open->second.get();
    const auto address = address_of(node_id);
    if (!address) return error{1, "no address known for broker " + std::to_string(node_id)};
    // The bootstrap connection doubles as the leader's when it points at the same broker
    // (the common single-broker case), saving a connection and a negotiation.
    if (*address == _bootstrap->where()) return _bootstrap.get();
    auto connection = broker_connection::open(*address, _timeout_ms);
    if (!connection) return connection.failure();
    auto owned = std::make_unique<broker_connection>(std::move(connection.value()));
    broker_connection* pointer = owned.get();
    _leaders.emplace(node_id, std::move(owned));
    return pointer;
}

}  // namespace spate::tools
