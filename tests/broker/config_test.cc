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

    CHECK(config.loopback_fetch_max_bytes == 3 << 20);
    REQUIRE(apply_toml_text("loopback_fetch_max_bytes = 0\n", "test", config));
    CHECK(config.loopback_fetch_max_bytes == 0);
    auto tiny = apply_toml_text("loopback_fetch_max_bytes = 100\n", "test", config);
    REQUIRE_FALSE(tiny);
    CHECK(tiny.failure().message.find("loopback_fetch_max_bytes") != std::string::npos);

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

TEST_CASE("tail padding is off under the fsync policy unless the config says otherwise") {
    const auto padded = [](const std::string& toml) {
        broker_config config;
        REQUIRE(apply_toml_text(toml, "test", config));
        return effective_config(config, {}).log.tail_padding;
    };
    CHECK(padded(""));
    CHECK_FALSE(padded("acks_all_policy = \"fsync\"\n"));
    CHECK(padded("acks_all_policy = \"fsync\"\n[log]\ntail_padding = true\n"));
    CHECK_FALSE(padded("[log]\ntail_padding = false\n"));
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

TEST_CASE("topic configs: Kafka's names only, validated values, overrides win") {
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

TEST_CASE(
    "loopback_congestion_control: the system's unless set; a name the kernel refuses "
    "fails validation") {
    broker_config config;
    CHECK(config.loopback_congestion_control.empty());
    CHECK(validate(config));
    REQUIRE(apply_toml_text("loopback_congestion_control = \"reno\"\n", "test", config));
    CHECK(config.loopback_congestion_control == "reno");
    CHECK(validate(config));  // reno is in every kernel, and always allowed

    // A name the kernel does not know passes the syntax check and fails validation.
    REQUIRE(apply_toml_text("loopback_congestion_control = \"nosuchcc\"\n", "test", config));
    auto refused = validate(config);
    REQUIRE_FALSE(refused);
    CHECK(refused.failure().message.find("nosuchcc") != std::string::npos);
    CHECK(refused.failure().message.find("loopback_congestion_control") != std::string::npos);

    for (const char* bad : {"loopback_congestion_control = \"two words\"",
                            "loopback_congestion_control = \"much-too-long-a-name\"",
                            "loopback_congestion_control = 3"}) {
        auto malformed = apply_toml_text(std::string(bad) + "\n", "test", config);
        REQUIRE_FALSE(malformed);
        CHECK(malformed.failure().message.find("loopback_congestion_control") != std::string::npos);
    }
}

TEST_CASE("topic configs: Kafka's validators for booleans, ratios, enums, lists and ranges") {
    CHECK(validate_topic_config("preallocate", "TRUE"));
    CHECK(validate_topic_config("unclean.leader.election.enable", " false "));
    CHECK_FALSE(validate_topic_config("preallocate", "yes"));
    CHECK(validate_topic_config("min.cleanable.dirty.ratio", "0"));
    CHECK(validate_topic_config("min.cleanable.dirty.ratio", "1"));
    CHECK_FALSE(validate_topic_config("min.cleanable.dirty.ratio", "1.01"));
    CHECK_FALSE(validate_topic_config("min.cleanable.dirty.ratio", "nan"));
    for (const char* codec : {"producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"})
        CHECK(validate_topic_config("compression.type", codec));
    CHECK_FALSE(validate_topic_config("compression.type", "none"));
    CHECK(validate_topic_config("compression.gzip.level", "-1"));
    CHECK_FALSE(validate_topic_config("compression.gzip.level", "0"));
    CHECK(validate_topic_config("compression.zstd.level", "-131072"));
    CHECK_FALSE(validate_topic_config("compression.lz4.level", "18"));
    CHECK(validate_topic_config("leader.replication.throttled.replicas", ""));
    CHECK(validate_topic_config("leader.replication.throttled.replicas", "0:1,3:2"));
    CHECK_FALSE(validate_topic_config("leader.replication.throttled.replicas", "0:1,"));
    CHECK(validate_topic_config("message.format.version", "0.10.2"));
    CHECK(validate_topic_config("message.format.version", "3.0-IV1"));
    CHECK_FALSE(validate_topic_config("message.format.version", "3"));
    CHECK_FALSE(validate_topic_config("message.format.version", "3.0-IV"));
    CHECK(validate_topic_config("remote.storage.enable", "false"));
    CHECK_FALSE(validate_topic_config("remote.storage.enable", "true"));
    CHECK_FALSE(validate_topic_config("min.insync.replicas", "0"));
    CHECK_FALSE(validate_topic_config("max.message.bytes", "2147483648"));
    CHECK(validate_topic_config("local.retention.ms", "-2"));
    CHECK_FALSE(validate_topic_config("local.retention.ms", "-3"));
}

TEST_CASE("topic configs: honoured values reach the effective config") {
    broker_config broker;
    auto c = effective_config(broker, {{"compression.type", "zstd"},
                                       {"min.insync.replicas", "2"},
                                       {"preallocate", "true"},
                                       {"segment.jitter.ms", "5000"},
                                       {"message.downconversion.enable", "false"},
                                       {"message.timestamp.difference.max.ms", "1000"},
                                       {"message.timestamp.after.max.ms", "50"}});
    CHECK(c.compression == topic_compression::zstd);
    CHECK(c.min_insync_replicas == 2);
    CHECK(c.log.preallocate);
    CHECK(c.log.segment_jitter_ms == 5000);
    CHECK_FALSE(c.downconversion_enable);
    // difference.max.ms stands in for the side left at its default only.
    CHECK(c.timestamp_before_limit_ms() == 1000);
    CHECK(c.timestamp_after_limit_ms() == 50);
    auto plain = effective_config(broker, {});
    CHECK(plain.compression == topic_compression::producer);
    CHECK(plain.timestamp_before_limit_ms() == INT64_MAX);
    // Stored-only configs describe the stored value, or Kafka's default.
    for (const auto& d :
         describe_topic_configs(broker, {{"unclean.leader.election.enable", "true"}})) {
        if (d.name == "unclean.leader.election.enable") CHECK(d.value == "true");
        if (d.name == "segment.index.bytes") CHECK(d.value == "10485760");
    }
}
