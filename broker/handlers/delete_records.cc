// DeleteRecords (21): advances each partition's log start offset (offset -1 means the
// high watermark); whole segments below it are removed by the log.
#include "broker/fan_out.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;

struct delete_item {
    size_t topic_slot;
    size_t partition_slot;
    std::string topic;
    int32_t index;
    int64_t offset;
    error_code error = error_code::none;
    int64_t low_watermark = -1;
};

void delete_on_owner(shard_state& owner, delete_item& item) {
    partition* p = owner.find_partition(item.topic, item.index);
    if (p == nullptr) {
        item.error = error_code::unknown_topic_or_partition;
        return;
    }
    const int64_t target = item.offset == -1 ? p->high_watermark() : item.offset;
    if (target < 0 || target > p->high_watermark()) {
        item.error = error_code::offset_out_of_range;
        return;
    }
    if (target > p->log().log_start_offset()) {
        if (auto deleted = p->log().delete_records_before(target); !deleted) {
            p->note_storage_failure("delete records", deleted.failure());
            item.error = error_code::kafka_storage_error;
            return;
        }
    }
    item.low_watermark = p->log().log_start_offset();
}

}  // namespace

void handle_delete_records(request_ptr req) {
    proto::delete_records_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DeleteRecords request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<proto::delete_records_response>();
    std::map<net::shard_id, std::vector<delete_item>> by_owner;
    for (const auto& topic : body.topics) {
        proto::delete_records_response::delete_records_topic_result topic_out;
        topic_out.name = topic.name;
        const topic_info* info = shard.metadata()->find(topic.name);
        for (const auto& part : topic.partitions) {
            proto::delete_records_response::delete_records_partition_result out;
            out.partition_index = part.partition_index;
            out.low_watermark = -1;
            const auto owner = owner_of(info, part.partition_index);
            if (!owner) {
                out.error_code = proto::code(route_error(info, part.partition_index));
            } else {
                by_owner[*owner].push_back({response->topics.size(), topic_out.partitions.size(),
                                            topic.name, part.partition_index, part.offset});
            }
            topic_out.partitions.push_back(std::move(out));
        }
        response->topics.push_back(std::move(topic_out));
    }
    fan_out<delete_item>(
        shard, std::move(by_owner), delete_on_owner,
        [response](std::vector<delete_item>& done) {
            for (const delete_item& item : done) {
                auto& out = response->topics[item.topic_slot].partitions[item.partition_slot];
                out.error_code = proto::code(item.error);
                out.low_watermark = item.low_watermark;
            }
        },
        [req, response] { req->shard->respond(*req, *response); });
}

}  // namespace spate::broker
