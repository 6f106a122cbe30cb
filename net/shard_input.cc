// The shard's receive path: arming and pausing receives, reading bytes into request frames
// (the size prefix and the frame itself), the frame budget shared by the shard's
// connections (reserving, releasing and granting waiting frames) and handing complete
// frames to the broker. Part of class shard (net/shard.h); see net/shard.cc for the loop.
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

namespace {

uint32_t read_be32(const uint8_t* bytes) {
    return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
           uint32_t{bytes[3]};
}

}  // namespace

// ---- receiving and framing ------------------------------------------------------------

void shard::arm_recv(connection& conn) {
    SPATE_ASSERT(!conn.recv_armed, "one receive per connection");
    io_uring_sqe* sqe = next_sqe();
    conn.recv_direct = wants_direct_receive(conn);
    // MSG_WAITALL: one completion for all the bytes asked, however many segments bring them.
    // Not where a receive mark may be set (outgoing connections): a waiting-for-all receive
    // issued after the mark takes bytes without completing, so the mark could no longer be
    // lowered from them (see "receive marks" below) and the rest of the frame, fewer bytes
    // than the mark, would never wake the socket. There each receive completes with what it
    // took, as the buffer receives do.
    const int wait_all = conn.outgoing && _receive_marks ? 0 : MSG_WAITALL;
    if (conn.recv_direct && !conn.incoming) {
        io_uring_prep_recv(sqe, conn.fd, conn.direct_prefix, 4 - conn.prefix_have, wait_all);
        conn.recv_multishot = false;
    } else if (conn.recv_direct) {
        // The frame's next bytes, written past the buffer's size into its capacity and
        // taken in by on_direct_recv. Never more than the frame: what follows stays in the
        // socket for the next receive. The buffer grows as parse() grows it (doubling, see
        // start_frame), so a size prefix alone still costs no more than it did.
        frame_bytes& bytes = conn.incoming->bytes;
        const size_t missing = conn.incoming_size - bytes.size();
        if (bytes.capacity() - bytes.size() < direct_receive_min)
            bytes.reserve(
                std::min<size_t>(std::max(bytes.capacity() * 2, bytes.size() + direct_receive_min),
                                 conn.incoming_size));
        const size_t room = std::min(missing, bytes.capacity() - bytes.size());
        io_uring_prep_recv(sqe, conn.fd, bytes.data() + bytes.size(), room, wait_all);
        conn.recv_multishot = false;
    } else {
        // Multishot: one submission keeps receiving into buffers picked from the shard's
        // ring. While a frame waits for the budget, one buffer per submission instead: a
        // connection that must then wait too has been handed at most that buffer, not a
        // batch of them.
        conn.recv_multishot = !frames_waiting();
        if (conn.recv_multishot)
            io_uring_prep_recv_multishot(sqe, conn.fd, nullptr, 0, 0);
        else
            io_uring_prep_recv(sqe, conn.fd, nullptr, _config.recv_buffer_bytes, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = buffer_group;
    }
    io_uring_sqe_set_data64(sqe, encode(op_kind::recv, conn.index, conn.generation));
    conn.recv_armed = true;
    conn.recv_cancelled = false;
    ++conn.ops_in_flight;
    ++_ops_in_flight;
}

void shard::pause_recv(connection& conn) {
    if (!conn.recv_armed || conn.recv_cancelled) return;
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_cancel64(sqe, encode(op_kind::recv, conn.index, conn.generation), 0);
    io_uring_sqe_set_data64(sqe, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    conn.recv_cancelled = true;
}

bool shard::wants_direct_receive(const connection& conn) const {
    if (conn.http || !conn.held_input.empty() || conn.waiting_for_budget) return false;
    if (conn.incoming)
        return conn.incoming_size - conn.incoming->bytes.size() >= direct_receive_min;
    // Between frames: the next size prefix alone, after a big frame (the next is likely big
    // too: a producer's batches, a leader's fetched data).
    return conn.big_frames && conn.prefix_have < 4;
}

void shard::on_direct_recv(connection& conn, int received) {
    if (!conn.incoming) {  // armed between frames (arm_recv): the size prefix
        // The size prefix goes through parse(), which reserves the frame (or makes the
        // connection wait for the budget) as for any other bytes.
        parse(conn, conn.direct_prefix, static_cast<size_t>(received));
        note_received(conn);  // the frame's mark, if it has one
        return;
    }
    frame_bytes& bytes = conn.incoming->bytes;
    SPATE_ASSERT(bytes.size() + static_cast<size_t>(received) <= conn.incoming_size &&
                     bytes.size() + static_cast<size_t>(received) <= bytes.capacity(),
                 "a direct receive fills the frame's room only");
    // uninitialized_allocator: growing keeps the bytes the receive wrote there.
    bytes.resize(bytes.size() + static_cast<size_t>(received));
    _stats.direct_receive_bytes += static_cast<uint64_t>(received);
    conn.last_activity = _now;
    note_received(conn);
    if (bytes.size() == conn.incoming_size) deliver(conn);
}

void shard::on_recv(connection& conn, const completion& done) {
    const bool more = (done.flags & IORING_CQE_F_MORE) != 0;
    const bool direct = conn.recv_direct;
    if (!more) {
        conn.recv_armed = false;
        conn.recv_direct = false;
        --conn.ops_in_flight;
        --_ops_in_flight;
    }
    if (direct && done.res > 0) {
        SPATE_ASSERT(!more, "a direct receive completes once");
        if (conn.state == connection::state_kind::open) on_direct_recv(conn, done.res);
    } else if (done.res > 0) {
        SPATE_ASSERT((done.flags & IORING_CQE_F_BUFFER) != 0, "received bytes come in a buffer");
        const auto buffer_id = static_cast<uint16_t>(done.flags >> IORING_CQE_BUFFER_SHIFT);
        uint8_t* buffer = _buffer_memory + size_t{buffer_id} * _config.recv_buffer_bytes;
        conn.last_activity = _now;
        if (conn.state == connection::state_kind::open) {
            if (conn.held_input.empty())
                parse(conn, buffer, static_cast<size_t>(done.res));
            else
                conn.held_input.insert(conn.held_input.end(), buffer, buffer + done.res);
            note_received(conn);
            // A big frame under way: the multishot receive ends (its completions still
            // landing are parsed as usual) and the next one goes straight into the frame.
            if (more && conn.recv_multishot && wants_direct_receive(conn)) pause_recv(conn);
        }
        // The bytes were copied into frames: the buffer goes straight back to the kernel.
        io_uring_buf_ring_add(_buffer_ring, buffer, _config.recv_buffer_bytes, buffer_id,
                              io_uring_buf_ring_mask(_config.recv_buffer_count), 0);
        io_uring_buf_ring_advance(_buffer_ring, 1);
    } else if (done.res == 0) {
        // End of stream: the peer closed its side.
        begin_close(conn);
        return;
    } else {
        const int code = -done.res;
        if (code == ENOBUFS) {
            // Every buffer was in use: this turn returns them; re-arm below.
        } else if (code == ECANCELED) {
            // Our pause, or the close below already happened.
        } else {
            if (code != ECONNRESET && code != EPIPE && code != ETIMEDOUT)
                log_warn("connection %u: receive failed: %s", conn.index, std::strerror(code));
            begin_close(conn);
            return;
        }
    }
    // Parsing may already have re-armed it: a handler answering at once frees in-flight room
    // (pop_finished), and with one-buffer receives every completion is a final one.
    if (!more && !conn.recv_armed && conn.held_input.empty() && may_read(conn)) arm_recv(conn);
}

void shard::parse(connection& conn, const uint8_t* data, size_t size) {
    if (conn.http) {
        parse_http(conn, data, size);
        return;
    }
    // Every byte is copied once, into the frame that owns it.
    while (size > 0 && conn.state == connection::state_kind::open) {
        if (conn.responses.size() >= _config.in_flight_requests_max || conn.waiting_for_budget ||
            conn.move_to != connection::no_target) {
            // At the in-flight limit, waiting for room for the next frame, or moving to another
            // shard: keep the rest (at most the receives completing before the pause took
            // effect) for later, or for the next shard.
            conn.held_input.insert(conn.held_input.end(), data, data + size);
            return;
        }
        if (!conn.incoming) {
            // A frame's receive timeout runs from its first byte, the prefix's included.
            if (conn.prefix_have == 0) conn.frame_deadline = _now + _config.request_receive_timeout;
            const size_t take = std::min<size_t>(4 - conn.prefix_have, size);
            std::memcpy(conn.prefix + conn.prefix_have, data, take);
            conn.prefix_have += static_cast<uint32_t>(take);
            data += take;
            size -= take;
            if (conn.prefix_have < 4) return;
            conn.prefix_have = 0;
            const auto length = static_cast<int32_t>(read_be32(conn.prefix));
            if (length < 0 || static_cast<uint32_t>(length) > _config.request_bytes_max) {
                log_warn("closing connection %u: request size %d outside [0, %u]", conn.index,
                         length, _config.request_bytes_max);
                begin_close(conn);
                return;
            }
            if (!try_reserve_frame(conn, static_cast<uint32_t>(length))) continue;
        } else {
            frame_bytes& bytes = conn.incoming->bytes;
            const size_t take = std::min<size_t>(conn.incoming_size - bytes.size(), size);
            if (bytes.size() + take > bytes.capacity()) {
                // Grow by doubling, but never past the announced size: the memory a frame
                // holds stays within what the budget reserved for it.
                const size_t wanted = std::max(bytes.capacity() * 2, bytes.size() + take);
                bytes.reserve(std::min<size_t>(wanted, conn.incoming_size));
            }
            // Grown without zeroing (uninitialized_allocator), then copied in with memcpy:
            // insert() would copy byte by byte through the allocator.
            const size_t at = bytes.size();
            bytes.resize(at + take);
            std::memcpy(bytes.data() + at, data, take);
            data += take;
            size -= take;
        }
        if (conn.incoming && conn.incoming->bytes.size() == conn.incoming_size) deliver(conn);
    }
}

// ---- receive marks ------------------------------------------------------------------------
//
// The kernel wakes a socket's reader only once SO_RCVLOWAT bytes wait in it (tcp_data_ready),
// so a big answer arriving in 64 KiB segments costs one wake-up of this loop, not one per
// segment, and the sending thread (on loopback it runs the receive path too) skips the
// others. Safe only while the mark never exceeds what the socket will yet hold: the mark is
// the current frame's missing bytes, computed after the turn's completions, when every byte a
// receive has taken from the socket has been parsed (DEFER_TASKRUN: receives run only inside
// this thread's io_uring_enter). A receive that takes bytes later (one issued inline while the
// turn submits) posts a completion, and the next turn lowers the mark from it; the kernel
// re-checks readiness when the mark is set (tcp_set_rcvlowat).

void shard::note_received(connection& conn) {
    // Requests never get a mark (wanted_receive_mark): only outgoing connections are queued.
    if (!_receive_marks || !conn.outgoing || conn.receive_mark_queued) return;
    conn.receive_mark_queued = true;
    _marks_to_update.push_back(connection_ref{conn.index, conn.generation});
}

uint32_t shard::wanted_receive_mark(const connection& conn) const {
    // Only on connections this shard opened: answers (a follower's fetches) come big and
    // back to back. On requests it measured the other way: a producer's 256 KiB frames, read
    // whole instead of per segment, cost the broker more cpu per GiB and ~5 % throughput.
    // (Outgoing connections never move to another shard: none leaves with a mark.)
    SPATE_ASSERT(conn.outgoing, "only outgoing connections are queued for a mark");
    if (!conn.incoming || !conn.held_input.empty()) return 1;
    SPATE_ASSERT(conn.incoming->bytes.size() <= conn.incoming_size, "a frame holds its size");
    const size_t missing = conn.incoming_size - conn.incoming->bytes.size();
    if (missing < receive_mark_min) return 1;
    // A mark the socket's receive buffer cannot hold makes the kernel grow the buffer and
    // clamp the TCP window to the mark for good (tcp_set_rcvlowat), holding the sender back
    // later; a quarter of the buffer fits it whatever the buffer's overhead ratio.
    int buffer = 0;
    socklen_t length = sizeof buffer;
    if (::getsockopt(conn.fd, SOL_SOCKET, SO_RCVBUF, &buffer, &length) != 0 || buffer <= 0)
        return 1;
    const size_t mark =
        std::min({missing, size_t{receive_mark_max}, static_cast<size_t>(buffer) / 4});
    return mark < receive_mark_min ? 1 : static_cast<uint32_t>(mark);
}

void shard::set_receive_mark(connection& conn, uint32_t mark) {
    if (conn.receive_mark == mark || conn.fd < 0) return;
    const int value = static_cast<int>(mark);
    if (::setsockopt(conn.fd, SOL_SOCKET, SO_RCVLOWAT, &value, sizeof value) != 0) {
        // The mark stays as it was; a refused 1 leaves nothing to undo (the kernel's default
        // is 1, and a refused bigger one was never set).
        if (mark != 1) {
            log_warn("SO_RCVLOWAT refused (%s): receives wake per segment", std::strerror(errno));
            _receive_marks = false;
        }
        return;
    }
    conn.receive_mark = mark;
    if (mark > 1) ++_stats.receive_marks_set;
}

void shard::update_receive_marks() {
    for (const connection_ref ref : _marks_to_update) {
        connection* found = lookup(ref);
        if (found == nullptr) continue;
        found->receive_mark_queued = false;
        if (found->state == connection::state_kind::open)
            set_receive_mark(*found, _receive_marks ? wanted_receive_mark(*found) : 1);
    }
    _marks_to_update.clear();
}

shard::frame_pool& shard::pool_for(uint32_t frame_size) {
    return frame_size <= _frame_pools[0].max ? _frame_pools[0] : _frame_pools[1];
}

namespace {

// A frame fits its pool if the pool has room, or holds nothing: a frame bigger than the
// whole pool then goes alone, bounded by request_bytes_max.
bool fits(uint64_t held, uint64_t max, uint32_t size) { return held + size <= max || held == 0; }

}  // namespace

bool shard::try_reserve_frame(connection& conn, uint32_t size) {
    frame_pool& pool = pool_for(size);
    // Stale entries (connections closed while waiting) leave the front first, so an empty-
    // looking queue is really empty.
    grant_waiting_frames(pool);
    if (pool.waiters.empty() && fits(pool.held, pool.max, size)) {
        start_frame(conn, size);
        return true;
    }
    // Behind the others of its pool, oldest first, so a big frame is not starved by smaller
    // ones. Reading stops; parse() keeps what the receives already in flight bring.
    const bool first_waiter = !frames_waiting();
    conn.waiting_for_budget = true;
    conn.waiting_size = size;
    pool.waiters.push_back(connection_ref{conn.index, conn.generation});
    pause_recv(conn);
    if (first_waiter) {
        // Room is short from now on: the multishot receives still armed end, and come back
        // (from on_recv) one buffer at a time, until no frame waits any more.
        for (auto& slot : _connections)
            if (slot->state == connection::state_kind::open && slot->recv_multishot)
                pause_recv(*slot);
    }
    return false;
}

void shard::start_frame(connection& conn, uint32_t size) {
    SPATE_ASSERT(conn.reserved_bytes == 0, "one reserved frame per connection");
    SPATE_ASSERT(!conn.incoming, "a new frame after the previous one was delivered");
    pool_for(size).held += size;
    conn.reserved_bytes = size;
    conn.incoming = std::make_unique<frame>();
    conn.incoming_size = size;
    // Small frames get their buffer at once; big ones grow as bytes arrive (see parse), so
    // four bytes of prefix never cost request_bytes_max of memory.
    conn.incoming->bytes.reserve(std::min<size_t>(size, frame_reserve_max));
    // The receive timeout restarts here: time spent waiting for the budget was ours.
    conn.frame_deadline = _now + _config.request_receive_timeout;
}

void shard::release_frame_budget(connection& conn) {
    frame_pool& pool = pool_for(conn.reserved_bytes);
    SPATE_ASSERT(pool.held >= conn.reserved_bytes, "release what was reserved");
    pool.held -= conn.reserved_bytes;
    conn.reserved_bytes = 0;
    grant_waiting_frames(pool);
}

void shard::drop_frame_budget(connection& conn) {
    if (conn.waiting_for_budget) {
        conn.waiting_for_budget = false;
        grant_waiting_frames(pool_for(conn.waiting_size));
        conn.waiting_size = 0;
    }
    release_frame_budget(conn);
}

void shard::grant_waiting_frames(frame_pool& pool) {
    while (!pool.waiters.empty()) {
        const connection_ref ref = pool.waiters.front();
        connection* found = lookup(ref);
        if (found == nullptr || !found->waiting_for_budget) {
            pool.waiters.pop_front();
            continue;
        }
        connection& conn = *found;
        const uint32_t size = conn.waiting_size;
        if (!fits(pool.held, pool.max, size)) return;
        pool.waiters.pop_front();
        conn.waiting_for_budget = false;
        conn.waiting_size = 0;
        start_frame(conn, size);
        // The held bytes are parsed, and reading re-armed, on a later turn: this may run
        // inside another connection's parse, and must not recurse into this one's.
        if (!conn.resume_posted) {
            conn.resume_posted = true;
            _tasks.push_back([this, ref] { resume_input(ref); });
        }
    }
}

void shard::deliver(connection& conn) {
    conn.big_frames = conn.incoming_size >= direct_receive_min;
    release_frame_budget(conn);
    if (conn.outgoing) {  // an answer: no response slot, nothing to send back
        frame_ptr answer = std::move(conn.incoming);
        conn.incoming_size = 0;
        conn.handler->on_frame(connection_ref{conn.index, conn.generation}, 0, std::move(answer));
        return;
    }
    const uint64_t sequence = conn.next_sequence++;
    conn.responses.emplace_back();
    if (conn.responses.size() >= _config.in_flight_requests_max) pause_recv(conn);
    frame_ptr request = std::move(conn.incoming);
    conn.incoming_size = 0;
    _handler->on_frame(connection_ref{conn.index, conn.generation}, sequence, std::move(request));
}

}  // namespace spate::net
