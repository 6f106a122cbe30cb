// The table of topic configurations: Kafka's LogConfig, name by name, with Kafka's
// validators and defaults, and for the honoured ones where the value lives.
#include "broker/topic_config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <functional>
#include <optional>

namespace spate::broker {
namespace {

bool parse_integer(const std::string& text, int64_t& out) {
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(text.data(), last, out);
    return ec == std::errc() && end == last && !text.empty();
}

// Kafka's BOOLEAN parsing: "true" or "false", any case, surrounding blanks ignored.
std::optional<bool> parse_boolean(std::string text) {
    text.erase(0, text.find_first_not_of(" \t"));
    text.erase(text.find_last_not_of(" \t") + 1);
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (text == "true") return true;
    if (text == "false") return false;
    return std::nullopt;
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

std::optional<topic_compression> parse_compression(const std::string& text) {
    static const std::pair<const char*, topic_compression> names[] = {
        {"producer", topic_compression::producer},
        {"uncompressed", topic_compression::uncompressed},
        {"gzip", topic_compression::gzip},
        {"snappy", topic_compression::snappy},
        {"lz4", topic_compression::lz4},
        {"zstd", topic_compression::zstd},
    };
    for (const auto& [name, value] : names)
        if (text == name) return value;
    return std::nullopt;
}

const char* compression_name(topic_compression c) {
    switch (c) {
        case topic_compression::uncompressed:
            return "uncompressed";
        case topic_compression::gzip:
            return "gzip";
        case topic_compression::snappy:
            return "snappy";
        case topic_compression::lz4:
            return "lz4";
        case topic_compression::zstd:
            return "zstd";
        case topic_compression::producer:
            break;
    }
    return "producer";
}

// Extra checks of text values; each returns an error sentence, or nullptr when valid.
const char* check_cleanup_policy(const std::string& v) {
    return parse_cleanup_policy(v) ? nullptr
                                   : "must be \"delete\", \"compact\" or \"compact,delete\"";
}
const char* check_timestamp_type(const std::string& v) {
    return v == "CreateTime" || v == "LogAppendTime" ? nullptr
                                                     : "must be CreateTime or LogAppendTime";
}
const char* check_compression(const std::string& v) {
    return parse_compression(v) ? nullptr
                                : "must be one of producer, uncompressed, gzip, snappy, lz4, zstd";
}
// A metadata version such as "2.8", "3.0-IV1" or "0.10.2" (ignored since Kafka 3.0, as here).
const char* check_format_version(const std::string& v) {
    size_t at = 0, numbers = 0;
    while (at < v.size() && numbers < 3) {
        const size_t start = at;
        while (at < v.size() && std::isdigit(static_cast<unsigned char>(v[at]))) ++at;
        if (at == start) return "is not a Kafka version (like 3.0-IV1)";
        ++numbers;
        if (at < v.size() && v[at] == '.')
            ++at;
        else
            break;
    }
    if (numbers < 2) return "is not a Kafka version (like 3.0-IV1)";
    if (at == v.size()) return nullptr;
    if (v.compare(at, 3, "-IV") != 0 || at + 3 == v.size()) return "is not a Kafka version";
    for (size_t i = at + 3; i < v.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(v[i]))) return "is not a Kafka version";
    return nullptr;
}
// "*", empty, or "partition:broker" pairs separated by commas.
const char* check_throttled_replicas(const std::string& v) {
    if (v.empty() || v == "*") return nullptr;
    size_t start = 0;
    while (start <= v.size()) {
        const size_t end = std::min(v.find(',', start), v.size());
        const std::string item = v.substr(start, end - start);
        const size_t colon = item.find(':');
        int64_t a = 0, b = 0;
        if (colon == std::string::npos || !parse_integer(item.substr(0, colon), a) ||
            !parse_integer(item.substr(colon + 1), b) || a < 0 || b < 0)
            return "must be \"*\" or a list of partition:broker pairs";
        start = end + 1;
    }
    return nullptr;
}
// Deflate's levels: 1 (fastest) to 9 (smallest), or -1 for zlib's default.
const char* check_gzip_level(const std::string& v) {
    return v == "0" ? "must be -1 or between 1 and 9" : nullptr;
}
const char* check_remote_storage(const std::string& v) {
    return parse_boolean(v).value_or(false)
               ? "tiered storage is not supported by spate: remote.storage.enable must be false"
               : nullptr;
}

enum class kind : uint8_t { integer, boolean, ratio, text };

struct config_entry {
    const char* name;
    kind type;
    int64_t minimum;  // integer entries
    int64_t maximum;
    const char* default_text;  // for stored-only entries (no get/set)
    const char* (*check)(const std::string&) = nullptr;
    // Honoured entries: the value in the effective config, as text, and how to set it
    // from a validated value (integers and booleans parsed into `number`).
    std::function<std::string(const effective_topic_config&)> get = nullptr;
    std::function<void(effective_topic_config&, int64_t, const std::string&)> set = nullptr;
};

template <class Field>
auto integer_getter(Field field) {
    return [field](const effective_topic_config& c) { return std::to_string(field(c)); };
}

constexpr int64_t i32_max = INT32_MAX;
constexpr int64_t i64_max = INT64_MAX;

std::vector<config_entry> build_entries() {
    using e = effective_topic_config;
    std::vector<config_entry> t;
    // Integer entries honoured through a field of the effective config.
    auto integer = [&t](const char* name, int64_t min, int64_t max, auto field) {
        t.push_back({name, kind::integer, min, max, nullptr, nullptr,
                     [field](const e& c) { return std::to_string(field(const_cast<e&>(c))); },
                     [field](e& c, int64_t v, const std::string&) {
                         field(c) = static_cast<std::remove_reference_t<decltype(field(c))>>(v);
                     }});
    };
    // Entries stored and described only, with Kafka's default.
    auto stored = [&t](const char* name, kind type, int64_t min, int64_t max, const char* def,
                       const char* (*check)(const std::string&) = nullptr) {
        t.push_back({name, type, min, max, def, check});
    };

    t.push_back({"cleanup.policy", kind::text, 0, 0, nullptr, check_cleanup_policy,
                 [](const e& c) {
                     if (c.log.cleanup_compact && c.log.cleanup_delete)
                         return std::string("compact,delete");
                     return std::string(c.log.cleanup_compact ? "compact" : "delete");
                 },
                 [](e& c, int64_t, const std::string& text) {
                     const cleanup_policy p = parse_cleanup_policy(text).value_or(cleanup_policy{});
                     c.log.cleanup_delete = p.remove;
                     c.log.cleanup_compact = p.compact;
                 }});
    t.push_back({"compression.type", kind::text, 0, 0, nullptr, check_compression,
                 [](const e& c) { return std::string(compression_name(c.compression)); },
                 [](e& c, int64_t, const std::string& text) {
                     c.compression = parse_compression(text).value_or(topic_compression::producer);
                 }});
    stored("compression.gzip.level", kind::integer, -1, 9, "-1", check_gzip_level);
    stored("compression.lz4.level", kind::integer, 1, 17, "9");
    stored("compression.zstd.level", kind::integer, -131072, 22, "3");
    integer("delete.retention.ms", 0, i64_max,
            [](e& c) -> int64_t& { return c.log.delete_retention_ms; });
    stored("file.delete.delay.ms", kind::integer, 0, i64_max, "60000");
    integer("flush.messages", 1, i64_max, [](e& c) -> int64_t& { return c.log.flush_messages; });
    integer("flush.ms", 0, i64_max, [](e& c) -> int64_t& { return c.log.flush_ms; });
    stored("follower.replication.throttled.replicas", kind::text, 0, 0, "",
           check_throttled_replicas);
    integer("index.interval.bytes", 0, i32_max,
            [](e& c) -> int32_t& { return c.log.index_interval_bytes; });
    stored("leader.replication.throttled.replicas", kind::text, 0, 0, "", check_throttled_replicas);
    stored("local.retention.bytes", kind::integer, -2, i64_max, "-2");
    stored("local.retention.ms", kind::integer, -2, i64_max, "-2");
    stored("max.compaction.lag.ms", kind::integer, 1, i64_max, "9223372036854775807");
    integer("max.message.bytes", 0, i32_max, [](e& c) -> int32_t& { return c.message_max_bytes; });
    t.push_back({"message.downconversion.enable", kind::boolean, 0, 1, nullptr, nullptr,
                 [](const e& c) { return std::string(c.downconversion_enable ? "true" : "false"); },
                 [](e& c, int64_t v, const std::string&) { c.downconversion_enable = v != 0; }});
    stored("message.format.version", kind::text, 0, 0, "3.0-IV1", check_format_version);
    integer("message.timestamp.after.max.ms", 0, i64_max,
            [](e& c) -> int64_t& { return c.timestamp_after_max_ms; });
    integer("message.timestamp.before.max.ms", 0, i64_max,
            [](e& c) -> int64_t& { return c.timestamp_before_max_ms; });
    integer("message.timestamp.difference.max.ms", 0, i64_max,
            [](e& c) -> int64_t& { return c.timestamp_difference_max_ms; });
    t.push_back({"message.timestamp.type", kind::text, 0, 0, nullptr, check_timestamp_type,
                 [](const e& c) {
                     return std::string(c.timestamps == timestamp_type::log_append_time
                                            ? "LogAppendTime"
                                            : "CreateTime");
                 },
                 [](e& c, int64_t, const std::string& text) {
                     c.timestamps = text == "LogAppendTime" ? timestamp_type::log_append_time
                                                            : timestamp_type::create_time;
                 }});
    stored("min.cleanable.dirty.ratio", kind::ratio, 0, 1, "0.5");
    integer("min.compaction.lag.ms", 0, i64_max,
            [](e& c) -> int64_t& { return c.log.min_compaction_lag_ms; });
    integer("min.insync.replicas", 1, i32_max,
            [](e& c) -> int32_t& { return c.min_insync_replicas; });
    t.push_back({"preallocate", kind::boolean, 0, 1, nullptr, nullptr,
                 [](const e& c) { return std::string(c.log.preallocate ? "true" : "false"); },
                 [](e& c, int64_t v, const std::string&) { c.log.preallocate = v != 0; }});
    stored("remote.log.copy.disable", kind::boolean, 0, 1, "false");
    stored("remote.log.delete.on.disable", kind::boolean, 0, 1, "false");
    stored("remote.storage.enable", kind::boolean, 0, 1, "false", check_remote_storage);
    integer("retention.bytes", INT64_MIN, i64_max,
            [](e& c) -> int64_t& { return c.log.retention_bytes; });
    integer("retention.ms", -1, i64_max, [](e& c) -> int64_t& { return c.log.retention_ms; });
    integer("segment.bytes", 14, i32_max, [](e& c) -> int64_t& { return c.log.segment_bytes; });
    stored("segment.index.bytes", kind::integer, 4, i32_max, "10485760");
    integer("segment.jitter.ms", 0, i64_max,
            [](e& c) -> int64_t& { return c.log.segment_jitter_ms; });
    integer("segment.ms", 1, i64_max, [](e& c) -> int64_t& { return c.log.segment_ms; });
    stored("unclean.leader.election.enable", kind::boolean, 0, 1, "false");
    return t;
}

const std::vector<config_entry>& entries() {
    static const std::vector<config_entry> table = build_entries();
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
    out.log.tail_padding =
        broker.tail_padding.value_or(broker.acks_all_policy != ack_policy::fsync);
    out.message_max_bytes = broker.message_max_bytes;
    out.min_insync_replicas = broker.min_insync_replicas;
    return out;
}

result<void> invalid(const std::string& name, const std::string& why) {
    return error{40, "config \"" + name + "\" " + why};
}

}  // namespace

result<void> validate_topic_config(const std::string& name, const std::string& value) {
    const config_entry* entry = find_entry(name);
    if (entry == nullptr) return error{40, "unknown topic config \"" + name + "\""};
    switch (entry->type) {
        case kind::integer: {
            int64_t number = 0;
            if (!parse_integer(value, number))
                return invalid(name, "needs an integer, got \"" + value + "\"");
            if (number < entry->minimum)
                return invalid(name, "must be at least " + std::to_string(entry->minimum));
            if (number > entry->maximum)
                return invalid(name, "must be at most " + std::to_string(entry->maximum));
            break;
        }
        case kind::boolean:
            if (!parse_boolean(value)) return invalid(name, "must be true or false");
            break;
        case kind::ratio: {
            char* end = nullptr;
            const double ratio = std::strtod(value.c_str(), &end);
            if (value.empty() || end != value.c_str() + value.size() || !(ratio >= 0.0) ||
                ratio > 1.0)
                return invalid(name, "must be a number between 0 and 1");
            break;
        }
        case kind::text:
            break;
    }
    if (entry->check != nullptr)
        if (const char* why = entry->check(value)) return invalid(name, why);
    return {};
}

effective_topic_config effective_config(const broker_config& broker,
                                        const topic_configs& overrides) {
    effective_topic_config out = broker_defaults(broker);
    for (const auto& [name, value] : overrides) {
        const config_entry* entry = find_entry(name);
        if (entry == nullptr || !entry->set || !validate_topic_config(name, value)) continue;
        int64_t number = 0;
        if (entry->type == kind::integer) parse_integer(value, number);
        if (entry->type == kind::boolean) number = parse_boolean(value).value_or(false) ? 1 : 0;
        entry->set(out, number, value);
    }
    return out;
}

std::vector<described_config> describe_topic_configs(const broker_config& broker,
                                                     const topic_configs& overrides) {
    const effective_topic_config effective = effective_config(broker, overrides);
    std::vector<described_config> out;
    for (const auto& entry : entries()) {
        auto found = overrides.find(entry.name);
        const bool overridden = found != overrides.end();
        std::string value;
        if (entry.get)
            value = entry.get(effective);
        else
            value = overridden ? found->second : std::string(entry.default_text);
        out.push_back({entry.name, std::move(value), !overridden, false});
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
    add("log.roll.ms", std::to_string(defaults.log.segment_ms));
    add("log.index.interval.bytes", std::to_string(defaults.log.index_interval_bytes));
    add("log.cleaner.delete.retention.ms", std::to_string(defaults.log.delete_retention_ms));
    add("log.cleaner.min.compaction.lag.ms", std::to_string(defaults.log.min_compaction_lag_ms));
    add("log.cleanup.policy", defaults.log.cleanup_compact
                                  ? (defaults.log.cleanup_delete ? "compact,delete" : "compact")
                                  : "delete");
    add("log.preallocate", defaults.log.preallocate ? "true" : "false");
    add("log.message.timestamp.type", "CreateTime");
    add("min.insync.replicas", "1");
    add("compression.type", "producer");
    add("default.replication.factor", "1");
    add("offsets.topic.replication.factor", "1");
    add("unclean.leader.election.enable", "false");
    add("log.message.downconversion.enable", "true");
    return out;
}

}  // namespace spate::broker
