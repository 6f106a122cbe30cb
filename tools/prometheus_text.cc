// The Prometheus text format, one line at a time: a cursor over the line that every step
// checks against the line's end, so a malformed line only ever makes the parse fail.
#include "tools/prometheus_text.h"

#include <charconv>

namespace spate::tools {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_letter(char c) { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'); }
bool is_digit(char c) { return '0' <= c && c <= '9'; }

// A position in one line; at() past the end reads as '\0', which no rule accepts.
class line_cursor {
public:
    explicit line_cursor(std::string_view line) : _line(line) {}

    bool done() const { return _at >= _line.size(); }
    char at() const { return done() ? '\0' : _line[_at]; }
    void advance() { ++_at; }
    size_t skip_blanks() {
        const size_t start = _at;
        while (!done() && is_blank(_line[_at])) ++_at;
        return _at - start;
    }
    // The run of characters from here for which `accept(c, first)` holds.
    template <class Accept>
    std::string_view take_while(Accept accept) {
        const size_t start = _at;
        while (!done() && accept(_line[_at], _at == start)) ++_at;
        return _line.substr(start, _at - start);
    }
    // The characters up to the next blank or the end of the line.
    std::string_view take_token() {
        return take_while([](char c, bool) { return !is_blank(c); });
    }

private:
    std::string_view _line;
    size_t _at = 0;
};

// Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*.
bool metric_name_char(char c, bool first) {
    return is_letter(c) || c == '_' || c == ':' || (!first && is_digit(c));
}
// Label names: [a-zA-Z_][a-zA-Z0-9_]*.
bool label_name_char(char c, bool first) {
    return is_letter(c) || c == '_' || (!first && is_digit(c));
}

// A quoted label value, the cursor on its opening quote; unescapes into `out`. Only the
// format's three escapes are accepted, as Prometheus' own parser does.
bool parse_label_value(line_cursor& in, std::string& out) {
    if (in.at() != '"') return false;
    in.advance();
    while (!in.done()) {
        const char c = in.at();
        in.advance();
        if (c == '"') return true;
        if (c != '\\') {
            out.push_back(c);
            continue;
        }
        const char escaped = in.at();
        in.advance();
        if (escaped == '\\' || escaped == '"')
            out.push_back(escaped);
        else if (escaped == 'n')
            out.push_back('\n');
        else
            return false;
    }
    return false;  // no closing quote
}

// `{name="value",…}`, the cursor on the '{'.
bool parse_labels(line_cursor& in, std::vector<prometheus_label>& labels) {
    in.advance();
    while (true) {
        in.skip_blanks();
        if (in.at() == '}') {
            in.advance();
            return true;
        }
        prometheus_label label;
        label.name = std::string(in.take_while(label_name_char));
        if (label.name.empty()) return false;
        in.skip_blanks();
        if (in.at() != '=') return false;
        in.advance();
        in.skip_blanks();
        if (!parse_label_value(in, label.value)) return false;
        // A repeated label name makes the sample ambiguous; Prometheus rejects it too.
        for (const prometheus_label& earlier : labels)
            if (earlier.name == label.name) return false;
        labels.push_back(std::move(label));
        in.skip_blanks();
        if (in.at() == ',') {
            in.advance();
            continue;
        }
        if (in.at() != '}') return false;
    }
}

// A sample value: a decimal float with an optional exponent, or Inf/NaN in any case with
// an optional sign (Go's ParseFloat, which Prometheus uses, takes "+Inf").
std::optional<double> parse_value(std::string_view token) {
    if (token.size() > 1 && token.front() == '+' && token[1] != '-') token.remove_prefix(1);
    double value = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
    // ERANGE (a value beyond double's range, e.g. 1e999) is malformed here: from_chars
    // leaves the value unset, and a scrape does not carry such values.
    if (token.empty() || ec != std::errc() || end != token.data() + token.size())
        return std::nullopt;
    return value;
}

}  // namespace

std::string_view prometheus_sample::label(std::string_view label_name) const {
    for (const prometheus_label& l : labels)
        if (l.name == label_name) return l.value;
    return {};
}

prometheus_line_kind parse_prometheus_line(std::string_view line, prometheus_sample& out) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    line_cursor in(line);
    in.skip_blanks();
    if (in.done() || in.at() == '#') return prometheus_line_kind::skipped;

    prometheus_sample sample;
    sample.name = std::string(in.take_while(metric_name_char));
    if (sample.name.empty()) return prometheus_line_kind::malformed;
    const size_t blanks_after_name = in.skip_blanks();
    if (in.at() == '{') {
        if (!parse_labels(in, sample.labels)) return prometheus_line_kind::malformed;
        in.skip_blanks();
    } else if (blanks_after_name == 0) {
        return prometheus_line_kind::malformed;  // e.g. "name-x 1"
    }
    const auto value = parse_value(in.take_token());
    if (!value) return prometheus_line_kind::malformed;
    sample.value = *value;
    in.skip_blanks();
    if (!in.done()) {
        const std::string_view token = in.take_token();
        int64_t timestamp = 0;
        const auto [end, ec] =
            std::from_chars(token.data(), token.data() + token.size(), timestamp);
        if (ec != std::errc() || end != token.data() + token.size())
            return prometheus_line_kind::malformed;
        sample.timestamp_ms = timestamp;
        in.skip_blanks();
        if (!in.done()) return prometheus_line_kind::malformed;
    }
    out = std::move(sample);
    return prometheus_line_kind::sample;
}

prometheus_scrape parse_prometheus_text(std::string_view text) {
    prometheus_scrape out;
    prometheus_sample sample;
    while (!text.empty()) {
        const size_t end = text.find('\n');
        const std::string_view line = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        switch (parse_prometheus_line(line, sample)) {
            case prometheus_line_kind::sample:
                out.samples.push_back(std::move(sample));
                break;
            case prometheus_line_kind::skipped:
                break;
            case prometheus_line_kind::malformed:
                ++out.malformed_lines;
                break;
        }
    }
    return out;
}

}  // namespace spate::tools
