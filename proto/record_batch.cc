// Record batch v2: header access, validation, record decoding and building.
// The layout is documented in record_batch.h.
#include "proto/record_batch.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "proto/assert.h"
#include "proto/crc32c.h"
#include "proto/reader.h"
#include "proto/writer.h"

namespace spate::proto {
namespace {

// The smallest possible record: one byte each for length, attributes,
// timestamp_delta, offset_delta, key_length, value_length and headers_count.
constexpr size_t record_size_min = 7;
// The smallest possible header: key_length and value_length, one byte each.
constexpr size_t record_header_size_min = 2;

template <class T>
T load_be(const uint8_t* at) {
    T value;
    std::memcpy(&value, at, sizeof(T));
    if constexpr (sizeof(T) == 2)
        return static_cast<T>(__builtin_bswap16(static_cast<uint16_t>(value)));
    if constexpr (sizeof(T) == 4)
        return static_cast<T>(__builtin_bswap32(static_cast<uint32_t>(value)));
    if constexpr (sizeof(T) == 8)
        return static_cast<T>(__builtin_bswap64(static_cast<uint64_t>(value)));
    return value;
}

template <class T>
void store_be(uint8_t* at, T value) {
    if constexpr (sizeof(T) == 2)
        value = static_cast<T>(__builtin_bswap16(static_cast<uint16_t>(value)));
    if constexpr (sizeof(T) == 4)
        value = static_cast<T>(__builtin_bswap32(static_cast<uint32_t>(value)));
    if constexpr (sizeof(T) == 8)
        value = static_cast<T>(__builtin_bswap64(static_cast<uint64_t>(value)));
    std::memcpy(at, &value, sizeof(T));
}

bool known_codec(compression_codec codec) {
    return static_cast<uint8_t>(codec) <= static_cast<uint8_t>(compression_codec::zstd);
}

// Reads a record's nullable byte field: a zig-zag varint length (-1 = null)
// followed by that many bytes. A length below -1 or beyond the record fails the
// reader.
std::optional<std::span<const uint8_t>> nullable_field(reader& in) {
    const int32_t length = in.varint();
    if (!in.ok() || length == -1) return std::nullopt;
    if (length < -1) {
        in.fail(decode_error::negative_length);
        return std::nullopt;
    }
    return in.raw(static_cast<size_t>(length));
}

}  // namespace

const char* to_string(batch_error error) {
    switch (error) {
        case batch_error::none:
            return "none";
        case batch_error::truncated:
            return "truncated batch";
        case batch_error::bad_size:
            return "batch length too small";
        case batch_error::legacy_magic:
            return "legacy message format (magic 0 or 1)";
        case batch_error::bad_magic:
            return "unknown magic or codec";
        case batch_error::bad_crc:
            return "CRC-32C mismatch";
        case batch_error::bad_count:
            return "inconsistent record count or offsets";
        case batch_error::too_large:
            return "batch larger than allowed";
        case batch_error::bad_records:
            return "records do not match the batch header";
    }
    return "unknown";
}

result<batch_header> read_batch_header(std::span<const uint8_t> bytes) {
    if (bytes.size() < batch_header_size)
        return error{static_cast<int>(batch_error::truncated), "fewer than 61 bytes"};
    const uint8_t* at = bytes.data();
    batch_header header;
    header.base_offset = load_be<int64_t>(at + batch_base_offset_offset);
    header.batch_length = load_be<int32_t>(at + batch_length_offset);
    header.partition_leader_epoch = load_be<int32_t>(at + batch_partition_leader_epoch_offset);
    header.magic = static_cast<int8_t>(at[batch_magic_offset]);
    header.crc = load_be<uint32_t>(at + batch_crc_offset);
    header.attributes = load_be<int16_t>(at + batch_attributes_offset);
    header.last_offset_delta = load_be<int32_t>(at + batch_last_offset_delta_offset);
    header.base_timestamp = load_be<int64_t>(at + batch_base_timestamp_offset);
    header.max_timestamp = load_be<int64_t>(at + batch_max_timestamp_offset);
    header.producer_id = load_be<int64_t>(at + batch_producer_id_offset);
    header.producer_epoch = load_be<int16_t>(at + batch_producer_epoch_offset);
    header.base_sequence = load_be<int32_t>(at + batch_base_sequence_offset);
    header.records_count = load_be<int32_t>(at + batch_records_count_offset);
    return header;
}

batch_check validate_batch(std::span<const uint8_t> bytes, size_t max_batch_bytes,
                           batch_source source) {
    batch_check check;
    if (bytes.size() <= batch_magic_offset) {
        check.error = batch_error::truncated;
        return check;
    }
    const auto magic = static_cast<int8_t>(bytes[batch_magic_offset]);
    if (magic == 0 || magic == 1) {
        check.error = batch_error::legacy_magic;
        return check;
    }
    if (magic != batch_magic_v2) {
        check.error = batch_error::bad_magic;
        return check;
    }
    const int32_t batch_length = load_be<int32_t>(bytes.data() + batch_length_offset);
    if (batch_length < static_cast<int32_t>(batch_header_size - batch_log_overhead)) {
        check.error = batch_error::bad_size;
        return check;
    }
    const uint64_t total = batch_log_overhead + static_cast<uint64_t>(batch_length);
    if (total > max_batch_bytes) {
        check.error = batch_error::too_large;
        return check;
    }
    if (total > bytes.size()) {
        check.error = batch_error::truncated;
        return check;
    }
    check.header = read_batch_header(bytes).value();
    const batch_header& header = check.header;
    if (!known_codec(header.codec())) {
        check.error = batch_error::bad_magic;
        return check;
    }
    const auto covered = bytes.subspan(batch_attributes_offset, total - batch_attributes_offset);
    if (crc32c(covered) != header.crc) {
        check.error = batch_error::bad_crc;
        return check;
    }
    const int64_t count = header.records_count;
    const int64_t offsets_spanned = static_cast<int64_t>(header.last_offset_delta) + 1;
    bool counts_ok = count >= 0;
    if (source == batch_source::client) {
        counts_ok = counts_ok && header.base_offset == 0 && count > 0 && offsets_spanned == count;
    } else {
        // Compaction may remove records from a stored batch but keeps its offsets.
        counts_ok = counts_ok && (count == 0 || offsets_spanned >= count);
    }
    if (counts_ok && header.codec() == compression_codec::none) {
        const uint64_t records_bytes = total - batch_header_size;
        counts_ok = static_cast<uint64_t>(count) <= records_bytes / record_size_min;
    }
    if (!counts_ok) check.error = batch_error::bad_count;
    return check;
}

void set_base_offset(std::span<uint8_t> batch, int64_t base_offset) {
    SPATE_ASSERT(batch.size() >= batch_header_size, "set_base_offset on a short batch");
    store_be<int64_t>(batch.data() + batch_base_offset_offset, base_offset);
}

void set_partition_leader_epoch(std::span<uint8_t> batch, int32_t epoch) {
    SPATE_ASSERT(batch.size() >= batch_header_size, "set_partition_leader_epoch on a short batch");
    store_be<int32_t>(batch.data() + batch_partition_leader_epoch_offset, epoch);
}

void update_batch_crc(std::span<uint8_t> batch) {
    SPATE_ASSERT(batch.size() >= batch_header_size, "update_batch_crc on a short batch");
    const int32_t batch_length = load_be<int32_t>(batch.data() + batch_length_offset);
    SPATE_ASSERT(batch_length >= static_cast<int32_t>(batch_header_size - batch_log_overhead),
                 "update_batch_crc on a batch with a bad length");
    const size_t total = batch_log_overhead + static_cast<size_t>(batch_length);
    SPATE_ASSERT(total <= batch.size(), "update_batch_crc on a batch shorter than its length");
    const auto covered = std::span<const uint8_t>(batch).subspan(batch_attributes_offset,
                                                                 total - batch_attributes_offset);
    store_be<uint32_t>(batch.data() + batch_crc_offset, crc32c(covered));
}

void set_log_append_time(std::span<uint8_t> batch, int64_t timestamp_ms) {
    SPATE_ASSERT(batch.size() >= batch_header_size, "set_log_append_time on a short batch");
    const auto attributes = load_be<int16_t>(batch.data() + batch_attributes_offset);
    store_be<int16_t>(batch.data() + batch_attributes_offset,
                      static_cast<int16_t>(attributes | batch_attribute_log_append_time));
    store_be<int64_t>(batch.data() + batch_max_timestamp_offset, timestamp_ms);
    update_batch_crc(batch);
}

bool record_decoder::fail(const char* why) {
    if (_failure == nullptr) _failure = why;
    return false;
}

bool record_decoder::next(record_view& out) {
    if (_failure != nullptr) return false;
    if (_count_left < 0) return fail("negative record count");
    if (_count_left == 0) {
        if (_position != _bytes.size()) return fail("bytes left after the last record");
        return false;
    }
    reader in(_bytes.subspan(_position));
    const int32_t length = in.varint();
    if (!in.ok()) return fail("malformed record length");
    if (length < 0 || static_cast<size_t>(length) > in.remaining())
        return fail("record length beyond the records section");
    reader body(in.raw(static_cast<size_t>(length)));
    out.attributes = body.int8();
    out.timestamp_delta = body.varlong();
    out.offset_delta = body.varint();
    out.key = nullable_field(body);
    out.value = nullable_field(body);
    const int32_t headers_count = body.varint();
    if (!body.ok()) return fail("malformed record");
    if (headers_count < 0 ||
        static_cast<size_t>(headers_count) > body.remaining() / record_header_size_min)
        return fail("record headers count beyond the record");
    out.headers.clear();
    for (int32_t i = 0; i < headers_count; ++i) {
        const int32_t key_length = body.varint();
        if (!body.ok() || key_length < 0) return fail("malformed record header key");
        const auto key = body.raw(static_cast<size_t>(key_length));
        const auto value = nullable_field(body);
        if (!body.ok()) return fail("malformed record header");
        out.headers.push_back(
            {std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), value});
    }
    if (body.remaining() != 0) return fail("record length does not match its fields");
    _position += in.position();
    --_count_left;
    return true;
}

result<void> record_decoder::status() const {
    if (_failure != nullptr) return error{EINVAL, _failure};
    return ok_result();
}

result<std::span<const uint8_t>> batch_records(std::span<const uint8_t> batch,
                                               size_t decompressed_bytes_max,
                                               std::vector<uint8_t>& scratch) {
    auto header = read_batch_header(batch);
    if (!header) return header.failure();
    if (header->batch_length < static_cast<int32_t>(batch_header_size - batch_log_overhead) ||
        static_cast<uint64_t>(header->total_size()) > batch.size())
        return error{static_cast<int>(batch_error::truncated), "batch shorter than its length"};
    const auto section = batch.subspan(
        batch_header_size, static_cast<size_t>(header->total_size()) - batch_header_size);
    const compression_codec codec = header->codec();
    if (codec == compression_codec::none) return section;
    if (!known_codec(codec))
        return error{ENOTSUP,
                     "unknown compression codec " + std::to_string(static_cast<int>(codec))};
    return decompress_into(codec, section, decompressed_bytes_max, scratch);
}

namespace {

// Walks one record's framing at the start of `in`: the length varint, then exactly
// that many bytes holding attributes, timestamp delta, offset delta, key, value and
// headers. Returns the offset delta and whether the key is present, or nullopt
// (with `why` set) when the record is malformed or its length does not frame its
// fields exactly. Reads views only, so it allocates nothing.
struct skimmed_record {
    int32_t offset_delta;
    bool keyed;
    int64_t timestamp_delta;
};
std::optional<skimmed_record> skim_record(reader& in, const char*& why) {
    const int32_t length = in.varint();
    if (!in.ok() || length < 0 || static_cast<size_t>(length) > in.remaining()) {
        why = "record length beyond the records section";
        return std::nullopt;
    }
    reader body(in.raw(static_cast<size_t>(length)));
    (void)body.int8();  // attributes
    const int64_t timestamp_delta = body.varlong();
    const int32_t offset_delta = body.varint();
    const bool keyed = nullable_field(body).has_value();
    (void)nullable_field(body);  // value
    const int32_t headers_count = body.varint();
    if (body.ok() && (headers_count < 0 || static_cast<size_t>(headers_count) >
                                               body.remaining() / record_header_size_min))
        body.fail(decode_error::too_large);
    for (int32_t i = 0; body.ok() && i < headers_count; ++i) {
        const int32_t key_length = body.varint();
        if (key_length < 0) body.fail(decode_error::negative_length);
        body.skip(static_cast<size_t>(std::max(key_length, 0)));
        (void)nullable_field(body);
    }
    if (!body.ok()) {
        why = "malformed record";
        return std::nullopt;
    }
    if (body.remaining() != 0) {
        why = "record length does not match its fields";
        return std::nullopt;
    }
    return skimmed_record{offset_delta, keyed, timestamp_delta};
}

records_check refuse(batch_error error, const char* why) {
    records_check check;
    check.error = error;
    check.why = why;
    return check;
}

}  // namespace

records_check validate_records(std::span<const uint8_t> batch, const batch_header& header,
                               size_t batch_bytes_max, std::vector<uint8_t>& scratch) {
    if (header.records_count <= 0 ||
        static_cast<int64_t>(header.last_offset_delta) + 1 != header.records_count)
        return refuse(batch_error::bad_count, "records_count does not match last_offset_delta");
    if (batch_bytes_max < batch_header_size)
        return refuse(batch_error::too_large, "no room for records under the size limit");
    // The bound applies to the batch as it would be uncompressed: header plus records.
    auto section = batch_records(batch, batch_bytes_max - batch_header_size, scratch);
    if (!section) {
        if (section.failure().code == EFBIG)
            return refuse(batch_error::too_large, "records decompress beyond the size limit");
        return refuse(batch_error::bad_records, "compressed records cannot be decompressed");
    }
    const auto records = *section;
    // Every record takes at least record_size_min bytes: a count the section cannot
    // hold is refused before walking anything.
    if (static_cast<uint64_t>(header.records_count) > records.size() / record_size_min)
        return refuse(batch_error::bad_records, "records_count larger than the records present");
    records_check check;
    reader in(records);
    for (int32_t index = 0; index < header.records_count; ++index) {
        if (in.remaining() == 0)
            return refuse(batch_error::bad_records, "fewer records than records_count");
        const char* why = nullptr;
        const auto record = skim_record(in, why);
        if (!record) return refuse(batch_error::bad_records, why);
        if (record->offset_delta != index)
            return refuse(batch_error::bad_records, "record offset deltas are not 0, 1, 2, ...");
        // Compacted topics need every key; noting it here spares them a second pass.
        if (!record->keyed) check.every_record_keyed = false;
        if (index == 0 || record->timestamp_delta < check.timestamp_delta_min)
            check.timestamp_delta_min = record->timestamp_delta;
        if (index == 0 || record->timestamp_delta > check.timestamp_delta_max)
            check.timestamp_delta_max = record->timestamp_delta;
    }
    if (in.remaining() != 0)
        return refuse(batch_error::bad_records, "bytes left after the last record");
    return check;
}

result<std::vector<uint8_t>> recompress_batch(std::span<const uint8_t> batch,
                                              compression_codec codec,
                                              size_t decompressed_bytes_max,
                                              std::vector<uint8_t>& scratch) {
    SPATE_ASSERT(batch.size() >= batch_header_size, "recompress_batch on a short batch");
    auto section = batch_records(batch, decompressed_bytes_max, scratch);
    if (!section) return section.failure();
    std::vector<uint8_t> out(batch.begin(), batch.begin() + batch_header_size);
    if (codec == compression_codec::none) {
        out.insert(out.end(), section->begin(), section->end());
    } else {
        auto packed = compress(codec, *section);
        if (!packed) return packed.failure();
        out.insert(out.end(), packed->begin(), packed->end());
    }
    const int16_t attributes = load_be<int16_t>(out.data() + batch_attributes_offset);
    store_be<int16_t>(out.data() + batch_attributes_offset,
                      static_cast<int16_t>((attributes & ~batch_attribute_codec_mask) |
                                           static_cast<int16_t>(codec)));
    store_be<int32_t>(out.data() + batch_length_offset,
                      static_cast<int32_t>(out.size() - batch_log_overhead));
    update_batch_crc(out);
    return out;
}

batch_builder::batch_builder(compression_codec codec, int64_t base_timestamp, int64_t producer_id,
                             int16_t producer_epoch, int32_t base_sequence)
    : _codec(codec),
      _base_timestamp(base_timestamp),
      _max_timestamp(-1),
      _producer_id(producer_id),
      _producer_epoch(producer_epoch),
      _base_sequence(base_sequence),
      _batch(batch_header_size, 0) {
    SPATE_ASSERT(known_codec(codec), "batch_builder with an unknown codec");
}

void batch_builder::reserve(size_t records_bytes) {
    _batch.reserve(batch_header_size + records_bytes);
}

namespace {

// Encoded size of a nullable byte field of a record: a varint length (-1 for null) and
// the bytes.
size_t nullable_field_size(const std::optional<std::span<const uint8_t>>& field) {
    if (!field) return unsigned_varint_size(zigzag32(-1));
    return unsigned_varint_size(zigzag32(static_cast<int32_t>(field->size()))) + field->size();
}

}  // namespace

void batch_builder::add(std::optional<std::span<const uint8_t>> key,
                        std::optional<std::span<const uint8_t>> value,
                        std::span<const record_header_view> headers,
                        std::optional<int64_t> timestamp_ms) {
    const int64_t timestamp = timestamp_ms.value_or(_base_timestamp);
    if (timestamp > _max_timestamp) _max_timestamp = timestamp;
    const auto delta = static_cast<int64_t>(static_cast<uint64_t>(timestamp) -
                                            static_cast<uint64_t>(_base_timestamp));
    // The body's size comes first on the wire, so it is summed before anything is
    // written: the record then goes straight into the batch, with no copy in between.
    size_t body_size = 1 + unsigned_varint_size(zigzag64(delta)) +
                       unsigned_varint_size(zigzag32(_count)) + nullable_field_size(key) +
                       nullable_field_size(value) +
                       unsigned_varint_size(zigzag32(static_cast<int32_t>(headers.size())));
    for (const auto& header : headers)
        body_size += unsigned_varint_size(zigzag32(static_cast<int32_t>(header.key.size()))) +
                     header.key.size() + nullable_field_size(header.value);
    SPATE_ASSERT(body_size <= INT32_MAX, "record too large for a batch");
    writer out;
    out.buffer().swap(_batch);
    out.varint(static_cast<int32_t>(body_size));
    const size_t body_start = out.buffer_size();
    out.int8(0);
    out.varlong(delta);
    out.varint(_count);
    auto nullable = [&out](const std::optional<std::span<const uint8_t>>& field) {
        if (!field) {
            out.varint(-1);
            return;
        }
        out.varint(static_cast<int32_t>(field->size()));
        out.raw(*field);
    };
    nullable(key);
    nullable(value);
    out.varint(static_cast<int32_t>(headers.size()));
    for (const auto& header : headers) {
        out.varint(static_cast<int32_t>(header.key.size()));
        out.raw(byte_view(header.key));
        nullable(header.value);
    }
    SPATE_ASSERT(out.buffer_size() - body_start == body_size, "record body size as summed");
    out.buffer().swap(_batch);
    ++_count;
}

void batch_builder::write_header(std::vector<uint8_t>& batch, int64_t base_offset) const {
    SPATE_ASSERT(batch.size() - batch_log_overhead <= INT32_MAX, "built batch too large");
    writer out(batch_header_size);
    out.int64(base_offset);
    out.int32(static_cast<int32_t>(batch.size() - batch_log_overhead));
    out.int32(-1);  // partition_leader_epoch: producers send -1, the broker sets it
    out.int8(batch_magic_v2);
    out.uint32(0);  // crc, computed below
    out.int16(static_cast<int16_t>(static_cast<int16_t>(_codec) | _extra_attributes));
    out.int32(_count - 1);
    out.int64(_base_timestamp);
    out.int64(_max_timestamp);
    out.int64(_producer_id);
    out.int16(_producer_epoch);
    out.int32(_base_sequence);
    out.int32(_count);
    SPATE_ASSERT(out.buffer_size() == batch_header_size, "batch header size");
    std::memcpy(batch.data(), out.buffer().data(), batch_header_size);
    update_batch_crc(batch);
}

std::vector<uint8_t> batch_builder::build(int64_t base_offset) const {
    std::vector<uint8_t> batch;
    if (_codec == compression_codec::none) {
        batch = _batch;
    } else {
        auto packed = compress(_codec, std::span<const uint8_t>(_batch).subspan(batch_header_size));
        // Compressing bytes we produced ourselves fails only on allocation failure.
        SPATE_ASSERT(packed.ok(), "compression of a built batch failed");
        batch.reserve(batch_header_size + packed->size());
        batch.resize(batch_header_size);
        batch.insert(batch.end(), packed->begin(), packed->end());
    }
    write_header(batch, base_offset);
    return batch;
}

std::vector<uint8_t> batch_builder::release(int64_t base_offset) {
    std::vector<uint8_t> batch;
    if (_codec == compression_codec::none) {
        batch = std::move(_batch);
        write_header(batch, base_offset);
    } else {
        batch = build(base_offset);
    }
    _batch.assign(batch_header_size, 0);
    _count = 0;
    _max_timestamp = -1;
    return batch;
}

}  // namespace spate::proto
