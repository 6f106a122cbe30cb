#include "broker/config.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "broker/metadata.h"
#include "broker/topic_config.h"

using namespace spate::broker;

TEST_CASE("TOML keys set the config; unknown keys and bad values name the key") {
    broker_config config;
    REQUIRE(
        apply_toml_text("listen = \"0.0.0.0:19092\"\nshards = 3\n[log]\nsegment_bytes = 1048576\n",
                        "test", config));
    CHECK(config.listen_host == "0.0.0.0");
    CHECK(config.listen_port == 19092);
    CHECK(config.shards == 3);
    CHECK(config.log.segment_bytes == 1048576);
    CHECK(config.pin_shards);
    REQUIRE(apply_toml_text("pin_shards = false\n", "test", config));
    CHECK_FALSE(config.pin_shards);

    auto unknown = apply_toml_text("colour = 3\n", "test", config);
    REQUIRE_FALSE(unknown);
    CHECK(unknown.failure().message.find("colour") != std::string::npos);

    auto bad = apply_toml_text("shards = \"many\"\n", "test", config);
    REQUIRE_FALSE(bad);
    CHECK(bad.failure().message.find("shards") != std::string::npos);

    auto nested_unknown = apply_toml_text("[log]\nsegment_size = 1\n", "test", config);
    REQUIRE_FALSE(nested_unknown);
    CHECK(nested_unknown.failure().message.find("log.segment_size") != std::string::npos);

    auto syntax = apply_toml_text("shards = \n", "file.toml", config);
    REQUIRE_FALSE(syntax);
    CHECK(syntax.failure().message.find("file.toml:1") != std::string::npos);
}

TEST_CASE("flags override the file and bad flags are errors") {
    const char* argv[] = {"spate", "--listen",   "127.0.0.1:0", "--shards",
                          "2",     "--data-dir", "/tmp/x"};
    auto parsed = parse_command_line(7, const_cast<char**>(argv));
    REQUIRE(parsed);
    CHECK(parsed->config.listen_port == 0);
    CHECK(parsed->config.shards == 2);
    CHECK(parsed->config.data_dir == "/tmp/x");

    const char* bad_port[] = {"spate", "--listen", "localhost:99999"};
    CHECK_FALSE(parse_command_line(3, const_cast<char**>(bad_port)));
    const char* unknown[] = {"spate", "--colour", "red"};
    CHECK_FALSE(parse_command_line(3, const_cast<char**>(unknown)));
    const char* version[] = {"spate", "--version"};
    auto v = parse_command_line(2, const_cast<char**>(version));
    REQUIRE(v);
    CHECK(v->exit_now);
}

TEST_CASE("partitions_max and the segment descriptor budget") {
    broker_config config;
    CHECK(config.partitions_max == 10000);
    REQUIRE(apply_toml_text("partitions_max = 250\nsegment_files_max = 90\n", "test", config));
    CHECK(config.partitions_max == 250);
    // An explicit budget is shared evenly, never below the per-shard minimum.
    CHECK(segment_files_per_shard(config, 20000, 3) == 30);
    CHECK(segment_files_per_shard(config, 20000, 64) == segment_files_per_shard_min);
    // 0 derives it from the descriptor limit: half of it, for all shards together.
    REQUIRE(apply_toml_text("segment_files_max = 0\n", "test", config));
    CHECK(segment_files_per_shard(config, 20000, 2) == 5000);
    CHECK(segment_files_per_shard(config, 256, 2) == 64);
    CHECK(segment_files_per_shard(config, 20, 2) == segment_files_per_shard_min);
    CHECK(config.segment_files_idle_ms == 60000);
    CHECK_FALSE(apply_toml_text("segment_files_idle_ms = 10\n", "test", config));
    auto zero = apply_toml_text("partitions_max = 0\n", "test", config);
    REQUIRE_FALSE(zero);
    CHECK(zero.failure().message.find("partitions_max") != std::string::npos);
}

TEST_CASE("topic names follow Kafka's rules") {
    CHECK(valid_topic_name("orders.v1_eu-west"));
    CHECK_FALSE(valid_topic_name(""));
    CHECK_FALSE(valid_topic_name("."));
    CHECK_FALSE(valid_topic_name(".."));
    CHECK_FALSE(valid_topic_name("has space"));
    CHECK_FALSE(valid_topic_name(std::string(250, 'a')));
}

TEST_CASE("topic configs: only honoured names, validated values, overrides win") {
    CHECK(validate_topic_config("retention.ms", "1000"));
    CHECK(validate_topic_config("retention.ms", "-1"));
    CHECK_FALSE(validate_topic_config("retention.ms", "soon"));
    CHECK_FALSE(validate_topic_config("segment.bytes", "1"));
    CHECK_FALSE(validate_topic_config("cleanup.policy", "compacted"));
    CHECK_FALSE(validate_topic_config("no.such.config", "1"));
    CHECK(validate_topic_config("message.timestamp.type", "LogAppendTime"));

    broker_config broker;
    auto effective = effective_config(
        broker, {{"retention.ms", "5000"}, {"message.timestamp.type", "LogAppendTime"}});
    CHECK(effective.log.retention_ms == 5000);
    CHECK(effective.timestamps == timestamp_type::log_append_time);
    CHECK(effective.log.segment_bytes == broker.log.segment_bytes);

    auto described = describe_topic_configs(broker, {{"retention.ms", "5000"}});
    bool found = false;
    for (const auto& c : described) {
        if (c.name != "retention.ms") continue;
        found = true;
        CHECK(c.value == "5000");
        CHECK_FALSE(c.is_default);
    }
    CHECK(found);
}

TEST_CASE("cleanup.policy accepts delete, compact and both; the log config follows") {
    for (const char* value : {"delete", "compact", "compact,delete", "delete,compact"})
        CHECK(validate_topic_config("cleanup.policy", value));
    CHECK_FALSE(validate_topic_config("cleanup.policy", ""));
    CHECK_FALSE(validate_topic_config("cleanup.policy", "compact,"));
    CHECK(validate_topic_config("delete.retention.ms", "0"));
    CHECK_FALSE(validate_topic_config("delete.retention.ms", "-1"));
    CHECK(validate_topic_config("min.compaction.lag.ms", "60000"));

    broker_config broker;
    auto plain = effective_config(broker, {});
    CHECK(plain.log.cleanup_delete);
    CHECK_FALSE(plain.log.cleanup_compact);
    auto compact = effective_config(broker, {{"cleanup.policy", "compact"},
                                             {"delete.retention.ms", "1000"},
                                             {"min.compaction.lag.ms", "5"}});
    CHECK_FALSE(compact.log.cleanup_delete);
    CHECK(compact.log.cleanup_compact);
    CHECK(compact.log.delete_retention_ms == 1000);
    CHECK(compact.log.min_compaction_lag_ms == 5);
    auto both = effective_config(broker, {{"cleanup.policy", "delete,compact"}});
    CHECK(both.log.cleanup_delete);
    CHECK(both.log.cleanup_compact);

    auto value_of = [&](const topic_configs& overrides, const std::string& name) {
        for (const auto& c : describe_topic_configs(broker, overrides))
            if (c.name == name) return c.value;
        return std::string("(missing)");
    };
    CHECK(value_of({}, "cleanup.policy") == "delete");
    CHECK(value_of({{"cleanup.policy", "compact"}}, "cleanup.policy") == "compact");
    CHECK(value_of({{"cleanup.policy", "delete,compact"}}, "cleanup.policy") == "compact,delete");
    CHECK(value_of({}, "delete.retention.ms") == "86400000");
}

TEST_CASE("uuids round-trip through their text form") {
    auto id = random_uuid();
    CHECK_FALSE(id.is_zero());
    auto text = uuid_to_string(id);
    auto back = uuid_from_string(text);
    REQUIRE(back);
    CHECK(*back == id);
    CHECK_FALSE(uuid_from_string("xyz"));
}

TEST_CASE("connection limits and timeouts: defaults, keys and ranges") {
    // Issue 10 (defects 5 and 6): the settings that bound idle connections, stalled requests,
    // memory held by half-received requests and connections per address.
    broker_config config;
    CHECK(config.connections_max == 10000);
    CHECK(config.max_connections_per_ip == 1000);
    CHECK(config.connections_max_idle_ms == 600000);
    CHECK(config.request_receive_timeout_ms == 30000);
    CHECK(config.queued_max_request_bytes == uint64_t{512} << 20);
    REQUIRE(
        apply_toml_text("max_connections_per_ip = 0\nconnections_max_idle_ms = 1000\n"
                        "request_receive_timeout_ms = 500\n"
                        "queued_max_request_bytes = 1073741824\n",
                        "test", config));
    CHECK(config.max_connections_per_ip == 0);
    CHECK(config.connections_max_idle_ms == 1000);
    CHECK(config.request_receive_timeout_ms == 500);
    CHECK(config.queued_max_request_bytes == uint64_t{1} << 30);
    for (const char* bad : {"connections_max_idle_ms = 0", "request_receive_timeout_ms = -1",
                            "queued_max_request_bytes = 1000", "max_connections_per_ip = -1"}) {
        auto refused = apply_toml_text(std::string(bad) + "\n", "test", config);
        REQUIRE_FALSE(refused);
        const std::string key(bad, std::strchr(bad, ' '));
        CHECK(refused.failure().message.find(key) != std::string::npos);
    }
}
