// OffsetForLeaderEpoch (23): for each partition, the largest leader epoch the leader's
// log knows not above the one asked for and where it ends (the start of the next epoch,
// or the log end for the latest): KIP-101 with KIP-279's answer. Clients use it to detect
// a log truncated under them; current_leader_epoch is fenced as in Fetch (KIP-320).
#include "broker/fan_out.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;

struct epoch_item {
    size_t topic_slot;
    size_t partition_slot;
    std::string topic;
    int32_t index;
    int32_t leader_epoch;
    int32_t current_leader_epoch;
    error_code error = error_code::none;
    int32_t found_epoch = -1;
    int64_t end_offset = -1;
};

void end_offset_on_owner(shard_state& owner, epoch_item& item) {
    partition* p = owner.find_partition(item.topic, item.index);
    if (p == nullptr) {
        item.error = error_code::unknown_topic_or_partition;
        return;
    }
    item.error = fenced(*p, item.current_leader_epoch);
    if (item.error != error_code::none) return;
    auto [epoch, end] = p->log().end_offset_for_epoch(item.leader_epoch);
    // A log with no batch since its leader's epoch began (an empty one): that epoch, the
    // current one, ends at the log end.
    if (epoch < 0 && item.leader_epoch >= p->leader_epoch() &&
        p->log().leader_epochs().latest_epoch() < p->leader_epoch()) {
        epoch = p->leader_epoch();
        end = p->log().log_end_offset();
    }
    item.found_epoch = epoch;
    item.end_offset = end;
}

}  // namespace

void handle_offset_for_leader_epoch(request_ptr req) {
    proto::offset_for_leader_epoch_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed OffsetForLeaderEpoch request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<proto::offset_for_leader_epoch_response>();
    std::map<net::shard_id, std::vector<epoch_item>> by_owner;
    for (const auto& topic : body.topics) {
        proto::offset_for_leader_epoch_response::offset_for_leader_topic_result topic_out;
        topic_out.topic = topic.topic;
        const topic_info* info = shard.metadata()->find(topic.topic);
        for (const auto& part : topic.partitions) {
            proto::offset_for_leader_epoch_response::epoch_end_offset out;
            out.partition = part.partition;
            out.leader_epoch = -1;
            out.end_offset = -1;
            const auto owner = owner_of(info, part.partition);
            if (!owner) {
                out.error_code = proto::code(route_error(info, part.partition));
            } else {
                by_owner[*owner].push_back({response->topics.size(), topic_out.partitions.size(),
                                            topic.topic, part.partition, part.leader_epoch,
                                            part.current_leader_epoch});
            }
            topic_out.partitions.push_back(std::move(out));
        }
        response->topics.push_back(std::move(topic_out));
    }
    fan_out<epoch_item>(
        shard, std::move(by_owner), end_offset_on_owner,
        [response](std::vector<epoch_item>& done) {
            for (const epoch_item& item : done) {
                auto& out = response->topics[item.topic_slot].partitions[item.partition_slot];
                out.error_code = proto::code(item.error);
                out.end_offset = item.end_offset;
                out.leader_epoch = item.found_epoch;
            }
        },
        [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
