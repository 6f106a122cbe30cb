// spatectl's command-line parsing: globals anywhere, per-command flag tables, usage errors.

#include "tools/args.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "proto/record_batch.h"
#include "tools/client_options.h"
#include "tools/connection.h"

using namespace spate::tools;

namespace {
spate::result<command_line> parse(std::vector<std::string_view> arguments) {
    return parse_command_line(arguments);
}
}  // namespace

TEST_CASE("endpoints parse host:port, bracketed IPv6 and lists") {
    auto one = parse_endpoint("broker-1:9093");
    REQUIRE(one);
    CHECK(one->host == "broker-1");
    CHECK(one->port == 9093);
    auto six = parse_endpoint("[::1]:9092");
    REQUIRE(six);
    CHECK(six->host == "::1");
    CHECK_FALSE(parse_endpoint("nohost"));
    CHECK_FALSE(parse_endpoint("h:0"));
    CHECK_FALSE(parse_endpoint("h:70000"));
    CHECK_FALSE(parse_endpoint(":9092"));
    auto list = parse_bootstrap("a:1,b:2");
    REQUIRE(list);
    CHECK(list->size() == 2);
    CHECK((*list)[1] == endpoint{"b", 2});
}

TEST_CASE("defaults: bootstrap 127.0.0.1:9092, 30 s timeout, text output") {
    auto line = parse({"topics", "list"});
    REQUIRE(line);
    CHECK(line->command->path == "topics list");
    REQUIRE(line->global.bootstrap.size() == 1);
    CHECK(line->global.bootstrap[0] == endpoint{"127.0.0.1", 9092});
    CHECK(line->global.timeout_ms == 30000);
    CHECK_FALSE(line->global.json);
}

TEST_CASE("global flags are accepted before and after the command") {
    auto line = parse({"--bootstrap-server", "h:1", "topics", "create", "--topic", "t",
                       "--timeout=500", "-X", "acks=all", "-Xlinger.ms=5", "--json", "--partitions",
                       "3", "--config", "a=1", "--config=b=2"});
    REQUIRE(line);
    CHECK(line->command->path == "topics create");
    CHECK(line->global.bootstrap[0] == endpoint{"h", 1});
    CHECK(line->global.timeout_ms == 500);
    CHECK(line->global.json);
    CHECK(line->setting("acks") == "all");
    CHECK(line->setting("linger.ms") == "5");
    CHECK(line->value("--topic") == "t");
    auto partitions = line->integer("--partitions", -1, 1, 100);
    REQUIRE(partitions);
    CHECK(partitions.value() == 3);
    CHECK(line->values("--config") == std::vector<std::string>{"a=1", "b=2"});
}

TEST_CASE("usage errors carry code 2 and name the problem") {
    auto unknown_command = parse({"frobnicate"});
    REQUIRE_FALSE(unknown_command);
    CHECK(unknown_command.failure().code == usage_error_code);
    CHECK(unknown_command.failure().message.find("frobnicate") != std::string::npos);

    auto unknown_flag = parse({"topics", "list", "--bogus"});
    REQUIRE_FALSE(unknown_flag);
    CHECK(unknown_flag.failure().code == usage_error_code);
    CHECK(unknown_flag.failure().message.find("--bogus") != std::string::npos);

    auto missing_value = parse({"produce", "--topic"});
    REQUIRE_FALSE(missing_value);
    CHECK(missing_value.failure().code == usage_error_code);

    auto no_subcommand = parse({"topics"});
    REQUIRE_FALSE(no_subcommand);
    CHECK(no_subcommand.failure().code == usage_error_code);

    auto switch_with_value = parse({"consume", "--topic", "t", "--from-beginning=yes"});
    REQUIRE_FALSE(switch_with_value);

    auto stray = parse({"topics", "list", "extra"});
    REQUIRE_FALSE(stray);
    CHECK(stray.failure().message.find("extra") != std::string::npos);

    CHECK_FALSE(parse({}));
    CHECK_FALSE(parse({"--timeout", "0", "topics", "list"}));
    CHECK_FALSE(parse({"--bootstrap-server", "nope", "topics", "list"}));
    CHECK_FALSE(parse({"-X", "novalue", "topics", "list"}));
    CHECK_FALSE(parse({"dump-log"}));
}

namespace {
// A scratch file holding `text`, removed when the test ends.
class scratch_file {
public:
    explicit scratch_file(const std::string& text) {
        char name[] = "/tmp/spatectl-args-XXXXXX";
        const int fd = ::mkstemp(name);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
        ::close(fd);
        _path = name;
    }
    ~scratch_file() { ::unlink(_path.c_str()); }
    const std::string& path() const { return _path; }

private:
    std::string _path;
};
}  // namespace

TEST_CASE("--command-config reads Kafka properties: key=value lines and comments") {
    scratch_file config(
        "# producer settings\n\n! old-style comment\n acks = all \nlinger.ms=7\n"
        "bootstrap.servers=h1:1,h2:2\n");
    auto line = parse({"--command-config", config.path(), "-X", "linger.ms=9", "topics", "list"});
    REQUIRE(line);
    CHECK(line->setting("acks") == "all");
    // Later settings win: -X after the file overrides the file's linger.ms.
    CHECK(line->setting("linger.ms") == "9");
    // bootstrap.servers stands in for --bootstrap-server ...
    REQUIRE(line->global.bootstrap.size() == 2);
    CHECK(line->global.bootstrap[1] == endpoint{"h2", 2});
    // ... which wins when both are given, wherever the flag stands.
    auto flagged = parse(
        {"topics", "list", "--command-config=" + config.path(), "--bootstrap-server", "h3:3"});
    REQUIRE(flagged);
    REQUIRE(flagged->global.bootstrap.size() == 1);
    CHECK(flagged->global.bootstrap[0] == endpoint{"h3", 3});
}

TEST_CASE("unknown client settings are usage errors naming the key and where it came from") {
    auto typo = parse({"-X", "lingerms=5", "topics", "list"});
    REQUIRE_FALSE(typo);
    CHECK(typo.failure().code == usage_error_code);
    CHECK(typo.failure().message.find("\"lingerms\" in -X") != std::string::npos);
    scratch_file config("acks=1\nsasl.mechanism=PLAIN\n");
    auto from_file = parse({"--command-config", config.path(), "topics", "list"});
    REQUIRE_FALSE(from_file);
    CHECK(from_file.failure().code == usage_error_code);
    CHECK(from_file.failure().message.find(config.path() + ":2") != std::string::npos);
    scratch_file no_equals("acks\n");
    auto malformed = parse({"--command-config", no_equals.path(), "topics", "list"});
    REQUIRE_FALSE(malformed);
    CHECK(malformed.failure().code == usage_error_code);
    // An unreadable file is an operating error (exit 1), not a usage mistake.
    auto missing = parse({"--command-config", "/nonexistent/client.properties", "topics", "list"});
    REQUIRE_FALSE(missing);
    CHECK(missing.failure().code == 1);
    CHECK(missing.failure().message.find("/nonexistent/client.properties") != std::string::npos);
    // Every known name is accepted.
    for (const auto name : client_setting_names()) {
        const std::string text = std::string(name) + (name == "bootstrap.servers" ? "=h:1" : "=1");
        CHECK(parse({"-X", text, "topics", "list"}));
    }
}

TEST_CASE("the usage names the global flags, the client settings and perf produce --partitions") {
    const auto text = usage_text();
    CHECK(text.find("--command-config FILE") != std::string::npos);
    CHECK(text.find("max.in.flight.requests.per.connection") != std::string::npos);
    CHECK(text.find("--partitions N creates the topic") != std::string::npos);
    auto line =
        parse({"perf", "produce", "--topic", "t", "--num-records", "1", "--partitions", "4"});
    REQUIRE(line);
    CHECK(line->value("--partitions") == "4");
}

TEST_CASE("integer flags are range-checked") {
    auto line = parse({"perf", "produce", "--topic", "t", "--num-records", "abc"});
    REQUIRE(line);
    auto records = line->integer("--num-records", 0, 1, 100);
    REQUIRE_FALSE(records);
    CHECK(records.failure().code == usage_error_code);
    CHECK(records.failure().message.find("--num-records") != std::string::npos);
    auto fallback = line->integer("--record-size", 100, 0, 1000);
    REQUIRE(fallback);
    CHECK(fallback.value() == 100);
    auto required = line->required("--throughput");
    REQUIRE_FALSE(required);
    CHECK(required.failure().message.find("--throughput") != std::string::npos);
}

TEST_CASE("dump-log takes files as positionals and --print-data-log as a switch") {
    auto line = parse({"dump-log", "--print-data-log", "a.log", "b.log"});
    REQUIRE(line);
    CHECK(line->has("--print-data-log"));
    CHECK(line->positionals == std::vector<std::string>{"a.log", "b.log"});
}

TEST_CASE("key=value pairs split at the first '='") {
    auto pair = parse_key_value("retention.ms=1=2", "--config");
    REQUIRE(pair);
    CHECK(pair->first == "retention.ms");
    CHECK(pair->second == "1=2");
    CHECK_FALSE(parse_key_value("=v", "--config"));
    CHECK_FALSE(parse_key_value("k", "--config"));
}

TEST_CASE("producer settings: flags win over -X, bad values are usage errors") {
    auto line = parse({"-X", "acks=0", "-X", "compression.type=zstd", "perf", "produce", "--acks",
                       "all", "--batch-size", "1024"});
    REQUIRE(line);
    auto settings = parse_producer_settings(line.value(), 1);
    REQUIRE(settings);
    CHECK(settings->acks == -1);
    CHECK(settings->codec == spate::proto::compression_codec::zstd);
    CHECK(settings->batch_bytes == 1024);
    CHECK(settings->linger_ms == 0);
    CHECK(settings->max_in_flight == 5);

    CHECK_FALSE(parse_acks("2"));
    CHECK_FALSE(parse_compression("brotli"));
    auto bad = parse({"produce", "--linger-ms", "-1"});
    REQUIRE(bad);
    auto rejected = parse_producer_settings(bad.value(), 1);
    REQUIRE_FALSE(rejected);
    CHECK(rejected.failure().code == usage_error_code);
}

TEST_CASE("--headers splits at ',' and each header at its first ':'") {
    auto headers = parse_header_settings("k1:v1,k2:a:b,bare,empty:");
    REQUIRE(headers);
    CHECK(headers.value() ==
          std::vector<header_setting>{
              {"k1", "v1"}, {"k2", "a:b"}, {"bare", std::nullopt}, {"empty", ""}});
    for (std::string_view bad : {"", ":v", "k:v,", "k:v,,x:y"}) {
        auto rejected = parse_header_settings(bad);
        REQUIRE_FALSE(rejected);
        CHECK(rejected.failure().code == usage_error_code);
    }
}

TEST_CASE("the new perf flags belong to their commands") {
    CHECK(parse({"produce", "--topic", "t", "--headers", "a:1"}));
    CHECK(parse({"consume", "--topic", "t", "--print-headers"}));
    CHECK(parse({"perf", "produce", "--topic", "t", "--payload-file", "f", "--idempotence"}));
    CHECK(parse({"perf", "consume", "--topic", "t", "--threads", "4"}));
    auto e2e = parse({"perf", "e2e", "--topic", "t", "--num-records", "10", "--acks", "all"});
    REQUIRE(e2e);
    CHECK(e2e->command->path == "perf e2e");
    CHECK_FALSE(parse({"perf", "e2e", "--threads", "2"}));
}

TEST_CASE("the key hash is Kafka's murmur2, made positive") {
    // Reference values of Kafka's murmur2 (signed), from its own unit tests.
    auto positive = [](int32_t signed_hash) {
        return static_cast<uint32_t>(signed_hash) & 0x7fffffffu;
    };
    CHECK(kafka_key_hash(spate::proto::byte_view("21")) == positive(-973932308));
    CHECK(kafka_key_hash(spate::proto::byte_view("foobar")) == positive(-790332482));
    CHECK(kafka_key_hash(spate::proto::byte_view("a-little-bit-long-string")) ==
          positive(-985981536));
    CHECK(kafka_key_hash(spate::proto::byte_view("abc")) == positive(479470107));
}

TEST_CASE("version negotiation picks min(ours, broker's) inside both ranges") {
    CHECK(pick_version(0, 9, version_range{0, 11}) == 9);
    CHECK(pick_version(0, 9, version_range{3, 7}) == 7);
    CHECK_FALSE(pick_version(0, 2, version_range{3, 7}));
    CHECK_FALSE(pick_version(4, 9, version_range{0, 3}));
    CHECK(api_display_name(16) == "ListGroups");
    CHECK(api_display_name(18) == "ApiVersions");
}
