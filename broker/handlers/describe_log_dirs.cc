// DescribeLogDirs (35): the one log directory (data_dir) with the size on disk of each
// requested partition (every partition for a null topic list), and the volume's total and
// usable bytes (v4). Partitions this broker does not host are left out, as Kafka does.
#include <sys/statvfs.h>

#include <filesystem>

#include "broker/fan_out.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using response_type = proto::describe_log_dirs_response;

struct size_item {
    std::string topic;
    int32_t index;
    bool found = false;
    int64_t size = 0;
    int64_t lag = 0;
};

void measure_on_owner(shard_state& owner, size_item& item) {
    const partition* p = owner.find_partition(item.topic, item.index);
    if (p == nullptr) return;  // deleted meanwhile: left out
    item.found = true;
    item.size = p->log().size_bytes();
    item.lag = p->log().log_end_offset() - p->high_watermark();
}

// Every requested partition this broker hosts, grouped by owner shard.
std::map<net::shard_id, std::vector<size_item>> requested(
    const metadata_snapshot& snapshot, const proto::describe_log_dirs_request& body) {
    std::map<net::shard_id, std::vector<size_item>> by_owner;
    auto add = [&](const topic_info& topic, int32_t index) {
        if (auto owner = owner_of(&topic, index)) by_owner[*owner].push_back({topic.name, index});
    };
    if (!body.topics) {
        for (const auto& [name, topic] : snapshot.topics)
            for (int32_t i = 0; i < topic->partition_count(); ++i) add(*topic, i);
        return by_owner;
    }
    for (const auto& wanted : *body.topics) {
        const topic_info* topic = snapshot.find(wanted.topic);
        if (topic == nullptr) continue;
        for (int32_t index : wanted.partitions) add(*topic, index);
    }
    return by_owner;
}

void fill_volume(response_type::describe_log_dirs_result& dir) {
    struct statvfs volume {};
    if (::statvfs(dir.log_dir.c_str(), &volume) != 0) return;  // -1 stays: unknown
    dir.total_bytes = static_cast<int64_t>(volume.f_blocks) * static_cast<int64_t>(volume.f_frsize);
    dir.usable_bytes =
        static_cast<int64_t>(volume.f_bavail) * static_cast<int64_t>(volume.f_frsize);
}

}  // namespace

void handle_describe_log_dirs(request_ptr req) {
    proto::describe_log_dirs_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeLogDirs request");
        return;
    }
    shard_state& shard = *req->shard;
    auto response = std::make_shared<response_type>();
    response_type::describe_log_dirs_result dir;
    std::error_code ec;
    const auto path = std::filesystem::absolute(shard.config().data_dir, ec);
    dir.log_dir = ec ? shard.config().data_dir : path.lexically_normal().string();
    if (req->version() >= 4) fill_volume(dir);
    response->results.push_back(std::move(dir));
    // Sizes arrive per owner shard; topics are assembled in name order at the end.
    auto sizes = std::make_shared<std::map<std::string, std::map<int32_t, size_item>>>();
    fan_out<size_item>(
        shard, requested(*shard.metadata(), body), measure_on_owner,
        [sizes](std::vector<size_item>& done) {
            for (size_item& item : done)
                if (item.found) (*sizes)[item.topic][item.index] = item;
        },
        [req, response, sizes] {
            auto& topics = response->results.front().topics;
            for (const auto& [name, partitions] : *sizes) {
                response_type::describe_log_dirs_topic topic;
                topic.name = name;
                for (const auto& [index, item] : partitions) {
                    response_type::describe_log_dirs_partition out;
                    out.partition_index = index;
                    out.partition_size = item.size;
                    out.offset_lag = item.lag;
                    out.is_future_key = false;
                    topic.partitions.push_back(out);
                }
                topics.push_back(std::move(topic));
            }
            req->shard->respond(*req, *response);
        });
}

}  // namespace spate::broker
