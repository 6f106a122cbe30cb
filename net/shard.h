#pragma once
// shard: one thread, one io_uring ring, the connections its listener accepted, its timers
// and its cross-shard mailboxes. The vocabulary types the broker exchanges with a shard
// (frames, responses, file pieces, connection references) live here too.
//
// Ownership and threads: a runtime (net/runtime.h) creates every shard, runs each one's loop
// on its own thread and destroys them after all threads have returned. Every method runs on
// the shard's own thread unless its comment says otherwise; post() and stop() may be called
// from anywhere.

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "net/connection_limits.h"
#include "net/http.h"
#include "net/metrics.h"
#include "net/spsc_queue.h"
#include "net/unique_function.h"
#include "proto/result.h"

struct io_uring;
struct io_uring_buf_ring;
struct io_uring_sqe;

namespace spate::net {

using shard_id = uint32_t;
using task = unique_function<void()>;

// Names one connection of one shard. The generation changes whenever the slot is reused,
// so a reference kept past the connection's close is detected and ignored.
struct connection_ref {
    uint32_t index = 0;
    uint32_t generation = 0;
};

// An allocator whose new elements are left uninitialized: a frame's buffer grows to take
// bytes a receive has already written past its size (shard::on_recv's direct receives), and
// zeroing them first would cost a pass over every byte.
template <class T>
struct uninitialized_allocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = uninitialized_allocator<U>;
    };
    uninitialized_allocator() = default;
    template <class U>
    uninitialized_allocator(const uninitialized_allocator<U>&) noexcept {}
    template <class U>
    void construct(U* at) noexcept {
        ::new (static_cast<void*>(at)) U;
    }
    template <class U, class... Args>
    void construct(U* at, Args&&... args) {
        ::new (static_cast<void*>(at)) U(std::forward<Args>(args)...);
    }
};
using frame_bytes = std::vector<uint8_t, uninitialized_allocator<uint8_t>>;

// A received request frame: the bytes after the 4-byte size prefix, in one owned buffer.
struct frame {
    frame_bytes bytes;
};
using frame_ptr = std::unique_ptr<frame>;

// File bytes sent without copying them through user space: `length` bytes of `fd` from
// `file_position`, inserted at byte `position` of the response. `keep_alive` holds the file
// open until the bytes are on the socket (retention may drop the segment meanwhile).
struct file_piece {
    size_t position = 0;
    int fd = -1;
    int64_t file_position = 0;
    int32_t length = 0;
    std::shared_ptr<void> keep_alive;
};

// How many pages of `fd`'s page-aligned range [offset, offset + length) are in page cache,
// by cachestat(2) (Linux 6.5); -1 with errno set where it fails (ENOSYS: an older kernel).
int64_t cached_pages(int fd, int64_t offset, int64_t length);

// A response: `bytes` including the 4-byte size prefix the caller wrote, and file pieces
// inserted at ascending positions of `bytes` (several pieces may share a position: they
// follow one another).
struct response {
    std::vector<uint8_t> bytes;
    std::vector<file_piece> pieces;
};

// The broker's side of a shard, one per shard, called only on that shard's thread.
class http_request_parser;

class connection_handler {
public:
    virtual ~connection_handler() = default;
    // Called for each complete frame, in arrival order. `sequence` numbers the requests of
    // this connection (0, 1, 2, …). The handler must later call shard::respond or
    // shard::skip_response for that sequence exactly once (unless the connection closed).
    virtual void on_frame(connection_ref conn, uint64_t sequence, frame_ptr request) = 0;
    // Called once when the connection starts closing (peer gone, error, close_connection);
    // responses for it are dropped from then on.
    virtual void on_close(connection_ref conn) { (void)conn; }
    // Called for each request received on the HTTP listener (shard_config::http_listen,
    // shard 0 only), in arrival order, with its head parsed (`request` lives only during
    // the call). Returns whether the handler serves it: it then answers exactly once with
    // shard::respond, the bytes being the whole HTTP response (net/http.h). On false the
    // shard answers 404 itself.
    virtual bool on_http_request(connection_ref conn, uint64_t sequence,
                                 const http_request_parser& request) {
        (void)conn;
        (void)sequence;
        (void)request;
        return false;
    }
};

struct shard_config {
    std::string listen_host = "127.0.0.1";
    uint16_t listen_port = 9092;
    // An HTTP listener (metrics, health), served by shard 0 only; none when empty. Its
    // connections count in the same limits and timeouts as the others.
    struct endpoint {
        std::string host;
        uint16_t port = 0;
    };
    std::optional<endpoint> http_listen;
    // socket.request.max.bytes: a bigger size prefix closes the connection.
    uint32_t request_bytes_max = 100 << 20;
    // Connections open at once in the whole runtime (all shards together); more are closed
    // as soon as they are accepted.
    uint32_t connections_max = 10000;
    // Kafka's max.connections.per.ip: connections open at once from one IP address, so a
    // single client cannot take every slot of connections_max. 0 means no limit.
    uint32_t connections_per_ip_max = 1000;
    // Kafka's connections.max.idle.ms: a connection that has received and sent nothing for
    // this long, and has no request waiting for its answer, is closed.
    std::chrono::milliseconds idle_timeout{600'000};
    // A request frame must arrive whole within this long of its first byte (time spent
    // waiting for incomplete_request_bytes_max does not count), so a client trickling bytes
    // cannot keep a connection and its partial frame forever.
    std::chrono::milliseconds request_receive_timeout{30'000};
    // Kafka's queued.max.request.bytes idea, for frames still being received: the runtime's
    // shards together reserve at most this many bytes for them (each shard an equal share).
    // A frame is reserved whole when its size prefix arrives; one that does not fit waits,
    // with its connection's reading paused, until reservations are released. An eighth of
    // each share is kept for small frames (up to that eighth), so metadata, heartbeats and
    // commits are not stuck behind large requests waiting for room; the rest takes frames of
    // any size, in arrival order. A frame bigger than that rest is admitted when no other
    // large frame is reserved, so it is bounded by request_bytes_max instead. Not counted:
    // what the receives in flight bring a connection before its pause lands, kept for it
    // (held_input) until it is let in. While any frame waits, receives take one buffer at a
    // time, so that is one recv_buffer_bytes per waiting connection, plus once the receives
    // completed in the turn the first frame had to wait (at most the buffer ring).
    uint64_t incomplete_request_bytes_max = uint64_t{512} << 20;
    // queued.max.requests, per connection: reading pauses while this many requests await
    // their response (received or not yet fully sent). Frames already received when the
    // pause takes effect are still delivered, so this is a soft limit by one read batch.
    uint32_t in_flight_requests_max = 500;
    bool pin_to_core = true;

    // Submission queue entries of each ring (the completion queue gets 8 times as many).
    uint32_t ring_entries = 1024;
    // The provided-buffer ring every connection of a shard receives into: count is a power
    // of two, at most 32768.
    uint32_t recv_buffer_count = 256;
    uint32_t recv_buffer_bytes = 16 << 10;
    // Slots of each cross-shard queue (per ordered pair of shards); a power of two.
    uint32_t cross_shard_queue_capacity = 1024;
    // Posted tasks run per loop turn, so I/O completions are never starved by a busy queue.
    uint32_t tasks_per_turn_max = 4096;
    // A Kafka connection moves to the shard that owns the work of its requests once this
    // many requests in a row had all their work on that one other shard (note_owner); 0
    // never moves one. A connection moves at most once per connection_move_interval.
    uint32_t connection_move_votes = 16;
    std::chrono::milliseconds connection_move_interval{1000};
    // After stop(), connections still sending are given this long before being cut.
    std::chrono::milliseconds stop_grace{5000};
    // The TCP congestion control set on every accepted connection whose peer is on this
    // host's loopback (TCP_CONGESTION); empty keeps the system's. A pacing one (bbr) paces
    // loopback flows too, with a timer per flow between its sends, which on this project's
    // VMs cost as much cpu as sending the bytes; loopback has no queue for pacing to spare.
    // The caller checks the name first (congestion_control_usable).
    std::string loopback_congestion_control;
};

// Whether this process may set `name` as a socket's TCP congestion control (the kernel
// has it and net.ipv4.tcp_allowed_congestion_control lets unprivileged sockets take it):
// tried on a socket of its own. The error says why not.
result<void> congestion_control_usable(const std::string& name);

// What a shard's loop has done since it started (metrics: summed or per shard at scrape).
struct shard_stats {
    uint64_t loop_turns = 0;
    // Nanoseconds the loop spent blocked in the kernel with nothing to do; the rest of its
    // life it was busy.
    uint64_t idle_ns = 0;
    uint64_t busy_ns = 0;
    uint64_t submissions = 0;          // submission entries prepared
    uint64_t completions = 0;          // completion entries reaped
    uint64_t cq_overflows = 0;         // completions the kernel could not post (the ring's count)
    uint64_t cross_shard_tasks = 0;    // tasks sent to other shards
    uint64_t cross_shard_full = 0;     // of those, found the peer's queue full (waited here)
    uint64_t cross_shard_waiting = 0;  // tasks waiting now in those overflow lists
    uint64_t cross_shard_queued = 0;   // tasks other shards queued for this one, not yet run
    uint64_t connections_accepted = 0;
    uint64_t connections_refused = 0;
    uint64_t connections_open = 0;       // incoming and outgoing
    uint64_t connections_moved_in = 0;   // from other shards (move_connection)
    uint64_t connections_moved_out = 0;  // to other shards
    uint64_t incomplete_request_bytes = 0;
    // fdatasyncs submitted on the ring (submit_fdatasync): submission to completion.
    latency_histogram fsync_latency;
    // Of those, waited ones the shard ran itself at the end of an idle turn.
    uint64_t fsyncs_inline = 0;
    // File bytes sent to sockets: by the shard itself (inline splices) or by io-wq chains.
    uint64_t file_bytes_inline = 0;
    uint64_t file_bytes_chained = 0;
    // sendmsg operations of response bytes: responses a turn makes ready for one connection
    // share one (shard::flush_output).
    uint64_t response_sends = 0;
    // Frame bytes received straight into their frame (direct_receive_min), not through the
    // buffer ring.
    uint64_t direct_receive_bytes = 0;
    // Receive marks set above 1 (SO_RCVLOWAT: an outgoing connection's socket wakes the loop
    // once a big answer's missing bytes, up to 1 MiB, are all in it; net/shard_input.cc).
    uint64_t receive_marks_set = 0;
    // How long each loop turn worked before it waited or began the next: a long one held
    // up every request of the shard meanwhile.
    latency_histogram turn_busy;
};

class runtime;

class shard {
public:
    shard(shard_id id, uint32_t shard_count, const shard_config& config);
    ~shard();
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;

    shard_id id() const { return _id; }
    uint32_t shard_count() const { return _shard_count; }
    const shard_config& config() const { return _config; }

    // Runs `t` later on this shard's thread, in posting order. Any thread may call it;
    // from the shard's own thread it is a plain queue push.
    void post(task t);
    // From this shard's thread: runs `t` on shard `target`'s thread (on this shard itself
    // when target == id()). Tasks from one shard to another run in submission order.
    void submit_to(shard_id target, task t);

    // Runs `t` on this shard after `delay`; returns a non-zero id for cancel_timer. Timers
    // due in the same turn fire in deadline order, ties in creation order.
    uint64_t add_timer(std::chrono::milliseconds delay, task t);
    // Cancels a timer that has not fired; unknown or fired ids are ignored.
    void cancel_timer(uint64_t id);

    // Queues the response to request `sequence`; responses go out strictly in sequence
    // order. Responses for a closed connection (stale reference) are dropped.
    void respond(connection_ref conn, uint64_t sequence, response r);
    // Answers request `sequence` of a connection of the HTTP listener with a whole HTTP
    // response (net/http.h), built straight into the buffer that is sent.
    void respond_http(connection_ref conn, uint64_t sequence, int status, std::string_view reason,
                      std::string_view content_type, std::string_view body,
                      http_connection connection);
    // Request `sequence` gets no response (acks=0 produce).
    void skip_response(connection_ref conn, uint64_t sequence);
    // Closes the connection (e.g. garbage from the peer); the shard goes on.
    void close_connection(connection_ref conn);
    // Whether `conn` still names an open connection.
    bool is_open(connection_ref conn) const;

    // Moves a Kafka connection this shard accepted to shard `target`: reading stops now, the
    // requests already delivered are answered here, then its socket and the bytes received
    // but not yet delivered go to `target`, whose handler gets the later frames under a new
    // reference (sequences from 0 again). No on_close: the peer sees one connection. Ignored
    // for outgoing and HTTP connections, a connection already moving, and target == id().
    void move_connection(connection_ref conn, shard_id target);
    // The handler's vote for where `conn` belongs: called for a request whose work is all
    // on shard `owner`. connection_move_votes votes in a row for the same other shard move
    // the connection there; a vote for this shard starts the count again.
    void note_owner(connection_ref conn, shard_id owner);
    // A rising number the application raises as it installs new routing state on this
    // shard (the broker: its metadata snapshot's version); the net layer does not read it
    // otherwise. A connection that moves here from a shard whose epoch was higher waits,
    // unread, until this shard's epoch reaches it: its requests are never routed by state
    // older than what already answered it. Only on this shard's thread.
    void set_routing_epoch(uint64_t epoch);
    // The IP address of `conn`'s peer (length 0 when closed or unknown).
    peer_address peer_of(connection_ref conn) const;
    // Whether `conn`'s peer is on this host's loopback and its socket's congestion control
    // is bbr, which paces every flow by its bandwidth estimate, loopback included (big
    // answers then leave at that pace, not as fast as the receiver reads): the system's
    // choice, or shard_config::loopback_congestion_control's. At most one getsockopt.
    bool paced_loopback(connection_ref conn) const;

    // Opens a connection to `address` (outgoing: a broker's connection to another broker).
    // `connected(conn, 0)` runs once it is established, `connected(conn, -errno)` when it
    // could not be (the slot is then gone). Frames received on it go to `handler.on_frame`
    // (sequence 0: they are answers), and its close to `handler.on_close`. Only on this
    // shard's thread.
    connection_ref connect(const sockaddr_storage& address, socklen_t length,
                           connection_handler& handler,
                           unique_function<void(connection_ref, int)> connected);
    // Queues `bytes` (one or more whole request frames) on an outgoing connection, after
    // what was queued before. A closed connection drops them.
    void send(connection_ref conn, response bytes);

    // fdatasync on the ring (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC); `done(res)` runs on
    // this shard with 0 or -errno.
    void submit_fdatasync(int fd, unique_function<void(int)> done);
    // The same for an fdatasync someone waits on (a produce under acks_all_policy "fsync",
    // a follower's next fetch): queued until the end of the turn, where a shard that would
    // otherwise go to sleep with it the only one queued runs it itself, sparing the io-wq
    // worker's wake-up and its own on the completion (about 30 µs of a 200 µs acks=all
    // answer here). Use it only for small syncs: the shard blocks meanwhile.
    void submit_waited_fdatasync(int fd, unique_function<void(int)> done);

    // Connections refused at accept because connections_max or connections_per_ip_max was
    // reached, since the shard started.
    uint64_t connections_refused() const { return _connections_refused; }
    // Bytes reserved for request frames being received on this shard.
    uint64_t incomplete_request_bytes() const {
        return _frame_pools[0].held + _frame_pools[1].held;
    }

    // Bytes received but not yet parsed, kept for connections paused by a limit (walks the
    // connections: for tests and occasional metrics, not per request).
    uint64_t held_input_bytes() const;

    // This shard's loop figures now (shard_stats). Only on its thread.
    shard_stats stats() const;

    // The time at the start of the current loop turn.
    std::chrono::steady_clock::time_point now() const { return _now; }

    // Any thread: stop accepting and reading, finish the sends in flight (cut after
    // stop_grace), then return from the loop.
    void stop();

private:
    friend class runtime;
    struct connection;
    struct pipe_pair {
        int read_fd = -1;
        int write_fd = -1;
    };
    struct completion {
        uint64_t user_data;
        int32_t res;
        uint32_t flags;
    };
    enum class op_kind : uint8_t;

    // Called by runtime, on the shard's thread, before run(): creates the ring (falling back
    // flag by flag), the provided-buffer ring and arms the listener.
    result<void> setup(int listen_fd, int http_listen_fd);
    void set_handler(connection_handler& handler) { _handler = &handler; }
    void set_peers(std::vector<shard*> peers) { _peers = std::move(peers); }
    void set_connection_limits(connection_limits& limits) { _limits = &limits; }
    // The loop; returns after stop() once every operation has completed.
    void run();

    result<void> setup_ring();
    result<void> setup_buffer_ring();

    // Ring plumbing.
    io_uring_sqe* next_sqe();
    static uint64_t encode(op_kind kind, uint32_t index, uint32_t generation, uint32_t step = 0);
    // Makes room for `count` submission entries in a row, so a linked chain is never split
    // by the queue filling up in its middle.
    void reserve_sqes(uint32_t count);
    void reap();
    void handle(const completion& done);
    void submit_and_wait();
    // Records the turn that began at _now as busy until `end` (shard_stats::turn_busy).
    void note_turn(std::chrono::steady_clock::time_point end);
    bool has_ready_work();
    void arm_accept(uint32_t which);
    void arm_wake_read();
    void wake_peers();

    // Work queues.
    void run_tasks();
    void drain_inboxes();
    void flush_overflow();
    void fire_timers();

    // Connections.
    connection* lookup(connection_ref conn);
    const connection* lookup(connection_ref conn) const;
    void on_accept(uint32_t which, const completion& done);
    void on_connect(connection& conn, const completion& done);
    connection& take_slot(int fd);
    void on_recv(connection& conn, const completion& done);
    void arm_recv(connection& conn);
    void pause_recv(connection& conn);
    void parse(connection& conn, const uint8_t* data, size_t size);
    // Receive marks (SO_RCVLOWAT): an outgoing connection whose answer still lacks many bytes
    // is woken once they are all in its socket, not per segment (net/shard_input.cc).
    void note_received(connection& conn);
    void update_receive_marks();
    uint32_t wanted_receive_mark(const connection& conn) const;
    bool wants_direct_receive(const connection& conn) const;
    void on_direct_recv(connection& conn, int received);
    void set_receive_mark(connection& conn, uint32_t mark);
    // The same for a connection of the HTTP listener (net/shard_http.cc).
    void parse_http(connection& conn, const uint8_t* data, size_t size);
    void deliver_http(connection& conn);
    void refuse_http(connection& conn, int status, const char* reason);
    void resume_input(connection_ref ref);
    // Whether the connection may have a receive armed now (the limits that pause reading).
    bool may_read(const connection& conn) const;
    // Frame budget: reserve a frame's size when its prefix arrives, or queue the connection.
    bool try_reserve_frame(connection& conn, uint32_t size);
    void start_frame(connection& conn, uint32_t size);
    void release_frame_budget(connection& conn);
    // Gives up the frame budget the connection holds or waits for (closing, moving).
    void drop_frame_budget(connection& conn);
    // Closes connections idle or stalled mid-frame for too long, and re-arms itself.
    void sweep_connections();
    void refuse_connection(int fd, const char* reason);
    // Sets loopback_congestion_control, if any, on an accepted loopback socket.
    void set_loopback_congestion_control(int fd);
    void deliver(connection& conn);
    void begin_close(connection& conn);
    void finalize_if_done(connection& conn);
    // Returns a slot whose fd is closed or handed on to the free list, for the next generation.
    void free_slot(connection& conn);
    // Moving a connection (net/shard_move.cc): hands it over once nothing is in flight.
    bool ready_to_move(const connection& conn) const;
    void maybe_move(connection& conn);
    void finish_move(connection_ref ref);
    std::vector<uint8_t> take_undelivered_input(connection& conn);
    struct moving_socket;
    void adopt(moving_socket socket);
    // Connections moved here before this shard's routing epoch reached their old shard's,
    // each with the epoch it waits for; set_routing_epoch resumes them.
    struct waiting_move {
        connection_ref conn;
        uint64_t epoch;
    };
    std::vector<waiting_move> _waiting_moves;
    uint64_t _routing_epoch = 0;
    void start_output(connection& conn);
    // Output starts at the end of the turn (flush_output), so every response a turn makes
    // for one connection leaves in one sendmsg.
    void queue_output(connection& conn);
    void flush_output();
    void pop_finished(connection& conn);
    bool gather_bytes(connection& conn);
    // A file piece goes out as one linked chain of splices (file to pipe, pipe to socket,
    // repeated); on_splice_chain gets the chain's single completion.
    // Starts moving the front file piece; true when it was all sent at once, on this thread,
    // and the caller goes on with what follows it.
    bool start_splice(connection& conn);
    // File bytes in page cache go out on the shard's own thread, with non-blocking splices,
    // instead of a chain in the kernel's io-wq (one worker hand-off and wake-up per chain):
    // until the piece is sent, the turn's share is spent or the socket is full (both then
    // wait for POLLOUT), or a chunk is not all cached (a chain then reads it from disk).
    enum class inline_result { sent, wait_writable, chain };
    inline_result splice_inline(connection& conn, const file_piece& piece);
    bool cached(const file_piece& piece, int64_t from, int64_t length);
    void arm_send_ready(connection& conn);
    void on_send_ready(connection& conn, const completion& done);
    void on_send(connection& conn, const completion& done);
    void on_splice_chain(connection& conn, const completion& done, uint32_t step);
    void begin_stop();
    void maybe_finish_stop();

    std::optional<pipe_pair> acquire_pipe();
    void release_pipe(pipe_pair pipe);

    const shard_id _id;
    const uint32_t _shard_count;
    const shard_config _config;
    connection_handler* _handler = nullptr;
    std::vector<shard*> _peers;

    std::unique_ptr<io_uring> _ring;
    bool _ring_ready = false;
    int _ring_fd = -1;
    std::vector<completion> _completions;
    // Operations whose final completion has not arrived; the loop ends only at zero.
    uint64_t _ops_in_flight = 0;

    io_uring_buf_ring* _buffer_ring = nullptr;
    size_t _buffer_ring_bytes = 0;
    uint8_t* _buffer_memory = nullptr;
    size_t _buffer_memory_bytes = 0;
    bool _buffer_ring_registered = false;

    // The listeners this shard accepts from: [0] Kafka's protocol (every shard), [1] HTTP
    // (metrics and health; one shard only, see runtime). An fd of -1 is none.
    struct listener {
        int fd = -1;
        bool armed = false;
    };
    static constexpr uint32_t kafka_listener = 0;
    static constexpr uint32_t http_listener = 1;
    listener _listeners[2];

    std::vector<std::unique_ptr<connection>> _connections;
    std::vector<uint32_t> _free_connections;
    uint32_t _open_connections = 0;
    connection_limits* _limits = nullptr;
    uint64_t _connections_refused = 0;
    // Counted as they happen; stats() adds what it reads from elsewhere.
    shard_stats _stats;
    std::chrono::steady_clock::time_point _started_at = std::chrono::steady_clock::now();
    // Refusals not yet reported: one log line per second at most, with the count.
    uint64_t _refusals_unlogged = 0;
    std::chrono::steady_clock::time_point _refusal_logged_at{};
    // The kernel refused loopback_congestion_control once (a sysctl changed since start):
    // said once, not tried again.
    bool _loopback_congestion_control_refused = false;

    // This shard's share of incomplete_request_bytes_max, in two pools: [0] for small frames
    // (at most its own size), [1] for the others. Each has what its frames being received
    // have reserved, and the connections whose next frame waits for room, oldest first.
    // Invariant after every change: the oldest waiter of each pool does not fit.
    struct frame_pool {
        uint64_t max = 0;
        uint64_t held = 0;
        std::deque<connection_ref> waiters;
    };
    frame_pool _frame_pools[2];
    // Whether any connection waits for the frame budget (or a stale entry is still queued,
    // which errs on the careful side until the next grant drops it).
    bool frames_waiting() const {
        return !_frame_pools[0].waiters.empty() || !_frame_pools[1].waiters.empty();
    }
    frame_pool& pool_for(uint32_t frame_size);
    void grant_waiting_frames(frame_pool& pool);

    std::vector<pipe_pair> _idle_pipes;

    struct fsync_slot {
        uint32_t generation = 1;
        std::chrono::steady_clock::time_point submitted_at;
        unique_function<void(int)> done;
    };
    std::vector<fsync_slot> _fsyncs;
    std::vector<uint32_t> _free_fsyncs;
    // Waited fdatasyncs queued this turn (slot, descriptor), and the completions of those
    // run inline, handled with the next turn's.
    struct waited_sync {
        uint32_t index;
        int fd;
    };
    std::vector<waited_sync> _waited_syncs;
    std::vector<completion> _inline_completions;
    uint32_t take_fsync_slot(unique_function<void(int)> done);
    void prep_fdatasync(uint32_t index, int fd);
    // End of turn: true when it ran the single waited sync itself (the turn must not sleep).
    bool flush_waited_syncs();

    std::deque<task> _tasks;

    struct timer_key {
        std::chrono::steady_clock::time_point deadline;
        uint64_t id;
        bool operator<(const timer_key& other) const {
            return deadline != other.deadline ? deadline < other.deadline : id < other.id;
        }
    };
    std::map<timer_key, task> _timers;
    std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> _timer_deadlines;
    uint64_t _next_timer_id = 1;

    // Cross-shard: _inboxes[s] carries tasks from shard s to this shard (none for s == id).
    std::vector<std::unique_ptr<spsc_queue<task>>> _inboxes;
    // Tasks for shard s that found its inbox full, kept here in order and retried each turn.
    std::vector<std::deque<task>> _overflow;
    std::vector<uint8_t> _wake_needed;
    bool _msg_ring_works = true;
    // Inline file transfers need DEFER_TASKRUN (nothing of the ring runs on this thread
    // between two of its syscalls, so the socket is non-blocking only for the splice) and
    // cachestat(2) (Linux 6.5); without either, every piece goes as a chain.
    bool _inline_splice = false;
    // Receive marks need DEFER_TASKRUN too: no receive takes bytes from a socket between the
    // turn's last completion and the mark computed from it. Off after a refused setsockopt.
    bool _receive_marks = false;
    std::vector<connection_ref> _marks_to_update;
    std::vector<connection_ref> _output_queued;

    // Sleep/wake protocol: the loop sets _sleeping before blocking and re-checks its inboxes;
    // a producer publishes, then reads _sleeping (both sequentially consistent), so at least
    // one side sees the other and no wake-up is lost.
    std::atomic<bool> _sleeping{false};
    int _wake_fd = -1;
    uint64_t _wake_value = 0;
    bool _wake_read_armed = false;

    std::atomic<std::thread::id> _thread{};
    std::mutex _foreign_mutex;
    std::vector<task> _foreign_tasks;
    std::atomic<bool> _foreign_pending{false};
    std::atomic<bool> _stop_requested{false};
    bool _stopping = false;
    bool _finished = false;

    std::chrono::steady_clock::time_point _now = std::chrono::steady_clock::now();
};

}  // namespace spate::net
