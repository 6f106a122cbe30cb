#pragma once
// Topic configurations by their Kafka names: every one Kafka's LogConfig defines is
// accepted, validated as Kafka validates it, stored and described. One table drives
// validation (CreateTopics, IncrementalAlterConfigs), the effective values a partition
// runs with, and DescribeConfigs; a name Kafka does not know is rejected with
// INVALID_CONFIG. The ones with a meaning here are honoured (see effective_topic_config);
// the rest (unclean.leader.election.enable and the replication throttles until the
// cluster lands, tiered storage, compression levels, message.format.version, …) are
// stored and described with their Kafka defaults.

#include <string>
#include <vector>

#include "broker/config.h"
#include "broker/metadata.h"

namespace spate::broker {

enum class timestamp_type : uint8_t { create_time, log_append_time };

// compression.type: "producer" keeps each batch's codec; any other value makes the broker
// recompress a batch whose codec differs (values match proto::compression_codec).
enum class topic_compression : int8_t {
    producer = -1,
    uncompressed = 0,
    gzip = 1,
    snappy = 2,
    lz4 = 3,
    zstd = 4,
};

// What one partition runs with: the broker defaults overlaid with the topic's overrides.
struct effective_topic_config {
    storage::log_config log;
    int32_t message_max_bytes = 1048588;
    timestamp_type timestamps = timestamp_type::create_time;
    topic_compression compression = topic_compression::producer;
    int32_t min_insync_replicas = 1;
    bool downconversion_enable = true;  // message.downconversion.enable (Fetch < v4)
    // message.timestamp.before.max.ms / after.max.ms (CreateTime topics only), and the
    // deprecated difference.max.ms that stands in for either one left at its default.
    int64_t timestamp_difference_max_ms = INT64_MAX;
    int64_t timestamp_before_max_ms = INT64_MAX;
    int64_t timestamp_after_max_ms = INT64_MAX;

    int64_t timestamp_before_limit_ms() const {
        return timestamp_before_max_ms != INT64_MAX ? timestamp_before_max_ms
                                                    : timestamp_difference_max_ms;
    }
    int64_t timestamp_after_limit_ms() const {
        return timestamp_after_max_ms != INT64_MAX ? timestamp_after_max_ms
                                                   : timestamp_difference_max_ms;
    }
};

effective_topic_config effective_config(const broker_config& broker,
                                        const topic_configs& overrides);

// Checks one name/value pair; the error message says what is wrong (for INVALID_CONFIG).
result<void> validate_topic_config(const std::string& name, const std::string& value);

struct described_config {
    std::string name;
    std::string value;
    bool is_default;  // true: broker default; false: a topic override
    bool read_only;
};
std::vector<described_config> describe_topic_configs(const broker_config& broker,
                                                     const topic_configs& overrides);
std::vector<described_config> describe_broker_configs(const broker_config& broker);

}  // namespace spate::broker
