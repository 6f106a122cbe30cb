#pragma once
// Helpers shared by the storage tests and the crash writer: temporary directories,
// record batches built with proto's batch_builder, and reading a log back in full.

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "storage/log.h"

namespace spate::storage::testing {

// A fresh directory under `parent` (/tmp unless a test wants a tmpfs, where fsync is
// free), removed (recursively) when the object goes away.
class temp_dir {
public:
    explicit temp_dir(const std::string& name, const std::filesystem::path& parent = "/tmp");
    ~temp_dir();
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return _path; }

private:
    std::filesystem::path _path;
};

// A valid client-style batch (base offset 0, CRC set) of `records` records whose
// timestamps are first_timestamp_ms, +1, +2, … and whose values are `value_bytes`
// bytes of `fill`.
std::vector<uint8_t> make_batch(int32_t records, int64_t first_timestamp_ms, size_t value_bytes,
                                uint8_t fill);

// make_batch stamped as a leader stamps it before a follower copies it: `base_offset`
// and `epoch` (partition_leader_epoch) written in place (the CRC covers neither).
std::vector<uint8_t> make_stamped_batch(int64_t base_offset, int32_t epoch, int32_t records,
                                        int64_t first_timestamp_ms, size_t value_bytes,
                                        uint8_t fill);

// The bytes a read handed out, copied from the slices' files.
std::vector<uint8_t> slice_bytes(const read_result& read);

// One batch as found on disk.
struct stored_batch {
    int64_t base_offset;
    int64_t last_offset;
    std::vector<uint8_t> bytes;
};

// Reads the log from its start to its end through read() and splits it into batches,
// checking each with validate_batch (CRC included) and that offsets are contiguous.
// Any inconsistency is an error naming it.
result<std::vector<stored_batch>> read_all(const partition_log& log);

}  // namespace spate::storage::testing
