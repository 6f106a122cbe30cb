#pragma once
// Checkpoint files of a partition directory: one int64 each, written atomically.
//
// Files (all in the partition directory):
//   recovery-point.checkpoint    every offset below it was fdatasync'ed and verified, so
//                                recovery after a crash scans only the segments at or
//                                after the one holding this offset.
//   log-start-offset.checkpoint  the first offset a client may read (DeleteRecords and
//                                retention move it forward; it may lie inside a segment).
//   clean-shutdown.checkpoint    present only between a clean close() and the next
//                                open(); its value is the log end offset at close. Its
//                                presence lets open() skip the scan of the tail segment
//                                once the batches after its last index entry end there
//                                and at the file's end (segment::adopt_clean_state).
//   cleaned-through.checkpoint   segments that end at or below it may have been
//                                rewritten by compaction and so may have offset gaps;
//                                recovery accepts gaps there (strictly increasing
//                                offsets) and demands contiguous offsets elsewhere.
//                                Written before the first rewritten segment of a run
//                                replaces its original. Absent: no segment was compacted
//                                beyond the recovery point, which is also trusted.
//
// Format, 20 bytes, big-endian:
//   offset  size  field
//   0       4     magic, the ASCII bytes "SPCK"
//   4       2     version, 1
//   6       2     reserved, 0
//   8       8     value (int64)
//   16      4     CRC-32C (Castagnoli) of bytes 0..15
// A file with a wrong size, magic, version or CRC is treated as absent: every
// checkpoint has a safe default (scan everything, start at the first segment).
//
// Writes go through write_file_atomically (temp file, fsync, rename, fsync dir).

#include <cstdint>
#include <filesystem>
#include <optional>

#include "proto/result.h"

namespace spate::storage {

constexpr size_t checkpoint_file_size = 20;
constexpr uint16_t checkpoint_version = 1;

inline constexpr const char* recovery_point_file_name = "recovery-point.checkpoint";
inline constexpr const char* log_start_file_name = "log-start-offset.checkpoint";
inline constexpr const char* clean_shutdown_file_name = "clean-shutdown.checkpoint";
inline constexpr const char* cleaned_through_file_name = "cleaned-through.checkpoint";

// Writes `value` to `path` atomically.
result<void> write_checkpoint(const std::filesystem::path& path, int64_t value);

// Reads a checkpoint; nullopt when the file is missing or not a valid checkpoint.
std::optional<int64_t> read_checkpoint(const std::filesystem::path& path);

}  // namespace spate::storage
