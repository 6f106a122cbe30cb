// libFuzzer target for the records of __consumer_offsets in Kafka's schemas
// (broker/group/group_records.h): one record's key and value, and whole stored batches,
// which a broker reads from its own log and from the replicas it follows. Built and run
// by tests/fuzz/run.sh; seeds in group_records_corpus/.
//
// Input: byte 0 is a mode. Its low 7 bits are the key's length (127: a null key); the key
// follows and the rest is the value (none left: a null value). The same bytes after byte
// 0 are walked as a batch too, with the batch's CRC fixed first when bit 7 is set, since
// random mutations would otherwise stop at the CRC.
//
// Beyond not crashing: every record decoded, encoded again and decoded once more, must
// encode to the same bytes (a decoder and encoder that disagree on a field lose it).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "broker/group/group_records.h"
#include "proto/record_batch.h"

namespace {

using namespace spate::broker::group;

constexpr size_t decompressed_bytes_max = 256 * 1024;
constexpr uint8_t null_key_length = 0x7f;
constexpr uint8_t fix_crc_bit = 0x80;

std::optional<std::span<const uint8_t>> view_of(const std::optional<std::vector<uint8_t>>& bytes) {
    if (!bytes) return std::nullopt;
    return std::span<const uint8_t>(*bytes);
}

// Re-encodes a decoded record and decodes it again: the second encoding must match.
void check_stable(const offset_record& record, int64_t timestamp_ms) {
    if (!fits_kafka_schemas(record)) return;
    const kafka_record first = encode_kafka_record(record);
    const decoded_kafka_record again = decode_kafka_record(std::span<const uint8_t>(first.key),
                                                           view_of(first.value), timestamp_ms);
    if (again.status != decode_status::record) __builtin_trap();
    const kafka_record second = encode_kafka_record(again.record);
    if (second.key != first.key || second.value != first.value) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    const std::span<const uint8_t> rest(data + 1, size - 1);

    const uint8_t key_length = mode & null_key_length;
    std::optional<std::span<const uint8_t>> key;
    size_t used = 0;
    if (key_length != null_key_length) {
        used = std::min<size_t>(key_length, rest.size());
        key = rest.first(used);
    }
    std::optional<std::span<const uint8_t>> value;
    if (used < rest.size()) value = rest.subspan(used);
    const int64_t timestamp_ms = 1234;
    const decoded_kafka_record decoded = decode_kafka_record(key, value, timestamp_ms);
    if (decoded.status == decode_status::record) check_stable(decoded.record, timestamp_ms);

    std::vector<uint8_t> batch(rest.begin(), rest.end());
    if ((mode & fix_crc_bit) != 0 && batch.size() >= spate::proto::batch_header_size) {
        const auto header = spate::proto::read_batch_header(batch);
        const int64_t total = header.ok() ? header->total_size() : 0;
        if (total >= static_cast<int64_t>(spate::proto::batch_header_size) &&
            total <= static_cast<int64_t>(batch.size()))
            spate::proto::update_batch_crc(
                std::span<uint8_t>(batch).first(static_cast<size_t>(total)));
    }
    size_t seen = 0;
    auto walked =
        for_each_offsets_record(batch, decompressed_bytes_max, [&](const offset_record& record) {
            ++seen;
            check_stable(record, record.value.commit_timestamp_ms);
        });
    if (walked.ok() && walked->records != seen) __builtin_trap();
    return 0;
}
