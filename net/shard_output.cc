// The shard's send path: ordered responses per connection, gathering ready responses into
// one sendmsg, resuming input once output drains, and file pieces sent with linked splice
// chains through a small pool of reusable pipes. Part of class shard (net/shard.h); see
// net/shard.cc for the loop.
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "net/log.h"
#include "net/shard.h"
#include "net/shard_internal.h"

namespace spate::net {

namespace {

int64_t page_size() {
    static const int64_t bytes = [] {
        const long reported = ::sysconf(_SC_PAGESIZE);
        return reported > 0 ? static_cast<int64_t>(reported) : int64_t{4096};
    }();
    return bytes;
}

}  // namespace

// ---- output -----------------------------------------------------------------------------

void shard::respond(connection_ref ref, uint64_t sequence, response r) {
    connection* found = lookup(ref);
    if (found == nullptr) return;
    connection& conn = *found;
    const uint64_t oldest = conn.next_sequence - conn.responses.size();
    SPATE_ASSERT(sequence >= oldest, "respond to a request still awaiting its response");
    SPATE_ASSERT(sequence < conn.next_sequence, "respond to a received request");
    auto& slot = conn.responses[static_cast<size_t>(sequence - oldest)];
    SPATE_ASSERT(slot.state == connection::slot_state::waiting, "one response per request");
    size_t previous = 0;
    for (const file_piece& piece : r.pieces) {
        SPATE_ASSERT(piece.position >= previous, "file pieces at ascending positions");
        SPATE_ASSERT(piece.position <= r.bytes.size(), "file piece inside the response");
        SPATE_ASSERT(piece.length >= 0, "file piece length is not negative");
        previous = piece.position;
    }
    slot.state = connection::slot_state::ready;
    slot.body = std::move(r);
    // An answer going out is activity: the idle sweep, which may run later in this same
    // turn (before the send is even submitted), must not cut it off as idle.
    conn.last_activity = _now;
    queue_output(conn);
}

void shard::skip_response(connection_ref ref, uint64_t sequence) {
    connection* found = lookup(ref);
    if (found == nullptr) return;
    connection& conn = *found;
    const uint64_t oldest = conn.next_sequence - conn.responses.size();
    SPATE_ASSERT(sequence >= oldest, "skip a request still awaiting its response");
    SPATE_ASSERT(sequence < conn.next_sequence, "skip a received request");
    auto& slot = conn.responses[static_cast<size_t>(sequence - oldest)];
    SPATE_ASSERT(slot.state == connection::slot_state::waiting, "one response per request");
    slot.state = connection::slot_state::skipped;
    queue_output(conn);
}

void shard::queue_output(connection& conn) {
    if (conn.output_queued || conn.send_in_flight) return;
    conn.output_queued = true;
    _output_queued.push_back(connection_ref{conn.index, conn.generation});
}

void shard::flush_output() {
    // By index: start_output can close or move a connection, which may queue others at the
    // end of the list; they are walked too.
    for (size_t i = 0; i < _output_queued.size(); ++i) {
        connection* found = lookup(_output_queued[i]);
        if (found == nullptr) continue;
        found->output_queued = false;
        if (!found->send_in_flight) start_output(*found);
    }
    _output_queued.clear();
}

void shard::pop_finished(connection& conn) {
    while (!conn.responses.empty()) {
        auto& front = conn.responses.front();
        if (front.state == connection::slot_state::waiting) break;
        if (front.state == connection::slot_state::ready) {
            const bool bytes_done = conn.byte_cursor == front.body.bytes.size();
            const bool pieces_done = conn.piece_cursor == front.body.pieces.size();
            if (!bytes_done || !pieces_done) break;
        }
        conn.responses.pop_front();
        conn.reset_output_cursor();
    }
    if (conn.responses.empty() && conn.pipe) {
        release_pipe(*conn.pipe);
        conn.pipe.reset();
    }
    maybe_move(conn);
    if (!may_read(conn)) return;
    if (!conn.held_input.empty()) {
        // Parsing here could call the handler, which may respond and come back here: the
        // held bytes are parsed on a later turn instead, at constant stack depth.
        if (conn.resume_posted) return;
        conn.resume_posted = true;
        const connection_ref ref{conn.index, conn.generation};
        _tasks.push_back([this, ref] { resume_input(ref); });
        return;
    }
    // Room again under the in-flight limit: read again if the pause had stopped reading.
    if (!conn.recv_armed) arm_recv(conn);
}

void shard::resume_input(connection_ref ref) {
    connection* found = lookup(ref);
    if (found == nullptr) return;
    connection& conn = *found;
    conn.resume_posted = false;
    std::vector<uint8_t> held;
    held.swap(conn.held_input);
    parse(conn, held.data(), held.size());
    if (conn.held_input.empty() && !conn.recv_armed && may_read(conn)) arm_recv(conn);
}

void shard::start_output(connection& conn) {
    SPATE_ASSERT(!conn.send_in_flight, "one send in flight per connection");
    for (;;) {
        if (conn.state != connection::state_kind::open) return;
        pop_finished(conn);
        if (conn.responses.empty() ||
            conn.responses.front().state != connection::slot_state::ready) {
            if (conn.close_after_send || (conn.close_when_answered && conn.responses.empty()))
                begin_close(conn);
            return;
        }
        const response& front = conn.responses.front().body;
        // Zero-length pieces move nothing: step over them.
        while (conn.piece_cursor < front.pieces.size() &&
               front.pieces[conn.piece_cursor].position == conn.byte_cursor &&
               front.pieces[conn.piece_cursor].length == 0)
            ++conn.piece_cursor;
        const bool at_piece = conn.piece_cursor < front.pieces.size() &&
                              front.pieces[conn.piece_cursor].position == conn.byte_cursor;
        if (at_piece) {
            if (!start_splice(conn)) return;
            if (conn.close_after_send) {
                begin_close(conn);
                return;
            }
            continue;  // the piece went out whole: on with what follows it
        }
        if (gather_bytes(conn)) return;
        // Everything left was zero-length pieces at the end: the response is complete.
    }
}

bool shard::gather_bytes(connection& conn) {
    // From the cursor up to the next piece of the front response; when the front ends in
    // plain bytes, on through the leading bytes of the following ready responses.
    size_t count = 0;
    size_t gathered = 0;
    bool first = true;
    for (auto& pending : conn.responses) {
        if (count == iov_max || gathered == send_bytes_max) break;
        if (pending.state == connection::slot_state::waiting) break;
        if (pending.state == connection::slot_state::skipped) {
            first = false;
            continue;
        }
        const response& body = pending.body;
        const size_t from = first ? conn.byte_cursor : 0;
        const size_t piece_index = first ? conn.piece_cursor : 0;
        const size_t until = piece_index < body.pieces.size() ? body.pieces[piece_index].position
                                                              : body.bytes.size();
        if (until > from) {
            const size_t take = std::min(until - from, send_bytes_max - gathered);
            conn.iov[count].iov_base = const_cast<uint8_t*>(body.bytes.data() + from);
            conn.iov[count].iov_len = take;
            gathered += take;
            ++count;
            if (take < until - from) break;  // the rest goes with the next send
        }
        first = false;
        if (piece_index < body.pieces.size()) break;
    }
    if (count == 0) return false;
    conn.message = {};
    conn.message.msg_iov = conn.iov;
    conn.message.msg_iovlen = count;
    io_uring_sqe* sqe = next_sqe();
    // MSG_NOSIGNAL: a peer gone away is an error code, not a SIGPIPE.
    io_uring_prep_sendmsg(sqe, conn.fd, &conn.message, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, encode(op_kind::send, conn.index, conn.generation));
    conn.send_in_flight = true;
    ++conn.ops_in_flight;
    ++_ops_in_flight;
    ++_stats.response_sends;
    return true;
}

void shard::on_send(connection& conn, const completion& done) {
    conn.send_in_flight = false;
    --conn.ops_in_flight;
    --_ops_in_flight;
    if (done.res > 0) conn.last_activity = _now;
    if (conn.state != connection::state_kind::open) return;
    if (done.res < 0) {
        const int code = -done.res;
        if (code == EINTR || code == EAGAIN) {
            start_output(conn);
            return;
        }
        if (code != ECONNRESET && code != EPIPE && code != ETIMEDOUT)
            log_warn("connection %u: send failed: %s", conn.index, std::strerror(code));
        begin_close(conn);
        return;
    }
    // Advance the cursor over exactly the bytes the kernel took, across responses.
    size_t sent = static_cast<size_t>(done.res);
    while (sent > 0) {
        SPATE_ASSERT(!conn.responses.empty(), "sent bytes belong to a queued response");
        auto& front = conn.responses.front();
        if (front.state == connection::slot_state::skipped) {
            conn.responses.pop_front();
            conn.reset_output_cursor();
            continue;
        }
        SPATE_ASSERT(front.state == connection::slot_state::ready,
                     "sent bytes of a ready response");
        const response& body = front.body;
        const size_t until = conn.piece_cursor < body.pieces.size()
                                 ? body.pieces[conn.piece_cursor].position
                                 : body.bytes.size();
        const size_t take = std::min(sent, until - conn.byte_cursor);
        conn.byte_cursor += take;
        sent -= take;
        if (conn.byte_cursor == body.bytes.size() && conn.piece_cursor == body.pieces.size()) {
            conn.responses.pop_front();
            conn.reset_output_cursor();
        } else {
            SPATE_ASSERT(sent == 0, "a send stops at the first file piece");
        }
    }
    if (conn.close_after_send) {
        begin_close(conn);
        return;
    }
    // Responses this turn's requests make go out with what is left here.
    queue_output(conn);
}

std::optional<shard::pipe_pair> shard::acquire_pipe() {
    if (!_idle_pipes.empty()) {
        pipe_pair pipe = _idle_pipes.back();
        _idle_pipes.pop_back();
        return pipe;
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        log_warn("pipe for a file transfer: %s", std::strerror(errno));
        return std::nullopt;
    }
    // A bigger pipe means fewer round trips per piece; refusal just keeps the default.
    (void)::fcntl(fds[1], F_SETPIPE_SZ, pipe_bytes_wanted);
    return pipe_pair{fds[0], fds[1]};
}

void shard::release_pipe(pipe_pair pipe) {
    if (_idle_pipes.size() < idle_pipes_max) {
        _idle_pipes.push_back(pipe);
        return;
    }
    ::close(pipe.read_fd);
    ::close(pipe.write_fd);
}

int64_t cached_pages(int fd, int64_t offset, int64_t length) {
    // Debian 12's headers do not declare cachestat(2) yet.
    struct {
        uint64_t off, len;
    } range{static_cast<uint64_t>(offset), static_cast<uint64_t>(length)};
    struct {
        uint64_t cache, dirty, writeback, evicted, recently_evicted;
    } stat{};
    constexpr long cachestat_syscall = 451;  // the same number on every architecture
    if (::syscall(cachestat_syscall, fd, &range, &stat, 0) != 0) return -1;
    return static_cast<int64_t>(stat.cache);
}

bool shard::cached(const file_piece& piece, int64_t from, int64_t length) {
    const int64_t page_bytes = page_size();
    const int64_t first = (piece.file_position + from) / page_bytes;
    const int64_t end = (piece.file_position + from + length + page_bytes - 1) / page_bytes;
    const int64_t found = cached_pages(piece.fd, first * page_bytes, (end - first) * page_bytes);
    if (found < 0 && errno == ENOSYS) {
        log_info("cachestat(2) unsupported: file pieces go through io-wq splice chains");
        _inline_splice = false;
    }
    return found >= end - first;
}

shard::inline_result shard::splice_inline(connection& conn, const file_piece& piece) {
    if (!_inline_splice) return inline_result::chain;
    const int flags = ::fcntl(conn.fd, F_GETFL);
    if (flags < 0 || ::fcntl(conn.fd, F_SETFL, flags | O_NONBLOCK) != 0)
        return inline_result::chain;
    // Only this turn's share: the pipe is filled with at most what is left of it.
    const int64_t page_bytes = page_size();
    int64_t budget = inline_splice_bytes_max;
    inline_result outcome = inline_result::chain;
    for (;;) {
        if (conn.piece_read == conn.piece_sent && conn.piece_read < piece.length) {
            if (budget <= 0) {
                outcome = inline_result::wait_writable;
                break;
            }
            // As in the chains: a chunk starting inside a page ends a page earlier, so the
            // page slots of the pipe hold it.
            const int64_t in_page = (piece.file_position + conn.piece_read) % page_bytes;
            const int64_t chunk =
                std::min({piece.length - conn.piece_read, conn.pipe_capacity - in_page, budget});
            // Not all in page cache: reading it could block the loop on the disk.
            if (!cached(piece, conn.piece_read, chunk)) break;
            loff_t at = piece.file_position + conn.piece_read;
            const ssize_t n =
                ::splice(piece.fd, &at, conn.pipe->write_fd, nullptr, static_cast<size_t>(chunk),
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n <= 0) break;  // end of file or an error: the chain meets and reports it
            conn.piece_read += n;
            budget -= n;
        }
        const ssize_t m = ::splice(conn.pipe->read_fd, nullptr, conn.fd, nullptr,
                                   static_cast<size_t>(conn.piece_read - conn.piece_sent),
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (m <= 0) {
            if (m < 0 && errno == EAGAIN) outcome = inline_result::wait_writable;
            break;  // other errors: the chain meets and reports them
        }
        conn.piece_sent += m;
        conn.last_activity = _now;
        _stats.file_bytes_inline += static_cast<uint64_t>(m);
        if (conn.piece_sent == piece.length) {
            outcome = inline_result::sent;
            break;
        }
    }
    (void)::fcntl(conn.fd, F_SETFL, flags);
    SPATE_ASSERT(conn.piece_sent <= conn.piece_read, "bytes leave the pipe after entering it");
    return outcome;
}

void shard::arm_send_ready(connection& conn) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_poll_add(sqe, conn.fd, POLLOUT);
    io_uring_sqe_set_data64(sqe, encode(op_kind::send_ready, conn.index, conn.generation));
    conn.send_in_flight = true;
    ++conn.ops_in_flight;
    ++_ops_in_flight;
}

void shard::on_send_ready(connection& conn, const completion& done) {
    conn.send_in_flight = false;
    --conn.ops_in_flight;
    --_ops_in_flight;
    if (conn.state != connection::state_kind::open) return;
    if (done.res < 0 && done.res != -EINTR) {
        log_warn("connection %u: waiting to send: %s", conn.index, std::strerror(-done.res));
        begin_close(conn);
        return;
    }
    // Writable, or an error or hang-up that the next splice meets and reports.
    start_output(conn);
}

bool shard::start_splice(connection& conn) {
    const file_piece& piece = conn.responses.front().body.pieces[conn.piece_cursor];
    if (!conn.pipe) {
        conn.pipe = acquire_pipe();
        if (!conn.pipe) {
            // The response size is already promised: a response without the piece would
            // corrupt the stream, so the connection goes.
            begin_close(conn);
            return false;
        }
        const int capacity = ::fcntl(conn.pipe->write_fd, F_GETPIPE_SZ);
        conn.pipe_capacity = capacity > 0 ? capacity : 65536;
    }
    switch (splice_inline(conn, piece)) {
        case inline_result::sent:
            conn.finish_piece();
            return true;
        case inline_result::wait_writable:
            arm_send_ready(conn);
            return false;
        case inline_result::chain:
            break;
    }
    // Plan the chain. The pipe holds exactly the bytes read but not yet sent (a chain cut
    // short leaves some): they go out first, so every file-to-pipe step finds the pipe empty
    // and can never block on a full pipe.
    SPATE_ASSERT(conn.chain_steps == 0, "one splice chain per connection");
    int64_t read = conn.piece_read;
    uint32_t steps = 0;
    if (conn.piece_read > conn.piece_sent) {
        conn.chain[steps++] = {false, static_cast<uint32_t>(conn.piece_read - conn.piece_sent)};
    }
    const int64_t page_bytes = page_size();
    while (steps + 2 <= chain_steps_max && read < piece.length) {
        // The page cache fills one pipe slot per page touched, and the pipe has capacity /
        // page slots: a chunk that starts inside a page must end one page boundary earlier,
        // or the file-to-pipe splice comes back short and cancels the rest of the chain.
        const int64_t in_page = (piece.file_position + read) % page_bytes;
        const int64_t chunk = std::min<int64_t>(piece.length - read, conn.pipe_capacity - in_page);
        SPATE_ASSERT(chunk > 0, "a chunk moves bytes");
        conn.chain[steps++] = {true, static_cast<uint32_t>(chunk)};
        conn.chain[steps++] = {false, static_cast<uint32_t>(chunk)};
        read += chunk;
    }
    SPATE_ASSERT(steps > 0, "a splice chain for a piece with bytes left");
    conn.chain_steps = steps;

    // Linked: each step starts only after the previous one moved all it was asked to; a
    // shorter result fails the link and the kernel cancels the rest. Every step but the last
    // skips its completion on success, and a failed skip-success step suppresses the
    // cancelled steps' completions too, so exactly one completion comes back per chain: the
    // last step's, or the first step that fell short.
    reserve_sqes(steps);
    int64_t file_offset = piece.file_position + conn.piece_read;
    for (uint32_t step = 0; step < steps; ++step) {
        const connection::splice_step& planned = conn.chain[step];
        io_uring_sqe* sqe = next_sqe();
        if (planned.into_pipe) {
            io_uring_prep_splice(sqe, piece.fd, file_offset, conn.pipe->write_fd, -1,
                                 planned.length, SPLICE_F_MOVE);
            file_offset += planned.length;
        } else {
            io_uring_prep_splice(sqe, conn.pipe->read_fd, -1, conn.fd, -1, planned.length,
                                 SPLICE_F_MOVE);
        }
        io_uring_sqe_set_data64(sqe,
                                encode(op_kind::splice_chain, conn.index, conn.generation, step));
        if (step + 1 < steps) sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
    }
    conn.send_in_flight = true;
    ++conn.ops_in_flight;
    ++_ops_in_flight;
    return false;
}

void shard::on_splice_chain(connection& conn, const completion& done, uint32_t step) {
    SPATE_ASSERT(step < conn.chain_steps, "the completion names a step of the chain");
    conn.send_in_flight = false;
    --conn.ops_in_flight;
    --_ops_in_flight;
    // Steps before `step` posted nothing: they moved all they were asked to.
    const int64_t sent_before = conn.piece_sent;
    for (uint32_t earlier = 0; earlier < step; ++earlier) {
        const connection::splice_step& moved = conn.chain[earlier];
        (moved.into_pipe ? conn.piece_read : conn.piece_sent) += moved.length;
    }
    const connection::splice_step reported = conn.chain[step];
    const bool last = step + 1 == conn.chain_steps;
    // Skip-success (kernel 5.17+, which the provided-buffer ring's 5.19 already implies)
    // means an earlier step reports only when it fell short.
    SPATE_ASSERT(last || done.res != static_cast<int32_t>(reported.length),
                 "only the last step of a chain reports success");
    conn.chain_steps = 0;
    if (done.res > 0 || step > 0) conn.last_activity = _now;
    if (done.res > 0) {
        SPATE_ASSERT(static_cast<uint32_t>(done.res) <= reported.length,
                     "a splice moves at most what it was asked");
        (reported.into_pipe ? conn.piece_read : conn.piece_sent) += done.res;
    }
    SPATE_ASSERT(conn.piece_sent <= conn.piece_read, "bytes leave the pipe after entering it");
    _stats.file_bytes_chained += static_cast<uint64_t>(conn.piece_sent - sent_before);
    if (conn.state != connection::state_kind::open) return;
    const bool whole = last && done.res == static_cast<int32_t>(reported.length);
    // A short step (fewer bytes than asked, but some) is not an error: the next chain
    // resumes from exactly what moved. Nothing moved is either interruption or failure.
    if (!whole && done.res <= 0 && done.res != -EINTR && done.res != -EAGAIN) {
        if (reported.into_pipe) {
            if (done.res == 0)
                log_error("connection %u: file ended before the promised bytes; closing",
                          conn.index);
            else
                log_error("connection %u: reading a file piece: %s", conn.index,
                          std::strerror(-done.res));
        } else {
            const int code = done.res == 0 ? EPIPE : -done.res;
            if (code != ECONNRESET && code != EPIPE)
                log_warn("connection %u: sending a file piece: %s", conn.index,
                         std::strerror(code));
        }
        begin_close(conn);
        return;
    }
    const file_piece& piece = conn.responses.front().body.pieces[conn.piece_cursor];
    if (conn.piece_sent == piece.length) {
        conn.finish_piece();
        pop_finished(conn);
    }
    if (conn.close_after_send) {
        begin_close(conn);
        return;
    }
    start_output(conn);
}

}  // namespace spate::net
