#pragma once
// The wall clock in milliseconds since the epoch, as Kafka's timestamps count it (record
// timestamps, segment ages, session times). Any thread may call it.

#include <chrono>
#include <cstdint>

namespace spate::net {

inline int64_t wall_clock_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace spate::net
