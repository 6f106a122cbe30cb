// spatectl's output layouts: Kafka's describe/perf/dump-log lines and JSON lines.

#include "tools/format.h"

#include <doctest/doctest.h>

#include <string>

#include "proto/error_code.h"

using namespace spate::tools;
using spate::proto::byte_view;

TEST_CASE("topic ids print as URL-safe base64 without padding, like Kafka's Uuid") {
    spate::proto::uuid zero;
    CHECK(format_topic_id(zero) == "AAAAAAAAAAAAAAAAAAAAAA");
    spate::proto::uuid id;
    for (size_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<uint8_t>(0xF0 + i);
    const auto text = format_topic_id(id);
    CHECK(text.size() == 22);
    CHECK(text.find_first_of("+/=") == std::string::npos);
    CHECK(text.substr(0, 4) == "8PHy");
}

TEST_CASE("describe prints kafka-topics' layout") {
    topic_row topic;
    topic.name = "orders";
    topic.partitions.push_back({0, 0, {0}, {0}, 0});
    topic.partitions.push_back({1, 0, {0}, {0}, 0});
    topic.configs = {{"cleanup.policy", "compact"}, {"retention.ms", "1000"}};
    CHECK(
        format_topic_describe(topic) ==
        "Topic: orders\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\tReplicationFactor: 1\t"
        "Configs: cleanup.policy=compact,retention.ms=1000\n"
        "\tTopic: orders\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0\n"
        "\tTopic: orders\tPartition: 1\tLeader: 0\tReplicas: 0\tIsr: 0\n");
    CHECK(format_topic_describe_json(topic) ==
          "{\"topic\":\"orders\",\"topic_id\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"partition_count\":2,"
          "\"replication_factor\":1,\"configs\":{\"cleanup.policy\":\"compact\",\"retention.ms\":"
          "\"1000\"},"
          "\"partitions\":[{\"partition\":0,\"leader\":0,\"replicas\":[0],\"isr\":[0]},"
          "{\"partition\":1,\"leader\":0,\"replicas\":[0],\"isr\":[0]}]}\n");
}

TEST_CASE("JSON strings escape control characters and replace invalid UTF-8") {
    CHECK(json_string("a\"b\\c\n\t\x01") == "\"a\\\"b\\\\c\\n\\t\\u0001\"");
    CHECK(json_string("h\xC3\xA9llo") == "\"h\xC3\xA9llo\"");
    const uint8_t invalid[] = {'x', 0xFF, 0xC3};
    CHECK(json_string(std::span<const uint8_t>(invalid)) == "\"x\\ufffd\\ufffd\"");
}

TEST_CASE("consumed records in each format") {
    consumed_record record;
    record.topic = "t";
    record.partition = 2;
    record.offset = 41;
    record.timestamp_ms = 1700000000000;
    record.key = byte_view("k");
    record.value = byte_view("v 1");
    std::string out;
    format_record(out, record, record_format::value);
    CHECK(out == "v 1\n");
    out.clear();
    format_record(out, record, record_format::kv);
    CHECK(out == "k\tv 1\n");
    out.clear();
    format_record(out, record, record_format::offsets);
    CHECK(out == "CreateTime:1700000000000\tPartition:2\tOffset:41\tk\tv 1\n");
    out.clear();
    record.key.reset();
    format_record(out, record, record_format::json);
    CHECK(out ==
          "{\"topic\":\"t\",\"partition\":2,\"offset\":41,\"timestamp\":1700000000000,"
          "\"key\":null,\"value\":\"v 1\",\"headers\":[]}\n");
    CHECK(parse_record_format("json"));
    CHECK_FALSE(parse_record_format("xml"));
}

TEST_CASE("--print-headers puts the headers first, as produce --headers takes them") {
    consumed_record record;
    record.topic = "t";
    record.key = byte_view("k");
    record.value = byte_view("v");
    std::string out;
    format_record(out, record, record_format::kv, true);
    CHECK(out == "NO_HEADERS\tk\tv\n");
    const std::vector<spate::proto::record_header_view> headers = {
        {"h1", byte_view("a:b")}, {"h2", std::nullopt}, {"h3", byte_view("")}};
    record.headers = headers;
    out.clear();
    format_record(out, record, record_format::value, true);
    CHECK(out == "h1:a:b,h2:null,h3:\tv\n");
    out.clear();
    format_record(out, record, record_format::kv);
    CHECK(out == "k\tv\n");
    out.clear();
    // JSON carries the headers whether asked or not, and nothing in front.
    format_record(out, record, record_format::json, true);
    CHECK(out ==
          "{\"topic\":\"t\",\"partition\":0,\"offset\":0,\"timestamp\":0,\"key\":\"k\","
          "\"value\":\"v\",\"headers\":[{\"key\":\"h1\",\"value\":\"a:b\"},"
          "{\"key\":\"h2\",\"value\":null},{\"key\":\"h3\",\"value\":\"\"}]}\n");
}

TEST_CASE("perf produce lines follow Kafka's format with microsecond latencies") {
    latency_histogram latency;
    for (int i = 0; i < 100; ++i) latency.record(500);
    latency.record(3200);
    produce_summary summary{1000, 1024000, 0.5, &latency};
    const auto line = format_produce_summary(summary);
    // Kafka's ordering: count, rate (%f), MB/sec, avg, max, 50th, 95th, 99th, 99.9th.
    CHECK(line ==
          "1000 records sent, 2000.000000 records/sec (1.95 MB/sec), 0.527 ms avg latency, "
          "3.200 ms max latency, 0.501 ms 50th, 0.501 ms 95th, 0.501 ms 99th, 3.200 ms 99.9th.");
    // The progress line: rate with one decimal, no percentiles, a full stop as Kafka's.
    CHECK(format_produce_progress(summary) ==
          "1000 records sent, 2000.0 records/sec (1.95 MB/sec), 0.527 ms avg latency, "
          "3.200 ms max latency.");
}

TEST_CASE("perf consume prints Kafka's CSV header and a data line") {
    consume_summary summary{2048, 2u << 20, 0, 2000, 2.0};
    const auto text = format_consume_summary(summary);
    CHECK(text.find("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, "
                    "nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n") ==
          0);
    CHECK(text.find(", 2.0000, 1.0000, 2048, 1024.0000, 0, 2000, 1.0000, 1024.0000\n") !=
          std::string::npos);
}

TEST_CASE("dump-log lines name kafka-dump-log's fields") {
    spate::proto::batch_header header;
    header.base_offset = 10;
    header.last_offset_delta = 2;
    header.records_count = 3;
    header.batch_length = 100;
    header.magic = 2;
    header.max_timestamp = 1700000000000;
    header.base_timestamp = 1700000000000;
    const auto line = format_batch_line(header, 0, true);
    CHECK(line.find("baseOffset: 10 lastOffset: 12 count: 3 ") == 0);
    CHECK(
        line.find("position: 0 CreateTime: 1700000000000 size: 112 magic: 2 compresscodec: none") !=
        std::string::npos);
    CHECK(line.find("isvalid: true") != std::string::npos);

    spate::proto::record_view record;
    record.offset_delta = 1;
    record.timestamp_delta = 5;
    record.key = byte_view("key");
    record.value = byte_view("hello");
    CHECK(format_record_line(header, record, true) ==
          "| offset: 11 CreateTime: 1700000000005 keySize: 3 valueSize: 5 sequence: -1 headerKeys: "
          "[] "
          "key: key payload: hello");
    CHECK(format_record_line(header, record, false).find("payload") == std::string::npos);
}

TEST_CASE("topic errors read as a sentence with Kafka's error name") {
    const auto code = spate::proto::code(spate::proto::error_code::unknown_topic_or_partition);
    CHECK(describe_topic_error("x", code, std::nullopt) ==
          "topic \"x\" does not exist (UNKNOWN_TOPIC_OR_PARTITION)");
    const auto exists = spate::proto::code(spate::proto::error_code::topic_already_exists);
    // The broker's message would only repeat what the sentence says already.
    CHECK(describe_topic_error("x", exists, std::string("Topic 'x' already exists.")) ==
          "topic \"x\" already exists (TOPIC_ALREADY_EXISTS)");
    CHECK(describe_topic_error("x", code, std::string("topic does not exist")) ==
          "topic \"x\" does not exist (UNKNOWN_TOPIC_OR_PARTITION)");
    // Otherwise it carries the detail.
    const auto invalid = spate::proto::code(spate::proto::error_code::invalid_config);
    CHECK(describe_topic_error("x", invalid, std::string("retention.ms must be a number")) ==
          "topic \"x\": invalid config: retention.ms must be a number (INVALID_CONFIG)");
}

TEST_CASE("groups describe prints kafka-consumer-groups' table and JSON") {
    group_description group;
    group.group = "g";
    group.state = "Stable";
    group.protocol_type = "consumer";
    group.protocol = "range";
    group.members.push_back({"m1", "spatectl", "/127.0.0.1", {{"t", {0}}}});
    group.partitions.push_back({"t", 0, 3, 10, "m1", "/127.0.0.1", "spatectl"});
    group.partitions.push_back({"t", 1, std::nullopt, 5, "", "", ""});
    CHECK(
        format_group_describe(group) ==
        "Consumer group 'g' is Stable with 1 member(s).\n\n"
        "GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST       CLIENT-ID\n"
        "g     t     0         3              10             7   m1          /127.0.0.1 spatectl\n"
        "g     t     1         -              5              -   -           -          -\n");
    CHECK(format_group_describe_json(group) ==
          "{\"group\":\"g\",\"state\":\"Stable\",\"protocol_type\":\"consumer\",\"protocol\":"
          "\"range\","
          "\"members\":[{\"member_id\":\"m1\",\"client_id\":\"spatectl\",\"host\":\"/127.0.0.1\","
          "\"assignment\":[{\"topic\":\"t\",\"partitions\":[0]}]}],\"partitions\":["
          "{\"topic\":\"t\",\"partition\":0,\"current_offset\":3,\"log_end_offset\":10,\"lag\":7,"
          "\"consumer_id\":\"m1\",\"host\":\"/127.0.0.1\",\"client_id\":\"spatectl\"},"
          "{\"topic\":\"t\",\"partition\":1,\"current_offset\":null,\"log_end_offset\":5,\"lag\":"
          "null,"
          "\"consumer_id\":null,\"host\":null,\"client_id\":null}]}\n");
}
