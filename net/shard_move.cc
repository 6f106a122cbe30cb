// Moving a connection to another shard: a Kafka connection whose requests all work on
// partitions of one other shard goes there, so its requests stop crossing between threads
// (two wake-ups each: the request's work there, its answer back). Part of class shard
// (net/shard.h).
//
// The hand-over: reading stops (the armed receive is cancelled, and whatever it still
// brings is kept, not parsed); the requests already delivered are answered and sent here;
// once no operation is in flight, the socket and every byte received but not delivered
// (a partial frame included) go to the target shard in a cross-shard task, and the slot
// here is freed without closing anything. The target parses those bytes first, then reads.
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "net/log.h"
#include "net/shard.h"
#include "net/shard_internal.h"

namespace spate::net {

// The socket on its way between shards. Closed if the task carrying it is dropped unrun (a
// runtime torn down meanwhile), so no descriptor leaks.
struct shard::moving_socket {
    int fd = -1;
    peer_address peer;
    std::vector<uint8_t> input;
    std::chrono::steady_clock::time_point moved_at;
    uint64_t routing_epoch = 0;  // the old shard's (set_routing_epoch)

    moving_socket() = default;
    moving_socket(moving_socket&& other) noexcept
        : fd(std::exchange(other.fd, -1)),
          peer(other.peer),
          input(std::move(other.input)),
          moved_at(other.moved_at),
          routing_epoch(other.routing_epoch) {}
    moving_socket& operator=(moving_socket&&) = delete;
    ~moving_socket() {
        if (fd >= 0) ::close(fd);
    }
};

void shard::note_owner(connection_ref ref, shard_id owner) {
    if (_config.connection_move_votes == 0 || owner >= _shard_count) return;
    connection* found = lookup(ref);
    if (found == nullptr) return;
    connection& conn = *found;
    if (owner == _id) {
        conn.owner_votes = 0;
        return;
    }
    if (conn.voted_owner != owner) {
        conn.voted_owner = owner;
        conn.owner_votes = 0;
    }
    if (++conn.owner_votes < _config.connection_move_votes) return;
    conn.owner_votes = 0;
    if (conn.moved_at != std::chrono::steady_clock::time_point{} &&
        _now - conn.moved_at < _config.connection_move_interval)
        return;
    move_connection(ref, owner);
}

void shard::move_connection(connection_ref ref, shard_id target) {
    connection* found = lookup(ref);
    if (found == nullptr || target >= _shard_count || target == _id || _stopping) return;
    connection& conn = *found;
    if (conn.outgoing || conn.http || conn.move_to != connection::no_target) return;
    conn.move_to = target;
    pause_recv(conn);
    maybe_move(conn);
}

bool shard::ready_to_move(const connection& conn) const {
    return conn.state == connection::state_kind::open && conn.move_to != connection::no_target &&
           conn.responses.empty() && !conn.send_in_flight && !conn.recv_armed &&
           conn.ops_in_flight == 0;
}

void shard::maybe_move(connection& conn) {
    // The hand-over runs as a task, never inside a completion or a handler's stack; it
    // checks again there, and every later completion or answer of the connection comes
    // back here until it succeeds.
    if (conn.move_to == connection::no_target || conn.move_posted ||
        conn.state != connection::state_kind::open)
        return;
    conn.move_posted = true;
    const connection_ref ref{conn.index, conn.generation};
    _tasks.push_back([this, ref] { finish_move(ref); });
}

std::vector<uint8_t> shard::take_undelivered_input(connection& conn) {
    // The stream from the first byte not yet delivered: the size prefix read so far (or the
    // whole prefix of a frame reserved or waiting for the budget), the frame's bytes so far,
    // then what was held back.
    std::vector<uint8_t> bytes;
    const bool prefix_whole = conn.incoming != nullptr || conn.waiting_for_budget;
    const uint32_t prefix_bytes = prefix_whole ? 4 : conn.prefix_have;
    const size_t frame_received = conn.incoming ? conn.incoming->bytes.size() : 0;
    bytes.reserve(prefix_bytes + frame_received + conn.held_input.size());
    bytes.insert(bytes.end(), conn.prefix, conn.prefix + prefix_bytes);
    if (conn.incoming)
        bytes.insert(bytes.end(), conn.incoming->bytes.begin(), conn.incoming->bytes.end());
    bytes.insert(bytes.end(), conn.held_input.begin(), conn.held_input.end());
    conn.held_input.clear();
    conn.incoming.reset();
    conn.incoming_size = 0;
    conn.prefix_have = 0;
    drop_frame_budget(conn);
    return bytes;
}

void shard::finish_move(connection_ref ref) {
    connection* found = lookup(ref);
    if (found == nullptr) return;
    connection& conn = *found;
    conn.move_posted = false;
    if (_stopping || !ready_to_move(conn)) return;
    const shard_id target = conn.move_to;
    SPATE_ASSERT(conn.receive_mark == 1, "a moving socket carries no receive mark");
    moving_socket socket;
    socket.fd = conn.fd;
    socket.peer = conn.peer;
    socket.input = take_undelivered_input(conn);
    socket.moved_at = _now;
    socket.routing_epoch = _routing_epoch;
    if (conn.pipe) {
        release_pipe(*conn.pipe);  // empty: every response was sent whole
        conn.pipe.reset();
    }
    conn.fd = -1;
    conn.state = connection::state_kind::closing;
    free_slot(conn);
    ++_stats.connections_moved_out;
    shard* destination = _peers[target];
    submit_to(target, [destination, socket = std::move(socket)]() mutable {
        destination->adopt(std::move(socket));
    });
}

void shard::adopt(moving_socket socket) {
    if (_stopping) {
        _limits->release(socket.peer);  // closed by the socket's destructor
        return;
    }
    connection& conn = take_slot(std::exchange(socket.fd, -1));
    conn.peer = socket.peer;
    conn.moved_at = socket.moved_at;
    ++_stats.connections_moved_in;
    conn.held_input = std::move(socket.input);
    const connection_ref ref{conn.index, conn.generation};
    if (socket.routing_epoch > _routing_epoch) {
        // Its last answers came from newer routing than this shard has yet: it waits.
        _waiting_moves.push_back({ref, socket.routing_epoch});
        return;
    }
    // Parses what came with it (delivering its whole frames) and arms the receive.
    resume_input(ref);
}

void shard::set_routing_epoch(uint64_t epoch) {
    if (epoch <= _routing_epoch) return;
    _routing_epoch = epoch;
    auto reached =
        std::stable_partition(_waiting_moves.begin(), _waiting_moves.end(),
                              [epoch](const waiting_move& w) { return w.epoch > epoch; });
    for (auto it = reached; it != _waiting_moves.end(); ++it) {
        const connection_ref ref = it->conn;
        _tasks.push_back([this, ref] { resume_input(ref); });
    }
    _waiting_moves.erase(reached, _waiting_moves.end());
}

}  // namespace spate::net
