#include "broker/group/group_records.h"

#include <cerrno>
#include <string>
#include <utility>

#include "proto/assert.h"
#include "proto/reader.h"
#include "proto/record_batch.h"
#include "proto/writer.h"

namespace spate::broker::group {

namespace {

// Classic encodings throughout: spate writes only non-flexible versions.
constexpr bool classic = false;

bool fits(const std::string& text) { return text.size() <= schema_string_bytes_max; }
bool fits_nullable(const std::optional<std::string>& text) { return !text || fits(*text); }

std::vector<uint8_t> offset_commit_key(const offset_record& record) {
    proto::writer out;
    out.int16(offset_commit_key_version);
    out.string(record.group_id, classic);
    out.string(record.where.topic, classic);
    out.int32(record.where.partition);
    return std::move(out.buffer());
}

std::vector<uint8_t> group_metadata_key(const offset_record& record) {
    proto::writer out;
    out.int16(group_metadata_key_version);
    out.string(record.group_id, classic);
    return std::move(out.buffer());
}

std::vector<uint8_t> offset_commit_value(const committed_offset& value) {
    proto::writer out;
    out.int16(offset_commit_value_version);
    out.int64(value.offset);
    out.int32(value.leader_epoch);
    out.string(value.metadata.value_or(std::string()), classic);
    out.int64(value.commit_timestamp_ms);
    return std::move(out.buffer());
}

std::vector<uint8_t> group_metadata_value(const offset_record& record) {
    const group_snapshot& group = record.snapshot;
    proto::writer out;
    out.int16(group_metadata_value_version);
    out.string(group.protocol_type, classic);
    out.int32(group.generation);
    out.nullable_string(group.protocol_name, classic);
    // An Empty group has no leader; Kafka writes null then, never "".
    out.nullable_string(
        group.leader_id.empty() ? std::nullopt : std::optional<std::string>(group.leader_id),
        classic);
    out.int64(record.value.commit_timestamp_ms);
    SPATE_ASSERT(group.members.size() <= INT32_MAX, "group snapshot with too many members");
    out.array_count(static_cast<int32_t>(group.members.size()), classic);
    for (const member_snapshot& member : group.members) {
        out.string(member.member_id, classic);
        out.nullable_string(member.instance_id, classic);
        out.string(member.client_id, classic);
        out.string(member.client_host, classic);
        out.int32(member.rebalance_timeout_ms);
        out.int32(member.session_timeout_ms);
        out.bytes(member.metadata, classic);
        out.bytes(member.assignment, classic);
    }
    return std::move(out.buffer());
}

// The fewest bytes one GroupMetadataValue member takes in `version`, which bounds the
// member count a value of a given size can claim before anything is allocated.
size_t member_bytes_min(int16_t version) {
    const bool compact = version >= value_version_flexible;
    const size_t string_min = compact ? 1 : 2;
    const size_t bytes_min = compact ? 1 : 4;
    size_t size = 3 * string_min + 4 + 2 * bytes_min;  // ids, session timeout, bytes
    if (version >= 3) size += string_min;              // group_instance_id
    if (version >= 1) size += 4;                       // rebalance_timeout
    if (compact) size += 1;                            // tagged fields
    return size;
}

std::vector<uint8_t> copy_of(std::span<const uint8_t> bytes) {
    return {bytes.begin(), bytes.end()};
}

// Reads an OffsetCommitValue of any version into `out`; false when malformed.
bool read_offset_commit_value(std::span<const uint8_t> bytes, committed_offset& out) {
    proto::reader in(bytes);
    const int16_t version = in.int16();
    if (!in.ok() || version < 0 || version > value_version_max) return false;
    const bool compact = version >= value_version_flexible;
    out.offset = in.int64();
    out.leader_epoch = version >= 3 ? in.int32() : -1;
    out.metadata = in.string(compact);
    out.commit_timestamp_ms = in.int64();
    if (version == 1) (void)in.int64();  // expire_timestamp: retention is the broker's
    if (compact) in.skip_tagged_fields();
    return in.ok();
}

// Reads a GroupMetadataValue of any version into `out`; false when malformed.
// `timestamp_ms` stands in for a missing current_state_timestamp.
bool read_group_metadata_value(std::span<const uint8_t> bytes, int64_t timestamp_ms,
                               offset_record& out) {
    proto::reader in(bytes);
    const int16_t version = in.int16();
    if (!in.ok() || version < 0 || version > value_version_max) return false;
    const bool compact = version >= value_version_flexible;
    group_snapshot& group = out.snapshot;
    group.protocol_type = in.string(compact);
    group.generation = in.int32();
    group.protocol_name = in.nullable_string(compact);
    group.leader_id = in.nullable_string(compact).value_or(std::string());
    const int64_t state_timestamp_ms = version >= 2 ? in.int64() : -1;
    out.value.commit_timestamp_ms = state_timestamp_ms != -1 ? state_timestamp_ms : timestamp_ms;
    // A null array is not a valid members field: array_count returns -1 and the loop
    // below never runs, so reject it explicitly.
    const int32_t count = in.array_count(compact, member_bytes_min(version));
    if (!in.ok() || count < 0) return false;
    group.members.reserve(static_cast<size_t>(count));
    for (int32_t i = 0; i < count && in.ok(); ++i) {
        member_snapshot& member = group.members.emplace_back();
        member.member_id = in.string(compact);
        if (version >= 3) member.instance_id = in.nullable_string(compact);
        member.client_id = in.string(compact);
        member.client_host = in.string(compact);
        const int32_t rebalance_timeout_ms = version >= 1 ? in.int32() : 0;
        member.session_timeout_ms = in.int32();
        // Version 0 predates the rebalance timeout: Kafka uses the session timeout.
        member.rebalance_timeout_ms =
            version >= 1 ? rebalance_timeout_ms : member.session_timeout_ms;
        member.metadata = copy_of(in.bytes(compact));
        member.assignment = copy_of(in.bytes(compact));
        if (compact) in.skip_tagged_fields();
    }
    if (compact) in.skip_tagged_fields();
    return in.ok();
}

}  // namespace

bool fits_kafka_schemas(const offset_record& record) {
    if (!fits(record.group_id)) return false;
    switch (record.kind) {
        case record_kind::commit:
            return fits(record.where.topic) && fits_nullable(record.value.metadata);
        case record_kind::offset_deleted:
            return fits(record.where.topic);
        case record_kind::group_deleted:
            return true;
        case record_kind::group_metadata:
            break;
    }
    const group_snapshot& group = record.snapshot;
    if (!fits(group.protocol_type) || !fits_nullable(group.protocol_name) || !fits(group.leader_id))
        return false;
    for (const member_snapshot& member : group.members) {
        if (!fits(member.member_id) || !fits_nullable(member.instance_id) ||
            !fits(member.client_id) || !fits(member.client_host))
            return false;
    }
    return true;
}

kafka_record encode_kafka_record(const offset_record& record) {
    SPATE_ASSERT(fits_kafka_schemas(record), "a string too long for Kafka's offsets schemas");
    switch (record.kind) {
        case record_kind::commit:
            return {offset_commit_key(record), offset_commit_value(record.value)};
        case record_kind::offset_deleted:
            return {offset_commit_key(record), std::nullopt};
        case record_kind::group_deleted:
            return {group_metadata_key(record), std::nullopt};
        case record_kind::group_metadata:
            return {group_metadata_key(record), group_metadata_value(record)};
    }
    SPATE_ASSERT(false, "offset_record of an unknown kind");
    return {};
}

std::vector<uint8_t> build_offsets_batch(const std::vector<offset_record>& records) {
    const int64_t base_timestamp_ms =
        records.empty() ? 0 : records.front().value.commit_timestamp_ms;
    proto::batch_builder builder(proto::compression_codec::none, base_timestamp_ms);
    for (const offset_record& record : records) {
        const kafka_record encoded = encode_kafka_record(record);
        std::optional<std::span<const uint8_t>> value;
        if (encoded.value) value = *encoded.value;
        builder.add(encoded.key, value, {}, record.value.commit_timestamp_ms);
    }
    return builder.build(0);
}

decoded_kafka_record decode_kafka_record(std::optional<std::span<const uint8_t>> key,
                                         std::optional<std::span<const uint8_t>> value,
                                         int64_t timestamp_ms) {
    decoded_kafka_record decoded;
    if (!key) return decoded;  // Kafka's loader requires a key on every record
    proto::reader in(*key);
    const int16_t key_version = in.int16();
    if (!in.ok()) return decoded;
    const bool offset_key =
        key_version >= offset_commit_key_version_min && key_version <= offset_commit_key_version;
    if (!offset_key && key_version != group_metadata_key_version) {
        decoded.status = decode_status::skipped;
        return decoded;
    }
    offset_record& record = decoded.record;
    record.group_id = in.string(classic);
    if (offset_key) {
        record.where.topic = in.string(classic);
        record.where.partition = in.int32();
    }
    if (!in.ok()) return decoded;
    record.value.commit_timestamp_ms = timestamp_ms;
    if (offset_key) {
        record.kind = value ? record_kind::commit : record_kind::offset_deleted;
        if (value && !read_offset_commit_value(*value, record.value)) return decoded;
    } else {
        record.kind = value ? record_kind::group_metadata : record_kind::group_deleted;
        if (value && !read_group_metadata_value(*value, timestamp_ms, record)) return decoded;
    }
    decoded.status = decode_status::record;
    return decoded;
}

result<walk_counts> for_each_offsets_record(std::span<const uint8_t> batch,
                                            size_t decompressed_bytes_max,
                                            const std::function<void(const offset_record&)>& fn) {
    const proto::batch_check check =
        proto::validate_batch(batch, batch.size(), proto::batch_source::log);
    if (check.error != proto::batch_error::none)
        return error{EINVAL, std::string("__consumer_offsets batch rejected: ") +
                                 proto::to_string(check.error)};
    const proto::batch_header& header = check.header;
    walk_counts counts;
    if (header.is_control()) {
        counts.skipped = header.records_count > 0 ? static_cast<size_t>(header.records_count) : 0;
        return counts;
    }
    const auto whole = batch.first(static_cast<size_t>(header.total_size()));
    auto walked =
        proto::for_each_record(whole, decompressed_bytes_max, [&](const proto::record_view& view) {
            // Under LogAppendTime the broker's append time, kept once in max_timestamp,
            // is every record's timestamp.
            const int64_t timestamp_ms =
                header.has_log_append_time()
                    ? header.max_timestamp
                    : proto::record_timestamp(header.base_timestamp, view.timestamp_delta);
            const decoded_kafka_record decoded =
                decode_kafka_record(view.key, view.value, timestamp_ms);
            switch (decoded.status) {
                case decode_status::record:
                    ++counts.records;
                    fn(decoded.record);
                    break;
                case decode_status::skipped:
                    ++counts.skipped;
                    break;
                case decode_status::malformed:
                    ++counts.malformed;
                    break;
            }
        });
    if (!walked) return walked.failure();
    return counts;
}

}  // namespace spate::broker::group
