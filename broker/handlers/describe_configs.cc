// DescribeConfigs (32): a topic's effective configs (its overrides and the broker
// defaults), or the broker's own settings. Other resource types get INVALID_REQUEST.
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::describe_configs_response;
constexpr int8_t resource_topic = 2;
constexpr int8_t resource_broker = 4;
constexpr int8_t source_topic = 1;
constexpr int8_t source_static_broker = 4;
constexpr int8_t source_default = 5;

void add_configs(const std::vector<described_config>& configs,
                 const std::optional<std::vector<std::string>>& keys, bool is_topic,
                 response_type::describe_configs_result& out) {
    for (const described_config& c : configs) {
        if (keys && std::find(keys->begin(), keys->end(), c.name) == keys->end()) continue;
        response_type::describe_configs_resource_result item;
        item.name = c.name;
        item.value = c.value;
        item.read_only = c.read_only;
        item.is_default = c.is_default;
        item.config_source =
            !is_topic ? source_static_broker : (c.is_default ? source_default : source_topic);
        item.is_sensitive = false;
        out.configs.push_back(std::move(item));
    }
}

}  // namespace

void handle_describe_configs(request_ptr req) {
    proto::describe_configs_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeConfigs request");
        return;
    }
    shard_state& shard = *req->shard;
    response_type response;
    for (const auto& resource : body.resources) {
        response_type::describe_configs_result out;
        out.resource_type = resource.resource_type;
        out.resource_name = resource.resource_name;
        if (resource.resource_type == resource_topic) {
            const topic_info* topic = shard.metadata()->find(resource.resource_name);
            if (topic == nullptr) {
                out.error_code = proto::code(error_code::unknown_topic_or_partition);
                out.error_message = "topic \"" + resource.resource_name + "\" does not exist";
            } else {
                add_configs(describe_topic_configs(shard.config(), topic->configs),
                            resource.configuration_keys, true, out);
            }
        } else if (resource.resource_type == resource_broker) {
            if (!resource.resource_name.empty() &&
                resource.resource_name != std::to_string(shard.config().node_id)) {
                out.error_code = proto::code(error_code::invalid_request);
                out.error_message = "unknown broker " + resource.resource_name;
            } else {
                add_configs(describe_broker_configs(shard.config()), resource.configuration_keys,
                            false, out);
            }
        } else {
            out.error_code = proto::code(error_code::invalid_request);
            out.error_message =
                "resource type " + std::to_string(resource.resource_type) + " is not supported";
        }
        response.results.push_back(std::move(out));
    }
    shard.respond(*req, response);
}

}  // namespace spate::broker
