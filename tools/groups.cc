// groups list|describe|delete|reset-offsets: consumer-group administration, the
// counterpart of kafka-consumer-groups.sh. Every command but `list` starts at the group's
// coordinator (FindCoordinator); log end offsets come from the partition leaders.

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "proto/error_code.h"
#include "tools/cluster.h"
#include "tools/commands.h"
#include "tools/format.h"
#include "tools/group_protocol.h"

namespace spate::tools {

namespace {

constexpr int64_t earliest_timestamp = -2;
constexpr int64_t latest_timestamp = -1;
constexpr std::string_view state_empty = "Empty";
constexpr std::string_view state_dead = "Dead";

void print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

using offsets_by_partition = std::map<std::pair<std::string, int32_t>, int64_t>;

// The offsets ListOffsets gives for `timestamp` (earliest or latest) of every partition
// of `layout`, asked of each partition's leader.
result<std::map<int32_t, int64_t>> list_offsets(cluster& brokers, const topic_layout& layout,
                                                int64_t timestamp) {
    std::map<int32_t, std::vector<int32_t>> by_leader;
    for (const auto& partition : layout.partitions)
        by_leader[partition.leader].push_back(partition.partition);
    std::map<int32_t, int64_t> out;
    for (const auto& [leader, partitions] : by_leader) {
        if (leader < 0)
            return error{1, "topic \"" + layout.name + "\" partition " +
                                std::to_string(partitions.front()) + " has no leader"};
        auto connection = brokers.leader(leader);
        if (!connection) return connection.failure();
        auto version = connection.value()->version_for<proto::list_offsets_request>();
        if (!version) return version.failure();
        proto::list_offsets_request request;
        request.replica_id = -1;
        request.topics.push_back({layout.name, {}});
        for (const int32_t index : partitions) {
            proto::list_offsets_request::list_offsets_partition partition;
            partition.partition_index = index;
            partition.timestamp = timestamp;
            request.topics[0].partitions.push_back(partition);
        }
        proto::list_offsets_response response;
        std::vector<uint8_t> frame;
        auto called = connection.value()->call(request, version.value(), response, frame);
        if (!called) return called.failure();
        for (const auto& topic : response.topics)
            for (const auto& partition : topic.partitions) {
                if (partition.error_code != 0)
                    return error{1, "listing offsets of topic \"" + layout.name + "\" partition " +
                                        std::to_string(partition.partition_index) + " failed (" +
                                        proto::error_name(partition.error_code) + ")"};
                int64_t offset = partition.offset;
                if (version.value() == 0)
                    offset =
                        partition.old_style_offsets.empty() ? 0 : partition.old_style_offsets[0];
                out[partition.partition_index] = offset;
            }
    }
    return out;
}

// Every offset the group has committed (OffsetFetch for all topics).
result<offsets_by_partition> committed_offsets(broker_connection& coordinator,
                                               const std::string& group) {
    auto version = coordinator.version_for<proto::offset_fetch_request>();
    if (!version) return version.failure();
    // Asking for every topic at once (a null topic list) arrived in v2.
    if (version.value() < 2)
        return error{1, "the broker's OffsetFetch versions cannot list all of a group's offsets"};
    proto::offset_fetch_request request;
    if (version.value() >= 8)
        request.groups.push_back({group, std::nullopt});
    else
        request.group_id = group;
    proto::offset_fetch_response response;
    std::vector<uint8_t> frame;
    auto called = coordinator.call(request, version.value(), response, frame);
    if (!called) return called.failure();
    offsets_by_partition out;
    auto walked = for_each_committed_offset(response, version.value(), group, "",
                                            [&](const committed_offset& c) -> result<void> {
                                                if (c.error_code == 0 && c.offset >= 0)
                                                    out[{c.topic, c.partition}] = c.offset;
                                                return ok_result();
                                            });
    if (!walked) return walked.failure();
    return out;
}

// DescribeGroups for one group: state, protocol and members with their assignments.
result<group_description> describe(broker_connection& coordinator, const std::string& group) {
    auto version = coordinator.version_for<proto::describe_groups_request>();
    if (!version) return version.failure();
    proto::describe_groups_request request;
    request.groups.push_back(group);
    proto::describe_groups_response response;
    std::vector<uint8_t> frame;
    auto called = coordinator.call(request, version.value(), response, frame);
    if (!called) return called.failure();
    if (response.groups.empty())
        return error{1, "group \"" + group + "\": DescribeGroups answered nothing"};
    const auto& described = response.groups.front();
    if (described.error_code != 0)
        return error{1, describe_group_error(group, described.error_code)};
    group_description out;
    out.group = group;
    out.state = described.group_state;
    out.protocol_type = described.protocol_type;
    out.protocol = described.protocol_data;
    for (const auto& member : described.members) {
        group_member_row row;
        row.member_id = member.member_id;
        row.client_id = member.client_id;
        row.host = member.client_host;
        // Only the consumer protocol's assignment bytes have a layout spatectl knows;
        // other protocol types (e.g. Connect) are shown without partitions.
        if (described.protocol_type == consumer_protocol_type) {
            auto assignment = decode_assignment(member.member_assignment);
            if (!assignment)
                return error{1, "group \"" + group + "\" member " + member.member_id + ": " +
                                    assignment.failure().message};
            for (auto& [topic, partitions] : assignment.value())
                row.assignment.emplace_back(topic, std::move(partitions));
        }
        out.members.push_back(std::move(row));
    }
    return out;
}

result<void> groups_list(broker_connection& connection, const command_line& line) {
    auto version = connection.version_for<proto::list_groups_request>();
    if (!version) return version.failure();
    proto::list_groups_request request;
    proto::list_groups_response response;
    std::vector<uint8_t> frame;
    auto called = connection.call(request, version.value(), response, frame);
    if (!called) return called;
    if (response.error_code != 0)
        return error{1, std::string("listing groups failed (") +
                            proto::error_name(response.error_code) + ")"};
    std::vector<std::string> names;
    for (const auto& group : response.groups) names.push_back(group.group_id);
    std::sort(names.begin(), names.end());
    std::string out;
    if (line.global.json) {
        out = "[";
        for (size_t i = 0; i < names.size(); ++i) out += (i > 0 ? "," : "") + json_string(names[i]);
        out += "]\n";
    } else {
        for (const auto& name : names) out += name + "\n";
    }
    print(out);
    return ok_result();
}

result<void> groups_describe(cluster& brokers, const std::string& group, const command_line& line) {
    auto coordinator = open_coordinator(brokers.bootstrap(), group, brokers.timeout_ms());
    if (!coordinator) return coordinator.failure();
    auto description = describe(coordinator.value(), group);
    if (!description) return description.failure();
    auto committed = committed_offsets(coordinator.value(), group);
    if (!committed) return committed.failure();
    if (description->state == state_dead && committed->empty())
        return error{
            1, describe_group_error(group, proto::code(proto::error_code::group_id_not_found))};

    // Rows: every partition with a committed offset or an owner.
    std::map<std::pair<std::string, int32_t>, group_partition_row> rows;
    for (const auto& [key, offset] : committed.value()) {
        auto& row = rows[key];
        row.topic = key.first;
        row.partition = key.second;
        row.current_offset = offset;
    }
    for (const auto& member : description->members)
        for (const auto& [topic, partitions] : member.assignment)
            for (const int32_t partition : partitions) {
                auto& row = rows[{topic, partition}];
                row.topic = topic;
                row.partition = partition;
                row.consumer_id = member.member_id;
                row.host = member.host;
                row.client_id = member.client_id;
            }
    std::set<std::string> topics;
    for (const auto& entry : rows) topics.insert(entry.first.first);
    for (const auto& topic : topics) {
        // A topic deleted since the commit keeps its rows, without a log end offset.
        auto layout = brokers.topic(topic);
        if (!layout) continue;
        auto ends = list_offsets(brokers, layout.value(), latest_timestamp);
        if (!ends) return ends.failure();
        for (const auto& [partition, end] : ends.value())
            if (auto found = rows.find({topic, partition}); found != rows.end())
                found->second.log_end_offset = end;
    }
    for (auto& entry : rows) description->partitions.push_back(std::move(entry.second));
    print(line.global.json ? format_group_describe_json(description.value())
                           : format_group_describe(description.value()));
    return ok_result();
}

result<void> groups_delete(cluster& brokers, const std::string& group) {
    auto coordinator = open_coordinator(brokers.bootstrap(), group, brokers.timeout_ms());
    if (!coordinator) return coordinator.failure();
    auto version = coordinator->version_for<proto::delete_groups_request>();
    if (!version) return version.failure();
    proto::delete_groups_request request;
    request.groups_names.push_back(group);
    proto::delete_groups_response response;
    std::vector<uint8_t> frame;
    auto called = coordinator->call(request, version.value(), response, frame);
    if (!called) return called;
    for (const auto& deleted : response.results)
        if (deleted.error_code != 0)
            return error{1, describe_group_error(group, deleted.error_code)};
    print("Deletion of requested consumer groups ('" + group + "') was successful.\n");
    return ok_result();
}

result<void> groups_reset_offsets(cluster& brokers, const std::string& group,
                                  const command_line& line) {
    auto topic = line.required("--topic");
    if (!topic) return topic.failure();
    auto to_offset = line.integer("--to-offset", -1, 0, INT64_MAX);
    if (!to_offset) return to_offset.failure();
    const int targets = (to_offset.value() >= 0 ? 1 : 0) + (line.has("--to-earliest") ? 1 : 0) +
                        (line.has("--to-latest") ? 1 : 0);
    if (targets != 1)
        return error{
            usage_error_code,
            "groups reset-offsets needs exactly one of --to-offset, --to-earliest, --to-latest"};
    auto layout = brokers.topic(topic.value());
    if (!layout) return layout.failure();
    auto coordinator = open_coordinator(brokers.bootstrap(), group, brokers.timeout_ms());
    if (!coordinator) return coordinator.failure();
    // Kafka resets only an inactive group: live members would overwrite the new offsets
    // with their next commit. The broker enforces it too (a commit with generation -1 is
    // refused while the group has members); asking first gives the clearer message.
    auto description = describe(coordinator.value(), group);
    if (!description) return description.failure();
    if (description->state != state_empty && description->state != state_dead)
        return error{1, "assignments can only be reset if the group '" + group +
                            "' is inactive, but the current state is " + description->state + "."};

    auto earliest = list_offsets(brokers, layout.value(), earliest_timestamp);
    if (!earliest) return earliest.failure();
    auto latest = list_offsets(brokers, layout.value(), latest_timestamp);
    if (!latest) return latest.failure();
    std::map<int32_t, int64_t> targets_by_partition;
    for (const auto& [partition, end] : latest.value()) {
        const int64_t start = earliest->count(partition) ? earliest->at(partition) : 0;
        int64_t target = line.has("--to-earliest") ? start : end;
        // As kafka-consumer-groups.sh does, an offset outside the log is moved to its
        // nearest end rather than committed as given.
        if (to_offset.value() >= 0) target = std::clamp(to_offset.value(), start, end);
        targets_by_partition[partition] = target;
    }

    auto version = coordinator->version_for<proto::offset_commit_request>();
    if (!version) return version.failure();
    proto::offset_commit_request request;
    request.group_id = group;
    request.generation_id = -1;
    request.member_id = "";
    proto::offset_commit_request::offset_commit_request_topic committed_topic;
    committed_topic.name = topic.value();
    for (const auto& [partition, target] : targets_by_partition) {
        proto::offset_commit_request::offset_commit_request_partition entry;
        entry.partition_index = partition;
        entry.committed_offset = target;
        entry.committed_metadata = "";
        committed_topic.partitions.push_back(entry);
    }
    request.topics.push_back(std::move(committed_topic));
    proto::offset_commit_response response;
    std::vector<uint8_t> frame;
    auto called = coordinator->call(request, version.value(), response, frame);
    if (!called) return called;
    for (const auto& answered : response.topics)
        for (const auto& partition : answered.partitions)
            if (partition.error_code != 0)
                return error{1, "resetting group \"" + group + "\" topic \"" + answered.name +
                                    "\" partition " + std::to_string(partition.partition_index) +
                                    " failed (" + proto::error_name(partition.error_code) + ")"};
    std::string out;
    if (line.global.json) {
        out = "[";
        bool first = true;
        for (const auto& [partition, target] : targets_by_partition) {
            out += std::string(first ? "" : ",") + "{\"group\":" + json_string(group) +
                   ",\"topic\":" + json_string(topic.value()) +
                   ",\"partition\":" + std::to_string(partition) +
                   ",\"new_offset\":" + std::to_string(target) + "}";
            first = false;
        }
        out += "]\n";
    } else {
        out = "GROUP TOPIC PARTITION NEW-OFFSET\n";
        for (const auto& [partition, target] : targets_by_partition)
            out += group + " " + topic.value() + " " + std::to_string(partition) + " " +
                   std::to_string(target) + "\n";
    }
    print(out);
    return ok_result();
}

}  // namespace

result<void> run_groups(const command_line& line) {
    auto brokers = cluster::connect(line.global);
    if (!brokers) return brokers.failure();
    // Every groups subcommand needs the group APIs; a broker that does not advertise them
    // cannot serve any of them, and ApiVersions says so.
    auto listed = brokers->bootstrap().version_for<proto::list_groups_request>();
    if (!listed) return error{1, "groups: " + listed.failure().message};
    auto found = brokers->bootstrap().version_for<proto::find_coordinator_request>();
    if (!found) return error{1, "groups: " + found.failure().message};
    const std::string_view path = line.command->path;
    if (path == "groups list") return groups_list(brokers->bootstrap(), line);
    auto group = line.required("--group");
    if (!group) return group.failure();
    if (path == "groups describe") return groups_describe(brokers.value(), group.value(), line);
    if (path == "groups delete") return groups_delete(brokers.value(), group.value());
    return groups_reset_offsets(brokers.value(), group.value(), line);
}

}  // namespace spate::tools
