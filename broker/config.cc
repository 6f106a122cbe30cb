// Start-up configuration: TOML file (toml++) and command-line flags. Exceptions are
// allowed here (start-up only) and are turned into result errors naming the key.
#include "broker/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include "net/shard.h"

namespace spate::broker {
namespace {

error config_error(const std::string& message) { return error{22, message}; }

result<void> parse_host_port(const std::string& text, const std::string& what, std::string& host,
                             uint16_t& port) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
        return config_error(what + ": expected HOST:PORT, got \"" + text + "\"");
    unsigned value = 0;
    const char* first = text.data() + colon + 1;
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, value);
    if (ec != std::errc() || end != last || value > 65535)
        return config_error(what + ": bad port in \"" + text + "\"");
    host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    port = static_cast<uint16_t>(value);
    return {};
}

template <class T>
result<void> integer_in(const toml::node& node, const std::string& key, T& out, int64_t low,
                        int64_t high) {
    auto value = node.value<int64_t>();
    if (!value) return config_error("config key \"" + key + "\": expected an integer");
    if (*value < low || *value > high)
        return config_error("config key \"" + key + "\": " + std::to_string(*value) +
                            " is out of range [" + std::to_string(low) + ", " +
                            std::to_string(high) + "]");
    out = static_cast<T>(*value);
    return {};
}

result<void> boolean_in(const toml::node& node, const std::string& key, bool& out) {
    auto value = node.value<bool>();
    if (!value) return config_error("config key \"" + key + "\": expected true or false");
    out = *value;
    return {};
}

result<void> string_in(const toml::node& node, const std::string& key, std::string& out) {
    auto value = node.value<std::string>();
    if (!value) return config_error("config key \"" + key + "\": expected a string");
    out = *value;
    return {};
}

using key_setter =
    std::function<result<void>(const toml::node&, const std::string&, broker_config&)>;

// `[log] tail_padding`: said or not is part of the setting (broker_config::tail_padding).
result<void> tail_padding_in(const toml::node& node, const std::string& key,
                             broker_config& config) {
    bool on = false;
    if (auto r = boolean_in(node, key, on); !r) return r;
    config.tail_padding = on;
    return {};
}

// `loopback_congestion_control`: a kernel name (validate() asks the kernel for it), which has at
// most 15 characters (TCP_CA_NAME_MAX with its NUL).
result<void> loopback_congestion_control_in(const toml::node& node, const std::string& key,
                                            broker_config& config) {
    std::string name;
    if (auto r = string_in(node, key, name); !r) return r;
    const bool plain =
        std::all_of(name.begin(), name.end(), [](char ch) { return ch > ' ' && ch < 127; });
    if (name.size() > 15 || !plain)
        return config_error("config key \"" + key + "\": \"" + name +
                            "\" is not a congestion control's name (at most 15 characters, "
                            "no spaces)");
    config.loopback_congestion_control = name;
    return {};
}

// An error when loopback connections are to take a congestion control this process may not.
result<void> loopback_congestion_control_usable(const std::string& name) {
    if (name.empty()) return {};
    auto usable = net::congestion_control_usable(name);
    if (usable) return {};
    std::string choices;
    std::getline(std::ifstream("/proc/sys/net/ipv4/tcp_allowed_congestion_control"), choices);
    if (choices.empty()) choices = "unknown";
    return config_error("config key \"loopback_congestion_control\": \"" + name +
                        "\": " + usable.failure().message + " (allowed here: " + choices + ")");
}

// The one table of TOML keys: every key the example config documents, nothing else.
const std::map<std::string, key_setter>& key_table() {
    static const std::map<std::string, key_setter> table = {
        {"listen",
         [](const toml::node& n, const std::string& k, broker_config& c) -> result<void> {
             std::string text;
             if (auto r = string_in(n, k, text); !r) return r;
             return parse_host_port(text, "config key \"" + k + "\"", c.listen_host, c.listen_port);
         }},
        {"advertised",
         [](const toml::node& n, const std::string& k, broker_config& c) -> result<void> {
             std::string text;
             if (auto r = string_in(n, k, text); !r) return r;
             if (text.empty()) return {};
             return parse_host_port(text, "config key \"" + k + "\"", c.advertised_host,
                                    c.advertised_port);
         }},
        {"metrics_listen",
         [](const toml::node& n, const std::string& k, broker_config& c) -> result<void> {
             std::string text;
             if (auto r = string_in(n, k, text); !r) return r;
             c.metrics_enabled = !text.empty();
             if (!c.metrics_enabled) return {};
             return parse_host_port(text, "config key \"" + k + "\"", c.metrics_host,
                                    c.metrics_port);
         }},
        {"metrics_partition_labels",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return boolean_in(n, k, c.metrics_partition_labels);
         }},
        {"data_dir", [](const toml::node& n, const std::string& k,
                        broker_config& c) { return string_in(n, k, c.data_dir); }},
        {"shards", [](const toml::node& n, const std::string& k,
                      broker_config& c) { return integer_in(n, k, c.shards, 0, 1024); }},
        {"pin_shards", [](const toml::node& n, const std::string& k,
                          broker_config& c) { return boolean_in(n, k, c.pin_shards); }},
        {"node_id", [](const toml::node& n, const std::string& k,
                       broker_config& c) { return integer_in(n, k, c.node_id, 0, INT32_MAX); }},
        {"cluster_id", [](const toml::node& n, const std::string& k,
                          broker_config& c) { return string_in(n, k, c.cluster_id); }},
        {"zookeeper_connect",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return string_in(n, k, c.zookeeper_connect);
         }},
        {"zookeeper_session_timeout_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.zookeeper_session_timeout_ms, 1000, 600000);
         }},
        {"zookeeper_connection_timeout_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.zookeeper_connection_timeout_ms, 0, 600000);
         }},
        {"rack", [](const toml::node& n, const std::string& k,
                    broker_config& c) { return string_in(n, k, c.rack); }},
        {"replica_lag_time_max_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.replica_lag_time_max_ms, 100, 3600000);
         }},
        {"leader_imbalance_check_interval_seconds",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.leader_imbalance_check_interval_seconds, 0, 86400);
         }},
        {"default_replication_factor",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.default_replication_factor, 1, 32767);
         }},
        {"min_insync_replicas",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.min_insync_replicas, 1, 32767);
         }},
        {"auto_create_topics_enable",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return boolean_in(n, k, c.auto_create_topics_enable);
         }},
        {"num_partitions",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.num_partitions, 1, 100000);
         }},
        {"partitions_max",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.partitions_max, 1, 10000000);
         }},
        {"segment_files_max",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.segment_files_max, 0, 100000000);
         }},
        {"segment_files_idle_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.segment_files_idle_ms, 1000, INT64_MAX);
         }},
        {"message_max_bytes",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.message_max_bytes, 64, INT32_MAX);
         }},
        {"socket_request_max_bytes",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.socket_request_max_bytes, 1024, INT32_MAX);
         }},
        {"loopback_fetch_max_bytes",
         [](const toml::node& n, const std::string& k, broker_config& c) -> result<void> {
             if (auto got = integer_in(n, k, c.loopback_fetch_max_bytes, 0, INT32_MAX); !got)
                 return got;
             if (c.loopback_fetch_max_bytes != 0 && c.loopback_fetch_max_bytes < 1024)
                 return config_error(k + " must be 0 or at least 1024");
             return ok_result();
         }},
        {"loopback_congestion_control", loopback_congestion_control_in},
        {"connections_max",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.connections_max, 1, 1000000);
         }},
        {"queued_max_requests",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.queued_max_requests, 1, 100000);
         }},
        {"connection_move_requests",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.connection_move_requests, 0, 1000000);
         }},
        {"max_connections_per_ip",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.max_connections_per_ip, 0, 1000000);
         }},
        {"connections_max_idle_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.connections_max_idle_ms, 1, INT32_MAX);
         }},
        {"request_receive_timeout_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.request_receive_timeout_ms, 1, INT32_MAX);
         }},
        {"queued_max_request_bytes",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.queued_max_request_bytes, 1 << 20, int64_t{1} << 40);
         }},
        {"group_initial_rebalance_delay_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.group_initial_rebalance_delay_ms, 0, 300000);
         }},
        {"max_incremental_fetch_session_cache_slots",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.max_incremental_fetch_session_cache_slots, 0, 1000000);
         }},
        {"min_incremental_fetch_session_eviction_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.min_incremental_fetch_session_eviction_ms, 0,
                               int64_t{86400000});
         }},
        {"offsets_retention_minutes",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.offsets_retention_minutes, 1, int64_t{100} * 365 * 24 * 60);
         }},
        {"offsets_topic_num_partitions",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.offsets_topic_num_partitions, 1, 10000);
         }},
        {"offsets_topic_replication_factor",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.offsets_topic_replication_factor, 1, 32767);
         }},
        {"offsets_commit_timeout_ms",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.offsets_commit_timeout_ms, 1, 3600000);
         }},
        {"acks_all_policy",
         [](const toml::node& n, const std::string& k, broker_config& c) -> result<void> {
             std::string text;
             if (auto r = string_in(n, k, text); !r) return r;
             if (text == "page_cache")
                 c.acks_all_policy = ack_policy::page_cache;
             else if (text == "fsync")
                 c.acks_all_policy = ack_policy::fsync;
             else
                 return config_error("config key \"" + k +
                                     "\": expected \"page_cache\" or \"fsync\"");
             return {};
         }},
        {"log.segment_bytes",
         [](const toml::node& n, const std::string& k,
            broker_config& c) { return integer_in(n, k, c.log.segment_bytes, 14, INT32_MAX); }},
        {"log.segment_ms",
         [](const toml::node& n, const std::string& k,
            broker_config& c) { return integer_in(n, k, c.log.segment_ms, 1, INT64_MAX); }},
        {"log.index_interval_bytes",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.log.index_interval_bytes, 0, INT32_MAX);
         }},
        {"log.retention_ms",
         [](const toml::node& n, const std::string& k,
            broker_config& c) { return integer_in(n, k, c.log.retention_ms, -1, INT64_MAX); }},
        {"log.retention_bytes",
         [](const toml::node& n, const std::string& k,
            broker_config& c) { return integer_in(n, k, c.log.retention_bytes, -1, INT64_MAX); }},
        {"log.flush_messages",
         [](const toml::node& n, const std::string& k,
            broker_config& c) { return integer_in(n, k, c.log.flush_messages, 1, INT64_MAX); }},
        {"log.flush_ms",
         [](const toml::node& n, const std::string& k,
            broker_config& c) { return integer_in(n, k, c.log.flush_ms, 0, INT64_MAX); }},
        {"log.preallocate_ahead_bytes",
         [](const toml::node& n, const std::string& k, broker_config& c) {
             return integer_in(n, k, c.log.preallocate_ahead_bytes, 0, INT32_MAX);
         }},
        {"log.tail_padding", tail_padding_in},
    };
    return table;
}

result<void> apply_table(const toml::table& table, const std::string& prefix,
                         broker_config& config) {
    for (const auto& [key, node] : table) {
        const std::string full = prefix + std::string(key.str());
        if (node.is_table()) {
            if (auto r = apply_table(*node.as_table(), full + ".", config); !r) return r;
            continue;
        }
        const auto& keys = key_table();
        auto found = keys.find(full);
        if (found == keys.end()) return config_error("unknown config key \"" + full + "\"");
        if (auto r = found->second(node, full, config); !r) return r;
    }
    return {};
}

const char* usage_text =
    "usage: spate [--config FILE] [--listen HOST:PORT] [--data-dir DIR] [--shards N]\n"
    "             [--advertised HOST:PORT] [--node-id N] [--zookeeper HOST:PORT[,…][/chroot]]\n"
    "             [--rack RACK] [--version] [--help]\n"
    "A Kafka-compatible broker. Flags override the TOML file; see broker/spate.example.toml.\n";

}  // namespace

result<void> apply_toml_text(const std::string& text, const std::string& origin,
                             broker_config& config) {
    toml::table table;
    try {
        table = toml::parse(text, origin);
    } catch (const toml::parse_error& failure) {
        const auto& where = failure.source().begin;
        return config_error(origin + ":" + std::to_string(where.line) + ":" +
                            std::to_string(where.column) + ": " +
                            std::string(failure.description()));
    }
    return apply_table(table, "", config);
}

result<void> apply_toml_file(const std::string& path, broker_config& config) {
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (file == nullptr)
        return config_error("cannot open config file \"" + path + "\": " + std::strerror(errno));
    std::string text;
    char chunk[4096];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof(chunk), file)) > 0) text.append(chunk, n);
    std::fclose(file);
    return apply_toml_text(text, path, config);
}

result<void> validate(const broker_config& config) {
    if (config.data_dir.empty()) return config_error("data_dir must not be empty");
    if (config.message_max_bytes > static_cast<int64_t>(config.socket_request_max_bytes))
        return config_error("message_max_bytes must not exceed socket_request_max_bytes");
    if (config.log.segment_bytes < config.message_max_bytes)
        return config_error("log.segment_bytes must be at least message_max_bytes");
    return loopback_congestion_control_usable(config.loopback_congestion_control);
}

int64_t segment_files_per_shard(const broker_config& config, int64_t descriptor_limit,
                                uint32_t shards) {
    SPATE_ASSERT(shards > 0, "a broker has at least one shard");
    const int64_t total = config.segment_files_max > 0 ? config.segment_files_max
                                                       : std::max<int64_t>(descriptor_limit / 2, 0);
    return std::max<int64_t>(total / shards, segment_files_per_shard_min);
}

result<parsed_command_line> parse_command_line(int argc, char** argv) {
    parsed_command_line out;
    std::vector<std::string> args(argv + 1, argv + argc);
    // The config file first, so that every flag overrides it whatever the order.
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--config") {
            if (i + 1 >= args.size()) return config_error("--config needs a FILE");
            if (auto r = apply_toml_file(args[i + 1], out.config); !r) return r.failure();
        }
    }
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& flag = args[i];
        if (flag == "--help" || flag == "-h") {
            out.exit_now = true;
            out.exit_text = usage_text;
            return out;
        }
        if (flag == "--version") {
            out.exit_now = true;
            out.exit_text = "spate 0.1.0\n";
            return out;
        }
        if (i + 1 >= args.size()) return config_error("unknown flag or missing value: " + flag);
        const std::string& value = args[++i];
        result<void> applied;
        if (flag == "--config")
            continue;
        else if (flag == "--listen")
            applied =
                parse_host_port(value, "--listen", out.config.listen_host, out.config.listen_port);
        else if (flag == "--advertised")
            applied = parse_host_port(value, "--advertised", out.config.advertised_host,
                                      out.config.advertised_port);
        else if (flag == "--data-dir")
            out.config.data_dir = value;
        else if (flag == "--shards")
            applied = apply_toml_text("shards = " + value, "--shards", out.config);
        else if (flag == "--node-id")
            applied = apply_toml_text("node_id = " + value, "--node-id", out.config);
        else if (flag == "--zookeeper")
            out.config.zookeeper_connect = value;
        else if (flag == "--rack")
            out.config.rack = value;
        else
            return config_error("unknown flag: " + flag + "\n" + usage_text);
        if (!applied) return applied.failure();
    }
    if (auto r = validate(out.config); !r) return r.failure();
    return out;
}

}  // namespace spate::broker
