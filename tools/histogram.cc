#include "tools/histogram.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace spate::tools {

namespace {
constexpr uint64_t sub_bucket_count = uint64_t{1} << latency_histogram::sub_bucket_bits;
constexpr size_t bucket_total =
    sub_bucket_count +
    (latency_histogram::max_value_bits - latency_histogram::sub_bucket_bits) * sub_bucket_count;
}  // namespace

latency_histogram::latency_histogram() : _counts(bucket_total, 0) {}

size_t latency_histogram::index_of(uint64_t value) {
    if (value > value_max) value = value_max;
    if (value < sub_bucket_count) return static_cast<size_t>(value);
    const int top_bit = 63 - __builtin_clzll(value);
    const int shift = top_bit - sub_bucket_bits;  // >= 0 because value >= 2^sub_bucket_bits
    const uint64_t sub = (value >> shift) - sub_bucket_count;
    return static_cast<size_t>(sub_bucket_count + static_cast<uint64_t>(shift) * sub_bucket_count +
                               sub);
}

uint64_t latency_histogram::lowest_value(size_t index) {
    if (index < sub_bucket_count) return index;
    const uint64_t shift = (index - sub_bucket_count) / sub_bucket_count;
    const uint64_t sub = (index - sub_bucket_count) % sub_bucket_count;
    return (sub_bucket_count + sub) << shift;
}

uint64_t latency_histogram::highest_value(size_t index) {
    if (index < sub_bucket_count) return index;
    const uint64_t shift = (index - sub_bucket_count) / sub_bucket_count;
    return lowest_value(index) + (uint64_t{1} << shift) - 1;
}

void latency_histogram::record(uint64_t value) {
    if (value > value_max) value = value_max;
    ++_counts[index_of(value)];
    ++_count;
    _sum += value;
    _min = std::min(_min, value);
    _max = std::max(_max, value);
}

void latency_histogram::merge(const latency_histogram& other) {
    for (size_t i = 0; i < _counts.size(); ++i) _counts[i] += other._counts[i];
    _count += other._count;
    _sum += other._sum;
    _min = std::min(_min, other._min);
    _max = std::max(_max, other._max);
}

void latency_histogram::reset() {
    std::fill(_counts.begin(), _counts.end(), 0);
    _count = 0;
    _sum = 0;
    _min = UINT64_MAX;
    _max = 0;
}

uint64_t latency_histogram::percentile(double percentile) const {
    if (_count == 0) return 0;
    const double wanted = std::clamp(percentile, 0.0, 100.0) / 100.0 * static_cast<double>(_count);
    uint64_t target = static_cast<uint64_t>(wanted);
    if (static_cast<double>(target) < wanted) ++target;  // ceil: at least that many values
    if (target == 0) target = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < _counts.size(); ++i) {
        seen += _counts[i];
        if (seen >= target) return std::min(highest_value(i), _max);
    }
    return _max;
}

std::string latency_histogram::distribution_text() const {
    std::string out = "# low\thigh\tcount\tcumulative_percent\n";
    uint64_t seen = 0;
    char line[128];
    for (size_t i = 0; i < _counts.size(); ++i) {
        if (_counts[i] == 0) continue;
        seen += _counts[i];
        std::snprintf(line, sizeof line, "%llu\t%llu\t%llu\t%.4f\n",
                      static_cast<unsigned long long>(lowest_value(i)),
                      static_cast<unsigned long long>(highest_value(i)),
                      static_cast<unsigned long long>(_counts[i]),
                      100.0 * static_cast<double>(seen) / static_cast<double>(_count));
        out += line;
    }
    return out;
}

result<void> latency_histogram::write_distribution(const std::string& path) const {
    std::ofstream out(path);
    out << distribution_text();
    if (!out) return error{1, "cannot write histogram file \"" + path + "\""};
    return ok_result();
}

}  // namespace spate::tools
