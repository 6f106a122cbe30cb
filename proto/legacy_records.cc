// Message formats v0/v1 to and from record batch v2 (see legacy_records.h).
#include "proto/legacy_records.h"

#include <zlib.h>

#include <cerrno>

#include "proto/reader.h"
#include "proto/record_batch.h"
#include "proto/writer.h"

namespace spate::proto {
namespace {

constexpr size_t entry_overhead = 12;                      // offset + message_size
constexpr size_t message_v0_size_min = 4 + 1 + 1 + 4 + 4;  // crc magic attr key value
constexpr int8_t attribute_log_append_time = 0x08;

uint32_t crc32_ieee(std::span<const uint8_t> bytes) {
    uLong crc = ::crc32(0L, Z_NULL, 0);
    // zlib takes a uInt length: feed large inputs in pieces.
    size_t at = 0;
    while (at < bytes.size()) {
        const size_t piece = std::min<size_t>(bytes.size() - at, 1u << 30);
        crc = ::crc32(crc, bytes.data() + at, static_cast<uInt>(piece));
        at += piece;
    }
    return static_cast<uint32_t>(crc);
}

std::optional<std::span<const uint8_t>> legacy_bytes(reader& in) {
    const int32_t length = in.int32();
    if (!in.ok() || length < 0) return std::nullopt;
    return in.raw(static_cast<size_t>(length));
}

void write_legacy_bytes(writer& out, const std::optional<std::span<const uint8_t>>& field) {
    if (!field) {
        out.int32(-1);
        return;
    }
    out.int32(static_cast<int32_t>(field->size()));
    out.raw(*field);
}

// Appends one uncompressed message of `magic` at `offset`.
void write_message(writer& out, int8_t magic, int64_t offset, int8_t attributes, int64_t timestamp,
                   const std::optional<std::span<const uint8_t>>& key,
                   const std::optional<std::span<const uint8_t>>& value) {
    out.int64(offset);
    const size_t size_at = out.size();
    out.int32(0);
    const size_t crc_at = out.size();
    out.uint32(0);
    out.int8(magic);
    out.int8(attributes);
    if (magic >= 1) out.int64(timestamp);
    write_legacy_bytes(out, key);
    write_legacy_bytes(out, value);
    out.patch_int32(size_at, static_cast<int32_t>(out.size() - crc_at));
    const auto covered = std::span<const uint8_t>(out.buffer()).subspan(crc_at + 4);
    out.patch_int32(crc_at, static_cast<int32_t>(crc32_ieee(covered)));
}

}  // namespace

namespace legacy_detail {

result<std::optional<entry>> parse_entry(std::span<const uint8_t> in) {
    if (in.size() < entry_overhead) return std::optional<entry>();
    reader head(in);
    const int64_t offset = head.int64();
    const int32_t size = head.int32();
    if (size < static_cast<int32_t>(message_v0_size_min))
        return error{EINVAL, "legacy message shorter than its fields"};
    if (static_cast<size_t>(size) > in.size() - entry_overhead) return std::optional<entry>();
    const auto body = in.subspan(entry_overhead, static_cast<size_t>(size));
    reader m(body);
    const uint32_t crc = m.uint32();
    if (crc != crc32_ieee(body.subspan(4))) return error{EBADMSG, "legacy message CRC mismatch"};
    entry e;
    e.size = entry_overhead + static_cast<size_t>(size);
    e.message.offset = offset;
    e.message.magic = m.int8();
    if (e.message.magic != 0 && e.message.magic != 1)
        return error{EINVAL, "legacy message magic is not 0 or 1"};
    e.message.attributes = m.int8();
    if (e.message.magic == 1) e.message.timestamp = m.int64();
    const int32_t key_length = m.int32();
    if (m.ok() && key_length >= 0) e.message.key = m.raw(static_cast<size_t>(key_length));
    e.message.value = legacy_bytes(m);
    if (!m.ok() || m.remaining() != 0 || key_length < -1)
        return error{EINVAL, "legacy message fields do not match its size"};
    return std::optional<entry>(e);
}

}  // namespace legacy_detail

result<std::vector<uint8_t>> upconvert_message_set(std::span<const uint8_t> set, size_t bytes_max) {
    // The wrapper's codec, if any, is the batch's; messages keep their timestamps.
    compression_codec codec = compression_codec::none;
    bool log_append_time = false;
    if (auto first = legacy_detail::parse_entry(set); first && *first) {
        codec = static_cast<compression_codec>((*first)->message.attributes & 0x07);
        log_append_time = ((*first)->message.attributes & attribute_log_append_time) != 0;
    }
    if (static_cast<uint8_t>(codec) > static_cast<uint8_t>(compression_codec::lz4))
        return error{EINVAL, "unknown compression codec in a legacy message"};
    std::optional<batch_builder> builder;
    size_t bytes = batch_header_size;
    bool bad_timestamp = false;
    auto walked = for_each_legacy_message(set, bytes_max, [&](const legacy_message& m) {
        // -1 (none, and every magic 0 message) or a time since the epoch, as Kafka checks.
        if (m.timestamp < -1) bad_timestamp = true;
        if (!builder) builder.emplace(codec, m.timestamp);
        bytes += 32 + (m.key ? m.key->size() : 0) + (m.value ? m.value->size() : 0);
        if (bytes <= bytes_max) builder->add(m.key, m.value, {}, m.timestamp);
    });
    if (!walked) return walked.failure();
    if (bad_timestamp) return error{EINVAL, "a legacy message timestamp below -1"};
    if (bytes > bytes_max) return error{EFBIG, "legacy messages exceed the size limit"};
    if (!builder || builder->records_count() == 0)
        return error{EINVAL, "a legacy message set without a complete message"};
    auto batch = builder->build(0);
    if (log_append_time) {
        // The topic decides the timestamp type on append; keep what the client asked for.
        batch[batch_attributes_offset + 1] |= static_cast<uint8_t>(attribute_log_append_time);
        update_batch_crc(batch);
    }
    return batch;
}

result<std::vector<uint8_t>> downconvert_batches(std::span<const uint8_t> batches, int8_t magic,
                                                 size_t bytes_max) {
    writer out(std::min<size_t>(bytes_max, batches.size() + 256));
    result<void> failed = ok_result();
    auto split =
        for_each_batch(batches, [&](std::span<const uint8_t> batch, const batch_header& h) -> bool {
            if (h.is_control()) return true;
            writer converted;
            const int8_t attributes =
                h.has_log_append_time() && magic >= 1 ? attribute_log_append_time : 0;
            auto walked = for_each_record(batch, bytes_max, [&](const record_view& r) {
                const int64_t timestamp =
                    h.has_log_append_time() ? h.max_timestamp
                                            : record_timestamp(h.base_timestamp, r.timestamp_delta);
                write_message(converted, magic, record_offset(h.base_offset, r.offset_delta),
                              attributes, timestamp, r.key, r.value);
            });
            if (!walked) {
                failed = walked.failure();
                return false;
            }
            if (out.size() > 0 && out.size() + converted.size() > bytes_max) return false;
            out.raw(converted.buffer());
            return out.size() < bytes_max;
        });
    if (!split) return split.failure();
    if (!failed) return failed.failure();
    return std::move(out.buffer());
}

}  // namespace spate::proto
