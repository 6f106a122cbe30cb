// Prometheus text exposition: the latency histogram and the writer.
#include "net/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "proto/assert.h"

namespace spate::net {

namespace {

constexpr bool strictly_increasing(std::span<const uint64_t> bounds) {
    for (size_t i = 1; i < bounds.size(); ++i) {
        if (bounds[i - 1] >= bounds[i]) return false;
    }
    return true;
}
// Prometheus requires the `le` of a histogram's buckets to increase strictly.
static_assert(strictly_increasing(latency_histogram::bucket_bounds_us));

constexpr uint64_t micros_per_second = 1'000'000;

bool is_name_start(char c, bool colon_allowed) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (colon_allowed && c == ':');
}

bool is_name_char(char c, bool colon_allowed) {
    return is_name_start(c, colon_allowed) || (c >= '0' && c <= '9');
}

// [a-zA-Z_:][a-zA-Z0-9_:]* for metric names, the same without ':' for label names.
bool is_valid_name(std::string_view name, bool colon_allowed) {
    if (name.empty() || !is_name_start(name[0], colon_allowed)) return false;
    return std::all_of(name.begin() + 1, name.end(),
                       [&](char c) { return is_name_char(c, colon_allowed); });
}

bool is_valid_metric_name(std::string_view name) { return is_valid_name(name, true); }
bool is_valid_label_name(std::string_view name) { return is_valid_name(name, false); }

// HELP text escapes backslash and newline; label values also escape the double quote that
// would otherwise end them.
void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
    for (char c : text) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '"' && escape_quote) {
            out += "\\\"";
        } else {
            out.push_back(c);
        }
    }
}

template <class Number>
void append_number(std::string& out, Number value) {
    // 24 bytes hold any 64-bit integer and any double's shortest round-trip form
    // ("-2.2250738585072014e-308" is 24 characters).
    char buffer[24];
    const auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
    SPATE_ASSERT(error == std::errc(), "a number always fits 24 characters");
    out.append(buffer, end);
}

// Microseconds as an exact decimal number of seconds ("0.00001", "2.5", "10") written into
// `buffer`: `le` bounds and sums read as plain decimals, with no rounding through a double.
// 32 characters hold the longest, 14 integer digits, a point and 6 fraction digits.
std::string_view micros_as_seconds(uint64_t micros, std::array<char, 32>& buffer) {
    char* const begin = buffer.data();
    const auto [end, error] =
        std::to_chars(begin, begin + buffer.size(), micros / micros_per_second);
    SPATE_ASSERT(error == std::errc(), "a 64-bit integer fits 32 characters");
    uint64_t fraction = micros % micros_per_second;
    if (fraction == 0) return std::string_view(begin, static_cast<size_t>(end - begin));
    *end = '.';
    char* const digits = end + 1;
    for (int i = 5; i >= 0; --i) {
        digits[i] = static_cast<char>('0' + fraction % 10);
        fraction /= 10;
    }
    size_t length = 6;
    while (digits[length - 1] == '0') --length;
    return std::string_view(begin, static_cast<size_t>(digits + length - begin));
}

std::string_view type_name(metric_type type) {
    switch (type) {
        case metric_type::counter:
            return "counter";
        case metric_type::gauge:
            return "gauge";
        case metric_type::histogram:
            return "histogram";
    }
    SPATE_ASSERT(false, "unknown metric_type");
    return {};
}

}  // namespace

void latency_histogram::record(uint64_t micros) {
    // The first bound >= micros: `le` buckets include their upper bound. Past the last
    // bound, lower_bound returns end(), which is the index of the +Inf bucket.
    const auto bound = std::lower_bound(bucket_bounds_us.begin(), bucket_bounds_us.end(), micros);
    ++buckets[static_cast<size_t>(bound - bucket_bounds_us.begin())];
    sum_us += micros;
    ++count;
}

void latency_histogram::merge(const latency_histogram& other) {
    for (size_t i = 0; i < bucket_count; ++i) buckets[i] += other.buckets[i];
    sum_us += other.sum_us;
    count += other.count;
}

void exposition_writer::family(std::string_view name, std::string_view help, metric_type type) {
    SPATE_ASSERT(is_valid_metric_name(name), "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    _out += "# HELP ";
    _out += name;
    _out.push_back(' ');
    append_escaped(_out, help, false);
    _out += "\n# TYPE ";
    _out += name;
    _out.push_back(' ');
    _out += type_name(type);
    _out.push_back('\n');
}

void exposition_writer::histogram(std::string_view name, std::span<const label> labels,
                                  const latency_histogram& values) {
    for (const label& each : labels) {
        SPATE_ASSERT(each.name != "le", "a histogram's caller labels must not include le");
    }
    std::array<char, 32> buffer;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < latency_histogram::bucket_bounds_us.size(); ++i) {
        cumulative += values.buckets[i];
        const auto le = micros_as_seconds(latency_histogram::bucket_bounds_us[i], buffer);
        write_name_and_labels(name, "_bucket", labels, le);
        append_unsigned(cumulative);
        _out.push_back('\n');
    }
    cumulative += values.buckets.back();
    SPATE_ASSERT(cumulative == values.count, "a histogram's count is the sum of its buckets");
    write_name_and_labels(name, "_bucket", labels, "+Inf");
    append_unsigned(values.count);
    _out.push_back('\n');

    write_name_and_labels(name, "_sum", labels, {});
    _out += micros_as_seconds(values.sum_us, buffer);
    _out.push_back('\n');
    write_name_and_labels(name, "_count", labels, {});
    append_unsigned(values.count);
    _out.push_back('\n');
}

void exposition_writer::write_name_and_labels(std::string_view name, std::string_view suffix,
                                              std::span<const label> labels, std::string_view le) {
    SPATE_ASSERT(is_valid_metric_name(name), "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    _out += name;
    _out += suffix;
    if (labels.empty() && le.empty()) {
        _out.push_back(' ');
        return;
    }
    char separator = '{';
    for (const label& each : labels) {
        SPATE_ASSERT(is_valid_label_name(each.name),
                     "label name must match [a-zA-Z_][a-zA-Z0-9_]*");
        _out.push_back(separator);
        _out += each.name;
        _out += "=\"";
        append_escaped(_out, each.value, true);
        _out.push_back('"');
        separator = ',';
    }
    if (!le.empty()) {
        _out.push_back(separator);
        _out += "le=\"";
        _out += le;
        _out.push_back('"');
    }
    _out += "} ";
}

void exposition_writer::append_unsigned(uint64_t value) { append_number(_out, value); }

void exposition_writer::append_signed(int64_t value) { append_number(_out, value); }

void exposition_writer::append_double(double value) {
    // Prometheus' spellings of the values to_chars would write as "nan" and "inf".
    if (std::isnan(value)) {
        _out += "NaN";
    } else if (std::isinf(value)) {
        _out += value > 0 ? "+Inf" : "-Inf";
    } else {
        append_number(_out, value);
    }
}

}  // namespace spate::net
