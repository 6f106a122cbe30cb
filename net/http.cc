// The HTTP/1.x request-head parser and the response formatter.
#include "net/http.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

#include "proto/assert.h"

namespace spate::net {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool equals_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return lower(x) == lower(y); });
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() &&
           equals_ignoring_case(text.substr(0, prefix.size()), prefix);
}

// RFC 9110's tchar: what method and header names are made of.
bool is_token_char(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), is_token_char);
}

// Visible ASCII but '#': a fragment is never sent, and no target holds blanks or controls.
bool is_target_char(char c) { return c > ' ' && c < 0x7f && c != '#'; }

// Field values may hold blanks, visible ASCII and bytes above 0x7f (obs-text), not controls:
// a NUL or a bare CR in a value is how requests get smuggled past other parsers.
bool is_value_char(char c) {
    const auto byte = static_cast<unsigned char>(c);
    return c == '\t' || (byte >= 0x20 && byte != 0x7f);
}

std::string_view trim_blanks(std::string_view text) {
    const size_t first = text.find_first_not_of(" \t");
    // All blanks: an empty view where the text ends, not a null one, since a header's value
    // becomes a piece of the head.
    if (first == std::string_view::npos) return text.substr(text.size());
    const size_t last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

std::optional<uint64_t> parse_decimal(std::string_view text) {
    uint64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    // from_chars takes no sign and refuses overflow; demand that every character is a digit.
    if (text.empty() || error != std::errc() || end != text.data() + text.size()) return {};
    return value;
}

}  // namespace

http_request_parser::http_request_parser(size_t head_bytes_max) : _head_bytes_max(head_bytes_max) {
    SPATE_ASSERT(head_bytes_max > 0, "a head needs room for at least one byte");
    SPATE_ASSERT(head_bytes_max <= std::numeric_limits<uint32_t>::max(),
                 "pieces hold 32-bit offsets");
    _head.reserve(head_bytes_max);
    _headers.reserve(headers_max);
}

http_request_parser::state http_request_parser::feed(const uint8_t* data, size_t size) {
    SPATE_ASSERT(_state == state::need_more, "feed() after a final state: reset() first");
    _consumed = 0;
    while (_consumed < size) {
        // Line by line, so that the end of the head is found where it is and nothing after
        // it is taken.
        const uint8_t* const start = data + _consumed;
        const size_t available = std::min(_head_bytes_max - _head.size(), size - _consumed);
        const void* const newline = std::memchr(start, '\n', available);
        const size_t taken =
            newline == nullptr
                ? available
                : static_cast<size_t>(static_cast<const uint8_t*>(newline) - start) + 1;
        _head.append(reinterpret_cast<const char*>(start), taken);
        _consumed += taken;
        if (newline != nullptr && line_ended()) return _state = parse();
        // A full head that has not ended can never end within the limit.
        if (_head.size() == _head_bytes_max) return _state = state::too_large;
    }
    return _state;
}

void http_request_parser::reset() {
    _head.clear();
    _line_start = 0;
    _request_line_seen = false;
    _state = state::need_more;
    _consumed = 0;
    _method = {};
    _path = {};
    _query = {};
    _http_1_1 = false;
    _connection_close = false;
    _connection_keep_alive = false;
    _content_length.reset();
    _host_seen = false;
    _headers.clear();
}

std::string_view http_request_parser::method() const {
    SPATE_ASSERT(_state == state::complete, "method() of a request not parsed");
    return view(_method);
}

std::string_view http_request_parser::path() const {
    SPATE_ASSERT(_state == state::complete, "path() of a request not parsed");
    // Only an absolute-form target without a path leaves it empty; its path is "/".
    return _path.length == 0 ? std::string_view("/") : view(_path);
}

std::string_view http_request_parser::query() const {
    SPATE_ASSERT(_state == state::complete, "query() of a request not parsed");
    return view(_query);
}

bool http_request_parser::keep_alive() const {
    SPATE_ASSERT(_state == state::complete, "keep_alive() of a request not parsed");
    if (_connection_close) return false;
    return _http_1_1 || _connection_keep_alive;
}

uint64_t http_request_parser::content_length() const {
    SPATE_ASSERT(_state == state::complete, "content_length() of a request not parsed");
    return _content_length.value_or(0);
}

std::optional<std::string_view> http_request_parser::header(std::string_view name) const {
    SPATE_ASSERT(_state == state::complete, "header() of a request not parsed");
    for (const header_pieces& each : _headers) {
        if (equals_ignoring_case(view(each.name), name)) return view(each.value);
    }
    return {};
}

bool http_request_parser::line_ended() {
    // Called when _head ends with '\n': the line from _line_start is complete.
    const size_t length = _head.size() - _line_start;
    const bool blank = length == 1 || (length == 2 && _head[_line_start] == '\r');
    _line_start = _head.size();
    if (!blank) {
        _request_line_seen = true;
        return false;
    }
    return _request_line_seen;
}

http_request_parser::state http_request_parser::parse() {
    const std::string_view head = _head;
    size_t position = 0;
    bool request_line_parsed = false;
    // The head ends with '\n' (feed() parses on a blank line only), so every find succeeds.
    while (position < head.size()) {
        const size_t newline = head.find('\n', position);
        std::string_view line = head.substr(position, newline - position);
        position = newline + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (!request_line_parsed) {
            if (line.empty()) continue;  // a blank line ahead of the request line
            if (!parse_request_line(line)) return state::bad_request;
            request_line_parsed = true;
        } else if (line.empty()) {
            break;  // the blank line that ends the head
        } else if (const state header = parse_header_line(line); header != state::complete) {
            return header;
        }
    }
    // A body would follow the head: refused rather than skipped (see http.h).
    if (_content_length.value_or(0) > 0) return state::bad_request;
    return state::complete;
}

bool http_request_parser::parse_request_line(std::string_view line) {
    // method SP request-target SP HTTP-version, single spaces: anything looser is refused.
    const size_t first_space = line.find(' ');
    if (first_space == std::string_view::npos) return false;
    const std::string_view method = line.substr(0, first_space);
    const std::string_view rest = line.substr(first_space + 1);
    const size_t second_space = rest.find(' ');
    if (second_space == std::string_view::npos) return false;
    const std::string_view target = rest.substr(0, second_space);
    const std::string_view version = rest.substr(second_space + 1);
    if (!is_token(method)) return false;
    if (version == "HTTP/1.1") {
        _http_1_1 = true;
    } else if (version != "HTTP/1.0") {
        return false;
    }
    _method = piece_of(method);
    return parse_target(target);
}

bool http_request_parser::parse_target(std::string_view target) {
    if (target.empty() || !std::all_of(target.begin(), target.end(), is_target_char)) return false;
    // Origin form ("/metrics?x") as clients send it; absolute form
    // ("http://host:9644/metrics") because RFC 9112 requires servers to accept it. The
    // asterisk and authority forms (OPTIONS *, CONNECT) are refused.
    std::string_view path_and_query = target;
    if (target[0] != '/') {
        std::string_view after_scheme;
        if (starts_with_ignoring_case(target, "http://")) {
            after_scheme = target.substr(7);
        } else if (starts_with_ignoring_case(target, "https://")) {
            after_scheme = target.substr(8);
        } else {
            return false;
        }
        const size_t authority_end = std::min(after_scheme.find('/'), after_scheme.find('?'));
        if (authority_end == 0) return false;
        // Without a path, an empty view at the target's end (a piece must lie in the head).
        path_and_query = after_scheme.substr(std::min(authority_end, after_scheme.size()));
    }
    const size_t question = path_and_query.find('?');
    _path = piece_of(path_and_query.substr(0, question));
    if (question != std::string_view::npos) _query = piece_of(path_and_query.substr(question + 1));
    return true;
}

http_request_parser::state http_request_parser::parse_header_line(std::string_view line) {
    // A line starting with a blank continues the previous one (obsolete folding): refused,
    // as RFC 9112 allows.
    if (line[0] == ' ' || line[0] == '\t') return state::bad_request;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return state::bad_request;
    // A token: no whitespace before the colon, which RFC 9112 requires us to refuse.
    const std::string_view name = line.substr(0, colon);
    if (!is_token(name)) return state::bad_request;
    const std::string_view value = trim_blanks(line.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(), is_value_char)) return state::bad_request;
    if (_headers.size() == headers_max) return state::too_large;
    _headers.push_back({piece_of(name), piece_of(value)});
    return apply_header(name, value) ? state::complete : state::bad_request;
}

bool http_request_parser::apply_header(std::string_view name, std::string_view value) {
    if (equals_ignoring_case(name, "connection")) {
        // A comma-separated list of options, possibly over several Connection headers.
        while (!value.empty()) {
            const size_t comma = value.find(',');
            const std::string_view option = trim_blanks(value.substr(0, comma));
            if (equals_ignoring_case(option, "close")) _connection_close = true;
            if (equals_ignoring_case(option, "keep-alive")) _connection_keep_alive = true;
            value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        }
        return true;
    }
    if (equals_ignoring_case(name, "content-length")) {
        const auto length = parse_decimal(value);
        if (!length) return false;
        // Two lengths that disagree leave the body's end ambiguous.
        if (_content_length && *_content_length != *length) return false;
        _content_length = length;
        return true;
    }
    // Any transfer coding means a body whose length we would have to decode.
    if (equals_ignoring_case(name, "transfer-encoding")) return false;
    if (equals_ignoring_case(name, "host")) {
        // RFC 9112: more than one Host is a bad request.
        if (_host_seen) return false;
        _host_seen = true;
    }
    return true;
}

http_request_parser::piece http_request_parser::piece_of(std::string_view text) const {
    const auto offset = static_cast<size_t>(text.data() - _head.data());
    SPATE_ASSERT(offset + text.size() <= _head.size(), "a piece lies within the head");
    return {static_cast<uint32_t>(offset), static_cast<uint32_t>(text.size())};
}

std::string_view http_request_parser::view(piece text) const {
    return std::string_view(_head).substr(text.offset, text.length);
}

namespace {

// Appends the whole response to `out` (a std::string or a byte vector): one reservation for
// all of it, and the body copied once.
template <class Bytes>
void append_response(Bytes& out, int status, std::string_view reason, std::string_view content_type,
                     std::string_view body, http_connection connection) {
    SPATE_ASSERT(status >= 100, "an HTTP status has three digits");
    SPATE_ASSERT(status <= 999, "an HTTP status has three digits");
    SPATE_ASSERT(reason.find_first_of("\r\n") == std::string_view::npos, "a reason is one line");
    SPATE_ASSERT(content_type.find_first_of("\r\n") == std::string_view::npos,
                 "a content type is one line");
    const std::string_view connection_value =
        connection == http_connection::keep_alive ? "keep-alive" : "close";
    char length[24];
    const auto [length_end, error] = std::to_chars(length, length + sizeof(length), body.size());
    SPATE_ASSERT(error == std::errc(), "a size fits 24 characters");
    const char code[] = {' ', static_cast<char>('0' + status / 100),
                         static_cast<char>('0' + status / 10 % 10),
                         static_cast<char>('0' + status % 10), ' '};
    const auto add = [&out](std::string_view text) {
        out.insert(out.end(), text.begin(), text.end());
    };

    // The fixed text is under 100 bytes.
    out.reserve(out.size() + 100 + reason.size() + content_type.size() + sizeof(length) +
                body.size());
    add("HTTP/1.1");
    add(std::string_view(code, sizeof code));
    add(reason);
    add("\r\n");
    if (!content_type.empty()) {
        add("Content-Type: ");
        add(content_type);
        add("\r\n");
    }
    add("Content-Length: ");
    add(std::string_view(length, static_cast<size_t>(length_end - length)));
    add("\r\nConnection: ");
    add(connection_value);
    add("\r\n\r\n");
    add(body);
}

}  // namespace

std::string http_response(int status, std::string_view reason, std::string_view content_type,
                          std::string_view body, http_connection connection) {
    std::string out;
    append_response(out, status, reason, content_type, body, connection);
    return out;
}

void append_http_response(std::vector<uint8_t>& out, int status, std::string_view reason,
                          std::string_view content_type, std::string_view body,
                          http_connection connection) {
    append_response(out, status, reason, content_type, body, connection);
}

}  // namespace spate::net
