#include "tools/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace spate::tools {

namespace {

using clock_type = std::chrono::steady_clock;

std::string describe(const endpoint& where) {
    return where.host + ":" + std::to_string(where.port);
}

int remaining_ms(clock_type::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

}  // namespace

std::string api_display_name(int16_t key) {
    const auto* api = proto::find_api(key);
    if (api == nullptr) return "api " + std::to_string(key);
    std::string out;
    bool upper = true;
    for (const char* c = api->name; *c != '\0'; ++c) {
        if (*c == '_') {
            upper = true;
            continue;
        }
        out += upper ? static_cast<char>(*c - ('a' <= *c && *c <= 'z' ? 'a' - 'A' : 0)) : *c;
        upper = false;
    }
    return out;
}

std::optional<int16_t> pick_version(int16_t ours_min, int16_t ours_max,
                                    const version_range& broker) {
    const int16_t chosen = std::min(ours_max, broker.max);
    if (chosen < ours_min || chosen < broker.min) return std::nullopt;
    return chosen;
}

result<int> connect_socket(const endpoint& where, int32_t timeout_ms, bool non_blocking) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(where.port);
    const int looked_up = getaddrinfo(where.host.c_str(), port.c_str(), &hints, &found);
    if (looked_up != 0)
        return error{1, "cannot resolve " + describe(where) + " (" + gai_strerror(looked_up) + ")"};
    int last_errno = ECONNREFUSED;
    for (addrinfo* candidate = found; candidate != nullptr; candidate = candidate->ai_next) {
        const int fd =
            ::socket(candidate->ai_family, candidate->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     candidate->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int rc = ::connect(fd, candidate->ai_addr, candidate->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd waiting{fd, POLLOUT, 0};
            rc = ::poll(&waiting, 1, timeout_ms);
            if (rc == 0) {
                last_errno = ETIMEDOUT;
                ::close(fd);
                continue;
            }
            int so_error = 0;
            socklen_t length = sizeof so_error;
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
            rc = so_error == 0 ? 0 : -1;
            errno = so_error;
        }
        if (rc != 0) {
            last_errno = errno;
            ::close(fd);
            continue;
        }
        // Requests are whole frames written at once; Nagle would only add latency.
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!non_blocking) {
            const int flags = ::fcntl(fd, F_GETFL);
            ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        }
        freeaddrinfo(found);
        return fd;
    }
    freeaddrinfo(found);
    return error{1,
                 "cannot connect to " + describe(where) + " (" + std::strerror(last_errno) + ")"};
}

// ---- broker_connection ----

broker_connection::broker_connection(int fd, endpoint where, int32_t timeout_ms)
    : _fd(fd), _where(std::move(where)), _timeout_ms(timeout_ms) {}

broker_connection::broker_connection(broker_connection&& other) noexcept
    : _fd(std::exchange(other._fd, -1)),
      _where(std::move(other._where)),
      _timeout_ms(other._timeout_ms),
      _next_correlation_id(other._next_correlation_id),
      _versions(std::move(other._versions)) {}

broker_connection& broker_connection::operator=(broker_connection&& other) noexcept {
    if (this != &other) {
        if (_fd >= 0) ::close(_fd);
        _fd = std::exchange(other._fd, -1);
        _where = std::move(other._where);
        _timeout_ms = other._timeout_ms;
        _next_correlation_id = other._next_correlation_id;
        _versions = std::move(other._versions);
    }
    return *this;
}

broker_connection::~broker_connection() {
    if (_fd >= 0) ::close(_fd);
}

result<broker_connection> broker_connection::open(const endpoint& where, int32_t timeout_ms) {
    auto fd = connect_socket(where, timeout_ms, /*non_blocking=*/true);
    if (!fd) return fd.failure();
    broker_connection connection(fd.value(), where, timeout_ms);
    auto negotiated = connection.negotiate();
    if (!negotiated) return negotiated.failure();
    return connection;
}

result<broker_connection> broker_connection::open_any(const std::vector<endpoint>& servers,
                                                      int32_t timeout_ms) {
    error last{1, "no bootstrap server given"};
    for (const auto& where : servers) {
        auto connection = open(where, timeout_ms);
        if (connection) return connection;
        last = connection.failure();
    }
    return last;
}

std::optional<version_range> broker_connection::advertised(int16_t key) const {
    const auto found = _versions.find(key);
    if (found == _versions.end()) return std::nullopt;
    return found->second;
}

result<void> broker_connection::negotiate() {
    // Ask at our highest version; a broker that does not know it answers in the v0 body
    // with UNSUPPORTED_VERSION and its own range (or none, before Kafka 2.4), and we ask
    // again at that (or at v0).
    int16_t version = proto::api_versions_request::version_max;
    for (int attempt = 0; attempt < 2; ++attempt) {
        proto::api_versions_request request;
        request.client_software_name = "spatectl";
        request.client_software_version = "0.1.0";
        const int32_t correlation_id = _next_correlation_id++;
        auto sent = send_frame(encode_request(request, version, correlation_id));
        if (!sent) return sent;
        std::vector<uint8_t> frame;
        auto received = receive_frame(frame);
        if (!received) return received;
        proto::reader in(frame);
        int32_t answered_id = 0;
        if (!proto::decode_response_header(in, 0, answered_id) || answered_id != correlation_id)
            return failure("a malformed ApiVersions response header");
        proto::reader peek(in.cursor(), in.remaining());
        const int16_t code = peek.int16();
        proto::api_versions_response response;
        const int16_t body_version =
            code == proto::code(proto::error_code::unsupported_version) ? 0 : version;
        if (!response.decode(in, body_version)) return failure("a malformed ApiVersions response");
        _versions.clear();
        for (const auto& api : response.api_keys)
            _versions[api.api_key] = version_range{api.min_version, api.max_version};
        if (response.error_code == proto::code(proto::error_code::none)) return ok_result();
        if (response.error_code != proto::code(proto::error_code::unsupported_version))
            return failure(std::string("ApiVersions error ") +
                           proto::error_name(response.error_code));
        // Brokers before KIP-511 (Kafka < 2.4) send no ranges with the error: every
        // broker serves v0, so ask again at v0.
        const auto theirs = advertised(static_cast<int16_t>(proto::api_key::api_versions));
        if (theirs && theirs->max >= version) return failure("an inconsistent ApiVersions answer");
        version = theirs ? theirs->max : 0;
    }
    return failure("no common ApiVersions version");
}

error broker_connection::failure(const std::string& what) const {
    return error{1, "broker " + describe(_where) + " sent " + what};
}

result<void> broker_connection::wait_for(short events, clock_type::time_point deadline) {
    for (;;) {
        pollfd waiting{_fd, events, 0};
        const int rc = ::poll(&waiting, 1, remaining_ms(deadline));
        if (rc > 0) return ok_result();
        if (rc == 0)
            return error{1, "timed out after " + std::to_string(_timeout_ms) +
                                " ms waiting for broker " + describe(_where)};
        if (errno != EINTR) return error{1, std::string("poll failed: ") + std::strerror(errno)};
    }
}

result<void> broker_connection::send_frame(const std::vector<uint8_t>& frame) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(_timeout_ms);
    size_t sent = 0;
    while (sent < frame.size()) {
        const ssize_t n = ::send(_fd, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            auto ready = wait_for(POLLOUT, deadline);
            if (!ready) return ready;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return error{
            1, "sending to broker " + describe(_where) + " failed (" + std::strerror(errno) + ")"};
    }
    return ok_result();
}

result<void> broker_connection::receive_frame(std::vector<uint8_t>& frame) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(_timeout_ms);
    auto read_exact = [&](uint8_t* into, size_t length) -> result<void> {
        size_t got = 0;
        while (got < length) {
            const ssize_t n = ::recv(_fd, into + got, length - got, 0);
            if (n > 0) {
                got += static_cast<size_t>(n);
                continue;
            }
            if (n == 0) return error{1, "broker " + describe(_where) + " closed the connection"};
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                auto ready = wait_for(POLLIN, deadline);
                if (!ready) return ready;
                continue;
            }
            if (errno == EINTR) continue;
            return error{1, "receiving from broker " + describe(_where) + " failed (" +
                                std::strerror(errno) + ")"};
        }
        return ok_result();
    };
    uint8_t size_bytes[4];
    auto got_size = read_exact(size_bytes, sizeof size_bytes);
    if (!got_size) return got_size;
    const uint32_t size = (uint32_t{size_bytes[0]} << 24) | (uint32_t{size_bytes[1]} << 16) |
                          (uint32_t{size_bytes[2]} << 8) | uint32_t{size_bytes[3]};
    if (size < 4 || size > response_bytes_max)
        return failure("a response frame of " + std::to_string(size) + " bytes");
    frame.resize(size);
    return read_exact(frame.data(), size);
}

// ---- pipelined_connection ----

pipelined_connection::~pipelined_connection() {
    if (_fd >= 0) ::close(_fd);
}

error pipelined_connection::failure(const std::string& what) const {
    return error{1, "broker " + describe(_where) + ": " + what};
}

void pipelined_connection::queue(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return;
    _out.emplace_back(bytes.begin(), bytes.end());
}

void pipelined_connection::queue(std::vector<uint8_t>&& bytes) {
    if (bytes.empty()) return;
    _out.push_back(std::move(bytes));
}

result<void> pipelined_connection::flush() {
    constexpr size_t pieces_per_send = 64;
    while (!_out.empty()) {
        iovec pieces[pieces_per_send];
        size_t count = 0;
        for (auto it = _out.begin(); it != _out.end() && count < pieces_per_send; ++it, ++count) {
            const size_t skip = count == 0 ? _out_sent : 0;
            pieces[count] = {it->data() + skip, it->size() - skip};
        }
        msghdr message{};
        message.msg_iov = pieces;
        message.msg_iovlen = count;
        const ssize_t n = ::sendmsg(_fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return ok_result();
            if (errno == EINTR) continue;
            return failure(std::string("send failed (") + std::strerror(errno) + ")");
        }
        auto sent = static_cast<size_t>(n);
        while (sent > 0) {
            const size_t left = _out.front().size() - _out_sent;
            if (sent < left) {
                _out_sent += sent;
                break;
            }
            sent -= left;
            _out.pop_front();
            _out_sent = 0;
        }
    }
    return ok_result();
}

result<void> pipelined_connection::receive(
    const std::function<result<void>(std::span<const uint8_t>)>& on_frame) {
    constexpr size_t read_chunk = 256u << 10;
    for (;;) {
        if (_in.size() < _in_used + read_chunk) _in.resize(_in_used + read_chunk);
        const ssize_t n = ::recv(_fd, _in.data() + _in_used, _in.size() - _in_used, MSG_DONTWAIT);
        if (n == 0) return failure("the broker closed the connection");
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            return failure(std::string("recv failed (") + std::strerror(errno) + ")");
        }
        _in_used += static_cast<size_t>(n);
        if (static_cast<size_t>(n) < read_chunk) break;
    }
    size_t start = 0;
    while (_in_used - start >= 4) {
        const uint8_t* p = _in.data() + start;
        const uint32_t size = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                              (uint32_t{p[2]} << 8) | uint32_t{p[3]};
        if (size < 4 || size > response_bytes_max)
            return failure("a response frame of " + std::to_string(size) + " bytes");
        if (_in_used - start - 4 < size) break;
        auto handled = on_frame(std::span<const uint8_t>(p + 4, size));
        if (!handled) return handled;
        start += 4 + size;
    }
    if (start > 0) {
        std::memmove(_in.data(), _in.data() + start, _in_used - start);
        _in_used -= start;
    }
    return ok_result();
}

}  // namespace spate::tools
