// ListOffsets (2): earliest (-2), latest (-1), max timestamp (-3) or the first offset
// whose timestamp is >= t, read on each partition's owner shard. v0 answers with the
// old list form.
#include "broker/fan_out.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;

struct offset_query {
    size_t topic_slot;
    size_t partition_slot;
    std::string topic;
    int32_t index;
    int64_t timestamp;
    int32_t current_leader_epoch = -1;
    error_code error = error_code::none;
    int32_t leader_epoch = -1;
    int64_t found_offset = -1;
    int64_t found_timestamp = -1;
};
using query_list = std::vector<offset_query>;

void answer_on_owner(shard_state& owner, offset_query& q) {
    partition* p = owner.find_partition(q.topic, q.index);
    if (p == nullptr) {
        q.error = error_code::unknown_topic_or_partition;
        return;
    }
    q.error = fenced(*p, q.current_leader_epoch);
    if (q.error != error_code::none) return;
    q.leader_epoch = p->leader_epoch();
    const int64_t high_watermark = p->high_watermark();
    if (q.timestamp == -1) {  // latest: what consumers may read up to
        q.found_offset = high_watermark;
        return;
    }
    auto found = p->log().offset_for_timestamp(q.timestamp);
    if (!found) {
        p->note_storage_failure("offset lookup", found.failure());
        q.error = error_code::kafka_storage_error;
        return;
    }
    q.found_offset = found->offset;
    q.found_timestamp = found->timestamp;
    // Records at or above the high watermark are not committed: no consumer may see them.
    if (q.timestamp >= 0 && q.found_offset >= high_watermark) {
        q.found_offset = -1;
        q.found_timestamp = -1;
    }
}

}  // namespace

void handle_list_offsets(request_ptr req) {
    auto body = std::make_shared<proto::list_offsets_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed ListOffsets request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<proto::list_offsets_response>();
    std::map<net::shard_id, query_list> by_owner;
    for (const auto& topic : body->topics) {
        proto::list_offsets_response::list_offsets_topic_response topic_out;
        topic_out.name = topic.name;
        const topic_info* info = shard.metadata()->find(topic.name);
        for (const auto& part : topic.partitions) {
            proto::list_offsets_response::list_offsets_partition_response out;
            out.partition_index = part.partition_index;
            out.timestamp = -1;
            out.offset = -1;
            out.leader_epoch = -1;
            const auto owner = owner_of(info, part.partition_index);
            if (!owner) {
                out.error_code = proto::code(route_error(info, part.partition_index));
            } else {
                offset_query q{response->topics.size(),
                               topic_out.partitions.size(),
                               topic.name,
                               part.partition_index,
                               part.timestamp,
                               part.current_leader_epoch};
                by_owner[*owner].push_back(std::move(q));
            }
            topic_out.partitions.push_back(std::move(out));
        }
        response->topics.push_back(std::move(topic_out));
    }
    fan_out<offset_query>(
        shard, std::move(by_owner), answer_on_owner,
        [response](std::vector<offset_query>& done) {
            for (const offset_query& q : done) {
                auto& out = response->topics[q.topic_slot].partitions[q.partition_slot];
                out.error_code = proto::code(q.error);
                out.offset = q.found_offset;
                out.timestamp = q.found_timestamp;
                if (q.error == error_code::none) out.leader_epoch = q.leader_epoch;
                if (q.error == error_code::none && q.found_offset >= 0)
                    out.old_style_offsets = {q.found_offset};
            }
        },
        [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
