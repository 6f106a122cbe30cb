// The HTTP request-head parser (whole, byte by byte, pipelined, limits, refusals,
// keep-alive) and the response formatter.
#include "net/http.h"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using namespace spate::net;
using state = http_request_parser::state;

namespace {

state feed(http_request_parser& parser, std::string_view text) {
    return parser.feed(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

state feed_byte_by_byte(http_request_parser& parser, std::string_view text) {
    state outcome = state::need_more;
    for (size_t i = 0; i < text.size() && outcome == state::need_more; ++i) {
        outcome = feed(parser, text.substr(i, 1));
    }
    return outcome;
}

// The outcome of one request fed whole.
state parse(std::string_view text) {
    http_request_parser parser;
    return feed(parser, text);
}

bool keeps_alive(std::string_view text) {
    http_request_parser parser;
    REQUIRE(feed(parser, text) == state::complete);
    return parser.keep_alive();
}

}  // namespace

TEST_CASE("a GET in one piece") {
    const std::string_view request =
        "GET /metrics HTTP/1.1\r\nHost: localhost:9644\r\nAccept: text/plain\r\n"
        "User-Agent: Prometheus/2.45.0\r\n\r\n";
    http_request_parser parser;
    REQUIRE(feed(parser, request) == state::complete);
    CHECK(parser.consumed() == request.size());
    CHECK(parser.method() == "GET");
    CHECK(parser.path() == "/metrics");
    CHECK(parser.query().empty());
    CHECK(parser.keep_alive());
    CHECK(parser.content_length() == 0);
    CHECK(parser.header("accept") == "text/plain");
    CHECK(parser.header("HOST") == "localhost:9644");
    CHECK_FALSE(parser.header("Cookie").has_value());
}

TEST_CASE("a GET byte by byte, with a query and bare newlines") {
    http_request_parser parser;
    CHECK(feed_byte_by_byte(parser, "GET /health?verbose=1&x HTTP/1.0\nHost: h\n\n") ==
          state::complete);
    CHECK(parser.consumed() == 1);
    CHECK(parser.path() == "/health");
    CHECK(parser.query() == "verbose=1&x");
    CHECK_FALSE(parser.keep_alive());
}

TEST_CASE("a header with an empty or all-blank value") {
    // Regression (found by tests/fuzz/http_fuzz.cc): trimming an all-blank value returned a
    // default string_view, whose null data() is no position in the head, and recording it as
    // a piece tripped the assert that pieces lie within the head.
    http_request_parser parser;
    REQUIRE(feed(parser, "GET / HTTP/1.1\r\nHost: \t \r\nX-Empty:\r\n\r\n") == state::complete);
    CHECK(parser.header("host") == "");
    CHECK(parser.header("x-empty") == "");
}

TEST_CASE("an absolute-form target and blank lines ahead of the request line") {
    http_request_parser parser;
    REQUIRE(feed(parser, "\r\nGET http://broker:9644/metrics?a=b HTTP/1.1\r\n\r\n") ==
            state::complete);
    CHECK(parser.path() == "/metrics");
    CHECK(parser.query() == "a=b");
    parser.reset();
    REQUIRE(feed(parser, "GET http://broker HTTP/1.1\r\n\r\n") == state::complete);
    CHECK(parser.path() == "/");
}

TEST_CASE("two pipelined requests: feed stops at the end of the first head") {
    const std::string first = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string second = "HEAD /health HTTP/1.1\r\nConnection: close\r\n\r\n";
    const std::string bytes = first + second + "GET /par";
    http_request_parser parser;
    const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
    size_t size = bytes.size();

    REQUIRE(parser.feed(data, size) == state::complete);
    CHECK(parser.consumed() == first.size());
    CHECK(parser.path() == "/metrics");
    CHECK(parser.keep_alive());
    data += parser.consumed();
    size -= parser.consumed();
    parser.reset();

    REQUIRE(parser.feed(data, size) == state::complete);
    CHECK(parser.consumed() == second.size());
    CHECK(parser.method() == "HEAD");
    CHECK(parser.path() == "/health");
    CHECK_FALSE(parser.keep_alive());
    data += parser.consumed();
    size -= parser.consumed();
    parser.reset();

    CHECK(parser.feed(data, size) == state::need_more);
    CHECK(parser.consumed() == size);
    CHECK(feed(parser, "tial HTTP/1.1\r\n\r\n") == state::complete);
    CHECK(parser.path() == "/partial");
}

TEST_CASE("a head over the limit is too_large, one at the limit is not") {
    const std::string request = "GET / HTTP/1.1\r\nX-Padding: " + std::string(40, 'p') + "\r\n\r\n";
    http_request_parser exact(request.size());
    CHECK(feed(exact, request) == state::complete);
    http_request_parser short_by_one(request.size() - 1);
    CHECK(feed(short_by_one, request) == state::too_large);
    CHECK(short_by_one.consumed() == request.size() - 1);
    http_request_parser byte_by_byte(request.size() - 1);
    CHECK(feed_byte_by_byte(byte_by_byte, request) == state::too_large);

    http_request_parser endless;
    CHECK(feed(endless, std::string(20000, 'A')) == state::too_large);
    CHECK(endless.consumed() == http_request_parser::default_head_bytes_max);
}

TEST_CASE("more headers than headers_max is too_large") {
    std::string request = "GET / HTTP/1.1\r\n";
    for (size_t i = 0; i <= http_request_parser::headers_max; ++i) request += "X-A: b\r\n";
    CHECK(parse(request + "\r\n") == state::too_large);
}

TEST_CASE("malformed heads are bad_request") {
    CHECK(parse("garbage\r\n\r\n") == state::bad_request);
    CHECK(parse("GET /metrics\r\n\r\n") == state::bad_request);                  // no version
    CHECK(parse("GET /metrics HTTP/2.0\r\n\r\n") == state::bad_request);         // version
    CHECK(parse("GET /metrics http/1.1\r\n\r\n") == state::bad_request);         // version case
    CHECK(parse("GET  /metrics HTTP/1.1\r\n\r\n") == state::bad_request);        // two spaces
    CHECK(parse("GET /metrics HTTP/1.1 \r\n\r\n") == state::bad_request);        // trailing space
    CHECK(parse("G(T /metrics HTTP/1.1\r\n\r\n") == state::bad_request);         // method token
    CHECK(parse("GET metrics HTTP/1.1\r\n\r\n") == state::bad_request);          // not a path
    CHECK(parse("OPTIONS * HTTP/1.1\r\n\r\n") == state::bad_request);            // asterisk form
    CHECK(parse("GET http:///x HTTP/1.1\r\n\r\n") == state::bad_request);        // no authority
    CHECK(parse("GET /a#b HTTP/1.1\r\n\r\n") == state::bad_request);             // fragment
    CHECK(parse("GET /\x01 HTTP/1.1\r\n\r\n") == state::bad_request);            // control
    CHECK(parse("GET / HTTP/1.1\r\nno colon\r\n\r\n") == state::bad_request);    // header line
    CHECK(parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == state::bad_request);    // space before :
    CHECK(parse("GET / HTTP/1.1\r\n: a\r\n\r\n") == state::bad_request);         // empty name
    CHECK(parse("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n") == state::bad_request);  // folding
    CHECK(parse("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n") == state::bad_request);     // bare CR
    constexpr char with_nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
    CHECK(parse(std::string_view(with_nul, sizeof(with_nul) - 1)) == state::bad_request);
    CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == state::bad_request);
}

TEST_CASE("a request with a body is bad_request: the endpoint serves GETs only") {
    CHECK(parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello") == state::bad_request);
    CHECK(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == state::bad_request);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n") == state::bad_request);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: -0\r\n\r\n") == state::bad_request);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n") ==
          state::bad_request);
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n") ==
          state::bad_request);
    http_request_parser parser;
    REQUIRE(feed(parser, "GET / HTTP/1.1\r\nContent-Length:  0 \r\n\r\n") == state::complete);
    CHECK(parser.content_length() == 0);
}

TEST_CASE("keep-alive: HTTP/1.1 unless close, HTTP/1.0 only with keep-alive") {
    CHECK(keeps_alive("GET / HTTP/1.1\r\n\r\n"));
    CHECK_FALSE(keeps_alive("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    CHECK_FALSE(keeps_alive("GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n"));
    CHECK(keeps_alive("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"));
    CHECK_FALSE(keeps_alive("GET / HTTP/1.0\r\n\r\n"));
    CHECK(keeps_alive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    CHECK_FALSE(
        keeps_alive("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"));
}

TEST_CASE("reset forgets the previous request") {
    http_request_parser parser;
    REQUIRE(feed(parser, "GET /a?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == state::complete);
    parser.reset();
    CHECK(parser.current() == state::need_more);
    REQUIRE(feed(parser, "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n") == state::complete);
    CHECK(parser.path() == "/b");
    CHECK(parser.query().empty());
    CHECK_FALSE(parser.keep_alive());
    CHECK(parser.header("connection") == "close");
}

TEST_CASE("a moved parser still reads its head") {
    http_request_parser parser(64);
    REQUIRE(feed(parser, "GET /m?x HTTP/1.1\r\n\r\n") == state::complete);
    const http_request_parser moved = std::move(parser);
    CHECK(moved.path() == "/m");
    CHECK(moved.query() == "x");
}

TEST_CASE("http_response formats a whole HTTP/1.1 response") {
    CHECK(http_response(200, "OK", "text/plain; version=0.0.4", "a 1\n",
                        http_connection::keep_alive) ==
          "HTTP/1.1 200 OK\r\n"
          "Content-Type: text/plain; version=0.0.4\r\n"
          "Content-Length: 4\r\n"
          "Connection: keep-alive\r\n"
          "\r\n"
          "a 1\n");
    CHECK(http_response(404, "Not Found", "", "", http_connection::close) ==
          "HTTP/1.1 404 Not Found\r\n"
          "Content-Length: 0\r\n"
          "Connection: close\r\n"
          "\r\n");
}
