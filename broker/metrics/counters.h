#pragma once
// The figures a shard counts as it works, for /metrics (broker/metrics/exposition.h).
//
// Threads: one instance per thread (thread_local), so each shard counts into its own with
// plain integers: nothing shared, no atomics on the request path. A scrape reads each
// shard's instance on that shard's thread (broker/metrics/report.h) and sums them.

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "net/metrics.h"

namespace spate::broker::metrics {

// Per Kafka API key (requests of unknown keys are counted in the last slot).
struct api_figures {
    uint64_t requests = 0;
    uint64_t bytes_in = 0;           // request frames, size prefix included
    uint64_t bytes_out = 0;          // responses, file pieces included
    net::latency_histogram latency;  // frame received → response queued
};

// Error codes answered, by (API key, code): a small table, since few pairs ever occur.
// When every slot is taken, further pairs are counted in `overflow`.
struct error_table {
    struct entry {
        int16_t api = -1;  // -1: free
        int16_t code = 0;
        uint64_t count = 0;
    };
    static constexpr size_t slots = 128;
    std::array<entry, slots> entries{};
    uint64_t overflow = 0;

    void add(int16_t api, int16_t code) {
        const auto hash = (static_cast<uint32_t>(api) * 131u + static_cast<uint16_t>(code)) % slots;
        for (size_t probe = 0; probe < slots; ++probe) {
            entry& e = entries[(hash + probe) % slots];
            if (e.api == api && e.code == code) {
                ++e.count;
                return;
            }
            if (e.api < 0) {
                e = {api, code, 1};
                return;
            }
        }
        ++overflow;
    }
};

struct shard_counters {
    static constexpr size_t api_slots = 80;
    std::array<api_figures, api_slots> apis{};
    error_table errors;
    // Storage: batches appended (as leader or follower) and failures by errno (fdatasync
    // latency is net::shard_stats').
    uint64_t appends = 0;
    // Fetch answers that carried records: copied from the page cache into one buffer
    // (small ones), or spliced from the files (broker/handlers/fetch.cc).
    uint64_t fetch_answers_copied = 0;
    uint64_t fetch_answers_spliced = 0;
    std::array<uint64_t, 160> storage_errors{};  // by errno (the last slot: any larger)
    // Replication: ISR changes this broker proposed to the controller as a leader.
    uint64_t isr_shrinks = 0;
    uint64_t isr_expands = 0;
    // Leaders of this shard's replicas that changed, and controllers seen (shard 0's view),
    // from the metadata the controller sent.
    uint64_t leader_changes = 0;
    uint64_t controller_changes = 0;
    // Fetched bytes by topic (Kafka's BytesOut), counted where the answer is sent.
    std::unordered_map<std::string, uint64_t> topic_bytes_out;

    api_figures& api(int16_t key) {
        const size_t slot = key >= 0 && static_cast<size_t>(key) < api_slots - 1
                                ? static_cast<size_t>(key)
                                : api_slots - 1;
        return apis[slot];
    }
    void storage_error(int code) {
        const size_t slot = code > 0 && static_cast<size_t>(code) < storage_errors.size() - 1
                                ? static_cast<size_t>(code)
                                : storage_errors.size() - 1;
        ++storage_errors[slot];
    }
};

// The calling thread's counters: a shard's own, when called on its thread.
inline shard_counters& local() {
    static thread_local shard_counters counters;
    return counters;
}

}  // namespace spate::broker::metrics
