#include "tests/storage/test_support.h"

#include <unistd.h>

#include <atomic>
#include <system_error>

#include "proto/record_batch.h"
#include "storage/file.h"

namespace spate::storage::testing {

temp_dir::temp_dir(const std::string& name, const std::filesystem::path& parent) {
    static std::atomic<int> sequence{0};
    _path = parent / ("spate-" + name + "-" + std::to_string(::getpid()) + "-" +
                      std::to_string(sequence.fetch_add(1)));
    std::error_code ec;
    std::filesystem::remove_all(_path, ec);
}

temp_dir::~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(_path, ec);
}

std::vector<uint8_t> make_batch(int32_t records, int64_t first_timestamp_ms, size_t value_bytes,
                                uint8_t fill) {
    proto::batch_builder builder(proto::compression_codec::none, first_timestamp_ms);
    const std::vector<uint8_t> value(value_bytes, fill);
    for (int32_t i = 0; i < records; ++i)
        builder.add(std::nullopt, std::span<const uint8_t>(value), {}, first_timestamp_ms + i);
    return builder.build();
}

std::vector<uint8_t> make_stamped_batch(int64_t base_offset, int32_t epoch, int32_t records,
                                        int64_t first_timestamp_ms, size_t value_bytes,
                                        uint8_t fill) {
    std::vector<uint8_t> batch = make_batch(records, first_timestamp_ms, value_bytes, fill);
    proto::set_base_offset(batch, base_offset);
    proto::set_partition_leader_epoch(batch, epoch);
    return batch;
}

std::vector<uint8_t> slice_bytes(const read_result& read) {
    std::vector<uint8_t> bytes;
    for (const file_slice& slice : read.slices) {
        const size_t at = bytes.size();
        bytes.resize(at + static_cast<size_t>(slice.length));
        auto got =
            pread_exact(slice.file->fd,
                        std::span<uint8_t>(bytes.data() + at, static_cast<size_t>(slice.length)),
                        slice.position, "slice");
        if (!got) bytes.resize(at);
    }
    return bytes;
}

result<std::vector<stored_batch>> read_all(const partition_log& log) {
    std::vector<stored_batch> batches;
    int64_t offset = log.log_start_offset();
    bool first = true;
    while (offset < log.log_end_offset()) {
        auto got = log.read(offset, 1 << 20);
        if (!got) return got.failure();
        const std::vector<uint8_t> bytes = slice_bytes(*got);
        if (bytes.empty()) return error{1, "empty read at offset " + std::to_string(offset)};
        size_t position = 0;
        while (position < bytes.size()) {
            std::span<const uint8_t> rest(bytes.data() + position, bytes.size() - position);
            auto header = proto::read_batch_header(rest);
            if (!header || header->total_size() > static_cast<int64_t>(rest.size()))
                return error{2, "bad header at offset " + std::to_string(offset)};
            const auto total = static_cast<size_t>(header->total_size());
            const proto::batch_check check =
                proto::validate_batch(rest.first(total), total, proto::batch_source::log);
            if (check.error != proto::batch_error::none)
                return error{3, "invalid batch at offset " + std::to_string(offset)};
            // The first batch may start before the log start (DeleteRecords inside a
            // segment); every later one continues exactly where the previous one ended.
            if (first ? header->base_offset > offset : header->base_offset != offset)
                return error{4, "offset gap: expected " + std::to_string(offset) + " got " +
                                    std::to_string(header->base_offset)};
            first = false;
            batches.push_back(
                {header->base_offset, header->last_offset(),
                 std::vector<uint8_t>(rest.begin(),
                                      rest.begin() + static_cast<std::ptrdiff_t>(total))});
            offset = header->last_offset() + 1;
            position += total;
        }
    }
    if (offset != log.log_end_offset()) return error{5, "read past the log end"};
    return batches;
}

}  // namespace spate::storage::testing
