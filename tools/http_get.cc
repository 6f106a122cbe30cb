// http_get: connect, send one GET with `Connection: close`, read until the peer closes,
// then split the bytes into status and body. Everything is bounded: the time by one
// deadline over the whole exchange, the bytes by http_head_bytes_max and body_bytes_max.
#include "tools/http_get.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>

#include "tools/connection.h"

namespace spate::tools {

namespace {

using clock_type = std::chrono::steady_clock;

// Bytes read from the socket per recv().
constexpr size_t receive_step_bytes = size_t{64} << 10;
// How much of a non-200 body an error message quotes.
constexpr size_t quoted_body_chars_max = 200;

error usage(std::string message) { return error{usage_error_code, std::move(message)}; }

bool equal_ignoring_case(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() &&
           equal_ignoring_case(text.substr(0, prefix.size()), prefix);
}

// Up to quoted_body_chars_max bytes of peer text for an error message, control characters
// replaced so that a hostile server cannot drive the terminal through our stderr.
std::string excerpt(std::string_view text) {
    std::string out(text.substr(0, quoted_body_chars_max));
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = '?';
    return out;
}

// excerpt() in double quotes.
std::string quoted(std::string_view text) {
    std::string out;
    out.push_back('"');
    out.append(excerpt(text));
    out.push_back('"');
    return out;
}

std::string_view trimmed(std::string_view text) {
    const size_t first = text.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) return {};
    const size_t last = text.find_last_not_of(" \t\r");
    return text.substr(first, last - first + 1);
}

// "HOST:PORT" as a URL or a Host header writes it: an IPv6 literal in brackets.
std::string host_and_port(const endpoint& where) {
    std::string out;
    const bool literal_v6 = where.host.find(':') != std::string::npos;
    if (literal_v6) out.push_back('[');
    out.append(where.host);
    if (literal_v6) out.push_back(']');
    out.push_back(':');
    out.append(std::to_string(where.port));
    return out;
}

int remaining_ms(clock_type::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// Closes the socket when the exchange ends, however it ends.
class socket_closer {
public:
    explicit socket_closer(int fd) : _fd(fd) {}
    socket_closer(const socket_closer&) = delete;
    socket_closer& operator=(const socket_closer&) = delete;
    ~socket_closer() { ::close(_fd); }

private:
    int _fd;
};

// The parts of a response head the client acts on.
struct http_head {
    int status = 0;
    std::string reason;
    std::optional<size_t> content_length;
    bool chunked = false;
};

// Where the head ends (the index just past its blank line), if it has arrived. Lines end
// in CRLF, but a bare LF is accepted too, as most clients do.
std::optional<size_t> head_length(std::string_view raw) {
    const size_t crlf = raw.find("\r\n\r\n");
    const size_t lf = raw.find("\n\n");
    if (crlf == std::string_view::npos && lf == std::string_view::npos) return std::nullopt;
    if (lf == std::string_view::npos || (crlf != std::string_view::npos && crlf < lf))
        return crlf + 4;
    return lf + 2;
}

result<size_t> parse_size(std::string_view text, int base, std::string_view what) {
    size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
        return error{1, "a malformed " + std::string(what) + " " + quoted(text)};
    return value;
}

result<http_head> parse_head(std::string_view head) {
    http_head out;
    size_t line_end = head.find('\n');
    const std::string_view status_line = trimmed(head.substr(0, line_end));
    // "HTTP/1.1 200 OK": the version, a space, three digits, then an optional reason.
    if (!starts_with_ignoring_case(status_line, "HTTP/1.") || status_line.size() < 12 ||
        status_line[8] != ' ')
        return error{1, "not an HTTP response (status line " + quoted(status_line) + ")"};
    const std::string_view code = status_line.substr(9, 3);
    if (!std::all_of(code.begin(), code.end(), [](char c) { return '0' <= c && c <= '9'; }) ||
        (status_line.size() > 12 && status_line[12] != ' '))
        return error{1, "a malformed HTTP status line " + quoted(status_line)};
    out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    out.reason = std::string(trimmed(status_line.substr(12)));
    while (line_end != std::string_view::npos) {
        head.remove_prefix(line_end + 1);
        line_end = head.find('\n');
        const std::string_view line = trimmed(head.substr(0, line_end));
        const size_t colon = line.find(':');
        if (line.empty() || colon == std::string_view::npos) continue;
        const std::string_view name = trimmed(line.substr(0, colon));
        const std::string_view value = trimmed(line.substr(colon + 1));
        if (equal_ignoring_case(name, "Content-Length")) {
            auto length = parse_size(value, 10, "Content-Length");
            if (!length) return length.failure();
            // Two different lengths are a framing attack or a broken proxy; trust neither.
            if (out.content_length && *out.content_length != length.value())
                return error{1, "two different Content-Length headers"};
            out.content_length = length.value();
        } else if (equal_ignoring_case(name, "Transfer-Encoding")) {
            // The last coding is the one that frames the message (RFC 9112, 6.1).
            const size_t comma = value.rfind(',');
            const std::string_view last =
                trimmed(comma == std::string_view::npos ? value : value.substr(comma + 1));
            out.chunked = equal_ignoring_case(last, "chunked");
        }
    }
    return out;
}

error too_large(size_t body_bytes_max) {
    return error{1,
                 "the response body is larger than " + std::to_string(body_bytes_max) + " bytes"};
}

// A chunked body: hex size lines (extensions after ';' ignored), each chunk followed by
// CRLF, ended by a zero-size chunk; trailers after it are ignored.
result<std::string> decode_chunked(std::string_view in, size_t body_bytes_max) {
    std::string body;
    while (true) {
        const size_t line_end = in.find('\n');
        if (line_end == std::string_view::npos)
            return error{1, "the chunked response body ends before its last chunk"};
        std::string_view size_text = trimmed(in.substr(0, line_end));
        size_text = trimmed(size_text.substr(0, size_text.find(';')));
        auto size = parse_size(size_text, 16, "chunk size");
        if (!size) return size.failure();
        in.remove_prefix(line_end + 1);
        if (size.value() == 0) return body;
        // Checked before appending, so a huge announced size allocates nothing.
        if (size.value() > body_bytes_max - body.size()) return too_large(body_bytes_max);
        if (size.value() > in.size())
            return error{1, "the chunked response body ends inside a chunk"};
        body.append(in.substr(0, size.value()));
        in.remove_prefix(size.value());
        if (in.substr(0, 2) == "\r\n")
            in.remove_prefix(2);
        else if (in.substr(0, 1) == "\n")
            in.remove_prefix(1);
        else
            return error{1, "a chunk of the response body is not followed by a line end"};
    }
}

error with_target(const http_target& target, const error& failure) {
    return error{failure.code, "GET " + http_target_text(target) + ": " + failure.message};
}

// Writes the whole request, waiting for room until the deadline.
result<void> send_all(int fd, std::string_view request, clock_type::time_point deadline,
                      int32_t timeout_ms) {
    while (!request.empty()) {
        const ssize_t sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
        if (sent > 0) {
            request.remove_prefix(static_cast<size_t>(sent));
            continue;
        }
        if (sent < 0 && errno == EINTR) continue;
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return error{1,
                         std::string("sending the request failed (") + std::strerror(errno) + ")"};
        pollfd waiting{fd, POLLOUT, 0};
        const int ready = ::poll(&waiting, 1, remaining_ms(deadline));
        if (ready == 0) return error{1, "timed out after " + std::to_string(timeout_ms) + " ms"};
        if (ready < 0 && errno != EINTR)
            return error{1, std::string("poll failed (") + std::strerror(errno) + ")"};
    }
    return ok_result();
}

}  // namespace

result<http_target> parse_http_target(std::string_view text, std::string_view default_path) {
    const std::string_view original = text;
    if (starts_with_ignoring_case(text, "https://"))
        return usage(quoted(original) + ": spatectl speaks plain HTTP only");
    if (starts_with_ignoring_case(text, "http://")) text.remove_prefix(7);
    const size_t slash = text.find('/');
    auto where = parse_endpoint(text.substr(0, slash));
    if (!where) return where.failure();
    http_target out{std::move(where.value()), std::string(default_path)};
    if (slash != std::string_view::npos) out.path = std::string(text.substr(slash));
    // The path goes into the request line as it is: no blanks or control characters.
    for (const char c : out.path)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F)
            return usage(quoted(original) + ": the path may not hold blanks or control characters");
    return out;
}

std::string http_target_text(const http_target& target) {
    return "http://" + host_and_port(target.where) + target.path;
}

result<http_response> parse_http_response(std::string_view raw, size_t body_bytes_max) {
    if (raw.empty()) return error{1, "the connection closed without a response"};
    const auto length = head_length(raw.substr(0, http_head_bytes_max));
    if (!length) {
        if (raw.size() >= http_head_bytes_max)
            return error{1, "the response head is larger than " +
                                std::to_string(http_head_bytes_max) + " bytes"};
        return error{1, "the response ends inside its head"};
    }
    auto head = parse_head(raw.substr(0, *length));
    if (!head) return head.failure();
    std::string_view body = raw.substr(*length);
    http_response out{head->status, std::move(head->reason), {}};
    if (head->chunked) {
        auto decoded = decode_chunked(body, body_bytes_max);
        if (!decoded) return decoded.failure();
        out.body = std::move(decoded.value());
        return out;
    }
    if (head->content_length) {
        if (*head->content_length > body_bytes_max) return too_large(body_bytes_max);
        if (body.size() < *head->content_length)
            return error{1, "the response body is shorter than its Content-Length (" +
                                std::to_string(body.size()) + " of " +
                                std::to_string(*head->content_length) + " bytes)"};
        body = body.substr(0, *head->content_length);
    }
    if (body.size() > body_bytes_max) return too_large(body_bytes_max);
    out.body = std::string(body);
    return out;
}

result<std::string> http_get(const http_target& target, const http_get_options& options) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(options.timeout_ms);
    auto fd = connect_socket(target.where, options.timeout_ms, /*non_blocking=*/true);
    if (!fd) return with_target(target, fd.failure());
    const socket_closer closer(fd.value());

    std::string request = "GET " + target.path + " HTTP/1.1\r\nHost: ";
    request += host_and_port(target.where);
    request +=
        "\r\n"
        "User-Agent: spatectl\r\n"
        "Accept: text/plain\r\n"
        "Connection: close\r\n\r\n";
    auto sent = send_all(fd.value(), request, deadline, options.timeout_ms);
    if (!sent) return with_target(target, sent.failure());

    // Chunk-size lines may add to the body's bytes; allow them an eighth more, and let
    // parse_http_response hold the body itself to body_bytes_max exactly.
    const size_t raw_bytes_max =
        http_head_bytes_max + options.body_bytes_max + options.body_bytes_max / 8;
    std::string raw;
    std::optional<size_t> expected_total;  // head + Content-Length, once the head is in
    bool head_seen = false;
    const error timed_out{1, "timed out after " + std::to_string(options.timeout_ms) + " ms"};
    while (true) {
        if (expected_total && raw.size() >= *expected_total) break;
        if (clock_type::now() >= deadline) return with_target(target, timed_out);
        if (raw.size() >= raw_bytes_max)
            return with_target(target, too_large(options.body_bytes_max));
        const size_t before = raw.size();
        raw.resize(before + std::min(receive_step_bytes, raw_bytes_max - before));
        const ssize_t received = ::recv(fd.value(), raw.data() + before, raw.size() - before, 0);
        raw.resize(before + static_cast<size_t>(std::max<ssize_t>(received, 0)));
        if (received == 0) break;  // the server closed: the response is whole
        if (received > 0) {
            // A server that keeps the connection open despite `Connection: close` is not
            // waited for once Content-Length bytes of body are in.
            // The head is looked for in its first http_head_bytes_max bytes only, so that
            // a peer sending no blank line costs one scan of those, not one per recv.
            if (!head_seen) {
                const std::string_view start = std::string_view(raw).substr(0, http_head_bytes_max);
                const auto length = head_length(start);
                head_seen = length.has_value() || start.size() == http_head_bytes_max;
                if (length) {
                    auto head = parse_head(start.substr(0, *length));
                    if (head && head->content_length && !head->chunked)
                        expected_total = *length + *head->content_length;
                }
            }
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            const std::string what = errno == ECONNRESET ? std::string("the connection was reset")
                                                         : std::string("receiving failed (") +
                                                               std::strerror(errno) + ")";
            return with_target(target, error{1, what});
        }
        pollfd waiting{fd.value(), POLLIN, 0};
        const int ready = ::poll(&waiting, 1, remaining_ms(deadline));
        if (ready == 0) return with_target(target, timed_out);
        if (ready < 0 && errno != EINTR)
            return with_target(target,
                               error{1, std::string("poll failed (") + std::strerror(errno) + ")"});
    }

    auto response = parse_http_response(raw, options.body_bytes_max);
    if (!response) return with_target(target, response.failure());
    if (response->status != 200) {
        std::string_view first_line = response->body;
        first_line = trimmed(first_line.substr(0, first_line.find('\n')));
        std::string message = "answered " + std::to_string(response->status);
        if (!response->reason.empty()) message += " " + excerpt(response->reason);
        if (!first_line.empty()) message += ": " + excerpt(first_line);
        return with_target(target, error{1, message});
    }
    return std::move(response->body);
}

}  // namespace spate::tools
