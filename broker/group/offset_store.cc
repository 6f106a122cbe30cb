// The committed-offsets table, its record format and start-up recovery.
#include "broker/group/offset_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cinttypes>

#include "proto/crc32c.h"
#include "proto/reader.h"
#include "proto/writer.h"
#include "storage/file.h"

namespace spate::broker::group {

namespace fs = std::filesystem;

namespace {

constexpr size_t record_prefix_bytes = 8;  // body_length + crc
constexpr size_t state_file_bytes_max = 64;

fs::path offsets_dir(const fs::path& data_dir) { return data_dir / "__consumer_offsets"; }

// Parses "<epoch> <shard_count>\n".
bool parse_state(const std::string& text, uint64_t& epoch, uint32_t& shard_count) {
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    auto first = std::from_chars(begin, end, epoch);
    if (first.ec != std::errc() || first.ptr == end || *first.ptr != ' ') return false;
    auto second = std::from_chars(first.ptr + 1, end, shard_count);
    return second.ec == std::errc() && shard_count > 0;
}

result<std::vector<uint8_t>> read_whole_file(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return storage::errno_error("open", path);
    storage::segment_file holder(fd);
    std::vector<uint8_t> bytes;
    uint8_t chunk[64 * 1024];
    int64_t position = 0;
    for (;;) {
        auto got = storage::pread_some(fd, chunk, position, path);
        if (!got) return got.failure();
        if (got.value() == 0) break;
        bytes.insert(bytes.end(), chunk, chunk + got.value());
        position += static_cast<int64_t>(got.value());
    }
    return bytes;
}

}  // namespace

namespace {

// The next code point of UTF-8 `text` at `at` (advanced past it); U+FFFD for a malformed
// or overlong sequence, consuming one byte, as Java's decoder replaces each bad byte.
uint32_t next_code_point(std::string_view text, size_t& at) {
    const auto lead = static_cast<uint8_t>(text[at]);
    const size_t length = lead < 0x80         ? 1
                          : (lead >> 5) == 6  ? 2
                          : (lead >> 4) == 14 ? 3
                          : (lead >> 3) == 30 ? 4
                                              : 0;
    constexpr uint32_t replacement = 0xFFFD;
    if (length == 0 || at + length > text.size()) {
        ++at;
        return length == 1 ? lead : replacement;
    }
    uint32_t cp = length == 1 ? lead : lead & (0x7F >> length);
    for (size_t i = 1; i < length; ++i) {
        const auto next = static_cast<uint8_t>(text[at + i]);
        if ((next & 0xC0) != 0x80) {
            ++at;
            return replacement;
        }
        cp = (cp << 6) | (next & 0x3F);
    }
    static constexpr uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < smallest[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        ++at;
        return replacement;
    }
    at += length;
    return cp;
}

}  // namespace

int32_t java_string_hash(std::string_view text) {
    uint32_t hash = 0;  // unsigned: Java's int arithmetic wraps, C++'s signed would not
    for (size_t at = 0; at < text.size();) {
        const uint32_t cp = next_code_point(text, at);
        if (cp < 0x10000) {
            hash = hash * 31u + cp;
        } else {  // a surrogate pair, high then low
            hash = hash * 31u + (0xD800u + ((cp - 0x10000u) >> 10));
            hash = hash * 31u + (0xDC00u + ((cp - 0x10000u) & 0x3FFu));
        }
    }
    return static_cast<int32_t>(hash);
}

int32_t offsets_partition_of(std::string_view group_id, int32_t partitions) {
    const int32_t hash = java_string_hash(group_id);
    const int32_t positive = hash == INT32_MIN ? 0 : (hash < 0 ? -hash : hash);
    return partitions <= 0 ? 0 : positive % partitions;
}

void encode_record(const offset_record& record, std::vector<uint8_t>& out) {
    proto::writer body(64);
    body.int8(static_cast<int8_t>(record.kind));
    body.int64(record.value.commit_timestamp_ms);
    body.string(record.group_id, false);
    if (record.kind == record_kind::commit || record.kind == record_kind::offset_deleted) {
        body.string(record.where.topic, false);
        body.int32(record.where.partition);
    }
    if (record.kind == record_kind::commit) {
        body.int64(record.value.offset);
        body.int32(record.value.leader_epoch);
        body.nullable_string(record.value.metadata, false);
    }
    if (record.kind == record_kind::group_metadata) {
        const group_snapshot& s = record.snapshot;
        body.string(s.protocol_type, false);
        body.nullable_string(s.protocol_name, false);
        body.int32(s.generation);
        body.string(s.leader_id, false);
        body.int32(static_cast<int32_t>(s.members.size()));
        for (const member_snapshot& m : s.members) {
            body.string(m.member_id, false);
            body.nullable_string(m.instance_id, false);
            body.string(m.client_id, false);
            body.string(m.client_host, false);
            body.int32(m.session_timeout_ms);
            body.int32(m.rebalance_timeout_ms);
            body.bytes(m.metadata, false);
            body.bytes(m.assignment, false);
        }
    }
    const std::vector<uint8_t>& bytes = body.buffer();
    proto::writer prefix(record_prefix_bytes);
    prefix.uint32(static_cast<uint32_t>(bytes.size()));
    prefix.uint32(proto::crc32c(bytes));
    out.insert(out.end(), prefix.buffer().begin(), prefix.buffer().end());
    out.insert(out.end(), bytes.begin(), bytes.end());
}

decoded_records decode_records(std::span<const uint8_t> bytes) {
    decoded_records decoded;
    size_t position = 0;
    while (bytes.size() - position >= record_prefix_bytes) {
        proto::reader prefix(bytes.data() + position, record_prefix_bytes);
        const uint32_t length = prefix.uint32();
        const uint32_t crc = prefix.uint32();
        if (length > record_body_bytes_max) break;
        if (bytes.size() - position - record_prefix_bytes < length) break;
        const std::span<const uint8_t> body = bytes.subspan(position + record_prefix_bytes, length);
        if (proto::crc32c(body) != crc) break;
        proto::reader in(body);
        offset_record record;
        const int8_t kind = in.int8();
        if (kind < 1 || kind > 4) break;
        record.kind = static_cast<record_kind>(kind);
        record.value.commit_timestamp_ms = in.int64();
        record.group_id = in.string(false);
        if (record.kind == record_kind::commit || record.kind == record_kind::offset_deleted) {
            record.where.topic = in.string(false);
            record.where.partition = in.int32();
        }
        if (record.kind == record_kind::commit) {
            record.value.offset = in.int64();
            record.value.leader_epoch = in.int32();
            record.value.metadata = in.nullable_string(false);
        }
        if (record.kind == record_kind::group_metadata) {
            group_snapshot& s = record.snapshot;
            s.protocol_type = in.string(false);
            s.protocol_name = in.nullable_string(false);
            s.generation = in.int32();
            s.leader_id = in.string(false);
            // Each member takes at least 24 bytes: the count is bounded by what is left.
            const int32_t count = in.int32();
            if (count < 0 || static_cast<size_t>(count) > in.remaining() / 24) break;
            s.members.resize(static_cast<size_t>(count));
            for (member_snapshot& m : s.members) {
                m.member_id = in.string(false);
                m.instance_id = in.nullable_string(false);
                m.client_id = in.string(false);
                m.client_host = in.string(false);
                m.session_timeout_ms = in.int32();
                m.rebalance_timeout_ms = in.int32();
                const auto metadata = in.bytes(false);
                m.metadata.assign(metadata.begin(), metadata.end());
                const auto assignment = in.bytes(false);
                m.assignment.assign(assignment.begin(), assignment.end());
            }
        }
        if (!in.ok() || in.remaining() != 0) break;
        decoded.records.push_back(std::move(record));
        position += record_prefix_bytes + length;
    }
    decoded.valid_bytes = position;
    return decoded;
}

void apply_record(recovered_groups& groups, const offset_record& record) {
    offset_table& table = groups.offsets;
    switch (record.kind) {
        case record_kind::commit:
            table[record.group_id][record.where] = record.value;
            return;
        case record_kind::offset_deleted: {
            auto found = table.find(record.group_id);
            if (found == table.end()) return;
            found->second.erase(record.where);
            if (found->second.empty()) table.erase(found);
            return;
        }
        case record_kind::group_deleted:  // the group's metadata only, as in Kafka
            groups.snapshots.erase(record.group_id);
            return;
        case record_kind::group_metadata:
            groups.snapshots[record.group_id] = record.snapshot;
            return;
    }
}

fs::path offsets_file_path(const fs::path& data_dir, uint64_t epoch, uint32_t shard) {
    return offsets_dir(data_dir) /
           ("offsets-" + std::to_string(epoch) + "-" + std::to_string(shard) + ".log");
}

result<std::optional<recovered_groups>> read_legacy_offsets(const fs::path& data_dir) {
    const fs::path dir = offsets_dir(data_dir);
    uint64_t epoch = 0;
    uint32_t shards = 0;
    auto state = storage::read_small_file(dir / "state", state_file_bytes_max);
    if (!state) {
        if (state.failure().code == ENOENT) return std::optional<recovered_groups>();
        return state.failure();
    }
    if (!parse_state(state.value(), epoch, shards))
        return error{EINVAL, "malformed " + (dir / "state").string()};
    // Within one epoch a group's records are all in the file of the shard it hashed to,
    // so the order between files does not matter.
    recovered_groups merged;
    for (uint32_t s = 0; s < shards; ++s) {
        const fs::path path = offsets_file_path(data_dir, epoch, s);
        auto bytes = read_whole_file(path);
        if (!bytes) {
            if (bytes.failure().code == ENOENT) continue;
            return bytes.failure();
        }
        for (const offset_record& record : decode_records(bytes.value()).records) {
            // These files had no per-offset tombstones for a deleted group: its
            // deletion took its offsets too.
            if (record.kind == record_kind::group_deleted) merged.offsets.erase(record.group_id);
            apply_record(merged, record);
        }
    }
    return std::optional<recovered_groups>(std::move(merged));
}

result<void> remove_legacy_offsets(const fs::path& data_dir) {
    const fs::path dir = offsets_dir(data_dir);
    // The state file goes first: without it the directory is never read again.
    if (auto removed = storage::remove_file(dir / "state");
        !removed && removed.failure().code != ENOENT)
        return removed;
    std::error_code failed;
    fs::remove_all(dir, failed);
    if (failed)
        return error{failed.value(), "cannot remove " + dir.string() + ": " + failed.message()};
    return {};
}

}  // namespace spate::broker::group
