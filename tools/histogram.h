#pragma once
// latency_histogram: a log-linear (HDR-style) histogram of non-negative integer values,
// used by `perf produce` for latencies in microseconds.
//
// Values below 2^sub_bucket_bits are counted exactly; above, each power-of-two range
// [2^k, 2^(k+1)) is split into 2^sub_bucket_bits equal sub-buckets, so every recorded
// value is known to within 1/2^sub_bucket_bits (< 0.8 % with 7 bits) of its true value
// while the whole range up to 2^max_value_bits takes a few thousand counters. Recording
// is an index computation and an increment: no allocation after construction.
//
// Owned by one thread (the perf loop); not synchronised.

#include <cstdint>
#include <string>
#include <vector>

#include "proto/result.h"

namespace spate::tools {

class latency_histogram {
public:
    static constexpr int sub_bucket_bits = 7;
    static constexpr int max_value_bits = 40;  // 2^40 µs is 12 days: nothing real is larger
    static constexpr uint64_t value_max = (uint64_t{1} << max_value_bits) - 1;

    latency_histogram();

    // Values above value_max are clamped to it (and still counted).
    void record(uint64_t value);
    void merge(const latency_histogram& other);
    void reset();

    uint64_t count() const { return _count; }
    uint64_t min() const { return _count == 0 ? 0 : _min; }
    uint64_t max() const { return _max; }
    double mean() const {
        return _count == 0 ? 0.0 : static_cast<double>(_sum) / static_cast<double>(_count);
    }
    // The smallest recorded-bucket value v such that at least `percentile` % of the values
    // are <= v; reported as the bucket's highest value, clamped to max(). 0 when empty.
    uint64_t percentile(double percentile) const;

    // One line per non-empty bucket: "<bucket low>\t<bucket high>\t<count>\t<cumulative %>".
    std::string distribution_text() const;
    // Writes distribution_text() to the file at `path` (perf's --histogram FILE).
    result<void> write_distribution(const std::string& path) const;

    // Bucket arithmetic, exposed for tests.
    static size_t index_of(uint64_t value);
    static uint64_t lowest_value(size_t index);
    static uint64_t highest_value(size_t index);

private:
    std::vector<uint64_t> _counts;
    uint64_t _count = 0;
    uint64_t _sum = 0;
    uint64_t _min = UINT64_MAX;
    uint64_t _max = 0;
};

}  // namespace spate::tools
