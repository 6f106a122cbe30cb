#pragma once
// The log configuration shared by crash_writer and the crash test, so that the test
// reopens the log exactly as the writer wrote it.

#include "storage/log.h"

namespace spate::storage::testing {

inline log_config crash_log_config() {
    log_config config;
    // Small segments (a roll every few appends) so that kills land during rolls, with
    // sync requests outstanding, as well as during plain appends.
    config.segment_bytes = 24 * 1024;
    config.index_interval_bytes = 1024;
    config.retention_ms = -1;
    return config;
}

}  // namespace spate::storage::testing
