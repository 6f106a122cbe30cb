#pragma once
// The parts of the shard shared by its source files (net/shard.cc, net/shard_connections.cc,
// net/shard_input.cc, net/shard_output.cc) and by no one else: the completion kinds encoded
// in user_data, the tuning constants, and the definition of shard::connection. Include only
// from those files.

#include <liburing.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "net/http.h"
#include "net/shard.h"

namespace spate::net {

// What a completion belongs to, in the top 4 bits of user_data. The next 4 bits number the
// step of a linked splice chain (0 for every other kind), the next 24 bits carry a slot index
// (connection, fsync slot or target shard) and the low 32 bits its generation. user_data 0
// (kind `ignored`) marks completions nobody waits for: failed cancels, and the wake-up
// messages other shards post into this ring.
enum class shard::op_kind : uint8_t {
    ignored = 0,
    accept,
    recv,
    send,
    splice_chain,
    fsync,
    wake_read,
    msg_ring,
    connect,
    send_ready,  // a one-shot POLLOUT: the socket took no more of an inline file transfer
};

namespace {

constexpr uint32_t index_bits = 24;
constexpr uint32_t index_max = (1u << index_bits) - 1;
constexpr uint32_t step_bits = 4;
constexpr uint32_t kind_bits = 4;
static_assert(kind_bits + step_bits + index_bits + 32 == 64, "user_data is fully used");
constexpr uint16_t buffer_group = 0;
// Responses gathered into one sendmsg.
constexpr size_t iov_max = 64;
// Bytes handed to one sendmsg. The kernel copies them into the socket inside the submit,
// on this shard's thread: a 6 MB /metrics answer sent whole held the loop for ~5 ms. A
// larger answer goes out over several sends, one per completion.
constexpr size_t send_bytes_max = 256 << 10;
// Pipes kept for reuse per shard; more are closed when released.
constexpr size_t idle_pipes_max = 16;
// The pipe size asked for (the kernel may refuse: pipe-max-size); splices move at most this.
constexpr int pipe_bytes_wanted = 1 << 20;
// Splices of one linked chain: a leading pipe-to-socket step for bytes a cut-short chain left
// in the pipe, then pairs of file-to-pipe and pipe-to-socket steps, so at most 7 or 8 pipe
// refills (7 or 8 MiB with the 1 MiB pipe). The chain is one trip through the ring instead of
// one per step; the cap keeps a connection's share of the submission queue small (16 of
// ring_entries), fits the step number in user_data and still covers an 8 MiB fetch with about
// one chain per piece.
constexpr uint32_t chain_steps_max = 16;
static_assert(chain_steps_max <= (1u << step_bits), "a chain step number fits in user_data");
static_assert(chain_steps_max >= 3, "a chain fits a left-over step and one refill");
// Frames up to this size get their whole buffer at once; bigger ones grow as bytes arrive,
// so a peer cannot make us allocate socket.request.max.bytes with four bytes.
constexpr size_t frame_reserve_max = 1 << 20;
// A frame still missing at least this many bytes takes them with receives straight into its
// buffer (no provided buffer; MSG_WAITALL where no receive mark is set, see arm_recv) instead
// of through the buffer ring and a copy per 16 KiB: a producer's big batches, a follower's
// fetched data.
constexpr size_t direct_receive_min = 64 << 10;
// File bytes one connection moves on the shard's own thread per turn (see
// shard::splice_inline): like send_bytes_max, what one connection may hold the loop for.
constexpr int64_t inline_splice_bytes_max = 256 << 10;
// An answer on an outgoing connection still missing at least receive_mark_min bytes sets its
// socket's SO_RCVLOWAT to what is missing, at most receive_mark_max: the loop then wakes once
// for them instead of once per TCP segment (64 KiB on loopback), and the peer's sending
// thread skips as many wake-ups.
constexpr uint32_t receive_mark_min = 64 << 10;
constexpr uint32_t receive_mark_max = 1 << 20;
// Refusals at accept are logged at most this often per shard, each line with the count.
constexpr std::chrono::milliseconds refusal_log_interval{1000};
// The idle and receive timeouts are checked by one sweep over the connections, this many
// times per shortest timeout, and at least once a second.
constexpr int64_t sweeps_per_timeout = 8;
constexpr std::chrono::milliseconds sweep_interval_max{1000};
// After EMFILE/ENFILE on accept, wait this long before accepting again.
constexpr std::chrono::milliseconds accept_retry_delay{100};
// While tasks wait in an overflow list, the loop polls the peer's queue this often.
constexpr long overflow_retry_ns = 100'000;

}  // namespace

// One accepted connection. Lives in the shard's connection table from accept until every
// operation submitted for it has completed after close; the slot is then reused with a new
// generation. Only its shard touches it.
struct shard::connection {
    enum class state_kind : uint8_t { free, open, closing };
    enum class slot_state : uint8_t { waiting, ready, skipped };
    struct pending_response {
        slot_state state = slot_state::waiting;
        response body;
    };

    uint32_t index = 0;
    uint32_t generation = 1;
    state_kind state = state_kind::free;
    int fd = -1;

    // Input: the size prefix being read, then the frame being filled.
    uint8_t prefix[4] = {};
    uint32_t prefix_have = 0;
    frame_ptr incoming;
    uint32_t incoming_size = 0;
    // The frame budget this connection holds for `incoming` (its whole size, reserved when
    // the prefix arrived), or the size it waits for in the shard's queue of waiters.
    uint32_t reserved_bytes = 0;
    bool waiting_for_budget = false;
    // Whether the armed receive is multishot (or one buffer at a time, see arm_recv), or
    // straight into the frame being filled (recv_direct).
    bool recv_multishot = false;
    bool recv_direct = false;
    // A direct receive between frames (no `incoming`) takes the next size prefix here (then
    // parse()), once the connection's last frame was a big one (big_frames): one receive for
    // the prefix, one for the frame.
    bool big_frames = false;
    uint8_t direct_prefix[4] = {};
    uint32_t waiting_size = 0;
    // When the current frame must be complete (set by its first byte), and the last time any
    // byte moved either way.
    std::chrono::steady_clock::time_point frame_deadline{};
    std::chrono::steady_clock::time_point last_activity{};
    // The peer's address, counted in the runtime's connection limits until the slot frees.
    peer_address peer;
    // paced_loopback's answer once asked (-1: not yet): a socket's congestion control is
    // set, if at all, when it is accepted (loopback_congestion_control), before anything
    // asks, and a fetch asks for every answer.
    mutable int8_t paced_loopback = -1;
    uint64_t next_sequence = 0;
    bool recv_armed = false;
    bool recv_cancelled = false;
    // Bytes received while the in-flight limit was reached, parsed when room frees up.
    // Bounded: reading is cancelled at the limit, so at most the receives already
    // completing land here.
    std::vector<uint8_t> held_input;
    bool resume_posted = false;
    // The socket's SO_RCVLOWAT (1: the kernel's default), and whether this turn's receives
    // queued the connection for an update of it (shard::update_receive_marks).
    uint32_t receive_mark = 1;
    bool receive_mark_queued = false;
    // Whether a response made ready this turn queued the connection for flush_output.
    bool output_queued = false;

    // Output: one pending slot per request not yet fully sent, the oldest first.
    std::deque<pending_response> responses;
    // Position in the front response: bytes of `bytes` sent, pieces fully sent, and of the
    // current piece the bytes moved from the file to the pipe and from the pipe out.
    size_t byte_cursor = 0;
    size_t piece_cursor = 0;
    int64_t piece_read = 0;
    int64_t piece_sent = 0;
    bool send_in_flight = false;
    bool close_after_send = false;
    // Closed once every response owed is sent, reading nothing more meanwhile (an HTTP
    // client that asked for Connection: close, or sent a request it cannot get an answer
    // to).
    bool close_when_answered = false;
    std::optional<pipe_pair> pipe;
    int pipe_capacity = 0;
    // The linked splice chain in flight (while send_in_flight): each step's direction and
    // the bytes it was asked to move. Only the chain's last completion arrives, and from its
    // step number and result these say exactly how far the chain got.
    struct splice_step {
        bool into_pipe = false;
        uint32_t length = 0;
    };
    splice_step chain[chain_steps_max] = {};
    uint32_t chain_steps = 0;

    uint32_t ops_in_flight = 0;
    // Moving to another shard (move_connection): its target, or no_target; and whether the
    // hand-over task is posted. The votes so far for the shard it may move to (note_owner),
    // and when it last moved (one move per connection_move_interval).
    static constexpr uint32_t no_target = UINT32_MAX;
    uint32_t move_to = no_target;
    bool move_posted = false;
    uint32_t voted_owner = no_target;
    uint32_t owner_votes = 0;
    std::chrono::steady_clock::time_point moved_at{};

    // A connection this shard opened (shard::connect): frames received are answers for
    // `handler`, sends are requests queued by shard::send, and no connection limit counts it.
    bool outgoing = false;
    bool connecting = false;
    connection_handler* handler = nullptr;
    sockaddr_storage remote{};
    socklen_t remote_length = 0;
    unique_function<void(connection_ref, int)> on_connected;
    // A connection of the HTTP listener: its request head being parsed, and whether one
    // has begun (the receive timeout then runs, as for a Kafka frame).
    std::unique_ptr<http_request_parser> http;
    bool http_mid_request = false;
    iovec iov[iov_max] = {};
    msghdr message = {};

    void reset_output_cursor() {
        byte_cursor = 0;
        piece_cursor = 0;
        piece_read = 0;
        piece_sent = 0;
    }
    // The front response's current file piece is all on the socket.
    void finish_piece() {
        ++piece_cursor;
        piece_read = 0;
        piece_sent = 0;
    }
};

}  // namespace spate::net
