// DescribeProducers (61): the idempotent producers each partition remembers (the same
// state that deduplicates their retries): id, epoch, last sequence and, when known, the
// log-append time of their newest batch. No transactions here, so coordinator_epoch is -1
// and current_txn_start_offset -1.
#include "broker/fan_out.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;
using response_type = proto::describe_producers_response;

struct producers_item {
    size_t topic_slot;
    size_t partition_slot;
    std::string topic;
    int32_t index;
    error_code error = error_code::none;
    std::vector<producer_state::summary> producers;
};

void describe_on_owner(shard_state& owner, producers_item& item) {
    partition* p = owner.find_partition(item.topic, item.index);
    if (p == nullptr) {
        item.error = error_code::unknown_topic_or_partition;
        return;
    }
    item.producers = p->producers().summaries();
}

response_type::producer_state_entry entry_of(const producer_state::summary& s) {
    response_type::producer_state_entry out;
    out.producer_id = s.producer_id;
    out.producer_epoch = s.epoch;
    out.last_sequence = s.last_sequence;
    out.last_timestamp = s.last_timestamp_ms;
    out.coordinator_epoch = -1;
    out.current_txn_start_offset = -1;
    return out;
}

}  // namespace

void handle_describe_producers(request_ptr req) {
    proto::describe_producers_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeProducers request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<response_type>();
    std::map<net::shard_id, std::vector<producers_item>> by_owner;
    for (const auto& topic : body.topics) {
        response_type::describe_producers_topic_response topic_out;
        topic_out.name = topic.name;
        const topic_info* info = shard.metadata()->find(topic.name);
        for (int32_t index : topic.partition_indexes) {
            response_type::describe_producers_partition out;
            out.partition_index = index;
            if (const auto owner = owner_of(info, index)) {
                by_owner[*owner].push_back(
                    {response->topics.size(), topic_out.partitions.size(), topic.name, index});
            } else {
                out.error_code = proto::code(route_error(info, index));
            }
            topic_out.partitions.push_back(std::move(out));
        }
        response->topics.push_back(std::move(topic_out));
    }
    fan_out<producers_item>(
        shard, std::move(by_owner), describe_on_owner,
        [response](std::vector<producers_item>& done) {
            for (const producers_item& item : done) {
                auto& out = response->topics[item.topic_slot].partitions[item.partition_slot];
                out.error_code = proto::code(item.error);
                for (const auto& s : item.producers) out.active_producers.push_back(entry_of(s));
            }
        },
        [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
