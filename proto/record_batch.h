#pragma once
// Kafka's record batch, format v2 (magic 2), as producers send it, as spate
// stores it in log segments unchanged, and as consumers fetch it.
//
// The 61-byte header, all integers big-endian:
//
//   offset size field                    notes
//   ------ ---- ------------------------ -----------------------------------------
//        0    8 base_offset              offset of the first record; the broker
//                                        assigns it (clients send 0)
//        8    4 batch_length             bytes after this field: total size - 12
//       12    4 partition_leader_epoch   written by the broker
//       16    1 magic                    2 (0 and 1 are the legacy message sets,
//                                        which also keep magic at byte 16)
//       17    4 crc                      CRC-32C of bytes 21 .. end of the batch
//       21    2 attributes               bits 0-2 codec (0 none, 1 gzip, 2 snappy,
//                                        3 lz4, 4 zstd), bit 3 timestamp type
//                                        (1 = LogAppendTime), bit 4 transactional,
//                                        bit 5 control, bit 6 delete horizon set
//       23    4 last_offset_delta        offset of the last record - base_offset
//       27    8 base_timestamp           first timestamp (ms)
//       35    8 max_timestamp            largest timestamp, or the broker's append
//                                        time under LogAppendTime
//       43    8 producer_id              -1 without an idempotent producer
//       51    2 producer_epoch
//       53    4 base_sequence            sequence number of the first record
//       57    4 records_count
//       61      records                  compressed as a whole when the codec is
//                                        not none
//
// Because the CRC starts at the attributes, the broker may rewrite base_offset
// and partition_leader_epoch without recomputing it.
//
// Each record (varint = zig-zag LEB128 as in protobuf):
//
//   length varint (bytes after this field), attributes int8 (unused, 0),
//   timestamp_delta varlong, offset_delta varint, key_length varint (-1 = null),
//   key, value_length varint (-1 = null), value, headers_count varint, then per
//   header: key_length varint, key (a string, never null), value_length varint
//   (-1 = null), value.
//
// Everything here is free functions over caller-owned bytes, plus the
// batch_builder that tools and tests own; any thread may call them. No decoder
// trusts its input: a peer may send any bytes.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "proto/compression.h"
#include "proto/result.h"

namespace spate::proto {

constexpr size_t batch_header_size = 61;
constexpr size_t batch_base_offset_offset = 0;
constexpr size_t batch_length_offset = 8;
constexpr size_t batch_partition_leader_epoch_offset = 12;
constexpr size_t batch_magic_offset = 16;
constexpr size_t batch_crc_offset = 17;
constexpr size_t batch_attributes_offset = 21;
constexpr size_t batch_last_offset_delta_offset = 23;
constexpr size_t batch_base_timestamp_offset = 27;
constexpr size_t batch_max_timestamp_offset = 35;
constexpr size_t batch_producer_id_offset = 43;
constexpr size_t batch_producer_epoch_offset = 51;
constexpr size_t batch_base_sequence_offset = 53;
constexpr size_t batch_records_count_offset = 57;
// base_offset and batch_length precede what batch_length counts.
constexpr size_t batch_log_overhead = 12;
static_assert(batch_records_count_offset + 4 == batch_header_size);
static_assert(batch_length_offset + 4 == batch_log_overhead);

constexpr int8_t batch_magic_v2 = 2;
constexpr int16_t batch_attribute_codec_mask = 0x07;
constexpr int16_t batch_attribute_log_append_time = 0x08;
constexpr int16_t batch_attribute_transactional = 0x10;
constexpr int16_t batch_attribute_control = 0x20;

struct batch_header {
    int64_t base_offset = 0;
    int32_t batch_length = 0;
    int32_t partition_leader_epoch = 0;
    int8_t magic = 0;
    uint32_t crc = 0;
    int16_t attributes = 0;
    int32_t last_offset_delta = 0;
    int64_t base_timestamp = 0;
    int64_t max_timestamp = 0;
    int64_t producer_id = -1;
    int16_t producer_epoch = -1;
    int32_t base_sequence = -1;
    int32_t records_count = 0;

    // The raw codec bits; values 5-7 are not codecs (validate_batch rejects them).
    compression_codec codec() const {
        return static_cast<compression_codec>(attributes & batch_attribute_codec_mask);
    }
    bool is_transactional() const { return (attributes & batch_attribute_transactional) != 0; }
    bool is_control() const { return (attributes & batch_attribute_control) != 0; }
    bool has_log_append_time() const { return (attributes & batch_attribute_log_append_time) != 0; }
    // Bytes on the wire, including base_offset and batch_length.
    int64_t total_size() const { return static_cast<int64_t>(batch_log_overhead) + batch_length; }
    // Wraps instead of overflowing (both fields come from peers); see next_offset_fits.
    int64_t last_offset() const;
    // Whether the offsets are ones a log can hold: a last offset delta that is not negative
    // and a next offset (last + 1) within int64.
    bool next_offset_fits() const {
        return last_offset_delta >= 0 &&
               base_offset < std::numeric_limits<int64_t>::max() - last_offset_delta;
    }
};

// Reads the header fields of the batch at the start of `bytes` (needs at least
// 61 bytes, else an error with code batch_error::truncated). Checks nothing else:
// neither the magic, the length nor the CRC.
result<batch_header> read_batch_header(std::span<const uint8_t> bytes);

// Why a batch was rejected. The broker maps these to Kafka error codes:
// truncated, bad_size, bad_magic, bad_crc -> CORRUPT_MESSAGE; bad_count and
// bad_records -> INVALID_RECORD; too_large -> MESSAGE_TOO_LARGE; legacy_magic ->
// UNSUPPORTED_VERSION (or a down-conversion the broker does not do).
enum class batch_error : uint8_t {
    none,
    truncated,     // fewer bytes than the header or than batch_length announces
    bad_size,      // batch_length smaller than a v2 header
    legacy_magic,  // magic 0 or 1: a pre-0.11 message set
    bad_magic,     // magic other than 0-2, or attribute bits naming no known codec
    bad_crc,       // CRC-32C over attributes..end does not match
    bad_count,     // records_count, last_offset_delta or (from clients) base_offset inconsistent
    too_large,     // the whole batch is larger than the allowed maximum, or its
                   // records decompress beyond it (validate_records)
    bad_records,   // the records section disagrees with the header or is malformed
                   // (validate_records)
};

const char* to_string(batch_error error);

struct batch_check {
    batch_error error = batch_error::none;
    batch_header header;  // the fields read; meaningful when error is none
};

// Whom a batch came from: a producer's batch must have base_offset 0, at least
// one record and last_offset_delta + 1 == records_count; a batch read back from
// a log may be empty after compaction and carries its assigned offsets.
enum class batch_source : uint8_t { log, client };

// Full validation of ONE batch at the start of `bytes` (further bytes are
// ignored), in this order: at least 17 bytes to see the magic (truncated),
// magic (legacy_magic / bad_magic), batch_length >= 49 (bad_size), total size
// <= max_batch_bytes (too_large), total size <= bytes (truncated), known codec
// (bad_magic), CRC (bad_crc), counts (bad_count). Records are not decoded; see
// for_each_record.
batch_check validate_batch(std::span<const uint8_t> bytes, size_t max_batch_bytes,
                           batch_source source);
// The same with the source as a flag, for callers that carry it as one.
inline batch_check validate_batch(std::span<const uint8_t> bytes, size_t max_batch_bytes,
                                  bool from_client) {
    return validate_batch(bytes, max_batch_bytes,
                          from_client ? batch_source::client : batch_source::log);
}

// What for_each_batch did.
struct batch_split {
    size_t consumed_bytes = 0;  // bytes of whole batches visited; the rest is a partial tail
    size_t batches = 0;
};

// Splits a records blob (Produce's records field, a region of a log segment) into
// whole batches and calls `fn(std::span<const uint8_t> batch, const batch_header&)`
// for each, in order. `fn` may return void, or bool where false stops the walk
// early (the stopping batch still counts as consumed). A trailing partial batch
// is not an error: consumed_bytes tells where the whole batches end. A header
// that cannot be a v2 batch (batch_length < 49, or magic != 2) is an error with
// code batch_error::bad_size / bad_magic / legacy_magic. CRCs are not checked.
template <class Fn>
result<batch_split> for_each_batch(std::span<const uint8_t> bytes, Fn&& fn);

// In-place edits of a batch the caller has validated (a span shorter than the
// batch is a programmer error). The first two fields are outside the CRC.
void set_base_offset(std::span<uint8_t> batch, int64_t base_offset);
void set_partition_leader_epoch(std::span<uint8_t> batch, int32_t epoch);
// Marks the batch LogAppendTime (attribute bit 3), sets max_timestamp to
// `timestamp_ms` and recomputes the CRC, as the broker does for topics with
// message.timestamp.type=LogAppendTime.
void set_log_append_time(std::span<uint8_t> batch, int64_t timestamp_ms);
// Recomputes and stores the CRC of a whole batch.
void update_batch_crc(std::span<uint8_t> batch);

struct record_header_view {
    std::string_view key;
    std::optional<std::span<const uint8_t>> value;
};

// One decoded record. Its views point into the batch or into the decompressed
// copy; both live only for the duration of the callback.
struct record_view {
    int8_t attributes = 0;
    int64_t offset_delta = 0;
    int64_t timestamp_delta = 0;
    std::optional<std::span<const uint8_t>> key;
    std::optional<std::span<const uint8_t>> value;
    std::vector<record_header_view> headers;
};

// Decodes records from an uncompressed records section. Owned by its caller;
// views it hands out point into the section it was given.
class record_decoder {
public:
    record_decoder(std::span<const uint8_t> records, int32_t records_count)
        : _bytes(records), _count_left(records_count) {}

    // Decodes the next record into `out` (reusing its headers vector). Returns
    // false at the end or on malformed input; status() then tells which. The end
    // is reached after exactly records_count records, and then every byte of the
    // section must have been used.
    bool next(record_view& out);
    result<void> status() const;

private:
    bool fail(const char* why);

    std::span<const uint8_t> _bytes;
    size_t _position = 0;
    int32_t _count_left;
    const char* _failure = nullptr;
};

// The records section of a validated batch, decompressed when the batch is
// compressed. `scratch` holds the decompressed bytes and may be reused from call
// to call (see decompress_into: it is never grown past the cap, and only the
// returned span is meaningful); the returned span points either into `batch` or
// into `scratch`. Decompressed size is capped at `decompressed_bytes_max` (error
// code EFBIG beyond it).
result<std::span<const uint8_t>> batch_records(std::span<const uint8_t> batch,
                                               size_t decompressed_bytes_max,
                                               std::vector<uint8_t>& scratch);

// What validate_records found.
struct records_check {
    batch_error error = batch_error::none;
    const char* why = nullptr;       // a static sentence for logs and the client
    bool every_record_keyed = true;  // meaningful when error is none
    // The smallest and largest record timestamp delta (from base_timestamp).
    int64_t timestamp_delta_min = 0;
    int64_t timestamp_delta_max = 0;
};

// The checks of a producer's batch that need its records, for a batch that
// validate_batch accepted from a client, in one pass over its (decompressed)
// records section:
//  * records_count > 0 and last_offset_delta == records_count - 1 (bad_count);
//  * the batch as it would be uncompressed, 61 header bytes plus the decompressed
//    records section, is at most `batch_bytes_max` bytes (too_large): the limit an
//    uncompressed batch meets, so compression cannot smuggle in more. Output past
//    the limit is never produced, so a decompression bomb costs at most
//    `batch_bytes_max` bytes of `scratch`;
//  * exactly records_count records follow, each one's length varint framing its
//    fields exactly, with offset deltas 0, 1, 2, ... in order, and no byte after
//    the last (bad_records); a compressed section that does not decompress is
//    bad_records too.
// Uncompressed batches are walked in place without allocating; compressed ones
// are decompressed once into `scratch`, which the caller reuses. Reports whether
// every record has a key, which compacted topics require.
records_check validate_records(std::span<const uint8_t> batch, const batch_header& header,
                               size_t batch_bytes_max, std::vector<uint8_t>& scratch);

// The batch re-encoded with `codec` (proto::compression_codec::none decompresses it): the
// same header (producer id, sequences, timestamps, offsets) with the codec bits, length
// and CRC changed, and the same records section compressed anew. For a batch that
// validate_records accepted; `decompressed_bytes_max` bounds its records section.
result<std::vector<uint8_t>> recompress_batch(std::span<const uint8_t> batch,
                                              compression_codec codec,
                                              size_t decompressed_bytes_max,
                                              std::vector<uint8_t>& scratch);

// Calls `fn(const record_view&)` for each record of a validated batch,
// decompressing first if needed. `fn` may return void, or bool where false stops
// early. Errors on an unknown codec, a decompression failure (see compression.h)
// or a malformed record (code EINVAL).
template <class Fn>
result<void> for_each_record(std::span<const uint8_t> batch, size_t decompressed_bytes_max,
                             Fn&& fn);

// A record's timestamp: the batch's base plus the record's delta, wrapping as Java's long
// arithmetic does instead of overflowing (both come from peers and may be anything).
inline int64_t wrapping_add(int64_t a, int64_t b) {
    return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
inline int64_t wrapping_sub(int64_t a, int64_t b) {
    return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}
inline int64_t record_timestamp(int64_t base, int64_t delta) { return wrapping_add(base, delta); }
// A record's offset: the batch's base plus the record's delta, wrapping the same way (a
// batch read from a peer or a damaged file may carry a base offset near INT64_MAX).
inline int64_t record_offset(int64_t base, int64_t delta) { return wrapping_add(base, delta); }
inline int64_t batch_header::last_offset() const {
    return wrapping_add(base_offset, last_offset_delta);
}

// Converts text to the byte view the record functions take.
inline std::span<const uint8_t> byte_view(std::string_view text) {
    return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

// Builds one batch record by record, for tools and tests (the broker never
// builds batches; it stores what producers send). Owned by its caller.
class batch_builder {
public:
    explicit batch_builder(compression_codec codec, int64_t base_timestamp = 0,
                           int64_t producer_id = -1, int16_t producer_epoch = -1,
                           int32_t base_sequence = -1);

    // Appends a record; a missing timestamp means base_timestamp.
    void add(std::optional<std::span<const uint8_t>> key,
             std::optional<std::span<const uint8_t>> value,
             std::span<const record_header_view> headers = {},
             std::optional<int64_t> timestamp_ms = std::nullopt);
    // Sets raw attribute bits beyond the codec (transactional, control).
    void set_attribute_bits(int16_t bits) { _extra_attributes = bits; }

    int32_t records_count() const { return _count; }
    size_t uncompressed_records_bytes() const { return _batch.size() - batch_header_size; }
    // Room for this many bytes of records, so that adding them reallocates nothing.
    void reserve(size_t records_bytes);

    // The finished batch with a correct CRC. The builder may be reused to build
    // the same batch again with another base offset.
    std::vector<uint8_t> build(int64_t base_offset = 0) const;
    // The same, without copying the records when uncompressed: the builder hands its
    // buffer over and starts empty.
    std::vector<uint8_t> release(int64_t base_offset = 0);

private:
    compression_codec _codec;
    int64_t _base_timestamp;
    int64_t _max_timestamp;
    int64_t _producer_id;
    int16_t _producer_epoch;
    int32_t _base_sequence;
    int16_t _extra_attributes = 0;
    int32_t _count = 0;
    // The batch being built: batch_header_size bytes left for the header, then the
    // records (uncompressed), each written in place by add().
    std::vector<uint8_t> _batch;

    void write_header(std::vector<uint8_t>& batch, int64_t base_offset) const;
};

// ---- template definitions ----

template <class Fn>
result<batch_split> for_each_batch(std::span<const uint8_t> bytes, Fn&& fn) {
    batch_split split;
    while (bytes.size() - split.consumed_bytes >= batch_header_size) {
        const auto rest = bytes.subspan(split.consumed_bytes);
        auto header = read_batch_header(rest);
        if (!header) return header.failure();
        if (header->magic != batch_magic_v2) {
            const auto why = header->magic == 0 || header->magic == 1 ? batch_error::legacy_magic
                                                                      : batch_error::bad_magic;
            return error{static_cast<int>(why), "record batch magic is not 2"};
        }
        if (header->batch_length < static_cast<int32_t>(batch_header_size - batch_log_overhead))
            return error{static_cast<int>(batch_error::bad_size), "record batch length too small"};
        const auto total = static_cast<uint64_t>(header->total_size());
        if (total > rest.size()) break;
        const auto batch = rest.first(static_cast<size_t>(total));
        split.consumed_bytes += batch.size();
        ++split.batches;
        if constexpr (std::is_same_v<
                          std::invoke_result_t<Fn&, std::span<const uint8_t>, const batch_header&>,
                          bool>) {
            if (!fn(batch, *header)) break;
        } else {
            fn(batch, *header);
        }
    }
    return split;
}

template <class Fn>
result<void> for_each_record(std::span<const uint8_t> batch, size_t decompressed_bytes_max,
                             Fn&& fn) {
    auto header = read_batch_header(batch);
    if (!header) return header.failure();
    std::vector<uint8_t> scratch;
    auto records = batch_records(batch, decompressed_bytes_max, scratch);
    if (!records) return records.failure();
    record_decoder decoder(*records, header->records_count);
    record_view record;
    while (decoder.next(record)) {
        if constexpr (std::is_same_v<std::invoke_result_t<Fn&, const record_view&>, bool>) {
            if (!fn(static_cast<const record_view&>(record))) return ok_result();
        } else {
            fn(static_cast<const record_view&>(record));
        }
    }
    return decoder.status();
}

}  // namespace spate::proto
