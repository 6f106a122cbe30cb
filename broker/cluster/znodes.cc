// Kafka's znode JSON, with nlohmann::json (Debian's nlohmann-json3-dev): these nodes may
// be written by any tool, so decoding checks every type and never trusts a field.
#include "broker/cluster/znodes.h"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace spate::broker::cluster {
namespace {

using json = nlohmann::json;

// Parses `text` into an object, or says why not. nlohmann reports type mismatches by
// throwing; decode() catches them here, on the cluster agent's thread, so a malformed
// node written by another tool becomes an error naming the node kind.
template <class T, class Decode>
result<T> decode(const std::string& text, const char* kind, Decode body) {
    json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded() || !root.is_object())
        return error{-1, std::string(kind) + ": not a JSON object: " + text.substr(0, 200)};
    try {
        return body(root);
    } catch (const std::exception& failed) {  // json type errors, stoi
        return error{-1, std::string(kind) + ": " + failed.what()};
    }
}

// An integer field within int64 / int32. nlohmann would convert a float (1e300) or an
// out-of-range integer with a plain cast, which is undefined: such values are refused.
int64_t int64_of(const json& value) {
    if (value.is_number_integer()) {
        if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t{INT64_MAX})
            throw std::out_of_range("integer out of range");
        return value.get<int64_t>();
    }
    throw std::invalid_argument("not an integer: " + value.dump());
}

int32_t int32_of(const json& value) {
    const int64_t v = int64_of(value);
    if (v < INT32_MIN || v > INT32_MAX) throw std::out_of_range("integer out of range");
    return static_cast<int32_t>(v);
}

// Kafka writes some numbers as strings ("timestamp", "block_start"); accept both.
int64_t number_or_string(const json& value) {
    if (value.is_string()) return std::stoll(value.get<std::string>());
    return int64_of(value);
}

std::vector<int32_t> int_list(const json& value) {
    if (!value.is_array()) throw std::invalid_argument("not a list: " + value.dump());
    std::vector<int32_t> out;
    for (const json& item : value) out.push_back(int32_of(item));
    return out;
}

constexpr char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

std::string uuid_to_base64(const proto::uuid& id) {
    std::string out;
    uint32_t bits = 0;
    int count = 0;
    for (uint8_t byte : id.bytes) {
        bits = (bits << 8) | byte;
        count += 8;
        while (count >= 6) {
            count -= 6;
            out.push_back(base64_alphabet[(bits >> count) & 63]);
        }
    }
    if (count > 0) out.push_back(base64_alphabet[(bits << (6 - count)) & 63]);
    return out;  // 16 bytes: 21 full sextets and one of 2 bits = 22 characters
}

std::optional<proto::uuid> uuid_from_base64(const std::string& text) {
    std::string trimmed = text;
    while (!trimmed.empty() && trimmed.back() == '=') trimmed.pop_back();
    if (trimmed.size() != 22) return std::nullopt;
    proto::uuid id;
    uint32_t bits = 0;
    int count = 0;
    size_t next = 0;
    for (char c : trimmed) {
        // Standard base64's '+' and '/' are accepted too, as Java's decoder of either kind.
        const char* found = c == '+'   ? base64_alphabet + 62
                            : c == '/' ? base64_alphabet + 63
                                       : std::char_traits<char>::find(base64_alphabet, 64, c);
        if (found == nullptr) return std::nullopt;
        bits = (bits << 6) | static_cast<uint32_t>(found - base64_alphabet);
        count += 6;
        if (count >= 8) {
            count -= 8;
            if (next < 16) id.bytes[next++] = static_cast<uint8_t>(bits >> count);
        }
    }
    if (next != 16) return std::nullopt;
    return id;
}

std::string encode_broker(const broker_registration& broker) {
    const std::string endpoint = "PLAINTEXT://" + broker.host + ":" + std::to_string(broker.port);
    json out = {{"version", 4},
                {"host", broker.host},
                {"port", broker.port},
                {"jmx_port", -1},
                {"timestamp", std::to_string(broker.timestamp_ms)},
                {"endpoints", json::array({endpoint})},
                {"listener_security_protocol_map", {{"PLAINTEXT", "PLAINTEXT"}}}};
    if (broker.rack) out["rack"] = *broker.rack;
    return out.dump();
}

result<broker_registration> decode_broker(int32_t id, const std::string& text) {
    return decode<broker_registration>(text, "broker registration", [id](const json& root) {
        broker_registration out;
        out.id = id;
        if (root.contains("host") && root["host"].is_string()) out.host = root["host"];
        if (root.contains("port") && root["port"].is_number_integer())
            out.port = int32_of(root["port"]);
        // Brokers with only non-PLAINTEXT listeners write host null and port -1; the
        // endpoints list then holds the address.
        if ((out.host.empty() || out.port <= 0) && root.contains("endpoints")) {
            for (const json& endpoint : root["endpoints"]) {
                const std::string text = endpoint.get<std::string>();
                const size_t scheme = text.find("://");
                const size_t colon = text.rfind(':');
                if (scheme == std::string::npos || colon == std::string::npos || colon < scheme + 3)
                    continue;
                out.host = text.substr(scheme + 3, colon - scheme - 3);
                out.port = std::stoi(text.substr(colon + 1));  // throws when not a number
                break;
            }
        }
        if (root.contains("rack") && root["rack"].is_string())
            out.rack = root["rack"].get<std::string>();
        if (root.contains("timestamp")) out.timestamp_ms = number_or_string(root["timestamp"]);
        if (out.host.empty() || out.port <= 0 || out.port > 65535)
            return result<broker_registration>(
                error{-1, "broker registration " + std::to_string(id) + ": no usable endpoint"});
        return result<broker_registration>(out);
    });
}

bool topic_assignment::has_id() const { return !id.is_zero(); }

std::string encode_topic(const topic_assignment& topic) {
    auto by_partition = [](const std::map<int32_t, std::vector<int32_t>>& lists) {
        json out = json::object();
        for (const auto& [index, replicas] : lists)
            if (!replicas.empty()) out[std::to_string(index)] = replicas;
        return out;
    };
    json out = {{"version", 3},
                {"partitions", by_partition(topic.partitions)},
                {"adding_replicas", by_partition(topic.adding)},
                {"removing_replicas", by_partition(topic.removing)}};
    if (topic.has_id()) out["topic_id"] = uuid_to_base64(topic.id);
    return out.dump();
}

result<topic_assignment> decode_topic(const std::string& text) {
    return decode<topic_assignment>(text, "topic assignment", [](const json& root) {
        topic_assignment out;
        if (root.contains("topic_id") && root["topic_id"].is_string()) {
            auto id = uuid_from_base64(root["topic_id"].get<std::string>());
            if (!id) return result<topic_assignment>(error{-1, "topic assignment: bad topic_id"});
            out.id = *id;
        }
        for (const auto& [index, replicas] : root.at("partitions").items()) {
            const int32_t partition = std::stoi(index);
            if (partition < 0 || replicas.empty())
                return result<topic_assignment>(
                    error{-1, "topic assignment: bad partition \"" + index + "\""});
            out.partitions[partition] = int_list(replicas);
        }
        // A reassignment in progress (version 2+): lists of partitions the node has.
        for (const char* field : {"adding_replicas", "removing_replicas"}) {
            if (!root.contains(field) || root[field].is_null()) continue;
            auto& lists = field[0] == 'a' ? out.adding : out.removing;
            for (const auto& [index, replicas] : root[field].items()) {
                const int32_t partition = std::stoi(index);
                if (out.partitions.count(partition) == 0)
                    return result<topic_assignment>(error{
                        -1,
                        std::string("topic assignment: ") + field + " of a partition it lacks"});
                if (!replicas.empty()) lists[partition] = int_list(replicas);
            }
        }
        // Partitions are numbered 0..n-1 with none missing; anything else is not a topic
        // Kafka would have written, and serving it would leave holes clients cannot use.
        int32_t expected = 0;
        for (const auto& entry : out.partitions)
            if (entry.first != expected++)
                return result<topic_assignment>(
                    error{-1, "topic assignment: partitions are not numbered 0..n-1"});
        if (out.partitions.empty())
            return result<topic_assignment>(error{-1, "topic assignment: no partitions"});
        return result<topic_assignment>(out);
    });
}

std::string encode_partition_state(const partition_state& state) {
    return json{{"controller_epoch", state.controller_epoch},
                {"leader", state.leader},
                {"version", 1},
                {"leader_epoch", state.leader_epoch},
                {"isr", state.isr}}
        .dump();
}

result<partition_state> decode_partition_state(const std::string& text) {
    return decode<partition_state>(text, "partition state", [](const json& root) {
        partition_state out;
        out.leader = int32_of(root.at("leader"));
        out.leader_epoch = int32_of(root.at("leader_epoch"));
        out.isr = int_list(root.at("isr"));
        out.controller_epoch = int32_of(root.at("controller_epoch"));
        return result<partition_state>(out);
    });
}

std::string encode_controller(int32_t broker_id, int64_t timestamp_ms) {
    return json{
        {"version", 1}, {"brokerid", broker_id}, {"timestamp", std::to_string(timestamp_ms)}}
        .dump();
}

result<int32_t> decode_controller(const std::string& text) {
    // Kafka 0.8 wrote a bare number; accept it as Kafka does.
    if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0])) &&
        text.find('{') == std::string::npos) {
        char* end = nullptr;
        errno = 0;
        const long id = std::strtol(text.c_str(), &end, 10);
        if (errno != 0 || id < 0 || id > INT32_MAX || *end != '\0')
            return error{-1, "controller: not a broker id: " + text.substr(0, 40)};
        return static_cast<int32_t>(id);
    }
    return decode<int32_t>(text, "controller", [](const json& root) {
        return result<int32_t>(int32_of(root.at("brokerid")));
    });
}

std::string encode_cluster_id(const std::string& id) {
    return json{{"version", "1"}, {"id", id}}.dump();
}

result<std::string> decode_cluster_id(const std::string& text) {
    return decode<std::string>(text, "cluster id", [](const json& root) {
        return result<std::string>(root.at("id").get<std::string>());
    });
}

std::string encode_topic_config(const std::map<std::string, std::string>& configs) {
    return json{{"version", 1}, {"config", configs}}.dump();
}

result<std::map<std::string, std::string>> decode_topic_config(const std::string& text) {
    using configs = std::map<std::string, std::string>;
    return decode<configs>(text, "topic config", [](const json& root) {
        configs out;
        if (!root.contains("config")) return result<configs>(out);
        for (const auto& [key, value] : root["config"].items())
            out[key] = value.is_string() ? value.get<std::string>() : value.dump();
        return result<configs>(out);
    });
}

std::string encode_config_change(const std::string& topic_name) {
    return json{{"version", 2}, {"entity_path", "topics/" + topic_name}}.dump();
}

std::optional<std::string> decode_config_change(const std::string& text) {
    auto decoded = decode<std::optional<std::string>>(text, "config change", [](const json& root) {
        std::optional<std::string> out;
        if (root.contains("entity_path")) {  // version 2
            const std::string path = root["entity_path"].get<std::string>();
            if (path.rfind("topics/", 0) == 0) out = path.substr(7);
        } else if (root.contains("entity_type") && root["entity_type"] == "topics") {  // version 1
            out = root.at("entity_name").get<std::string>();
        }
        return result<std::optional<std::string>>(out);
    });
    return decoded ? *decoded : std::nullopt;
}

std::string encode_reassign_partitions(const std::vector<partition_move>& moves) {
    json partitions = json::array();
    for (const partition_move& move : moves)
        partitions.push_back(
            {{"topic", move.topic}, {"partition", move.partition}, {"replicas", move.replicas}});
    return json{{"version", 1}, {"partitions", partitions}}.dump();
}

result<std::vector<partition_move>> decode_reassign_partitions(const std::string& text) {
    using moves = std::vector<partition_move>;
    return decode<moves>(text, "partition reassignment", [](const json& root) {
        moves out;
        const json& partitions = root.at("partitions");
        if (!partitions.is_array())
            return result<moves>(error{-1, "partition reassignment: partitions is not a list"});
        for (const json& item : partitions) {
            partition_move move;
            move.topic = item.at("topic").get<std::string>();
            move.partition = int32_of(item.at("partition"));
            move.replicas = int_list(item.at("replicas"));
            out.push_back(std::move(move));
        }
        return result<moves>(out);
    });
}

std::string encode_producer_id_block(const producer_id_block& block) {
    return json{{"version", 1},
                {"broker", block.broker},
                {"block_start", std::to_string(block.start)},
                {"block_end", std::to_string(block.end)}}
        .dump();
}

result<producer_id_block> decode_producer_id_block(const std::string& text) {
    return decode<producer_id_block>(text, "producer id block", [](const json& root) {
        producer_id_block out;
        out.broker = int32_of(root.at("broker"));
        out.start = number_or_string(root.at("block_start"));
        out.end = number_or_string(root.at("block_end"));
        return result<producer_id_block>(out);
    });
}

}  // namespace spate::broker::cluster
