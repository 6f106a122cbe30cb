#pragma once
// Checkpoint files of a partition directory: one int64 each, written atomically.
//
// Files (all in the partition directory):
//   recovery-point.checkpoint    every offset below it was fdatasync'ed and verified, so
//                                recovery after a crash scans only the segments at or
//                                after the one holding this offset.
//   log-start-offset.checkpoint  the first offset a client may read (DeleteRecords and
//                                retention move it forward; it may lie inside a segment).
//   clean-shutdown.checkpoint    written by a clean close(); its value is the log end
//                                offset at close. It stays in place through open() and
//                                is removed (durably) before the first change of the
//                                log, so it only ever vouches for an unchanged log (see
//                                storage/log.h). Its presence lets open() skip the scan
//                                of the tail segment once the batches after its last
//                                index entry end there and at the file's end
//                                (segment::adopt_clean_state).
//   cleaned-through.checkpoint   segments that end at or below it may have been
//                                rewritten by compaction and so may have offset gaps;
//                                recovery accepts gaps there (strictly increasing
//                                offsets) and demands contiguous offsets elsewhere.
//                                Written before the first rewritten segment of a run
//                                replaces its original. Absent: no segment was compacted
//                                beyond the recovery point, which is also trusted.
//   replicated-gaps.checkpoint   the base offset of the first batch a follower appended
//                                after an offset gap (partition_log::append_replicated),
//                                written before that batch: recovery accepts gaps in
//                                every segment from the one holding it on. Absent: no
//                                such gap, and recovery demands contiguous offsets
//                                there as everywhere else.
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
// Writes go through write_file_atomically (temp file, fsync, rename, fsync dir), except
// the unsynced writes of a shutdown that syncs the whole file system afterwards.

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
inline constexpr const char* replicated_gaps_file_name = "replicated-gaps.checkpoint";

// Writes `value` to `path` atomically.
result<void> write_checkpoint(const std::filesystem::path& path, int64_t value);
// Replaces `path` through a temporary file and a rename, without fsync: for callers
// that make it durable with one syncfs(2) afterwards (partition_log::close_after_sync).
// A crash before that leaves the old file, the new one, or a damaged one, which reads
// as absent; every checkpoint has a safe default, so each outcome is safe.
result<void> write_checkpoint_unsynced(const std::filesystem::path& path, int64_t value);

// Reads a checkpoint; nullopt when the file is missing or not a valid checkpoint.
std::optional<int64_t> read_checkpoint(const std::filesystem::path& path);

}  // namespace spate::storage
