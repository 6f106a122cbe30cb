#pragma once
// A tiny printf-style logger to stderr, shared by net/ and everything above it.
//
// Each line carries the wall-clock time (UTC, milliseconds), the level and the shard of the
// calling thread ("-" outside any shard), and is written with a single write(2) so lines of
// different threads never interleave. Callable from any thread; never allocates.

#include <cstdint>

namespace spate::net {

// Sets the shard id printed by log lines of the calling thread; the shard loop calls this
// once when its thread starts. A negative value means "no shard".
void set_log_shard(int64_t shard);

void log_info(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char* format, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace spate::net
