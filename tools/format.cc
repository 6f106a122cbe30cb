#include "tools/format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "proto/error_code.h"

namespace spate::tools {

namespace {

std::string_view as_text(std::span<const uint8_t> bytes) {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

void append_optional(std::string& out, const std::optional<std::span<const uint8_t>>& bytes) {
    if (bytes)
        out += as_text(*bytes);
    else
        out += "null";
}

void append_json_optional(std::string& out, const std::optional<std::span<const uint8_t>>& bytes) {
    if (bytes)
        out += json_string(*bytes);
    else
        out += "null";
}

std::string join_ids(const std::vector<int32_t>& ids) {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out += ",";
        out += std::to_string(ids[i]);
    }
    return out;
}

std::string json_ids(const std::vector<int32_t>& ids) {
    std::string out = "[";
    out += join_ids(ids);
    out += "]";
    return out;
}

// The length of the UTF-8 sequence starting at bytes[i], or 0 if it is not valid.
size_t utf8_sequence_length(std::span<const uint8_t> bytes, size_t i) {
    const uint8_t lead = bytes[i];
    size_t length = 0;
    uint32_t minimum = 0;
    if (lead < 0x80) return 1;
    if ((lead & 0xE0) == 0xC0) {
        length = 2;
        minimum = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
        length = 3;
        minimum = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
        length = 4;
        minimum = 0x10000;
    } else {
        return 0;
    }
    if (i + length > bytes.size()) return 0;
    uint32_t code_point = lead & (0x7F >> length);
    for (size_t k = 1; k < length; ++k) {
        if ((bytes[i + k] & 0xC0) != 0x80) return 0;
        code_point = (code_point << 6) | (bytes[i + k] & 0x3F);
    }
    if (code_point < minimum || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF))
        return 0;
    return length;
}

std::string fixed(double value, int decimals) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
    return text;
}

std::string micros_as_ms(uint64_t micros) { return fixed(static_cast<double>(micros) / 1000.0, 3); }

}  // namespace

std::string format_topic_id(const proto::uuid& id) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    uint32_t buffer = 0;
    int bits = 0;
    for (uint8_t byte : id.bytes) {
        buffer = (buffer << 8) | byte;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += alphabet[(buffer >> bits) & 0x3F];
        }
    }
    if (bits > 0) out += alphabet[(buffer << (6 - bits)) & 0x3F];
    return out;
}

std::string json_string(std::span<const uint8_t> bytes) {
    std::string out = "\"";
    for (size_t i = 0; i < bytes.size();) {
        const uint8_t byte = bytes[i];
        if (byte >= 0x80) {
            const size_t length = utf8_sequence_length(bytes, i);
            if (length == 0) {
                out += "\\ufffd";
                ++i;
            } else {
                out += as_text(bytes.subspan(i, length));
                i += length;
            }
            continue;
        }
        switch (byte) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (byte < 0x20) {
                    char escape[8];
                    std::snprintf(escape, sizeof escape, "\\u%04x", byte);
                    out += escape;
                } else {
                    out += static_cast<char>(byte);
                }
        }
        ++i;
    }
    out += "\"";
    return out;
}

std::string format_topic_describe(const topic_row& topic) {
    std::string configs;
    for (size_t i = 0; i < topic.configs.size(); ++i) {
        if (i > 0) configs += ",";
        configs += topic.configs[i].first + "=" + topic.configs[i].second;
    }
    const size_t replication = topic.partitions.empty() ? 0 : topic.partitions[0].replicas.size();
    std::string out = "Topic: " + topic.name + "\tTopicId: " + format_topic_id(topic.topic_id) +
                      "\tPartitionCount: " + std::to_string(topic.partitions.size()) +
                      "\tReplicationFactor: " + std::to_string(replication) +
                      "\tConfigs: " + configs + "\n";
    for (const auto& partition : topic.partitions) {
        out += "\tTopic: " + topic.name + "\tPartition: " + std::to_string(partition.partition) +
               "\tLeader: " +
               (partition.leader < 0 ? std::string("none") : std::to_string(partition.leader)) +
               "\tReplicas: " + join_ids(partition.replicas) + "\tIsr: " + join_ids(partition.isr);
        if (partition.error_code != 0)
            out += std::string("\tError: ") + proto::error_name(partition.error_code);
        out += "\n";
    }
    return out;
}

std::string format_topic_describe_json(const topic_row& topic) {
    const size_t replication = topic.partitions.empty() ? 0 : topic.partitions[0].replicas.size();
    std::string out = "{\"topic\":" + json_string(topic.name) +
                      ",\"topic_id\":" + json_string(format_topic_id(topic.topic_id)) +
                      ",\"partition_count\":" + std::to_string(topic.partitions.size()) +
                      ",\"replication_factor\":" + std::to_string(replication) + ",\"configs\":{";
    for (size_t i = 0; i < topic.configs.size(); ++i) {
        if (i > 0) out += ",";
        out += json_string(topic.configs[i].first) + ":" + json_string(topic.configs[i].second);
    }
    out += "},\"partitions\":[";
    for (size_t i = 0; i < topic.partitions.size(); ++i) {
        const auto& partition = topic.partitions[i];
        if (i > 0) out += ",";
        out += "{\"partition\":" + std::to_string(partition.partition) +
               ",\"leader\":" + std::to_string(partition.leader) +
               ",\"replicas\":" + json_ids(partition.replicas) +
               ",\"isr\":" + json_ids(partition.isr) + "}";
    }
    out += "]}\n";
    return out;
}

result<record_format> parse_record_format(std::string_view text) {
    if (text == "value") return record_format::value;
    if (text == "kv") return record_format::kv;
    if (text == "offsets") return record_format::offsets;
    if (text == "json") return record_format::json;
    return error{2,
                 "--format must be value, kv, offsets or json, got \"" + std::string(text) + "\""};
}

void format_record(std::string& out, const consumed_record& record, record_format format,
                   bool print_headers) {
    if (print_headers && format != record_format::json) {
        if (record.headers.empty()) out += "NO_HEADERS";
        for (size_t i = 0; i < record.headers.size(); ++i) {
            if (i > 0) out += ',';
            out += record.headers[i].key;
            out += ':';
            append_optional(out, record.headers[i].value);
        }
        out += '\t';
    }
    switch (format) {
        case record_format::value:
            append_optional(out, record.value);
            break;
        case record_format::kv:
            append_optional(out, record.key);
            out += '\t';
            append_optional(out, record.value);
            break;
        case record_format::offsets:
            out += record.log_append_time ? "LogAppendTime:" : "CreateTime:";
            out += std::to_string(record.timestamp_ms);
            out += "\tPartition:" + std::to_string(record.partition);
            out += "\tOffset:" + std::to_string(record.offset) + "\t";
            append_optional(out, record.key);
            out += '\t';
            append_optional(out, record.value);
            break;
        case record_format::json:
            out += "{\"topic\":" + json_string(record.topic);
            out += ",\"partition\":" + std::to_string(record.partition);
            out += ",\"offset\":" + std::to_string(record.offset);
            out += ",\"timestamp\":" + std::to_string(record.timestamp_ms);
            out += ",\"key\":";
            append_json_optional(out, record.key);
            out += ",\"value\":";
            append_json_optional(out, record.value);
            out += ",\"headers\":[";
            for (size_t i = 0; i < record.headers.size(); ++i) {
                if (i > 0) out += ",";
                out += "{\"key\":" + json_string(record.headers[i].key) + ",\"value\":";
                append_json_optional(out, record.headers[i].value);
                out += "}";
            }
            out += "]}";
            break;
    }
    out += '\n';
}

namespace {

// The part both lines share: "N records sent, R records/sec (M MB/sec), A ms avg latency,
// X ms max latency". Kafka prints the rate with %.1f in the progress line and %f in the
// final one, hence `rate_digits`.
std::string produce_line_head(const produce_summary& summary, int rate_digits) {
    const double seconds = summary.seconds > 0 ? summary.seconds : 1e-9;
    const double records_per_second = static_cast<double>(summary.records) / seconds;
    const double mb_per_second = static_cast<double>(summary.bytes) / seconds / (1024.0 * 1024.0);
    std::string out = std::to_string(summary.records) + " records sent, " +
                      fixed(records_per_second, rate_digits) + " records/sec (" +
                      fixed(mb_per_second, 2) + " MB/sec)";
    if (summary.latency_us != nullptr) {
        out += ", " + fixed(summary.latency_us->mean() / 1000.0, 3) + " ms avg latency, " +
               micros_as_ms(summary.latency_us->max()) + " ms max latency";
    }
    return out;
}

}  // namespace

std::string format_produce_progress(const produce_summary& summary) {
    return produce_line_head(summary, 1) + ".";
}

std::string format_produce_summary(const produce_summary& summary) {
    std::string out = produce_line_head(summary, 6);
    if (summary.latency_us != nullptr) {
        const auto& h = *summary.latency_us;
        out += ", " + micros_as_ms(h.percentile(50)) + " ms 50th, " +
               micros_as_ms(h.percentile(95)) + " ms 95th, " + micros_as_ms(h.percentile(99)) +
               " ms 99th, " + micros_as_ms(h.percentile(99.9)) + " ms 99.9th";
    }
    return out + ".";
}

std::string format_wall_time(int64_t unix_ms) {
    const time_t seconds = static_cast<time_t>(unix_ms / 1000);
    tm local{};
    localtime_r(&seconds, &local);
    char text[64];
    std::snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d:%03d", local.tm_year + 1900,
                  local.tm_mon + 1, local.tm_mday, local.tm_hour, local.tm_min, local.tm_sec,
                  static_cast<int>(unix_ms % 1000));
    return text;
}

std::string format_consume_summary(const consume_summary& summary) {
    const double seconds = summary.seconds > 0 ? summary.seconds : 1e-9;
    const double mb = static_cast<double>(summary.bytes) / (1024.0 * 1024.0);
    const double records = static_cast<double>(summary.records);
    std::string out =
        "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
        "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n";
    out += format_wall_time(summary.start_ms) + ", " + format_wall_time(summary.end_ms) + ", " +
           fixed(mb, 4) + ", " + fixed(mb / seconds, 4) + ", " + std::to_string(summary.records) +
           ", " + fixed(records / seconds, 4) + ", 0, " +
           std::to_string(static_cast<int64_t>(seconds * 1000.0)) + ", " + fixed(mb / seconds, 4) +
           ", " + fixed(records / seconds, 4) + "\n";
    return out;
}

std::string format_batch_line(const proto::batch_header& header, int64_t position, bool crc_valid) {
    const int32_t last_sequence =
        header.base_sequence < 0 ? -1 : header.base_sequence + header.last_offset_delta;
    char text[512];
    std::snprintf(text, sizeof text,
                  "baseOffset: %" PRId64 " lastOffset: %" PRId64 " count: %" PRId32
                  " baseSequence: %" PRId32 " lastSequence: %" PRId32 " producerId: %" PRId64
                  " producerEpoch: %d"
                  " partitionLeaderEpoch: %" PRId32
                  " isTransactional: %s isControl: %s position: %" PRId64 " %s: %" PRId64
                  " size: %" PRId64 " magic: %d compresscodec: %s crc: %" PRIu32 " isvalid: %s",
                  header.base_offset, header.last_offset(), header.records_count,
                  header.base_sequence, last_sequence, header.producer_id,
                  static_cast<int>(header.producer_epoch), header.partition_leader_epoch,
                  header.is_transactional() ? "true" : "false",
                  header.is_control() ? "true" : "false", position,
                  header.has_log_append_time() ? "LogAppendTime" : "CreateTime",
                  header.max_timestamp, header.total_size(), static_cast<int>(header.magic),
                  proto::to_string(header.codec()), header.crc, crc_valid ? "true" : "false");
    return text;
}

std::string format_record_line(const proto::batch_header& header, const proto::record_view& record,
                               bool print_payload) {
    const int64_t offset = header.base_offset + record.offset_delta;
    const int64_t timestamp =
        header.has_log_append_time()
            ? header.max_timestamp
            : proto::record_timestamp(header.base_timestamp, record.timestamp_delta);
    const int64_t sequence =
        header.base_sequence < 0 ? -1 : header.base_sequence + record.offset_delta;
    std::string out =
        "| offset: " + std::to_string(offset) + " " +
        (header.has_log_append_time() ? "LogAppendTime" : "CreateTime") + ": " +
        std::to_string(timestamp) +
        " keySize: " + std::to_string(record.key ? static_cast<int64_t>(record.key->size()) : -1) +
        " valueSize: " +
        std::to_string(record.value ? static_cast<int64_t>(record.value->size()) : -1) +
        " sequence: " + std::to_string(sequence) + " headerKeys: [";
    for (size_t i = 0; i < record.headers.size(); ++i) {
        if (i > 0) out += ",";
        out += record.headers[i].key;
    }
    out += "]";
    if (print_payload) {
        if (record.key) out += " key: " + std::string(as_text(*record.key));
        out += " payload: ";
        if (record.value) out += as_text(*record.value);
    }
    return out;
}

namespace {

std::string optional_text(const std::optional<int64_t>& value) {
    return value ? std::to_string(*value) : std::string("-");
}

std::string optional_json(const std::optional<int64_t>& value) {
    return value ? std::to_string(*value) : std::string("null");
}

// Every cell holds a word, so that the columns split on whitespace.
std::string dash_if_empty(const std::string& text) { return text.empty() ? "-" : text; }

std::optional<int64_t> lag_of(const group_partition_row& row) {
    if (!row.current_offset || !row.log_end_offset) return std::nullopt;
    return std::max<int64_t>(0, *row.log_end_offset - *row.current_offset);
}

}  // namespace

std::string format_group_describe(const group_description& group) {
    std::vector<std::vector<std::string>> table;
    table.push_back({"GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                     "CONSUMER-ID", "HOST", "CLIENT-ID"});
    for (const auto& row : group.partitions) {
        const bool owned = !row.consumer_id.empty();
        table.push_back({group.group, row.topic, std::to_string(row.partition),
                         optional_text(row.current_offset), optional_text(row.log_end_offset),
                         optional_text(lag_of(row)), dash_if_empty(row.consumer_id),
                         owned ? dash_if_empty(row.host) : "-",
                         owned ? dash_if_empty(row.client_id) : "-"});
    }
    std::vector<size_t> widths(table[0].size(), 0);
    for (const auto& cells : table)
        for (size_t i = 0; i < cells.size(); ++i) widths[i] = std::max(widths[i], cells[i].size());
    std::string out = "Consumer group '" + group.group + "' is " + group.state + " with " +
                      std::to_string(group.members.size()) + " member(s).\n\n";
    for (const auto& cells : table) {
        std::string line;
        for (size_t i = 0; i < cells.size(); ++i) {
            line += cells[i];
            if (i + 1 < cells.size()) line += std::string(widths[i] - cells[i].size() + 1, ' ');
        }
        out += line + "\n";
    }
    return out;
}

std::string format_group_describe_json(const group_description& group) {
    std::string out = "{\"group\":" + json_string(group.group) +
                      ",\"state\":" + json_string(group.state) +
                      ",\"protocol_type\":" + json_string(group.protocol_type) +
                      ",\"protocol\":" + json_string(group.protocol) + ",\"members\":[";
    for (size_t i = 0; i < group.members.size(); ++i) {
        const auto& member = group.members[i];
        if (i > 0) out += ",";
        out += "{\"member_id\":" + json_string(member.member_id) +
               ",\"client_id\":" + json_string(member.client_id) +
               ",\"host\":" + json_string(member.host) + ",\"assignment\":[";
        for (size_t j = 0; j < member.assignment.size(); ++j) {
            if (j > 0) out += ",";
            out += "{\"topic\":" + json_string(member.assignment[j].first) +
                   ",\"partitions\":" + json_ids(member.assignment[j].second) + "}";
        }
        out += "]}";
    }
    out += "],\"partitions\":[";
    for (size_t i = 0; i < group.partitions.size(); ++i) {
        const auto& row = group.partitions[i];
        if (i > 0) out += ",";
        const bool owned = !row.consumer_id.empty();
        out += "{\"topic\":" + json_string(row.topic) +
               ",\"partition\":" + std::to_string(row.partition) +
               ",\"current_offset\":" + optional_json(row.current_offset) +
               ",\"log_end_offset\":" + optional_json(row.log_end_offset) +
               ",\"lag\":" + optional_json(lag_of(row)) +
               ",\"consumer_id\":" + (owned ? json_string(row.consumer_id) : "null") +
               ",\"host\":" + (owned ? json_string(row.host) : "null") +
               ",\"client_id\":" + (owned ? json_string(row.client_id) : "null") + "}";
    }
    out += "]}\n";
    return out;
}

std::string describe_topic_error(std::string_view topic, int16_t code,
                                 const std::optional<std::string>& broker_message) {
    const std::string quoted = "topic \"" + std::string(topic) + "\"";
    std::string what;
    // Whether `what` says all there is, so that the broker's message would only repeat it
    // (every command reports a missing topic in the same words).
    bool complete = false;
    switch (static_cast<proto::error_code>(code)) {
        case proto::error_code::unknown_topic_or_partition:
        case proto::error_code::unknown_topic_id:
            what = quoted + " does not exist";
            complete = true;
            break;
        case proto::error_code::topic_already_exists:
            what = quoted + " already exists";
            complete = true;
            break;
        case proto::error_code::invalid_topic_exception:
            what = quoted + " is not a valid topic name";
            break;
        case proto::error_code::invalid_partitions:
            what = quoted + ": invalid partition count";
            break;
        case proto::error_code::invalid_replication_factor:
            what = quoted + ": invalid replication factor";
            break;
        case proto::error_code::invalid_config:
            what = quoted + ": invalid config";
            break;
        default:
            what = quoted + " failed";
            break;
    }
    if (!complete && broker_message && !broker_message->empty()) what += ": " + *broker_message;
    return what + " (" + proto::error_name(code) + ")";
}

}  // namespace spate::tools
