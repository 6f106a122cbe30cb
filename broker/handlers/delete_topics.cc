// DeleteTopics (20): removes topics by name (v0-5) or by id (v6), through the
// controller; owner shards close the logs and delete the partition directories.
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::delete_topics_response;

shard_state::metadata_step delete_step(std::shared_ptr<response_type> response, size_t slot) {
    const std::string name = *response->responses[slot].name;
    return {[name](metadata_store& store) -> result<snapshot_ptr> {
                if (store.snapshot()->find(name) == nullptr)
                    return error{proto::code(error_code::unknown_topic_or_partition),
                                 "topic \"" + name + "\" does not exist"};
                return store.delete_topic(name);
            },
            [response, slot](result<snapshot_ptr> deleted) {
                if (deleted) return;
                auto& out = response->responses[slot];
                // A Kafka code: the step's own refusal or the store's (metadata.h).
                out.error_code = static_cast<int16_t>(deleted.failure().code);
                out.error_message = deleted.failure().message;
            }};
}

// In a cluster: the agent marks each topic for deletion (/admin/delete_topics), and the
// answer waits, up to the request's timeout, until the controller's metadata without the
// topics reached this broker (Kafka's REQUEST_TIMED_OUT otherwise: deletion goes on).
void delete_in_cluster(request_ptr req, std::shared_ptr<response_type> response,
                       std::vector<size_t> slots, int32_t timeout_ms) {
    using outcomes = std::vector<cluster::admin_outcome>;
    auto names = std::make_shared<std::vector<std::string>>();
    for (size_t slot : slots) names->push_back(*response->responses[slot].name);
    ask_cluster_agent<outcomes>(
        std::move(req),
        [names](cluster::cluster_agent& agent) {
            outcomes out;
            for (const std::string& name : *names) out.push_back(agent.delete_topic(name));
            return out;
        },
        [response, slots, names, timeout_ms](request_ptr req, outcomes done) {
            for (size_t i = 0; i < done.size(); ++i) {
                if (done[i].code == error_code::none) continue;
                auto& out = response->responses[slots[i]];
                out.error_code = proto::code(done[i].code);
                out.error_message = done[i].message;
            }
            auto gone = [names](const metadata_snapshot& snapshot) {
                for (const std::string& name : *names)
                    if (snapshot.find(name) != nullptr) return false;
                return true;
            };
            await_metadata(*req->shard, gone, deadline_after(timeout_ms),
                           [req, response, slots](bool in_time) {
                               for (size_t slot : slots) {
                                   auto& out = response->responses[slot];
                                   if (in_time || out.error_code != 0) continue;
                                   out.error_code = proto::code(error_code::request_timed_out);
                                   out.error_message = "deletion started; not yet complete";
                               }
                               req->shard->respond(*req, *response);
                           });
        });
}

}  // namespace

void handle_delete_topics(request_ptr req) {
    proto::delete_topics_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DeleteTopics request");
        return;
    }
    shard_state& shard = *req->shard;
    const metadata_snapshot& snapshot = *shard.metadata();
    auto response = std::make_shared<response_type>();
    std::vector<size_t> slots;
    auto add = [&](std::optional<std::string> name, const proto::uuid& id) {
        response_type::deletable_topic_result out;
        out.topic_id = id;
        const topic_info* topic = nullptr;
        if (name) {
            topic = snapshot.find(*name);
        } else {
            for (const auto& [topic_name, info] : snapshot.topics)
                if (info->id == id) topic = info.get();
        }
        if (topic == nullptr) {
            out.name = name;
            out.error_code = proto::code(name ? error_code::unknown_topic_or_partition
                                              : error_code::unknown_topic_id);
            out.error_message = "topic does not exist";
        } else {
            out.name = topic->name;
            out.topic_id = topic->id;
            slots.push_back(response->responses.size());
        }
        response->responses.push_back(std::move(out));
    };
    if (req->version() >= 6) {
        for (const auto& topic : body.topics) add(topic.name, topic.topic_id);
    } else {
        for (const auto& name : body.topic_names) add(name, proto::uuid{});
    }
    if (shard.owner().cluster() != nullptr) {
        delete_in_cluster(std::move(req), response, std::move(slots), body.timeout_ms);
        return;
    }
    std::vector<shard_state::metadata_step> steps;
    for (size_t slot : slots) steps.push_back(delete_step(response, slot));
    shard.change_metadata_in_order(std::move(steps),
                                   [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
