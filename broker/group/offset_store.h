#pragma once
// Committed offsets and group snapshots: the in-memory tables a coordinator loads, and
// the reader of the per-shard files that kept them before __consumer_offsets did.
//
// Today groups live in the internal topic __consumer_offsets (broker/group/
// offsets_topic.h, records in Kafka's schemas: broker/group/group_records.h). Before,
// every shard appended its groups' records to its own file in
// `<data_dir>/__consumer_offsets/`:
//
//   state                    text "<epoch> <shard_count>\n"
//   offsets-<epoch>-<shard>.log
//                            the records of the groups shard <shard> coordinated
//
// A broker upgraded from those files imports them once at start-up
// (read_legacy_offsets), then removes them (remove_legacy_offsets).
//
// Record layout (big-endian, Kafka primitive encodings of proto::writer):
//
//   uint32  body_length        bytes after the crc field
//   uint32  crc                CRC-32C of the body
//   body:
//     int8    kind             1 commit, 2 offset deleted, 3 group deleted,
//                              4 group metadata
//     int64   timestamp_ms     wall clock of the commit
//     string  group_id         int16 length + bytes
//     kinds 1 and 2:
//       string  topic
//       int32   partition
//     kind 1:
//       int64   offset
//       int32   leader_epoch
//       string  metadata       nullable (length -1 = null)
//     kind 4 (the group as of its last Stable or Empty state):
//       string  protocol_type
//       string  protocol_name  nullable
//       int32   generation
//       string  leader_id
//       int32   member_count
//       member_count times:
//         string  member_id
//         string  group_instance_id   nullable
//         string  client_id
//         string  client_host
//         int32   session_timeout_ms
//         int32   rebalance_timeout_ms
//         bytes   metadata            int32 length; the selected protocol's
//         bytes   assignment
//
// A torn or corrupt record ends the replay of its file: everything before it was
// acknowledged, nothing after it can have been (appends were sequential).

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace spate::broker::group {

// Java's String.hashCode of `text` (UTF-8 decoded to UTF-16 code units; each malformed
// byte becomes U+FFFD, where Java may merge a cut-short sequence into one), int32
// overflow included: Kafka's group placement.
int32_t java_string_hash(std::string_view text);
// Kafka's __consumer_offsets partition of a group: abs(hash) mod partitions, with
// abs(INT32_MIN) taken as 0 (Kafka's Utils.abs).
int32_t offsets_partition_of(std::string_view group_id, int32_t partitions);

struct topic_partition {
    std::string topic;
    int32_t partition = 0;
    auto operator<=>(const topic_partition&) const = default;
};

struct committed_offset {
    int64_t offset = -1;
    int32_t leader_epoch = -1;
    std::optional<std::string> metadata;
    int64_t commit_timestamp_ms = -1;
};

using group_offsets = std::map<topic_partition, committed_offset>;
// group id -> its committed offsets.
using offset_table = std::map<std::string, group_offsets>;

enum class record_kind : int8_t {
    commit = 1,
    offset_deleted = 2,
    group_deleted = 3,
    group_metadata = 4,
};

// A member as a group snapshot keeps it: enough to resume after a restart without a
// rebalance (the members keep heartbeating with their ids and generation).
struct member_snapshot {
    std::string member_id;
    std::optional<std::string> instance_id;
    std::string client_id;
    std::string client_host;
    int32_t session_timeout_ms = 0;
    int32_t rebalance_timeout_ms = 0;
    std::vector<uint8_t> metadata;
    std::vector<uint8_t> assignment;
};

struct group_snapshot {
    std::string protocol_type;
    std::optional<std::string> protocol_name;
    int32_t generation = 0;
    std::string leader_id;
    std::vector<member_snapshot> members;
};

struct offset_record {
    record_kind kind = record_kind::commit;
    std::string group_id;
    topic_partition where;
    committed_offset value;
    group_snapshot snapshot;  // kind group_metadata only
};

// What one shard coordinates after recovery: offsets and the last group snapshots.
struct recovered_groups {
    offset_table offsets;
    std::map<std::string, group_snapshot> snapshots;
};

// Appends the framed encoding of `record` to `out`.
void encode_record(const offset_record& record, std::vector<uint8_t>& out);

struct decoded_records {
    std::vector<offset_record> records;
    size_t valid_bytes = 0;  // the prefix that decoded cleanly
};
// Decodes records until the end or the first torn/corrupt one.
decoded_records decode_records(std::span<const uint8_t> bytes);

// Applies one record as Kafka's log means it: a commit sets an offset, an offset tombstone
// erases it, a group snapshot replaces the last one and a group tombstone erases that
// (the group's offsets have tombstones of their own).
void apply_record(recovered_groups& groups, const offset_record& record);

// Longest record body accepted on replay; commits carry at most
// offset_metadata_bytes_max of metadata plus names bounded by the protocol's int16.
inline constexpr uint32_t record_body_bytes_max = 1u << 20;

// The path of shard `shard`'s file in `epoch` (the old layout).
std::filesystem::path offsets_file_path(const std::filesystem::path& data_dir, uint64_t epoch,
                                        uint32_t shard);

// The groups the old per-shard files hold (every shard's file of the epoch `state`
// names), or nullopt when there are none to import.
result<std::optional<recovered_groups>> read_legacy_offsets(const std::filesystem::path& data_dir);
// Removes the old files once their groups are imported: the state file first.
result<void> remove_legacy_offsets(const std::filesystem::path& data_dir);

}  // namespace spate::broker::group
