#pragma once
// What spatectl needs to take part in Kafka's classic consumer groups: the "consumer"
// embedded protocol (the subscription a member sends in JoinGroup and the assignment
// the leader hands out in SyncGroup), the "range" assignor a leader runs, and the way
// to a group's coordinator.
//
// The embedded protocol is Kafka's ConsumerProtocolSubscription / ConsumerProtocolAssignment
// at version 0, always in classic (non-flexible) encoding:
//   subscription: version int16, topics [int32 count] of string (int16 length), user_data
//                 nullable bytes (int32 length, -1 = null); later versions append fields
//                 that a version-0 reader skips.
//   assignment:   version int16, partitions [int32 count] of (topic string, [int32 count]
//                 of int32), user_data nullable bytes.
//
// The codec functions are pure; open_coordinator talks to a broker. All of it runs on
// spatectl's single thread, called by the groups commands and `consume --group`.

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "proto/messages.h"
#include "proto/result.h"
#include "tools/connection.h"

namespace spate::tools {

constexpr std::string_view consumer_protocol_type = "consumer";
constexpr std::string_view range_assignor_name = "range";

// A member's assigned partitions, per topic, each list sorted.
using partition_assignment = std::map<std::string, std::vector<int32_t>>;

std::vector<uint8_t> encode_subscription(const std::vector<std::string>& topics);
// The subscribed topics; an error (code 1) naming what is malformed.
result<std::vector<std::string>> decode_subscription(std::span<const uint8_t> bytes);

std::vector<uint8_t> encode_assignment(const partition_assignment& assignment);
// An empty byte string decodes to no partitions: Kafka sends that to members that
// joined too late for the assignment.
result<partition_assignment> decode_assignment(std::span<const uint8_t> bytes);

struct group_member_subscription {
    std::string member_id;
    std::vector<std::string> topics;
};

// Kafka's range assignor: for each topic, the subscribed members sorted by member id get
// consecutive ranges of partitions, the first (partitions % members) one extra. Topics
// missing from partition_counts are not assigned. Every member appears in the result.
std::map<std::string, partition_assignment> range_assign(
    const std::vector<group_member_subscription>& members,
    const std::map<std::string, int32_t>& partition_counts);

// Asks `bootstrap` (FindCoordinator, key type group) which broker coordinates `group`
// and opens a connection to it. Errors name the group and the Kafka error.
result<broker_connection> open_coordinator(broker_connection& bootstrap, const std::string& group,
                                           int32_t timeout_ms);

// `group "g": <what> (ERROR_NAME)`, with friendlier words for the common codes.
std::string describe_group_error(std::string_view group, int16_t code);

// One partition of an OffsetFetch answer.
struct committed_offset {
    const std::string& topic;
    int32_t partition;
    int64_t offset;  // -1: nothing committed
    int16_t error_code;
};
// Calls `fn` for every partition of an OffsetFetch answer to `version` (v8+ nests them
// per group, earlier versions hold them at the top). A group-level error fails the walk
// with `context` + describe_group_error(group, code); a failure of `fn` stops it.
result<void> for_each_committed_offset(
    const proto::offset_fetch_response& response, int16_t version, std::string_view group,
    std::string_view context, const std::function<result<void>(const committed_offset&)>& fn);

}  // namespace spate::tools
