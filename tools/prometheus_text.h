#pragma once
// A parser of the Prometheus text exposition format (0.0.4), for `spatectl top`:
//
//   # HELP name text            comments (HELP, TYPE or anything else) are skipped
//   name{label="value",…} value [timestamp]
//
// Label values are quoted with the escapes \\, \" and \n; a trailing comma in the label
// list is allowed; values are floats including +Inf, -Inf, NaN and exponents; the
// optional timestamp is an integer of milliseconds. Blanks and tabs may separate tokens and
// surround the line; lines may end in CRLF.
//
// The input is whatever an endpoint sent, so nothing in it is trusted: a line that does
// not parse is counted and skipped, never asserted on; parsing never reads out of bounds.
// The caller bounds the text's size (tools/http_get.h).
//
// Stateless free functions; any thread may call them.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spate::tools {

struct prometheus_label {
    std::string name;
    std::string value;  // unescaped
    bool operator==(const prometheus_label&) const = default;
};

struct prometheus_sample {
    std::string name;
    std::vector<prometheus_label> labels;  // in the order of the line
    double value = 0;
    std::optional<int64_t> timestamp_ms;

    // The value of the label `label_name`, or "" when the sample has none (as PromQL
    // treats a missing label).
    std::string_view label(std::string_view label_name) const;
};

enum class prometheus_line_kind : uint8_t {
    sample,   // `out` holds the sample
    skipped,  // a blank line or a comment
    malformed,
};

// One line without its '\n'. `out` is written only for a sample.
prometheus_line_kind parse_prometheus_line(std::string_view line, prometheus_sample& out);

struct prometheus_scrape {
    std::vector<prometheus_sample> samples;  // in the order of the text
    size_t malformed_lines = 0;
};

// Every line of an exposition.
prometheus_scrape parse_prometheus_text(std::string_view text);

}  // namespace spate::tools
