#pragma once
// Topic configurations the broker really honours, by their Kafka names. One table
// drives validation (CreateTopics, IncrementalAlterConfigs), the effective values a
// partition runs with, and DescribeConfigs: a name that is not in the table is
// rejected with INVALID_CONFIG rather than stored and ignored.

#include <string>
#include <vector>

#include "broker/config.h"
#include "broker/metadata.h"

namespace spate::broker {

enum class timestamp_type : uint8_t { create_time, log_append_time };

// What one partition runs with: the broker defaults overlaid with the topic's overrides.
struct effective_topic_config {
    storage::log_config log;
    int32_t message_max_bytes = 1048588;
    timestamp_type timestamps = timestamp_type::create_time;
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
