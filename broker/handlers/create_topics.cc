// CreateTopics (19): validates names, partition counts, the replication factor (1, or -1
// for the default, on a single node), replica assignments and configs, then creates
// the topics one by one through the controller (shard 0). validate_only checks without
// creating. v5+ answers with the effective configs. Topics that would take the broker
// past partitions_max are refused with POLICY_VIOLATION before anything is created.
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::create_topics_response;

struct topic_plan {
    size_t slot;
    std::string name;
    int32_t partitions;
    topic_configs configs;
    int32_t replication_factor = 1;                       // in a cluster
    std::map<int32_t, std::vector<int32_t>> assignments;  // in a cluster, when given
};

void fill_success(const shard_state& shard, const topic_plan& plan, const topic_info* created,
                  response_type::creatable_topic_result& out) {
    out.error_code = 0;
    out.num_partitions = plan.partitions;
    out.replication_factor = plan.replication_factor;
    if (created != nullptr) out.topic_id = created->id;
    out.configs.emplace();
    for (const auto& entry : describe_topic_configs(shard.config(), plan.configs)) {
        response_type::creatable_topic_configs c;
        c.name = entry.name;
        c.value = entry.value;
        c.read_only = entry.read_only;
        c.config_source = entry.is_default ? 5 : 1;  // DEFAULT_CONFIG : TOPIC_CONFIG
        c.is_sensitive = false;
        out.configs->push_back(std::move(c));
    }
}

shard_state::metadata_step create_step(shard_state& shard, std::shared_ptr<response_type> response,
                                       topic_plan plan) {
    auto shared_plan = std::make_shared<const topic_plan>(std::move(plan));
    return {[shared_plan](metadata_store& store) -> result<snapshot_ptr> {
                const topic_plan& p = *shared_plan;
                if (store.snapshot()->find(p.name) != nullptr)
                    return error{proto::code(error_code::topic_already_exists),
                                 "topic \"" + p.name + "\" already exists"};
                return store.create_topic(p.name, p.partitions, p.configs);
            },
            [&shard, response, shared_plan](result<snapshot_ptr> created) {
                const topic_plan& p = *shared_plan;
                auto& out = response->topics[p.slot];
                if (!created) {
                    // A Kafka code: the step's own refusal or the store's (metadata.h).
                    out.error_code = static_cast<int16_t>(created.failure().code);
                    out.error_message = created.failure().message;
                } else {
                    fill_success(shard, p, created.value()->find(p.name), out);
                }
            }};
}

// In a cluster: the agent writes each topic's znodes (broker/cluster/admin.cc), then the
// answer waits, up to the request's timeout, until the controller's metadata with the
// elected leaders reached this broker, so a client may produce at once (Kafka does too).
void create_in_cluster(request_ptr req, std::shared_ptr<response_type> response,
                       std::vector<topic_plan> plans, bool validate_only, int32_t timeout_ms) {
    using outcomes = std::vector<cluster::admin_outcome>;
    auto shared_plans = std::make_shared<const std::vector<topic_plan>>(std::move(plans));
    ask_cluster_agent<outcomes>(
        std::move(req),
        [shared_plans, validate_only](cluster::cluster_agent& agent) {
            outcomes out;
            for (const topic_plan& p : *shared_plans)
                out.push_back(agent.create_topic(p.name, p.partitions, p.replication_factor,
                                                 p.assignments, p.configs, validate_only));
            return out;
        },
        [response, shared_plans, timeout_ms, validate_only](request_ptr req, outcomes done) {
            auto created = std::make_shared<std::vector<std::string>>();
            for (size_t i = 0; i < done.size(); ++i) {
                const topic_plan& p = (*shared_plans)[i];
                auto& out = response->topics[p.slot];
                if (done[i].code != error_code::none) {
                    out.error_code = proto::code(done[i].code);
                    out.error_message = done[i].message;
                    continue;
                }
                fill_success(*req->shard, p, nullptr, out);
                if (!validate_only) created->push_back(p.name);
            }
            auto elected = [created](const metadata_snapshot& snapshot) {
                for (const std::string& name : *created)
                    if (!leaders_known(snapshot, name)) return false;
                return true;
            };
            await_metadata(*req->shard, elected, deadline_after(timeout_ms),
                           [req, response, created, shared_plans](bool in_time) {
                               for (const topic_plan& p : *shared_plans) {
                                   auto& out = response->topics[p.slot];
                                   if (out.error_code != 0) continue;
                                   const topic_info* topic = req->shard->metadata()->find(p.name);
                                   if (topic != nullptr) out.topic_id = topic->id;
                                   if (!in_time && !created->empty())
                                       out.error_message =
                                           "created; leaders not yet known to this broker";
                               }
                               req->shard->respond(*req, *response);
                           });
        });
}

}  // namespace

void handle_create_topics(request_ptr req) {
    proto::create_topics_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed CreateTopics request");
        return;
    }
    shard_state& shard = *req->shard;
    const int32_t node = shard.config().node_id;
    auto response = std::make_shared<response_type>();
    std::vector<shard_state::metadata_step> steps;
    const bool clustered = shard.owner().cluster() != nullptr;
    std::vector<topic_plan> cluster_plans;
    std::map<std::string, int> seen;
    // partitions_max is checked up front, counting the topics accepted earlier in this
    // request, so that a refused request creates nothing and validate_only answers what
    // the creation would; the store checks again, as other shards may create meanwhile.
    partitions_reservation reservation(*shard.metadata(), shard.config().partitions_max);
    for (const auto& topic : body.topics) seen[topic.name]++;
    for (const auto& topic : body.topics) {
        response_type::creatable_topic_result out;
        out.name = topic.name;
        out.num_partitions = -1;
        out.replication_factor = -1;
        auto fail = [&](error_code code, std::string message) {
            out.error_code = proto::code(code);
            out.error_message = std::move(message);
        };
        topic_plan plan{response->topics.size(), topic.name, topic.num_partitions, {}};
        if (plan.partitions == -1) plan.partitions = shard.config().num_partitions;
        if (seen[topic.name] > 1) {
            fail(error_code::invalid_request, "topic \"" + topic.name + "\" is listed twice");
        } else if (!valid_topic_name(topic.name)) {
            fail(error_code::invalid_topic_exception, "invalid topic name \"" + topic.name + "\"");
        } else if (shard.metadata()->find(topic.name) != nullptr) {
            fail(error_code::topic_already_exists, "topic \"" + topic.name + "\" already exists");
        } else if (!clustered && topic.replication_factor != -1 && topic.replication_factor != 1) {
            fail(error_code::invalid_replication_factor,
                 "replication factor " + std::to_string(topic.replication_factor) +
                     " is larger than the 1 available broker");
        } else if (!topic.assignments.empty()) {
            if (topic.num_partitions != -1 || topic.replication_factor != -1) {
                fail(error_code::invalid_request,
                     "both assignments and partitions/replication factor given");
            } else if (clustered) {
                // The agent checks the brokers are live and the factor is available.
                plan.partitions = static_cast<int32_t>(topic.assignments.size());
                for (size_t i = 0; i < topic.assignments.size(); ++i) {
                    const auto& a = topic.assignments[i];
                    if (a.partition_index != static_cast<int32_t>(i) || a.broker_ids.empty())
                        fail(error_code::invalid_replica_assignment,
                             "replica assignments must name partitions 0..n-1, each with brokers");
                    plan.assignments[a.partition_index] = a.broker_ids;
                }
                plan.replication_factor =
                    static_cast<int32_t>(topic.assignments.front().broker_ids.size());
            } else {
                plan.partitions = static_cast<int32_t>(topic.assignments.size());
                for (size_t i = 0; i < topic.assignments.size(); ++i) {
                    const auto& a = topic.assignments[i];
                    if (a.partition_index != static_cast<int32_t>(i) || a.broker_ids.size() != 1 ||
                        a.broker_ids[0] != node)
                        fail(error_code::invalid_replica_assignment,
                             "replica assignments must name partitions 0..n-1 on broker " +
                                 std::to_string(node));
                }
            }
        } else if (plan.partitions < 1 || plan.partitions > 100000) {
            fail(error_code::invalid_partitions,
                 "number of partitions must be between 1 and 100000");
        }
        if (clustered && topic.assignments.empty())
            plan.replication_factor = topic.replication_factor != -1
                                          ? topic.replication_factor
                                          : default_replication_factor(shard);
        if (out.error_code == 0 && !clustered) {
            // One replica per partition on a single node (the replication factor is 1).
            const int64_t replicas = plan.partitions;
            if (auto fits = reservation.reserve(replicas); !fits)
                fail(error_code::policy_violation, fits.failure().message);
        }
        if (out.error_code == 0) {
            for (const auto& config : topic.configs) {
                if (!config.value) continue;
                if (auto valid = validate_topic_config(config.name, *config.value); !valid) {
                    fail(error_code::invalid_config, valid.failure().message);
                    break;
                }
                plan.configs[config.name] = *config.value;
            }
        }
        if (out.error_code == 0) {
            if (clustered)
                cluster_plans.push_back(std::move(plan));
            else if (body.validate_only)
                fill_success(shard, plan, nullptr, out);
            else
                steps.push_back(create_step(shard, response, std::move(plan)));
        }
        response->topics.push_back(std::move(out));
    }
    if (clustered) {
        create_in_cluster(std::move(req), response, std::move(cluster_plans), body.validate_only,
                          body.timeout_ms);
        return;
    }
    shard.change_metadata_in_order(std::move(steps),
                                   [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
