// broker_links: outgoing connections on shard 0's ring, answers matched by correlation id.
#include "broker/cluster/broker_links.h"

#include <netdb.h>

#include <cstring>

namespace spate::broker::cluster {

bool resolve_address(const std::string& host, int32_t port, sockaddr_storage& address,
                     socklen_t& length) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 ||
        found == nullptr)
        return false;
    std::memcpy(&address, found->ai_addr, found->ai_addrlen);
    length = found->ai_addrlen;
    ::freeaddrinfo(found);
    return true;
}

void broker_links::call(outgoing_call request) {
    link& target = _links[request.broker_id];
    const bool moved = target.address_length != request.address_length ||
                       std::memcmp(&target.address, &request.address, request.address_length) != 0;
    if (target.open && moved) {
        _shard.close_connection(target.conn);  // on_close fails what it still waited for
        target.open = false;
    }
    if (!target.open) {
        target.address = request.address;
        target.address_length = request.address_length;
        target.open = true;
        const int32_t id = request.broker_id;
        target.conn = _shard.connect(
            target.address, target.address_length, *this, [this, id](net::connection_ref, int res) {
                if (res >= 0) return;
                auto found = _links.find(id);
                if (found == _links.end()) return;
                found->second.open = false;
                fail_all(found->second, std::string("connect: ") + std::strerror(-res));
            });
    }
    const net::connection_ref conn = target.conn;
    const int32_t id = request.broker_id;
    const int32_t correlation = request.correlation_id;
    target.pending[correlation] = std::move(request.done);
    _shard.add_timer(std::chrono::milliseconds(request.timeout_ms), [this, id, correlation, conn] {
        auto found = _links.find(id);
        if (found == _links.end()) return;
        auto waiting = found->second.pending.find(correlation);
        if (waiting == found->second.pending.end()) return;  // answered
        auto done = std::move(waiting->second);
        found->second.pending.erase(waiting);
        done(error{ETIMEDOUT, "no answer in time"});
        // Closed, so that its late answer cannot be read as another request's.
        if (found->second.open && found->second.conn.index == conn.index &&
            found->second.conn.generation == conn.generation)
            _shard.close_connection(conn);
    });
    net::response bytes;
    bytes.bytes = std::move(request.frame);
    _shard.send(conn, std::move(bytes));
}

broker_links::link* broker_links::link_of(net::connection_ref conn, int32_t& broker_id) {
    for (auto& [id, target] : _links) {
        if (target.open && target.conn.index == conn.index &&
            target.conn.generation == conn.generation) {
            broker_id = id;
            return &target;
        }
    }
    return nullptr;
}

void broker_links::on_frame(net::connection_ref conn, uint64_t, net::frame_ptr answer) {
    int32_t id = -1;
    link* target = link_of(conn, id);
    if (target == nullptr || answer->bytes.size() < 4) return;
    const uint8_t* b = answer->bytes.data();
    const auto correlation = static_cast<int32_t>((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                                                  (uint32_t{b[2]} << 8) | uint32_t{b[3]});
    auto waiting = target->pending.find(correlation);
    if (waiting == target->pending.end()) return;  // timed out already
    auto done = std::move(waiting->second);
    target->pending.erase(waiting);
    done(std::move(answer->bytes));
}

void broker_links::on_close(net::connection_ref conn) {
    int32_t id = -1;
    link* target = link_of(conn, id);
    if (target == nullptr) return;
    target->open = false;
    fail_all(*target, "connection closed");
}

void broker_links::fail_all(link& target, const std::string& why) {
    auto pending = std::move(target.pending);
    target.pending.clear();
    for (auto& [correlation, done] : pending) done(error{ECONNRESET, why});
}

}  // namespace spate::broker::cluster
