// IncrementalAlterConfigs (44): SET / DELETE of topic configs the broker honours (the
// table in topic_config.cc); APPEND/SUBTRACT apply to list configs, of which spate has
// none, so they are INVALID_CONFIG. Broker configs are static (set in the TOML file).
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::incremental_alter_configs_response;
constexpr int8_t resource_topic = 2;
constexpr int8_t resource_broker = 4;
constexpr int8_t op_set = 0;
constexpr int8_t op_delete = 1;

struct alteration {
    size_t slot;
    std::string topic;
    std::vector<std::pair<std::string, std::optional<std::string>>> changes;  // nullopt: delete
};

shard_state::metadata_step alter_step(std::shared_ptr<response_type> response, alteration plan) {
    const size_t slot = plan.slot;
    return {[plan = std::move(plan)](metadata_store& store) -> result<snapshot_ptr> {
                const topic_info* topic = store.snapshot()->find(plan.topic);
                if (topic == nullptr)
                    return error{proto::code(error_code::unknown_topic_or_partition),
                                 "topic \"" + plan.topic + "\" does not exist"};
                topic_configs configs = topic->configs;
                for (const auto& [name, value] : plan.changes) {
                    if (value)
                        configs[name] = *value;
                    else
                        configs.erase(name);
                }
                return store.set_topic_configs(plan.topic, configs);
            },
            [response, slot](result<snapshot_ptr> altered) {
                if (altered) return;
                auto& out = response->responses[slot];
                // A Kafka code: the step's own refusal or the store's (metadata.h).
                out.error_code = static_cast<int16_t>(altered.failure().code);
                out.error_message = altered.failure().message;
            }};
}

// In a cluster: the agent changes /config/topics/<t> and notifies every broker; the
// answer waits, up to 5 s, until this broker serves the new configs.
void alter_in_cluster(request_ptr req, std::shared_ptr<response_type> response,
                      std::vector<alteration> plans) {
    struct outcome {
        cluster::admin_outcome done;
        topic_configs configs;
    };
    using outcomes = std::vector<outcome>;
    auto shared = std::make_shared<const std::vector<alteration>>(std::move(plans));
    ask_cluster_agent<outcomes>(
        std::move(req),
        [shared](cluster::cluster_agent& agent) {
            outcomes out;
            for (const alteration& a : *shared) {
                outcome o;
                o.done = agent.alter_topic_configs(a.topic, a.changes, o.configs);
                out.push_back(std::move(o));
            }
            return out;
        },
        [response, shared](request_ptr req, outcomes done) {
            auto expected = std::make_shared<std::vector<std::pair<std::string, topic_configs>>>();
            for (size_t i = 0; i < done.size(); ++i) {
                auto& out = response->responses[(*shared)[i].slot];
                if (done[i].done.code != error_code::none) {
                    out.error_code = proto::code(done[i].done.code);
                    out.error_message = done[i].done.message;
                } else {
                    expected->emplace_back((*shared)[i].topic, std::move(done[i].configs));
                }
            }
            auto applied = [expected](const metadata_snapshot& snapshot) {
                for (const auto& [name, configs] : *expected) {
                    const topic_info* topic = snapshot.find(name);
                    if (topic != nullptr && topic->configs != configs) return false;
                }
                return true;
            };
            await_metadata(*req->shard, applied,
                           std::chrono::steady_clock::now() + std::chrono::seconds(5),
                           [req, response](bool) { req->shard->respond(*req, *response); });
        });
}

}  // namespace

void handle_incremental_alter_configs(request_ptr req) {
    proto::incremental_alter_configs_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed IncrementalAlterConfigs request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<response_type>();
    std::vector<shard_state::metadata_step> steps;
    const bool clustered = shard.owner().cluster() != nullptr;
    std::vector<alteration> cluster_plans;
    for (const auto& resource : body.resources) {
        response_type::alter_configs_resource_response out;
        out.resource_type = resource.resource_type;
        out.resource_name = resource.resource_name;
        auto fail = [&](error_code code, std::string message) {
            out.error_code = proto::code(code);
            out.error_message = std::move(message);
        };
        alteration plan{response->responses.size(), resource.resource_name, {}};
        if (resource.resource_type == resource_broker) {
            fail(error_code::invalid_request,
                 "broker configs are static in spate: set them in the TOML file");
        } else if (resource.resource_type != resource_topic) {
            fail(error_code::invalid_request, "unsupported resource type");
        } else if (shard.metadata()->find(resource.resource_name) == nullptr) {
            fail(error_code::unknown_topic_or_partition, "topic does not exist");
        } else {
            for (const auto& config : resource.configs) {
                if (config.config_operation == op_set) {
                    auto valid = validate_topic_config(config.name, config.value.value_or(""));
                    if (!valid) {
                        fail(error_code::invalid_config, valid.failure().message);
                        break;
                    }
                    plan.changes.emplace_back(config.name, config.value.value_or(""));
                } else if (config.config_operation == op_delete) {
                    plan.changes.emplace_back(config.name, std::nullopt);
                } else {
                    fail(error_code::invalid_config,
                         "config \"" + config.name +
                             "\" is not a list: APPEND/SUBTRACT do not apply");
                    break;
                }
            }
        }
        if (out.error_code == 0 && !body.validate_only && !plan.changes.empty()) {
            if (clustered)
                cluster_plans.push_back(std::move(plan));
            else
                steps.push_back(alter_step(response, std::move(plan)));
        }
        response->responses.push_back(std::move(out));
    }
    if (clustered) {
        alter_in_cluster(std::move(req), response, std::move(cluster_plans));
        return;
    }
    shard.change_metadata_in_order(std::move(steps),
                                   [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
