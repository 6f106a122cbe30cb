// DescribeTopicPartitions (75, KIP-966): topics in name order with their partitions, at
// most response_partition_limit partitions per answer (capped at 2000, Kafka's
// max.request.partition.size.limit) and a cursor to go on from. An empty topic list means
// every topic. A single node leads every partition (its replica and ISR lists are itself);
// a cluster's broker answers what the controller last told it, as Metadata does.
#include <algorithm>

#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::describe_topic_partitions_response;
constexpr int32_t partition_limit_max = 2000;

// Every topic of a malformed cursor request gets INVALID_REQUEST (v0 has no top-level code).
void refuse(request_ptr req, const proto::describe_topic_partitions_request& body) {
    response_type response;
    for (const auto& topic : body.topics) {
        response_type::response_topic out;
        out.error_code = proto::code(error_code::invalid_request);
        out.name = topic.name;
        response.topics.push_back(std::move(out));
    }
    req->shard->respond(*req, response);
}

response_type::response_topic describe(const topic_info& topic, int32_t node, int32_t first,
                                       int32_t count) {
    response_type::response_topic out;
    out.name = topic.name;
    out.topic_id = topic.id;
    out.is_internal = topic.name.starts_with("__");
    for (int32_t i = first; i < first + count; ++i) {
        response_type::response_partition p;
        p.partition_index = i;
        if (static_cast<size_t>(i) < topic.replicas.size()) {
            const partition_replicas& r = topic.replicas[static_cast<size_t>(i)];
            p.leader_id = r.leader;
            p.leader_epoch = r.leader_epoch;
            p.replica_nodes = r.replicas;
            p.isr_nodes = r.isr;
            p.offline_replicas = r.offline;
            if (r.leader < 0) p.error_code = proto::code(error_code::leader_not_available);
        } else {
            p.leader_id = node;
            p.leader_epoch = 0;
            p.replica_nodes = {node};
            p.isr_nodes = {node};
        }
        // No eligible leader replicas (KIP-966) without a cluster: empty lists, not null
        // (Kafka's admin client reads them unconditionally).
        p.eligible_leader_replicas.emplace();
        p.last_known_elr.emplace();
        out.partitions.push_back(std::move(p));
    }
    return out;
}

}  // namespace

void handle_describe_topic_partitions(request_ptr req) {
    proto::describe_topic_partitions_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeTopicPartitions request");
        return;
    }
    const std::string after = body.cursor ? body.cursor->topic_name : std::string();
    const bool all = body.topics.empty();
    std::vector<std::string> names;
    const metadata_snapshot& snapshot = *req->shard->metadata();
    if (all) {
        for (const auto& [name, topic] : snapshot.topics)
            if (name >= after) names.push_back(name);
    } else {
        for (const auto& topic : body.topics)
            if (topic.name >= after) names.push_back(topic.name);
        std::sort(names.begin(), names.end());
        names.erase(std::unique(names.begin(), names.end()), names.end());
        if (body.cursor && !std::binary_search(names.begin(), names.end(), after))
            return refuse(std::move(req), body);
    }
    if (body.cursor && body.cursor->partition_index < 0) return refuse(std::move(req), body);

    const int32_t node = req->shard->config().node_id;
    int32_t remaining = std::max(std::min(partition_limit_max, body.response_partition_limit), 1);
    response_type response;
    for (const std::string& name : names) {
        const topic_info* topic = snapshot.find(name);
        if (topic == nullptr) {
            if (all) continue;
            response_type::response_topic out;
            out.error_code = proto::code(error_code::unknown_topic_or_partition);
            out.name = name;
            response.topics.push_back(std::move(out));
            continue;
        }
        if (remaining == 0) {  // the next answer starts at this topic
            response.next_cursor = response_type::response_cursor{};
            response.next_cursor->topic_name = name;
            response.next_cursor->partition_index = 0;
            break;
        }
        const int32_t first = body.cursor && name == after
                                  ? std::min(body.cursor->partition_index, topic->partition_count())
                                  : 0;
        const int32_t count = std::min(remaining, topic->partition_count() - first);
        response.topics.push_back(describe(*topic, node, first, count));
        remaining -= count;
        if (first + count < topic->partition_count()) {
            response.next_cursor = response_type::response_cursor{};
            response.next_cursor->topic_name = name;
            response.next_cursor->partition_index = first + count;
            break;
        }
    }
    req->shard->respond(*req, response);
}

}  // namespace spate::broker
