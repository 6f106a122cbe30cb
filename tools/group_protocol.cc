#include "tools/group_protocol.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "proto/error_code.h"
#include "proto/reader.h"
#include "proto/writer.h"

namespace spate::tools {

namespace {

constexpr int16_t consumer_protocol_version = 0;
// A topic entry holds at least its string length and partition count.
constexpr size_t topic_entry_bytes_min = 2;
constexpr size_t assignment_entry_bytes_min = 6;
// How long to wait between FindCoordinator attempts while the coordinator loads.
constexpr auto coordinator_retry_pause = std::chrono::milliseconds(100);

error malformed(std::string_view what, const proto::reader& in) {
    return error{1, std::string("a malformed consumer ") + std::string(what) + " (" +
                        proto::to_string(in.error()) + ")"};
}

}  // namespace

std::vector<uint8_t> encode_subscription(const std::vector<std::string>& topics) {
    proto::writer out(64);
    out.int16(consumer_protocol_version);
    out.array_count(static_cast<int32_t>(topics.size()), /*compact=*/false);
    for (const auto& topic : topics) out.string(topic, /*compact=*/false);
    out.nullable_bytes(std::nullopt, /*compact=*/false);
    return std::move(out.buffer());
}

result<std::vector<std::string>> decode_subscription(std::span<const uint8_t> bytes) {
    proto::reader in(bytes);
    (void)in.int16();
    const int32_t count = in.array_count(/*compact=*/false, topic_entry_bytes_min);
    std::vector<std::string> topics;
    for (int32_t i = 0; i < count && in.ok(); ++i) topics.push_back(in.string(/*compact=*/false));
    // User data and the fields of later versions follow; spatectl has no use for them.
    if (!in.ok() || count < 0) return malformed("subscription", in);
    return topics;
}

std::vector<uint8_t> encode_assignment(const partition_assignment& assignment) {
    proto::writer out(64);
    out.int16(consumer_protocol_version);
    out.array_count(static_cast<int32_t>(assignment.size()), /*compact=*/false);
    for (const auto& [topic, partitions] : assignment) {
        out.string(topic, /*compact=*/false);
        out.array_count(static_cast<int32_t>(partitions.size()), /*compact=*/false);
        for (const int32_t partition : partitions) out.int32(partition);
    }
    out.nullable_bytes(std::nullopt, /*compact=*/false);
    return std::move(out.buffer());
}

result<partition_assignment> decode_assignment(std::span<const uint8_t> bytes) {
    partition_assignment assignment;
    if (bytes.empty()) return assignment;
    proto::reader in(bytes);
    (void)in.int16();
    const int32_t topics = in.array_count(/*compact=*/false, assignment_entry_bytes_min);
    for (int32_t i = 0; i < topics && in.ok(); ++i) {
        std::string topic = in.string(/*compact=*/false);
        const int32_t count = in.array_count(/*compact=*/false, sizeof(int32_t));
        auto& partitions = assignment[topic];
        for (int32_t j = 0; j < count && in.ok(); ++j) partitions.push_back(in.int32());
        std::sort(partitions.begin(), partitions.end());
    }
    (void)in.nullable_bytes(/*compact=*/false);
    if (!in.ok() || topics < 0) return malformed("assignment", in);
    return assignment;
}

std::map<std::string, partition_assignment> range_assign(
    const std::vector<group_member_subscription>& members,
    const std::map<std::string, int32_t>& partition_counts) {
    std::map<std::string, partition_assignment> out;
    std::map<std::string, std::vector<std::string>> subscribers;
    for (const auto& member : members) {
        out[member.member_id];
        for (const auto& topic : member.topics) subscribers[topic].push_back(member.member_id);
    }
    for (auto& [topic, ids] : subscribers) {
        const auto count = partition_counts.find(topic);
        if (count == partition_counts.end() || count->second <= 0) continue;
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        const int32_t member_count = static_cast<int32_t>(ids.size());
        const int32_t each = count->second / member_count;
        const int32_t extra = count->second % member_count;
        int32_t next = 0;
        for (int32_t i = 0; i < member_count; ++i) {
            const int32_t share = each + (i < extra ? 1 : 0);
            if (share == 0) continue;
            auto& partitions = out[ids[static_cast<size_t>(i)]][topic];
            for (int32_t j = 0; j < share; ++j) partitions.push_back(next++);
        }
    }
    return out;
}

result<broker_connection> open_coordinator(broker_connection& bootstrap, const std::string& group,
                                           int32_t timeout_ms) {
    auto version = bootstrap.version_for<proto::find_coordinator_request>();
    if (!version) return version.failure();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        proto::find_coordinator_request request;
        request.key_type = 0;
        if (version.value() >= 4)
            request.coordinator_keys.push_back(group);
        else
            request.key_ = group;
        proto::find_coordinator_response response;
        std::vector<uint8_t> frame;
        auto called = bootstrap.call(request, version.value(), response, frame);
        if (!called) return called.failure();
        int16_t code = response.error_code;
        endpoint where{response.host, static_cast<uint16_t>(response.port)};
        if (version.value() >= 4) {
            if (response.coordinators.empty())
                return error{1, "group \"" + group + "\": FindCoordinator answered no coordinator"};
            const auto& entry = response.coordinators.front();
            code = entry.error_code;
            where = endpoint{entry.host, static_cast<uint16_t>(entry.port)};
        }
        // A coordinator that is still loading its offsets partition answers these two
        // codes; Kafka's clients retry them, and so does spatectl, within the timeout.
        const bool retriable = code == proto::code(proto::error_code::coordinator_not_available) ||
                               code == proto::code(proto::error_code::coordinator_load_in_progress);
        if (code == 0) return broker_connection::open(where, timeout_ms);
        if (!retriable || std::chrono::steady_clock::now() >= deadline)
            return error{1, describe_group_error(group, code)};
        std::this_thread::sleep_for(coordinator_retry_pause);
    }
}

std::string describe_group_error(std::string_view group, int16_t code) {
    const std::string name = "group \"" + std::string(group) + "\"";
    std::string what;
    switch (static_cast<proto::error_code>(code)) {
        case proto::error_code::non_empty_group:
            what = name + " is not empty: it has active members";
            break;
        case proto::error_code::group_id_not_found:
            what = name + " does not exist";
            break;
        case proto::error_code::invalid_group_id:
            what = name + " is not a valid group id";
            break;
        case proto::error_code::coordinator_not_available:
        case proto::error_code::not_coordinator:
            what = name + " has no coordinator available";
            break;
        default:
            what = name + " request failed";
            break;
    }
    return what + " (" + proto::error_name(code) + ")";
}

result<void> for_each_committed_offset(
    const proto::offset_fetch_response& response, int16_t version, std::string_view group,
    std::string_view context, const std::function<result<void>(const committed_offset&)>& fn) {
    auto walk = [&](const auto& topics) -> result<void> {
        for (const auto& topic : topics)
            for (const auto& partition : topic.partitions)
                if (auto taken = fn({topic.name, partition.partition_index,
                                     partition.committed_offset, partition.error_code});
                    !taken)
                    return taken;
        return ok_result();
    };
    auto group_error = [&](int16_t code) {
        return error{1, std::string(context) + describe_group_error(group, code)};
    };
    if (version < 8) {
        if (response.error_code != 0) return group_error(response.error_code);
        return walk(response.topics);
    }
    for (const auto& answered : response.groups) {
        if (answered.error_code != 0) return group_error(answered.error_code);
        if (auto walked = walk(answered.topics); !walked) return walked;
    }
    return ok_result();
}

}  // namespace spate::tools
