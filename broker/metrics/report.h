#pragma once
// shard_report: what one shard contributes to a scrape of /metrics — its counters, its
// loop's figures, and a row per partition and group it holds — copied on that shard's own
// thread, then carried to the shard serving the scrape (broker/metrics/endpoint.cc), which
// writes every shard's report as one exposition (broker/metrics/exposition.h).
//
// Threads: collect() runs on the shard it reads; the report is a plain value afterwards.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "broker/metrics/counters.h"
#include "net/shard.h"

namespace spate::broker {
class shard_state;
}

namespace spate::broker::metrics {

struct partition_row {
    // Shared by the rows of one topic: one string per topic, not one per partition.
    std::shared_ptr<const std::string> topic;
    int32_t index = 0;
    bool leader = true;  // a single node leads every partition
    int32_t replicas = 1;
    int32_t in_sync = 1;
    int64_t log_start = 0;
    int64_t log_end = 0;
    int64_t high_watermark = 0;
    int64_t size_bytes = 0;
    uint64_t segments = 0;
    uint64_t bytes_in = 0;
    uint64_t records_in = 0;
};

struct committed_row {
    std::string topic;
    int32_t partition = 0;
    int64_t offset = -1;
};

struct group_row {
    std::string id;
    std::string state;  // Kafka's name: "Stable", "Empty", ...
    uint64_t members = 0;
    std::vector<committed_row> committed;
};

struct shard_report {
    net::shard_id shard = 0;
    shard_counters counters;
    net::shard_stats runtime;
    std::vector<partition_row> partitions;
    std::vector<group_row> groups;
    // Over this shard's logs: segments rolled and recovery truncations since they opened.
    uint64_t rolls = 0;
    uint64_t recovery_truncations = 0;
};

// Builds this shard's report over as many loop turns as its partitions take, then calls
// `done` with it on this shard; only on the shard's own thread.
void collect(shard_state& shard, std::function<void(shard_report)> done);

}  // namespace spate::broker::metrics
