#pragma once
// A small blocking HTTP/1.1 GET client, enough to scrape a Prometheus endpoint (`spatectl
// top`): one request per connection (`Connection: close`), the response read until the
// peer closes it (or until Content-Length bytes of body have arrived), bounded in time and
// in size. Bodies may come whole, Content-Length delimited or chunked; compressed bodies
// are never asked for.
//
// Stateless free functions; any thread may call them. The connection lives for one call.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "proto/result.h"
#include "tools/args.h"

namespace spate::tools {

// Where a GET goes: `HOST:PORT` and a path starting with '/'.
struct http_target {
    endpoint where;
    std::string path;
    bool operator==(const http_target&) const = default;
};

// "HOST:PORT", "HOST:PORT/PATH" or either after "http://"; the path defaults to
// `default_path`. A usage error naming `text` otherwise ("https://" is refused: no TLS).
result<http_target> parse_http_target(std::string_view text, std::string_view default_path);

// "http://HOST:PORT/PATH", an IPv6 HOST in brackets.
std::string http_target_text(const http_target& target);

struct http_get_options {
    // Bounds the whole exchange: connect, send and every byte of the response.
    int32_t timeout_ms = 10000;
    // Bounds the body (after chunked decoding); a larger response is an error, not a
    // truncated body. A scrape of a broker with a hundred thousand partitions is some tens
    // of MiB.
    size_t body_bytes_max = size_t{64} << 20;
};

// The header block (status line and headers) of a response may take at most this much.
inline constexpr size_t http_head_bytes_max = size_t{64} << 10;

struct http_response {
    int status = 0;
    std::string reason;
    std::string body;
};

// Splits the bytes of a whole response (everything the peer sent before closing) into
// status, reason and body, decoding a chunked body and cutting a Content-Length one to its
// length. An error names what is malformed: no status line, a head over
// http_head_bytes_max, a body shorter than its Content-Length, bad chunk sizes, or a body
// over `body_bytes_max`.
result<http_response> parse_http_response(std::string_view raw, size_t body_bytes_max);

// GETs `target`; the body of a 200 answer, or an error naming the target and what failed:
// cannot connect, timed out, reset, malformed, too large, or the status and the first line
// of the body for any status but 200.
result<std::string> http_get(const http_target& target, const http_get_options& options);

}  // namespace spate::tools
