#pragma once
// Prometheus text exposition (format 0.0.4): a latency histogram cheap enough to record on
// the request path, and a writer that appends families and samples to a string at scrape
// time.
//
// Ownership and threads: each shard owns its own latency_histograms and records into them
// from its loop only, so they hold plain integers, no atomics. A scrape gathers the shards'
// histograms (copies, summed with merge()) on one thread and writes them with one
// exposition_writer, which lives for that one response.
//
// Metric and label names come from our code, never from the network: a malformed one is a
// programmer error and trips an assert. Label values and HELP text may hold anything and are
// escaped.

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace spate::net {

// The Content-Type of a response carrying this format.
inline constexpr std::string_view exposition_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

// Request latencies in microseconds, in fixed buckets shared by every instance so that
// histograms of different shards add bucket by bucket.
struct latency_histogram {
    // Upper bounds (inclusive, as Prometheus' `le`) of every bucket but the last, which
    // takes everything above and is exposed as le="+Inf". From 10 µs to 10 s, roughly
    // 1-2.5-5 per decade.
    static constexpr std::array<uint64_t, 19> bucket_bounds_us = {
        10,    25,    50,     100,    250,    500,     1000,    2500,    5000,    10000,
        25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
    static constexpr size_t bucket_count = bucket_bounds_us.size() + 1;

    // Per bucket, not cumulative: buckets[i] counts the values in (bound[i-1], bound[i]].
    std::array<uint64_t, bucket_count> buckets = {};
    uint64_t sum_us = 0;
    // Equal to the sum of buckets; kept apart so that writing _count needs no loop.
    uint64_t count = 0;

    // One value, on the hot path: a binary search over the bounds, no allocation.
    void record(uint64_t micros);
    // Adds another shard's histogram into this one.
    void merge(const latency_histogram& other);
};

enum class metric_type : uint8_t { counter, gauge, histogram };

struct label {
    std::string_view name;
    std::string_view value;
};

// Any integer (printed exactly) or floating-point value (printed so that it parses back to
// the same double); bool is neither.
template <class T>
concept metric_value = !std::same_as<T, bool> && (std::integral<T> || std::floating_point<T>);

// Appends exposition text to a caller's string. The caller writes each family once, its
// family() line first and then all of its samples together, as the format requires.
class exposition_writer {
public:
    explicit exposition_writer(std::string& out) : _out(out) {}

    // The `# HELP` and `# TYPE` lines of a family.
    void family(std::string_view name, std::string_view help, metric_type type);

    // One sample line: `name{labels} value`, without braces when there are no labels.
    // Two forms of labels: a braced list at the call site, or a list built at run time.
    template <metric_value Value>
    void sample(std::string_view name, std::initializer_list<label> labels, Value value) {
        sample(name, std::span<const label>(labels.begin(), labels.size()), value);
    }
    template <metric_value Value>
    void sample(std::string_view name, std::span<const label> labels, Value value) {
        write_name_and_labels(name, {}, labels, {});
        if constexpr (std::floating_point<Value>) {
            append_double(static_cast<double>(value));
        } else if constexpr (std::signed_integral<Value>) {
            append_signed(static_cast<int64_t>(value));
        } else {
            append_unsigned(static_cast<uint64_t>(value));
        }
        _out.push_back('\n');
    }

    // The samples of a histogram family `name`: `name_bucket` per bound with cumulative
    // counts and `le` in seconds (the caller's labels first, `le` last), then `name_sum` in
    // seconds and `name_count`.
    void histogram(std::string_view name, std::initializer_list<label> labels,
                   const latency_histogram& values) {
        histogram(name, std::span<const label>(labels.begin(), labels.size()), values);
    }
    void histogram(std::string_view name, std::span<const label> labels,
                   const latency_histogram& values);

private:
    // `name` + `suffix`, then the labels and `le` (when not empty) in braces, then a space.
    void write_name_and_labels(std::string_view name, std::string_view suffix,
                               std::span<const label> labels, std::string_view le);
    void append_unsigned(uint64_t value);
    void append_signed(int64_t value);
    void append_double(double value);

    std::string& _out;
};

}  // namespace spate::net
