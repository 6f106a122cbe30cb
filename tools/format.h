#pragma once
// Output formats of spatectl: the layouts Kafka's stock tools print (so that scripts and
// habits carry over) and JSON lines for --json. Pure functions from values to text, so
// the tests can pin every layout; any thread may call them.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/record_batch.h"
#include "proto/result.h"
#include "proto/types.h"
#include "tools/histogram.h"

namespace spate::tools {

// A topic id as Kafka prints it: URL-safe base64 of the 16 bytes, without padding.
std::string format_topic_id(const proto::uuid& id);

// A JSON string literal for `bytes` (quotes included). Bytes are taken as UTF-8; control
// characters, quotes and backslashes are escaped; invalid UTF-8 bytes become U+FFFD.
std::string json_string(std::span<const uint8_t> bytes);
inline std::string json_string(std::string_view text) {
    return json_string(proto::byte_view(text));
}

struct partition_row {
    int32_t partition = 0;
    int32_t leader = -1;
    std::vector<int32_t> replicas;
    std::vector<int32_t> isr;
    int16_t error_code = 0;
};

struct topic_row {
    std::string name;
    proto::uuid topic_id;
    std::vector<partition_row> partitions;
    std::vector<std::pair<std::string, std::string>> configs;  // non-default configs only
};

// kafka-topics.sh --describe layout: a topic line, then one tab-indented line per partition.
std::string format_topic_describe(const topic_row& topic);
// One JSON object per topic (one line).
std::string format_topic_describe_json(const topic_row& topic);

enum class record_format : uint8_t {
    value,    // the value only
    kv,       // key TAB value
    offsets,  // CreateTime:T TAB Partition:P TAB Offset:O TAB key TAB value
    json,     // one JSON object per record
};
result<record_format> parse_record_format(std::string_view text);

struct consumed_record {
    std::string_view topic;
    int32_t partition = 0;
    int64_t offset = 0;
    int64_t timestamp_ms = 0;
    bool log_append_time = false;
    std::optional<std::span<const uint8_t>> key;
    std::optional<std::span<const uint8_t>> value;
    std::span<const proto::record_header_view> headers;
};

// Appends one record and its newline to `out` (raw bytes for value/kv/offsets, so a
// produce -> consume round trip is byte-identical; "null" stands for a null key/value).
// With `print_headers` the text formats start with the headers as `produce --headers`
// takes them ("k1:v1,k2:v2", "NO_HEADERS" when there are none, as Kafka's console
// consumer prints them) and a TAB; json always carries the headers.
void format_record(std::string& out, const consumed_record& record, record_format format,
                   bool print_headers = false);

struct produce_summary {
    uint64_t records = 0;
    uint64_t bytes = 0;
    double seconds = 0;
    const latency_histogram* latency_us = nullptr;
};
// kafka-producer-perf-test's final line, field for field (records/sec with six decimals
// as Kafka's %f prints it), except that latencies keep microseconds (three decimals of a
// ms) instead of Kafka's whole milliseconds: e.g. "1000 records sent, 2000.000000
// records/sec (1.95 MB/sec), 0.512 ms avg latency, 3.200 ms max latency, 0.400 ms 50th,
// 0.900 ms 95th, 1.200 ms 99th, 3.100 ms 99.9th."
std::string format_produce_summary(const produce_summary& summary);
// The 5-second progress line, over that window only (records, rate and latencies of the
// records acknowledged in it): "N records sent, X records/sec (Y MB/sec), A ms avg
// latency, M ms max latency."
std::string format_produce_progress(const produce_summary& summary);

struct consume_summary {
    uint64_t records = 0;
    uint64_t bytes = 0;
    int64_t start_ms = 0;  // wall clock, for the CSV's start.time/end.time
    int64_t end_ms = 0;
    double seconds = 0;  // measured fetch time
};
// kafka-consumer-perf-test's CSV header and data line.
std::string format_consume_summary(const consume_summary& summary);

// "YYYY-MM-DD HH:MM:SS:mmm" in local time, as kafka-consumer-perf-test prints times.
std::string format_wall_time(int64_t unix_ms);

// dump-log: one line per batch and per record, in kafka-dump-log.sh's words.
std::string format_batch_line(const proto::batch_header& header, int64_t position, bool crc_valid);
std::string format_record_line(const proto::batch_header& header, const proto::record_view& record,
                               bool print_payload);

// One row of `groups describe`: a partition the group has a committed offset for or
// that a member owns. Absent values print as "-" (text) or null (JSON).
struct group_partition_row {
    std::string topic;
    int32_t partition = 0;
    std::optional<int64_t> current_offset;
    std::optional<int64_t> log_end_offset;
    std::string consumer_id;  // empty: no member owns the partition
    std::string host;
    std::string client_id;
};

struct group_member_row {
    std::string member_id;
    std::string client_id;
    std::string host;
    std::vector<std::pair<std::string, std::vector<int32_t>>> assignment;  // topic, partitions
};

struct group_description {
    std::string group;
    std::string state;
    std::string protocol_type;
    std::string protocol;
    std::vector<group_member_row> members;
    std::vector<group_partition_row> partitions;  // sorted by topic, partition
};

// A state line, a blank line, then kafka-consumer-groups.sh --describe's table: GROUP
// TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID, columns
// padded to their widest value. LAG is log end minus committed, "-" without both.
std::string format_group_describe(const group_description& group);
// The same as one JSON object (one line), members with their assignments included.
std::string format_group_describe_json(const group_description& group);

// `topic "x" does not exist (UNKNOWN_TOPIC_OR_PARTITION)`-style phrasing for a Kafka error
// code about a topic: `<what> (<ERROR_NAME>)`, with a friendlier <what> for common codes.
std::string describe_topic_error(std::string_view topic, int16_t code,
                                 const std::optional<std::string>& broker_message);

}  // namespace spate::tools
