// The shard's connection lifecycle: looking connections up by reference, accepting them
// (with the connection limits and refusals), the sweep that enforces the idle and receive
// timeouts, and closing a connection once every operation submitted for it has completed.
// Part of class shard (net/shard.h); the loop, ring and timers are in net/shard.cc, the
// receive path in net/shard_input.cc and the send path in net/shard_output.cc.
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/log.h"
#include "net/shard.h"
#include "net/shard_internal.h"

namespace spate::net {

// ---- connections ------------------------------------------------------------------------

shard::connection* shard::lookup(connection_ref ref) {
    if (ref.index >= _connections.size()) return nullptr;
    connection& conn = *_connections[ref.index];
    if (conn.generation != ref.generation || conn.state != connection::state_kind::open)
        return nullptr;
    return &conn;
}

const shard::connection* shard::lookup(connection_ref ref) const {
    if (ref.index >= _connections.size()) return nullptr;
    const connection& conn = *_connections[ref.index];
    if (conn.generation != ref.generation || conn.state != connection::state_kind::open)
        return nullptr;
    return &conn;
}

bool shard::is_open(connection_ref conn) const { return lookup(conn) != nullptr; }

peer_address shard::peer_of(connection_ref conn) const {
    const connection* found = lookup(conn);
    return found == nullptr ? peer_address{} : found->peer;
}

void shard::set_loopback_congestion_control(int fd) {
    const std::string& name = _config.loopback_congestion_control;
    if (name.empty() || _loopback_congestion_control_refused) return;
    if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                     static_cast<socklen_t>(name.size())) != 0) {
        // Checked at start (congestion_control_usable): only a changed sysctl gets here.
        log_warn("loopback_congestion_control %s: %s; loopback connections keep the system's",
                 name.c_str(), std::strerror(errno));
        _loopback_congestion_control_refused = true;
    }
}

result<void> congestion_control_usable(const std::string& name) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return error{errno, std::string("a socket to try it on: ") + std::strerror(errno)};
    const int set = ::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                                 static_cast<socklen_t>(name.size()));
    const int code = errno;
    ::close(fd);
    if (set == 0) return {};
    if (code == ENOENT) return error{code, "the kernel has no congestion control of that name"};
    if (code == EPERM)
        return error{code,
                     "not in net.ipv4.tcp_allowed_congestion_control, and this process "
                     "may not take others"};
    return error{code, std::strerror(code)};
}

bool shard::paced_loopback(connection_ref conn) const {
    const connection* found = lookup(conn);
    if (found == nullptr || found->fd < 0 || !found->peer.loopback()) return false;
    if (found->paced_loopback < 0) {
        char name[16] = {};
        socklen_t length = sizeof name - 1;
        if (::getsockopt(found->fd, IPPROTO_TCP, TCP_CONGESTION, name, &length) != 0) return false;
        found->paced_loopback = std::strncmp(name, "bbr", 3) == 0 ? 1 : 0;
    }
    return found->paced_loopback == 1;
}

uint64_t shard::held_input_bytes() const {
    uint64_t total = 0;
    for (const auto& slot : _connections) total += slot->held_input.size();
    return total;
}

void shard::on_accept(uint32_t which, const completion& done) {
    const bool armed = _listeners[which].armed;
    if (done.res < 0) {
        const int code = -done.res;
        if (code == ECANCELED) return;
        if (code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM) {
            log_warn("accept: %s; retrying in %lld ms", std::strerror(code),
                     static_cast<long long>(accept_retry_delay.count()));
            if (!armed && !_stopping)
                add_timer(accept_retry_delay, [this, which] {
                    if (!_listeners[which].armed && !_stopping) arm_accept(which);
                });
            return;
        }
        // ECONNABORTED and friends concern one would-be connection only.
        if (code != ECONNABORTED && code != EINTR && code != EAGAIN)
            log_warn("accept: %s", std::strerror(code));
        if (!armed && !_stopping) arm_accept(which);
        return;
    }
    if (!armed && !_stopping) arm_accept(which);
    const int fd = done.res;
    if (_stopping) {
        ::close(fd);
        return;
    }
    SPATE_ASSERT(_limits != nullptr, "connection limits before accepting");
    // Taken for every connection: the per-address limit counts it and DescribeGroups
    // reports it as a member's client host.
    peer_address peer;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    // A peer gone already has no address: it is admitted and closes at once.
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
        peer = peer_address::of(address);
    switch (_limits->try_admit(peer)) {
        case connection_limits::verdict::admitted:
            break;
        case connection_limits::verdict::broker_full:
            refuse_connection(fd, "connections_max");
            return;
        case connection_limits::verdict::address_full:
            refuse_connection(fd, "max_connections_per_ip");
            return;
    }
    const int one = 1;
    // Responses are written whole; Nagle would only delay the last segment of each.
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        log_warn("TCP_NODELAY: %s", std::strerror(errno));
    if (peer.loopback()) set_loopback_congestion_control(fd);
    connection& conn = take_slot(fd);
    ++_stats.connections_accepted;
    conn.peer = peer;
    if (which == http_listener) conn.http = std::make_unique<http_request_parser>();
    arm_recv(conn);
}

shard::connection& shard::take_slot(int fd) {
    uint32_t index = 0;
    if (!_free_connections.empty()) {
        index = _free_connections.back();
        _free_connections.pop_back();
    } else {
        index = static_cast<uint32_t>(_connections.size());
        _connections.push_back(std::make_unique<connection>());
        _connections.back()->index = index;
    }
    connection& conn = *_connections[index];
    SPATE_ASSERT(conn.state == connection::state_kind::free, "a free slot for a new connection");
    conn.state = connection::state_kind::open;
    conn.fd = fd;
    conn.last_activity = _now;
    ++_open_connections;
    return conn;
}

connection_ref shard::connect(const sockaddr_storage& address, socklen_t length,
                              connection_handler& handler,
                              unique_function<void(connection_ref, int)> connected) {
    const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        const int code = errno;
        _tasks.push_back([connected = std::move(connected), code]() mutable {
            connected(connection_ref{}, -code);
        });
        return {};
    }
    const int one = 1;
    // Requests are written whole, as responses are (on_accept).
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connection& conn = take_slot(fd);
    conn.outgoing = true;
    conn.connecting = true;
    conn.handler = &handler;
    conn.remote = address;
    conn.remote_length = length;
    conn.on_connected = std::move(connected);
    // The address lives in the slot until the connect completes, as the kernel reads it then.
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&conn.remote),
                          conn.remote_length);
    io_uring_sqe_set_data64(sqe, encode(op_kind::connect, conn.index, conn.generation));
    ++conn.ops_in_flight;
    ++_ops_in_flight;
    return connection_ref{conn.index, conn.generation};
}

void shard::on_connect(connection& conn, const completion& done) {
    --conn.ops_in_flight;
    --_ops_in_flight;
    conn.connecting = false;
    auto connected = std::move(conn.on_connected);
    conn.on_connected = nullptr;
    const connection_ref ref{conn.index, conn.generation};
    if (done.res < 0 || conn.state != connection::state_kind::open || _stopping) {
        // Failed (or closed meanwhile): the caller hears the error, not a close.
        conn.handler = nullptr;
        if (conn.state == connection::state_kind::open) begin_close(conn);
        if (connected) connected(ref, done.res < 0 ? done.res : -ECANCELED);
        return;
    }
    conn.last_activity = _now;
    arm_recv(conn);
    if (connected) connected(ref, 0);
    // Requests queued while connecting go out now.
    if (!conn.responses.empty() && !conn.send_in_flight) start_output(conn);
}

void shard::send(connection_ref ref, response bytes) {
    connection* found = lookup(ref);
    if (found == nullptr) return;
    connection& conn = *found;
    SPATE_ASSERT(conn.outgoing, "send only on an outgoing connection");
    auto& slot = conn.responses.emplace_back();
    slot.state = connection::slot_state::ready;
    slot.body = std::move(bytes);
    if (!conn.connecting && !conn.send_in_flight) start_output(conn);
}

void shard::refuse_connection(int fd, const char* reason) {
    // Closed at once: a refused peer holds no slot, no buffer and no ring operation.
    ::close(fd);
    ++_connections_refused;
    ++_refusals_unlogged;
    if (_now - _refusal_logged_at < refusal_log_interval) return;
    log_warn("refused %llu connection(s): %s reached (%llu refused on this shard in all)",
             static_cast<unsigned long long>(_refusals_unlogged), reason,
             static_cast<unsigned long long>(_connections_refused));
    _refusals_unlogged = 0;
    _refusal_logged_at = _now;
}

bool shard::may_read(const connection& conn) const {
    // An outgoing connection's queue holds requests to send, not answers owed: reading its
    // answers never waits for it.
    const bool room = conn.outgoing || conn.responses.size() < _config.in_flight_requests_max;
    return conn.state == connection::state_kind::open && !conn.close_after_send &&
           !conn.close_when_answered && !_stopping && !conn.waiting_for_budget && room &&
           conn.move_to == connection::no_target;
}

void shard::sweep_connections() {
    // Refusals the rate limit kept quiet are reported here, at most a second late.
    if (_refusals_unlogged > 0 && _now - _refusal_logged_at >= refusal_log_interval) {
        log_warn("refused %llu connection(s) at the connection limits (%llu on this shard in all)",
                 static_cast<unsigned long long>(_refusals_unlogged),
                 static_cast<unsigned long long>(_connections_refused));
        _refusals_unlogged = 0;
        _refusal_logged_at = _now;
    }
    for (auto& slot : _connections) {
        connection& conn = *slot;
        if (conn.state != connection::state_kind::open) continue;
        // Waiting for the frame budget is the broker's doing, not the peer's: no timeout runs.
        if (conn.waiting_for_budget) continue;
        const bool mid_frame =
            conn.incoming != nullptr || conn.prefix_have > 0 || conn.http_mid_request;
        if (mid_frame) {
            if (_now < conn.frame_deadline) continue;
            log_warn("closing connection %u: a request was not received whole within %lld ms",
                     conn.index, static_cast<long long>(_config.request_receive_timeout.count()));
            begin_close(conn);
            continue;
        }
        // Without a send in flight, a queued response slot means the handler still works on
        // the request (a long-polling fetch, a group join): the peer is waiting, not idle.
        const bool awaiting_answer = !conn.responses.empty() && !conn.send_in_flight;
        if (awaiting_answer || _now - conn.last_activity < _config.idle_timeout) continue;
        log_info("closing connection %u: idle for %lld ms", conn.index,
                 static_cast<long long>(_config.idle_timeout.count()));
        begin_close(conn);
    }
    if (_stopping) return;
    const auto shortest = std::min(_config.idle_timeout, _config.request_receive_timeout);
    const auto interval =
        std::clamp(shortest / sweeps_per_timeout, std::chrono::milliseconds(1), sweep_interval_max);
    add_timer(interval, [this] { sweep_connections(); });
}

void shard::close_connection(connection_ref ref) {
    if (connection* conn = lookup(ref)) begin_close(*conn);
}

void shard::begin_close(connection& conn) {
    if (conn.state != connection::state_kind::open) return;
    conn.state = connection::state_kind::closing;
    // Its reservation goes back, and a waiting place is given up (the stale queue entry is
    // dropped by the next grant): either may let the next waiter of that pool in.
    drop_frame_budget(conn);
    // Wakes every operation still in flight: the receive ends, a blocked send fails.
    ::shutdown(conn.fd, SHUT_RDWR);
    connection_handler* handler = conn.outgoing ? conn.handler : _handler;
    if (handler != nullptr) handler->on_close(connection_ref{conn.index, conn.generation});
    // The slot is released on a later turn (or by the last completion), never inside the
    // caller's stack, which may still hold the connection.
    const connection_ref ref{conn.index, conn.generation};
    _tasks.push_back([this, ref] {
        connection& closing = *_connections[ref.index];
        if (closing.generation == ref.generation) finalize_if_done(closing);
    });
}

void shard::finalize_if_done(connection& conn) {
    if (conn.state != connection::state_kind::closing || conn.ops_in_flight != 0) return;
    ::close(conn.fd);
    conn.fd = -1;
    if (conn.pipe) {
        // Bytes may be left in the pipe from a piece cut short: never reuse it.
        ::close(conn.pipe->read_fd);
        ::close(conn.pipe->write_fd);
        conn.pipe.reset();
    }
    if (!conn.outgoing) _limits->release(conn.peer);
    free_slot(conn);
}

void shard::free_slot(connection& conn) {
    // The responses' buffers and file references are released only now that no send or
    // splice can touch them.
    conn.responses.clear();
    conn.reset_output_cursor();
    conn.held_input.clear();
    // With the slot, not at begin_close: a direct receive in flight writes into the frame
    // until it completes.
    conn.incoming.reset();
    conn.resume_posted = false;
    conn.receive_mark = 1;
    conn.receive_mark_queued = false;
    conn.output_queued = false;
    conn.prefix_have = 0;
    conn.incoming_size = 0;
    conn.next_sequence = 0;
    conn.send_in_flight = false;
    conn.close_after_send = false;
    conn.recv_cancelled = false;
    conn.recv_multishot = false;
    conn.recv_direct = false;
    conn.big_frames = false;
    conn.state = connection::state_kind::free;
    ++conn.generation;
    if (conn.generation == 0) conn.generation = 1;
    conn.frame_deadline = {};
    conn.last_activity = {};
    conn.peer = {};
    conn.paced_loopback = -1;
    conn.outgoing = false;
    conn.connecting = false;
    conn.handler = nullptr;
    conn.on_connected = nullptr;
    conn.http.reset();
    conn.http_mid_request = false;
    conn.close_when_answered = false;
    conn.move_to = connection::no_target;
    conn.move_posted = false;
    conn.voted_owner = connection::no_target;
    conn.owner_votes = 0;
    conn.moved_at = {};
    --_open_connections;
    _free_connections.push_back(conn.index);
}

}  // namespace spate::net
