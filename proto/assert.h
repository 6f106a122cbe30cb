#pragma once
// SPATE_ASSERT: always-on invariant checks for programmer errors (never for
// bytes that came from the network). Logs file, line and expression, then traps.
// Header-only and dependency-free so that every folder (net/ included) may use it.

#include <cstdio>
#include <cstdlib>

namespace spate::detail {
[[noreturn]] inline void assert_failed(const char* expression, const char* file, int line,
                                       const char* message) {
    std::fprintf(stderr, "spate: assertion failed: %s (%s) at %s:%d\n", expression, message, file,
                 line);
    std::fflush(stderr);
    __builtin_trap();
}
}  // namespace spate::detail

#define SPATE_ASSERT(condition, message)                                               \
    do {                                                                               \
        if (__builtin_expect(!(condition), 0))                                         \
            ::spate::detail::assert_failed(#condition, __FILE__, __LINE__, (message)); \
    } while (0)
