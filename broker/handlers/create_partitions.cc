// CreatePartitions (37): raises a topic's partition count (never lowers it); explicit
// assignments must place every new partition on this broker. Growth that would take the
// broker past partitions_max is refused with POLICY_VIOLATION, validate_only included.
// A topic named more than once is refused (INVALID_REQUEST) in each of its entries.
#include <map>
#include <string_view>

#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::create_partitions_response;

struct growth {
    size_t slot;
    std::string name;
    int32_t count;
    std::vector<std::vector<int32_t>> assignments;  // in a cluster, when given
};

shard_state::metadata_step grow_step(std::shared_ptr<response_type> response, growth plan) {
    return {[plan](metadata_store& store) -> result<snapshot_ptr> {
                const topic_info* topic = store.snapshot()->find(plan.name);
                if (topic == nullptr)
                    return error{proto::code(error_code::unknown_topic_or_partition),
                                 "topic \"" + plan.name + "\" does not exist"};
                if (plan.count <= topic->partition_count())
                    return error{proto::code(error_code::invalid_partitions),
                                 "topic \"" + plan.name + "\" already has " +
                                     std::to_string(topic->partition_count()) + " partitions"};
                return store.add_partitions(plan.name, plan.count);
            },
            [response, slot = plan.slot](result<snapshot_ptr> grown) {
                if (grown) return;
                auto& out = response->results[slot];
                // A Kafka code: the step's own refusal or the store's (metadata.h).
                out.error_code = static_cast<int16_t>(grown.failure().code);
                out.error_message = grown.failure().message;
            }};
}

// In a cluster: the agent rewrites each topic node with the new partitions placed, then
// the answer waits, up to the request's timeout, for the controller's leaders to reach
// this broker.
void grow_in_cluster(request_ptr req, std::shared_ptr<response_type> response,
                     std::vector<growth> plans, bool validate_only, int32_t timeout_ms) {
    using outcomes = std::vector<cluster::admin_outcome>;
    auto shared = std::make_shared<const std::vector<growth>>(std::move(plans));
    ask_cluster_agent<outcomes>(
        std::move(req),
        [shared, validate_only](cluster::cluster_agent& agent) {
            outcomes out;
            for (const growth& g : *shared)
                out.push_back(agent.add_partitions(g.name, g.count, g.assignments, validate_only));
            return out;
        },
        [response, shared, validate_only, timeout_ms](request_ptr req, outcomes done) {
            auto grown = std::make_shared<std::vector<growth>>();
            for (size_t i = 0; i < done.size(); ++i) {
                auto& out = response->results[(*shared)[i].slot];
                if (done[i].code != error_code::none) {
                    out.error_code = proto::code(done[i].code);
                    out.error_message = done[i].message;
                } else if (!validate_only) {
                    grown->push_back((*shared)[i]);
                }
            }
            auto elected = [grown](const metadata_snapshot& snapshot) {
                for (const growth& g : *grown)
                    if (!leaders_known(snapshot, g.name, g.count)) return false;
                return true;
            };
            await_metadata(*req->shard, elected, deadline_after(timeout_ms),
                           [req, response](bool) { req->shard->respond(*req, *response); });
        });
}

}  // namespace

void handle_create_partitions(request_ptr req) {
    proto::create_partitions_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed CreatePartitions request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<response_type>();
    std::vector<shard_state::metadata_step> steps;
    const bool clustered = shard.owner().cluster() != nullptr;
    std::vector<growth> cluster_plans;
    partitions_reservation reservation(*shard.metadata(), shard.config().partitions_max);
    // A topic named twice is refused in every entry that names it, none of them applied,
    // as Kafka does: growing it once per entry would apply two answers to one question,
    // and choosing one entry would be a guess.
    std::map<std::string_view, int> mentions;
    for (const auto& topic : body.topics) ++mentions[topic.name];
    for (const auto& topic : body.topics) {
        response_type::create_partitions_topic_result out;
        out.name = topic.name;
        const topic_info* info = shard.metadata()->find(topic.name);
        growth plan{response->results.size(), topic.name, topic.count, {}};
        auto fail = [&](error_code code, std::string message) {
            out.error_code = proto::code(code);
            out.error_message = std::move(message);
        };
        if (mentions[topic.name] > 1) {
            fail(error_code::invalid_request, "Duplicate topic in request.");
        } else if (info == nullptr) {
            fail(error_code::unknown_topic_or_partition, "topic does not exist");
        } else if (topic.count <= info->partition_count() || topic.count > 100000) {
            fail(error_code::invalid_partitions,
                 "topic \"" + topic.name + "\" has " + std::to_string(info->partition_count()) +
                     " partitions; the new count must be larger (and at most 100000)");
        } else if (topic.assignments && clustered) {
            if (topic.assignments->size() !=
                static_cast<size_t>(topic.count - info->partition_count()))
                fail(error_code::invalid_replica_assignment,
                     "assignments must list each new partition");
            for (const auto& a : *topic.assignments) plan.assignments.push_back(a.broker_ids);
        } else if (topic.assignments) {
            const size_t added = static_cast<size_t>(topic.count - info->partition_count());
            bool ok = topic.assignments->size() == added;
            for (const auto& a : *topic.assignments)
                ok = ok && a.broker_ids.size() == 1 && a.broker_ids[0] == shard.config().node_id;
            if (!ok)
                fail(error_code::invalid_replica_assignment,
                     "assignments must list each new partition on broker " +
                         std::to_string(shard.config().node_id));
        }
        if (out.error_code == 0 && clustered) {
            cluster_plans.push_back(std::move(plan));
        } else if (out.error_code == 0) {
            // One replica per new partition on a single node; earlier topics of this
            // request count, as in CreateTopics, and the store checks again.
            const int64_t replicas = topic.count - info->partition_count();
            if (auto fits = reservation.reserve(replicas); !fits)
                fail(error_code::policy_violation, fits.failure().message);
        }
        if (out.error_code == 0 && !body.validate_only && !clustered)
            steps.push_back(
                grow_step(response, {response->results.size(), topic.name, topic.count, {}}));
        response->results.push_back(std::move(out));
    }
    if (clustered) {
        grow_in_cluster(std::move(req), response, std::move(cluster_plans), body.validate_only,
                        body.timeout_ms);
        return;
    }
    shard.change_metadata_in_order(std::move(steps),
                                   [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
