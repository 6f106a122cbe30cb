#pragma once
// A bounded HTTP/1.0 and HTTP/1.1 request-head parser and a response formatter, for the
// small /metrics and /health endpoint.
//
// Ownership and threads: one http_request_parser per connection, owned by the shard that
// owns the connection, used from that shard's loop only. It allocates its head buffer and
// header table once, in the constructor, and reuses them for every request of a keep-alive
// connection.
//
// What is refused: the endpoint serves GETs, so a request carrying a body (Content-Length
// above 0, or any Transfer-Encoding) is a bad_request; skipping a body we do not want would
// be the one way to misread where the next pipelined request starts. Also refused: a
// version other than HTTP/1.0 and HTTP/1.1, obsolete line folding, whitespace before a
// header's colon, a bare CR, control characters. Not required: a Host header (nothing is
// routed by host). Request targets are kept raw, not percent-decoded.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spate::net {

class http_request_parser {
public:
    enum class state : uint8_t {
        need_more,    // every byte was consumed and the head has not ended: feed more
        complete,     // a head was parsed: read it, answer, reset() for the next request
        bad_request,  // malformed or refused (see above): answer 400 and close
        too_large,    // the head passed head_bytes_max or had over headers_max headers:
                      // answer 431 and close
    };

    static constexpr size_t default_head_bytes_max = 8192;
    // Headers kept per request; a request with more is too_large. Clients send about ten.
    static constexpr size_t headers_max = 64;

    // A head of at most `head_bytes_max` bytes, request line, headers and the blank line
    // that ends it included.
    explicit http_request_parser(size_t head_bytes_max = default_head_bytes_max);

    // Consumes bytes up to the end of the head and no further, and says where parsing
    // stands. consumed() tells how many of these bytes were taken: on `complete` the rest,
    // data + consumed() onwards, belong to the next request (pipelining) and must be fed
    // again after reset(). Only in state need_more may feed be called.
    state feed(const uint8_t* data, size_t size);
    // How many bytes the last feed() took: all of them on need_more, up to and including
    // the end of the head on complete; on bad_request and too_large the connection closes.
    size_t consumed() const { return _consumed; }
    state current() const { return _state; }

    // Forgets the request, ready for the next one on the same connection.
    void reset();

    // The parsed head; only in state complete. Views stay valid until reset() or
    // destruction.
    std::string_view method() const;
    // The target's path, before any '?' ("/metrics"); "/" for an absolute-form target
    // without a path ("http://host").
    std::string_view path() const;
    // After the first '?', without it; empty when there is none.
    std::string_view query() const;
    // HTTP/1.1: true unless a Connection header says "close". HTTP/1.0: false unless it says
    // "keep-alive" (and not "close").
    bool keep_alive() const;
    // The Content-Length header's value, 0 without one. Always 0 on complete today since
    // bodies are refused; the caller reads it rather than assuming so.
    uint64_t content_length() const;
    // The value of the first header named `name`, compared without case ("Accept").
    std::optional<std::string_view> header(std::string_view name) const;

private:
    // A piece of _head by position, not pointer, so that moving the parser (its string may
    // hold the bytes inline) leaves nothing dangling.
    struct piece {
        uint32_t offset = 0;
        uint32_t length = 0;
    };
    struct header_pieces {
        piece name;
        piece value;
    };

    bool line_ended();
    state parse();
    bool parse_request_line(std::string_view line);
    bool parse_target(std::string_view target);
    state parse_header_line(std::string_view line);
    bool apply_header(std::string_view name, std::string_view value);
    piece piece_of(std::string_view text) const;
    std::string_view view(piece text) const;

    const size_t _head_bytes_max;
    std::string _head;
    // Where the line being received starts in _head, and whether a request line came
    // before it (blank lines ahead of a request line are skipped, as RFC 9112 allows).
    size_t _line_start = 0;
    bool _request_line_seen = false;
    state _state = state::need_more;
    size_t _consumed = 0;

    piece _method;
    piece _path;
    piece _query;
    bool _http_1_1 = false;
    bool _connection_close = false;
    bool _connection_keep_alive = false;
    std::optional<uint64_t> _content_length;
    bool _host_seen = false;
    std::vector<header_pieces> _headers;
};

// Whether a response leaves the connection open for the next request.
enum class http_connection : uint8_t { close, keep_alive };

// A whole HTTP/1.1 response: status line, Content-Type (left out when empty),
// Content-Length, Connection, a blank line and the body. `reason` and `content_type` come
// from our code and hold no CR or LF.
std::string http_response(int status, std::string_view reason, std::string_view content_type,
                          std::string_view body, http_connection connection);
// The same, appended to a byte buffer (a response net/ sends): the body is copied once.
void append_http_response(std::vector<uint8_t>& out, int status, std::string_view reason,
                          std::string_view content_type, std::string_view body,
                          http_connection connection);

}  // namespace spate::net
