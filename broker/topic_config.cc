// The table of honoured topic configurations.
#include "broker/topic_config.h"

#include <charconv>
#include <functional>
#include <optional>

namespace spate::broker {
namespace {

bool parse_integer(const std::string& text, int64_t& out) {
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(text.data(), last, out);
    return ec == std::errc() && end == last && !text.empty();
}

// cleanup.policy is a list: "delete", "compact", or both in either order.
struct cleanup_policy {
    bool remove = true;
    bool compact = false;
};

std::optional<cleanup_policy> parse_cleanup_policy(const std::string& text) {
    if (text == "delete") return cleanup_policy{true, false};
    if (text == "compact") return cleanup_policy{false, true};
    if (text == "compact,delete" || text == "delete,compact") return cleanup_policy{true, true};
    return std::nullopt;
}

struct config_entry {
    const char* name;
    int64_t minimum;  // for integer entries
    bool is_integer;
    // Reads the value from the effective config (as text) and writes a validated value into it.
    std::function<std::string(const effective_topic_config&)> get;
    std::function<void(effective_topic_config&, int64_t, const std::string&)> set;
};

const std::vector<config_entry>& entries() {
    static const std::vector<config_entry> table = {
        {"cleanup.policy", 0, false,
         [](const effective_topic_config& c) {
             if (c.log.cleanup_compact && c.log.cleanup_delete)
                 return std::string("compact,delete");
             return std::string(c.log.cleanup_compact ? "compact" : "delete");
         },
         [](effective_topic_config& c, int64_t, const std::string& text) {
             const cleanup_policy policy = parse_cleanup_policy(text).value_or(cleanup_policy{});
             c.log.cleanup_delete = policy.remove;
             c.log.cleanup_compact = policy.compact;
         }},
        {"delete.retention.ms", 0, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.delete_retention_ms); },
         [](effective_topic_config& c, int64_t v, const std::string&) {
             c.log.delete_retention_ms = v;
         }},
        {"min.compaction.lag.ms", 0, true,
         [](const effective_topic_config& c) {
             return std::to_string(c.log.min_compaction_lag_ms);
         },
         [](effective_topic_config& c, int64_t v, const std::string&) {
             c.log.min_compaction_lag_ms = v;
         }},
        {"retention.ms", -1, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.retention_ms); },
         [](effective_topic_config& c, int64_t v, const std::string&) { c.log.retention_ms = v; }},
        {"retention.bytes", -1, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.retention_bytes); },
         [](effective_topic_config& c, int64_t v, const std::string&) {
             c.log.retention_bytes = v;
         }},
        {"segment.bytes", 14, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.segment_bytes); },
         [](effective_topic_config& c, int64_t v, const std::string&) { c.log.segment_bytes = v; }},
        {"segment.ms", 1, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.segment_ms); },
         [](effective_topic_config& c, int64_t v, const std::string&) { c.log.segment_ms = v; }},
        {"index.interval.bytes", 0, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.index_interval_bytes); },
         [](effective_topic_config& c, int64_t v, const std::string&) {
             c.log.index_interval_bytes = static_cast<int32_t>(v);
         }},
        {"flush.messages", 1, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.flush_messages); },
         [](effective_topic_config& c, int64_t v, const std::string&) {
             c.log.flush_messages = v;
         }},
        {"flush.ms", 0, true,
         [](const effective_topic_config& c) { return std::to_string(c.log.flush_ms); },
         [](effective_topic_config& c, int64_t v, const std::string&) { c.log.flush_ms = v; }},
        {"max.message.bytes", 0, true,
         [](const effective_topic_config& c) { return std::to_string(c.message_max_bytes); },
         [](effective_topic_config& c, int64_t v, const std::string&) {
             c.message_max_bytes = static_cast<int32_t>(v);
         }},
        {"message.timestamp.type", 0, false,
         [](const effective_topic_config& c) {
             return std::string(c.timestamps == timestamp_type::log_append_time ? "LogAppendTime"
                                                                                : "CreateTime");
         },
         [](effective_topic_config& c, int64_t, const std::string& text) {
             c.timestamps = text == "LogAppendTime" ? timestamp_type::log_append_time
                                                    : timestamp_type::create_time;
         }},
    };
    return table;
}

const config_entry* find_entry(const std::string& name) {
    for (const auto& entry : entries())
        if (name == entry.name) return &entry;
    return nullptr;
}

effective_topic_config broker_defaults(const broker_config& broker) {
    effective_topic_config out;
    out.log = broker.log;
    out.message_max_bytes = broker.message_max_bytes;
    return out;
}

}  // namespace

result<void> validate_topic_config(const std::string& name, const std::string& value) {
    const config_entry* entry = find_entry(name);
    if (entry == nullptr) return error{40, "unknown or unsupported topic config \"" + name + "\""};
    if (name == "cleanup.policy") {
        if (parse_cleanup_policy(value)) return {};
        return error{
            40, "cleanup.policy must be \"delete\", \"compact\" or \"compact,delete\", got \"" +
                    value + "\""};
    }
    if (name == "message.timestamp.type") {
        if (value == "CreateTime" || value == "LogAppendTime") return {};
        return error{40, "message.timestamp.type must be CreateTime or LogAppendTime"};
    }
    int64_t number = 0;
    if (!parse_integer(value, number))
        return error{40, "config \"" + name + "\" needs an integer, got \"" + value + "\""};
    if (number < entry->minimum)
        return error{40,
                     "config \"" + name + "\" must be at least " + std::to_string(entry->minimum)};
    if (name == "max.message.bytes" && number > INT32_MAX)
        return error{40, "max.message.bytes is too large"};
    return {};
}

effective_topic_config effective_config(const broker_config& broker,
                                        const topic_configs& overrides) {
    effective_topic_config out = broker_defaults(broker);
    for (const auto& [name, value] : overrides) {
        const config_entry* entry = find_entry(name);
        if (entry == nullptr || !validate_topic_config(name, value)) continue;
        int64_t number = 0;
        if (entry->is_integer) parse_integer(value, number);
        entry->set(out, number, value);
    }
    return out;
}

std::vector<described_config> describe_topic_configs(const broker_config& broker,
                                                     const topic_configs& overrides) {
    const effective_topic_config effective = effective_config(broker, overrides);
    std::vector<described_config> out;
    for (const auto& entry : entries()) {
        const bool overridden = overrides.count(entry.name) != 0;
        out.push_back({entry.name, entry.get(effective), !overridden, false});
    }
    return out;
}

std::vector<described_config> describe_broker_configs(const broker_config& broker) {
    std::vector<described_config> out;
    const effective_topic_config defaults = broker_defaults(broker);
    auto add = [&](const char* name, std::string value) {
        out.push_back({name, std::move(value), true, true});
    };
    add("broker.id", std::to_string(broker.node_id));
    add("num.partitions", std::to_string(broker.num_partitions));
    add("auto.create.topics.enable", broker.auto_create_topics_enable ? "true" : "false");
    add("message.max.bytes", std::to_string(broker.message_max_bytes));
    add("socket.request.max.bytes", std::to_string(broker.socket_request_max_bytes));
    add("log.dirs", broker.data_dir);
    add("log.segment.bytes", std::to_string(defaults.log.segment_bytes));
    add("log.retention.ms", std::to_string(defaults.log.retention_ms));
    add("log.retention.bytes", std::to_string(defaults.log.retention_bytes));
    add("log.flush.interval.messages", std::to_string(defaults.log.flush_messages));
    add("log.flush.interval.ms", std::to_string(defaults.log.flush_ms));
    return out;
}

}  // namespace spate::broker
