#pragma once
// The records of the internal topic __consumer_offsets in Kafka's own schemas, so that
// Kafka's tools (kafka-console-consumer with the offsets formatter, kafka-dump-log
// --offsets-decoder) and Kafka brokers read what spate writes, and spate reads what they
// wrote.
//
// A record's key and its value are each an int16 version followed by the fields of that
// version, big-endian. The key's version names the record's type; the value's version
// evolves the value alone. A null value is a tombstone: the key's entry is deleted.
//
// Field encodings. Classic (non-flexible) versions: string = int16 length + bytes (-1 =
// null, only where nullable); bytes = int32 length + bytes; array = int32 count +
// elements. Flexible versions (value version 4): string and bytes = unsigned varint
// (length + 1, 0 = null) + bytes; array = unsigned varint (count + 1) + elements; and every
// struct ends with tagged fields: unsigned varint count, then per field an unsigned varint
// tag, an unsigned varint size and that many bytes (none are defined: all are skipped).
//
// Key versions 0 and 1, OffsetCommitKey (the same fields in both):
//   string  group
//   string  topic
//   int32   partition
// Its value, OffsetCommitValue (null: the offset was deleted or expired):
//   int64   offset
//   int32   leader_epoch            versions 3+ (older versions mean -1)
//   string  metadata                never null
//   int64   commit_timestamp
//   int64   expire_timestamp        version 1 only (read and ignored)
//
// Key version 2, GroupMetadataKey:
//   string  group
// Its value, GroupMetadataValue (null: the group's metadata was deleted; its offsets
// have tombstones of their own):
//   string  protocol_type
//   int32   generation
//   string  protocol                nullable (null in an Empty group)
//   string  leader                  nullable (null in an Empty group)
//   int64   current_state_timestamp versions 2+ (-1 = unknown)
//   array   members, each:
//     string  member_id
//     string  group_instance_id     versions 3+, nullable
//     string  client_id
//     string  client_host
//     int32   rebalance_timeout     versions 1+ (version 0 means the session timeout)
//     int32   session_timeout
//     bytes   subscription          the member's metadata for the selected protocol
//     bytes   assignment
//
// Key versions 3 and above are the records of KIP-848's consumer groups and of share
// groups (Kafka 3.7+); spate does not read them and skips them.
//
// What Kafka writes (GroupMetadataManager, 2.8 through 3.9): key version 1 for offsets,
// key version 2 for groups; OffsetCommitValue 3 (1 before inter-broker protocol 2.1 or
// when the commit carried an explicit retention, 2 at 2.1-IV0); GroupMetadataValue 3 (0,
// 1, 2 before protocols 0.10.1, 2.1 and 2.3). No Kafka release writes the flexible
// version 4 of either value yet. spate writes what current Kafka writes: key 1 + value 3,
// key 2 + value 3.
//
// Free functions over caller-owned bytes; any thread may call them. The decoders trust
// nothing: these records come from other brokers' logs and replicas.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "broker/group/offset_store.h"
#include "proto/result.h"

namespace spate::broker::group {

// Key versions (the record types of __consumer_offsets).
inline constexpr int16_t offset_commit_key_version_min = 0;
inline constexpr int16_t offset_commit_key_version = 1;  // what spate writes
inline constexpr int16_t group_metadata_key_version = 2;
// Value versions spate writes, and the highest it reads (the first flexible one).
inline constexpr int16_t offset_commit_value_version = 3;
inline constexpr int16_t group_metadata_value_version = 3;
inline constexpr int16_t value_version_flexible = 4;
inline constexpr int16_t value_version_max = 4;

// The longest string a classic (int16-length) field holds. Every string of a record
// written here must fit: see fits_kafka_schemas.
inline constexpr size_t schema_string_bytes_max = 32767;

// One record of __consumer_offsets in Kafka's schemas: key, and value (nullopt = tombstone).
struct kafka_record {
    std::vector<uint8_t> key;
    std::optional<std::vector<uint8_t>> value;
};

// Whether every string `record` would write fits a classic string field
// (schema_string_bytes_max). Kafka refuses to serialize longer ones; callers check this
// before encode_kafka_record, which asserts it, because the strings come from clients.
bool fits_kafka_schemas(const offset_record& record);

// commit -> OffsetCommitKey (key version 1) + OffsetCommitValue version 3 (metadata ""
// when none); offset_deleted -> OffsetCommitKey v1 + tombstone; group_metadata ->
// GroupMetadataKey (key version 2) + GroupMetadataValue version 3 (leader null when
// leader_id is empty, current_state_timestamp = record.value.commit_timestamp_ms);
// group_deleted -> GroupMetadataKey v2 + tombstone (it removes only the group's metadata,
// as in Kafka). Requires fits_kafka_schemas(record).
kafka_record encode_kafka_record(const offset_record& record);

// An uncompressed v2 batch (producer id -1, base offset 0, magic 2) holding `records` in
// order, each record's timestamp its value.commit_timestamp_ms (the batch's base
// timestamp is the first record's, as Kafka's builder sets it).
std::vector<uint8_t> build_offsets_batch(const std::vector<offset_record>& records);

// What decoding one record found: a record spate understands, one it deliberately
// skips (a type it does not read), or bytes that follow no schema.
enum class decode_status { record, skipped, malformed };
struct decoded_kafka_record {
    decode_status status = decode_status::malformed;
    offset_record record;  // meaningful when status is record
};

// Decodes one record: key/value as stored; timestamp_ms is the record's timestamp (used
// as commit_timestamp_ms where the value has none: tombstones, and group values before
// version 2 or with current_state_timestamp -1). Reads every version Kafka has written
// (keys 0-2; values 0-4). Unknown key versions (3 and above, and negative ones, which
// Kafka's loaders ignore as unknown record types) are skipped; a null or short key, an
// unknown value version, or a field running past its bytes is malformed. Bytes after the
// last field are ignored, as Kafka's readers ignore them.
decoded_kafka_record decode_kafka_record(std::optional<std::span<const uint8_t>> key,
                                         std::optional<std::span<const uint8_t>> value,
                                         int64_t timestamp_ms);

struct walk_counts {
    size_t records = 0;    // handed to fn
    size_t skipped = 0;    // unknown record types, and the records of control batches
    size_t malformed = 0;  // records whose key or value follows no schema
};

// Calls fn(const offset_record&) for every recognised record of one stored batch, in
// offset order: the batch's CRC is validated first, and a compressed batch is
// decompressed (at most decompressed_bytes_max bytes). Control batches (transaction
// markers) and unknown key versions are skipped. Each record's timestamp is its own, or
// the batch's max_timestamp under LogAppendTime. Errors (EINVAL: not a valid v2 batch, or
// records that do not parse; EFBIG, ENOTSUP: see proto::batch_records) come after fn
// has seen the records before the failure.
result<walk_counts> for_each_offsets_record(std::span<const uint8_t> batch,
                                            size_t decompressed_bytes_max,
                                            const std::function<void(const offset_record&)>& fn);

}  // namespace spate::broker::group
