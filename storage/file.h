#pragma once
// Small, blocking file primitives shared by segments, indexes and checkpoints.
//
// Every function maps the errno of the failing system call into a result error
// whose `code` is that errno and whose message names the operation and path, so
// that the broker can log something a human can act on (ENOSPC, EIO, EMFILE).
// Short reads and writes are resumed from the exact byte; EINTR is retried.
// The functions are free of state and may be called from any thread.

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "proto/result.h"

namespace spate::storage {

// One open file of a segment (or any file the storage layer opened). It is held
// by shared_ptr: the segment owns one reference, and every in-flight zero-copy
// transfer (a fetch response being spliced on another shard) owns another, so
// retention can unlink a segment while a transfer still reads from it; the
// descriptor is closed when the last holder lets go.
struct segment_file {
    int fd = -1;

    explicit segment_file(int descriptor) : fd(descriptor) {}
    ~segment_file();
    segment_file(const segment_file&) = delete;
    segment_file& operator=(const segment_file&) = delete;
};

// An error for the failed system call `operation` on `path`, from the current errno.
error errno_error(const char* operation, const std::filesystem::path& path);

// Writes all of `bytes` at `position`, resuming short writes.
result<void> pwrite_all(int fd, std::span<const uint8_t> bytes, int64_t position,
                        const std::filesystem::path& path);

// Reads exactly `bytes.size()` bytes at `position`; a read that ends early (the file
// is shorter) is an error with code EIO, since callers only read what they measured.
result<void> pread_exact(int fd, std::span<uint8_t> bytes, int64_t position,
                         const std::filesystem::path& path);

// Reads up to `bytes.size()` bytes at `position`; returns how many were read (fewer
// only at end of file).
result<size_t> pread_some(int fd, std::span<uint8_t> bytes, int64_t position,
                          const std::filesystem::path& path);

// Reads exactly `bytes.size()` bytes at `position` if they are all in the page cache
// (preadv2 with RWF_NOWAIT): false when some would wait for the disk, or on any error,
// so that the caller takes its slower path. Never blocks on I/O.
bool pread_cached(int fd, std::span<uint8_t> bytes, int64_t position);

// fdatasync, retried on EINTR.
result<void> sync_data(int fd, const std::filesystem::path& path);

// fsync of a directory, which makes creations, renames and unlinks inside it durable.
result<void> sync_directory(const std::filesystem::path& directory);

// Whether a file write waits for the disk, for writers whose callers sometimes make
// the file durable themselves (a shutdown's syncfs, storage/shutdown.h).
enum class file_durability : uint8_t { synced, unsynced };

// Writes `bytes` to `path` atomically: a temporary file next to it is written and
// fsync'ed, renamed over `path`, and the directory is fsync'ed. A crash at any
// point leaves either the old or the new content, never a mix.
result<void> write_file_atomically(const std::filesystem::path& path,
                                   std::span<const uint8_t> bytes);

// Writes `bytes` to `path` through a temporary file and a rename, without fsync: a
// crash of the process leaves either the old or the new content, but a crash of the
// machine may leave the new file empty or holding a prefix. Only derived data that is
// checked when loaded and rebuilt when found wanting (segment indexes) may use it; it
// keeps fsyncs off the paths that must not block (a segment roll).
result<void> replace_file_unsynced(const std::filesystem::path& path,
                                   std::span<const uint8_t> bytes);

// Reads a whole small file of at most `size_max` bytes. A missing file is an error
// with code ENOENT; a larger file is an error with code EFBIG.
result<std::string> read_small_file(const std::filesystem::path& path, size_t size_max);

// Removes a file; a file that is already gone is not an error.
result<void> remove_file(const std::filesystem::path& path);

// Big-endian fixed-width integers, the byte order of every storage format (Kafka's).
inline void store_be32(uint8_t* out, uint32_t value) {
    out[0] = static_cast<uint8_t>(value >> 24);
    out[1] = static_cast<uint8_t>(value >> 16);
    out[2] = static_cast<uint8_t>(value >> 8);
    out[3] = static_cast<uint8_t>(value);
}
inline void store_be64(uint8_t* out, uint64_t value) {
    store_be32(out, static_cast<uint32_t>(value >> 32));
    store_be32(out + 4, static_cast<uint32_t>(value));
}
inline uint32_t load_be32(const uint8_t* in) {
    return (uint32_t{in[0]} << 24) | (uint32_t{in[1]} << 16) | (uint32_t{in[2]} << 8) |
           uint32_t{in[3]};
}
inline uint64_t load_be64(const uint8_t* in) {
    return (uint64_t{load_be32(in)} << 32) | load_be32(in + 4);
}

}  // namespace spate::storage
