// The HTTP listener of a runtime (shard_config::http_listen) over real rings: requests reach
// the handler with their head parsed, answers leave in request order (pipelined or not),
// Connection: close and bad heads end the connection after the answer, shard 0 serves it.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "net/http.h"
#include "net/runtime.h"

using namespace spate::net;

namespace {

// A blocking loopback client that writes text and reads until the server closes.
class http_client {
public:
    explicit http_client(uint16_t port) {
        _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(_fd >= 0);
        timeval timeout{20, 0};
        ::setsockopt(_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    }
    ~http_client() { ::close(_fd); }
    void write(const std::string& text) {
        REQUIRE(::send(_fd, text.data(), text.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(text.size()));
    }
    // Reads until `text` holds `wanted` bytes' worth of `needle` occurrences, or EOF.
    std::string read_until_count(const std::string& needle, size_t wanted) {
        while (count(needle) < wanted) {
            char buffer[4096];
            const ssize_t n = ::recv(_fd, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            _text.append(buffer, static_cast<size_t>(n));
        }
        return _text;
    }
    // Everything until the server closes (or the timeout).
    std::string read_to_end() {
        char buffer[4096];
        for (;;) {
            const ssize_t n = ::recv(_fd, buffer, sizeof buffer, 0);
            if (n <= 0) return _text;
            _text.append(buffer, static_cast<size_t>(n));
        }
    }
    bool closed_by_peer() {
        char byte = 0;
        const ssize_t n = ::recv(_fd, &byte, 1, 0);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }

private:
    size_t count(const std::string& needle) const {
        size_t found = 0;
        for (size_t at = _text.find(needle); at != std::string::npos;
             at = _text.find(needle, at + 1))
            ++found;
        return found;
    }
    int _fd = -1;
    std::string _text;
};

// Answers "<shard> <method> <path>?<query>" for paths under /echo, later for /later (in
// reverse order of arrival, when /flush comes), and leaves the rest to the shard (404).
class http_handler : public connection_handler {
public:
    explicit http_handler(shard& owner) : _shard(owner) {}
    void on_frame(connection_ref, uint64_t, frame_ptr) override {}
    bool on_http_request(connection_ref conn, uint64_t sequence,
                         const http_request_parser& request) override {
        const std::string path(request.path());
        const std::string body = std::to_string(_shard.id()) + " " + std::string(request.method()) +
                                 " " + path + "?" + std::string(request.query()) + "\n";
        const auto connection =
            request.keep_alive() ? http_connection::keep_alive : http_connection::close;
        if (path.rfind("/echo", 0) == 0) {
            answer(conn, sequence, body, connection);
            return true;
        }
        if (path == "/later") {
            _held.push_back([this, conn, sequence, body, connection] {
                answer(conn, sequence, body, connection);
            });
            return true;
        }
        if (path == "/flush") {
            for (auto it = _held.rbegin(); it != _held.rend(); ++it) (*it)();
            _held.clear();
            answer(conn, sequence, body, connection);
            return true;
        }
        return false;
    }

private:
    void answer(connection_ref conn, uint64_t sequence, const std::string& body,
                http_connection connection) {
        _shard.respond_http(conn, sequence, 200, "OK", "text/plain", body, connection);
    }
    shard& _shard;
    std::vector<std::function<void()>> _held;
};

struct handlers {
    std::vector<std::unique_ptr<http_handler>> all;
    std::function<connection_handler&(shard&)> factory() {
        return [this](shard& s) -> connection_handler& {
            all.push_back(std::make_unique<http_handler>(s));
            return *all.back();
        };
    }
};

shard_config http_config() {
    shard_config config;
    config.listen_port = 0;
    config.pin_to_core = false;
    config.recv_buffer_count = 64;
    config.recv_buffer_bytes = 4096;
    config.http_listen = shard_config::endpoint{"127.0.0.1", 0};
    return config;
}

}  // namespace

TEST_CASE("http: keep-alive requests are answered one after another, by shard 0") {
    handlers owned;
    runtime rt(2, http_config(), owned.factory());
    REQUIRE(rt.start().ok());
    REQUIRE(rt.http_bound_port() != 0);
    CHECK(rt.http_bound_port() != rt.bound_port());
    for (int connection = 0; connection < 4; ++connection) {
        http_client c(rt.http_bound_port());
        c.write("GET /echo/a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
        std::string text = c.read_until_count("\n0 GET", 1);
        c.write("GET /echo/b HTTP/1.1\r\n\r\n");
        text = c.read_until_count("\n0 GET", 2);
        CHECK(text.find("HTTP/1.1 200 OK") == 0);
        CHECK(text.find("0 GET /echo/a?x=1\n") != std::string::npos);
        CHECK(text.find("0 GET /echo/b?\n") != std::string::npos);
        CHECK(text.find("0 GET /echo/a") < text.find("0 GET /echo/b"));
    }
}

TEST_CASE("http: pipelined requests are answered in their order, whatever the handler's") {
    handlers owned;
    runtime rt(1, http_config(), owned.factory());
    REQUIRE(rt.start().ok());
    http_client c(rt.http_bound_port());
    // /later is answered only when /flush arrives, after it in the pipeline.
    c.write(
        "GET /later?1 HTTP/1.1\r\n\r\nGET /later?2 HTTP/1.1\r\n\r\nGET /flush HTTP/1.1\r\n"
        "Connection: close\r\n\r\n");
    const std::string text = c.read_to_end();
    const auto first = text.find("/later?1");
    const auto second = text.find("/later?2");
    const auto flush = text.find("/flush?");
    REQUIRE(first != std::string::npos);
    REQUIRE(second != std::string::npos);
    REQUIRE(flush != std::string::npos);
    CHECK(first < second);
    CHECK(second < flush);
    CHECK(text.find("Connection: close") != std::string::npos);
}

TEST_CASE("http: Connection: close and HTTP/1.0 end the connection after the answer") {
    handlers owned;
    runtime rt(1, http_config(), owned.factory());
    REQUIRE(rt.start().ok());
    {
        http_client c(rt.http_bound_port());
        c.write("GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
        const std::string text = c.read_to_end();
        CHECK(text.find("200 OK") != std::string::npos);
        CHECK(text.find("0 GET /echo?") != std::string::npos);
    }
    {
        http_client c(rt.http_bound_port());
        // Bytes after a Connection: close request are not read.
        c.write("GET /echo HTTP/1.0\r\n\r\nGET /echo/ignored HTTP/1.1\r\n\r\n");
        const std::string text = c.read_to_end();
        CHECK(text.find("0 GET /echo?") != std::string::npos);
        CHECK(text.find("ignored") == std::string::npos);
    }
}

TEST_CASE("http: a path the handler does not serve is 404, the connection stays open") {
    handlers owned;
    runtime rt(1, http_config(), owned.factory());
    REQUIRE(rt.start().ok());
    http_client c(rt.http_bound_port());
    c.write("GET /nothing HTTP/1.1\r\n\r\n");
    std::string text = c.read_until_count("HTTP/1.1 ", 1);
    c.write("GET /echo HTTP/1.1\r\n\r\n");
    text = c.read_until_count("HTTP/1.1 ", 2);
    CHECK(text.find("HTTP/1.1 404 Not Found") == 0);
    CHECK(text.find("0 GET /echo?") != std::string::npos);
}

TEST_CASE("http: a malformed or oversized head is refused and the connection closed") {
    handlers owned;
    runtime rt(1, http_config(), owned.factory());
    REQUIRE(rt.start().ok());
    {
        http_client c(rt.http_bound_port());
        c.write("\x16\x03\x01 not http at all\r\n\r\n");
        const std::string text = c.read_to_end();
        CHECK(text.find("HTTP/1.1 400 Bad Request") == 0);
    }
    {
        http_client c(rt.http_bound_port());
        c.write("GET /echo HTTP/1.1\r\nX-Long: " + std::string(10000, 'a') + "\r\n\r\n");
        const std::string text = c.read_to_end();
        CHECK(text.find("HTTP/1.1 431") == 0);
    }
    {
        // A request before the bad one is still answered, first.
        http_client c(rt.http_bound_port());
        c.write("GET /echo/ok HTTP/1.1\r\n\r\nGET /x HTTP/9.9\r\n\r\n");
        const std::string text = c.read_to_end();
        CHECK(text.find("0 GET /echo/ok?") != std::string::npos);
        CHECK(text.find("400 Bad Request") > text.find("0 GET /echo/ok?"));
    }
}

TEST_CASE("http: no listener without http_listen") {
    handlers owned;
    shard_config config = http_config();
    config.http_listen.reset();
    runtime rt(1, config, owned.factory());
    REQUIRE(rt.start().ok());
    CHECK(rt.http_bound_port() == 0);
}
