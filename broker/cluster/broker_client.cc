// broker_client: one blocking TCP connection with send and receive timeouts.
#include "broker/cluster/broker_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace spate::broker::cluster {
namespace {

// A controller answer is small (per-partition error codes); anything larger is garbage.
constexpr int32_t response_bytes_max = 64 << 20;

bool wait_ready(int fd, short events, int32_t timeout_ms) {
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
}

bool send_all(int fd, const uint8_t* data, size_t size, int32_t timeout_ms) {
    while (size > 0) {
        if (!wait_ready(fd, POLLOUT, timeout_ms)) return false;
        const ssize_t sent = ::send(fd, data, size, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return false;
        data += sent;
        size -= static_cast<size_t>(sent);
    }
    return true;
}

bool receive_all(int fd, uint8_t* data, size_t size, int32_t timeout_ms) {
    while (size > 0) {
        if (!wait_ready(fd, POLLIN, timeout_ms)) return false;
        const ssize_t got = ::recv(fd, data, size, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        data += got;
        size -= static_cast<size_t>(got);
    }
    return true;
}

}  // namespace

broker_client::~broker_client() { disconnect(); }

void broker_client::disconnect() {
    if (_fd >= 0) ::close(_fd);
    _fd = -1;
}

error broker_client::fail(const std::string& what) {
    disconnect();
    return error{-1, "broker " + _host + ":" + std::to_string(_port) + ": " + what};
}

result<std::vector<uint8_t>> broker_client::exchange(const std::vector<uint8_t>& frame) {
    if (_fd < 0) {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* found = nullptr;
        if (::getaddrinfo(_host.c_str(), std::to_string(_port).c_str(), &hints, &found) != 0 ||
            found == nullptr)
            return fail("cannot resolve the host");
        _fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        const int rc = _fd < 0 ? -1 : ::connect(_fd, found->ai_addr, found->ai_addrlen);
        ::freeaddrinfo(found);
        if (_fd < 0) return fail(std::string("socket: ") + std::strerror(errno));
        if (rc != 0 && errno != EINPROGRESS)
            return fail(std::string("connect: ") + std::strerror(errno));
        int status = 0;
        socklen_t length = sizeof(status);
        if (!wait_ready(_fd, POLLOUT, _timeout_ms) ||
            ::getsockopt(_fd, SOL_SOCKET, SO_ERROR, &status, &length) != 0 || status != 0)
            return fail(std::string("connect: ") + std::strerror(status != 0 ? status : ETIMEDOUT));
        const int one = 1;
        (void)::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (!send_all(_fd, frame.data(), frame.size(), _timeout_ms))
        return fail("send failed or timed out");
    uint8_t prefix[4];
    if (!receive_all(_fd, prefix, 4, _timeout_ms)) return fail("no answer in time");
    const int32_t size =
        static_cast<int32_t>((uint32_t{prefix[0]} << 24) | (uint32_t{prefix[1]} << 16) |
                             (uint32_t{prefix[2]} << 8) | uint32_t{prefix[3]});
    if (size < 4 || size > response_bytes_max) return fail("an answer of impossible size");
    std::vector<uint8_t> body(static_cast<size_t>(size));
    if (!receive_all(_fd, body.data(), body.size(), _timeout_ms)) return fail("answer cut short");
    return body;
}

}  // namespace spate::broker::cluster
