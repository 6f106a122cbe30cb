// The shard loop: ring setup, completions, connections (framing, ordered output, splice),
// timers, posted tasks and cross-shard mailboxes.
#include "net/shard.h"

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

int64_t page_size() {
    static const int64_t bytes = [] {
        const long reported = ::sysconf(_SC_PAGESIZE);
        return reported > 0 ? static_cast<int64_t>(reported) : int64_t{4096};
    }();
    return bytes;
}

uint32_t read_be32(const uint8_t* bytes) {
    return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
           uint32_t{bytes[3]};
}

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
    // Whether the armed receive is multishot (or one buffer at a time, see arm_recv).
    bool recv_multishot = false;
    uint32_t waiting_size = 0;
    // When the current frame must be complete (set by its first byte), and the last time any
    // byte moved either way.
    std::chrono::steady_clock::time_point frame_deadline{};
    std::chrono::steady_clock::time_point last_activity{};
    // The peer's address, counted in the runtime's connection limits until the slot frees.
    peer_address peer;
    uint64_t next_sequence = 0;
    bool recv_armed = false;
    bool recv_cancelled = false;
    // Bytes received while the in-flight limit was reached, parsed when room frees up.
    // Bounded: reading is cancelled at the limit, so at most the receives already
    // completing land here.
    std::vector<uint8_t> held_input;
    bool resume_posted = false;

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
    iovec iov[iov_max] = {};
    msghdr message = {};

    void reset_output_cursor() {
        byte_cursor = 0;
        piece_cursor = 0;
        piece_read = 0;
        piece_sent = 0;
    }
};

shard::shard(shard_id id, uint32_t shard_count, const shard_config& config)
    : _id(id), _shard_count(shard_count), _config(config) {
    SPATE_ASSERT(id < shard_count, "shard id below the shard count");
    SPATE_ASSERT(config.connections_max <= index_max, "connection index fits in user_data");
    _inboxes.resize(shard_count);
    for (shard_id source = 0; source < shard_count; ++source) {
        if (source == id) continue;
        _inboxes[source] = std::make_unique<spsc_queue<task>>(config.cross_shard_queue_capacity);
    }
    _overflow.resize(shard_count);
    _wake_needed.assign(shard_count, 0);
    _connections.reserve(std::min<uint32_t>(config.connections_max, 1024));
    SPATE_ASSERT(config.idle_timeout.count() >= 1, "an idle timeout of at least 1 ms");
    SPATE_ASSERT(config.request_receive_timeout.count() >= 1, "a receive timeout of at least 1 ms");
    // Each shard reserves frames from an equal share, so the shards never need to agree on
    // it: the sum of the shares is the runtime's limit, with no shared counter per request.
    const uint64_t share = std::max<uint64_t>(8, config.incomplete_request_bytes_max / shard_count);
    _frame_pools[0].max = share / 8;
    _frame_pools[1].max = share - share / 8;
    // The eventfd exists from construction on, so post() and stop() work before the thread
    // starts. A shard without one cannot be woken by foreign threads: that is fatal.
    _wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    SPATE_ASSERT(_wake_fd >= 0, "eventfd for the shard wake-up");
}

shard::~shard() {
    for (auto& conn : _connections) {
        if (conn->fd >= 0) ::close(conn->fd);
        if (conn->pipe) {
            ::close(conn->pipe->read_fd);
            ::close(conn->pipe->write_fd);
        }
    }
    for (pipe_pair& pipe : _idle_pipes) {
        ::close(pipe.read_fd);
        ::close(pipe.write_fd);
    }
    if (_ring_ready) io_uring_queue_exit(_ring.get());
    if (_buffer_ring != nullptr) ::munmap(_buffer_ring, _buffer_ring_bytes);
    if (_buffer_memory != nullptr) ::munmap(_buffer_memory, _buffer_memory_bytes);
    if (_listen_fd >= 0) ::close(_listen_fd);
    if (_wake_fd >= 0) ::close(_wake_fd);
}

// ---- setup ------------------------------------------------------------------------------

result<void> shard::setup(int listen_fd) {
    _thread.store(std::this_thread::get_id());
    _listen_fd = listen_fd;
    if (auto ring = setup_ring(); !ring) return ring;
    if (auto buffers = setup_buffer_ring(); !buffers) return buffers;
    _now = std::chrono::steady_clock::now();
    arm_wake_read();
    if (_listen_fd >= 0) arm_accept();
    sweep_connections();
    return {};
}

result<void> shard::setup_ring() {
    _ring = std::make_unique<io_uring>();
    // Flag sets from best to plainest; each is tried only if the previous one is refused
    // with EINVAL (an older kernel).
    //  SINGLE_ISSUER: only this thread submits, so the kernel skips submission locking.
    //  DEFER_TASKRUN: completion work runs when this thread waits, not by interrupting it.
    //  COOP_TASKRUN: without DEFER, no inter-processor interrupt to post completions.
    //  SUBMIT_ALL: a failing SQE does not stop the rest of the batch from being submitted.
    static constexpr unsigned flag_sets[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int res = -EINVAL;
    for (unsigned flags : flag_sets) {
        io_uring_params params{};
        // CQSIZE: multishot receives post many completions per submission.
        params.flags = flags | IORING_SETUP_CQSIZE;
        params.cq_entries = _config.ring_entries * 8;
        res = io_uring_queue_init_params(_config.ring_entries, _ring.get(), &params);
        if (res == 0) {
            if (flags != flag_sets[0])
                log_warn("io_uring: kernel refused the preferred setup flags, using 0x%x", flags);
            break;
        }
        if (res != -EINVAL) break;
    }
    if (res < 0) return error{-res, std::string("io_uring setup failed: ") + std::strerror(-res)};
    _ring_ready = true;
    _ring_fd = _ring->ring_fd;
    return {};
}

result<void> shard::setup_buffer_ring() {
    const uint32_t count = _config.recv_buffer_count;
    SPATE_ASSERT(count >= 1 && count <= 32768, "recv_buffer_count within the kernel's limit");
    SPATE_ASSERT((count & (count - 1)) == 0, "recv_buffer_count is a power of two");
    // liburing 2.3 has no io_uring_setup_buf_ring: map the ring memory ourselves
    // (page-aligned, as the kernel requires) and register it.
    _buffer_ring_bytes = count * sizeof(io_uring_buf);
    void* ring_memory = ::mmap(nullptr, _buffer_ring_bytes, PROT_READ | PROT_WRITE,
                               MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring_memory == MAP_FAILED)
        return error{errno, std::string("buffer ring memory: ") + std::strerror(errno)};
    _buffer_ring = static_cast<io_uring_buf_ring*>(ring_memory);
    _buffer_memory_bytes = size_t{count} * _config.recv_buffer_bytes;
    void* buffers = ::mmap(nullptr, _buffer_memory_bytes, PROT_READ | PROT_WRITE,
                           MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (buffers == MAP_FAILED)
        return error{errno, std::string("receive buffers: ") + std::strerror(errno)};
    _buffer_memory = static_cast<uint8_t*>(buffers);

    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<uint64_t>(ring_memory);
    registration.ring_entries = count;
    registration.bgid = buffer_group;
    const int res = io_uring_register_buf_ring(_ring.get(), &registration, 0);
    if (res < 0)
        return error{-res, std::string("io_uring provided buffer ring (kernel 5.19+): ") +
                               std::strerror(-res)};
    _buffer_ring_registered = true;
    io_uring_buf_ring_init(_buffer_ring);
    const int mask = io_uring_buf_ring_mask(count);
    for (uint32_t i = 0; i < count; ++i) {
        io_uring_buf_ring_add(_buffer_ring, _buffer_memory + size_t{i} * _config.recv_buffer_bytes,
                              _config.recv_buffer_bytes, static_cast<unsigned short>(i), mask,
                              static_cast<int>(i));
    }
    io_uring_buf_ring_advance(_buffer_ring, static_cast<int>(count));
    return {};
}

// ---- ring plumbing ----------------------------------------------------------------------

uint64_t shard::encode(op_kind kind, uint32_t index, uint32_t generation, uint32_t step) {
    SPATE_ASSERT(index <= index_max, "slot index fits in user_data");
    SPATE_ASSERT(step < (1u << step_bits), "chain step fits in user_data");
    SPATE_ASSERT(static_cast<uint32_t>(kind) < (1u << kind_bits), "op kind fits in user_data");
    return (uint64_t{static_cast<uint8_t>(kind)} << (64 - kind_bits)) |
           (uint64_t{step} << (32 + index_bits)) | (uint64_t{index} << 32) | generation;
}

void shard::reserve_sqes(uint32_t count) {
    SPATE_ASSERT(count <= _config.ring_entries, "a linked chain fits the submission queue");
    // A chain split by a submit in its middle would run as two chains, side by side on one
    // socket: hand the queue to the kernel first if the whole chain does not fit.
    if (io_uring_sq_space_left(_ring.get()) >= count) return;
    const int submitted = io_uring_submit(_ring.get());
    if (submitted < 0) log_error("io_uring submit: %s", std::strerror(-submitted));
    SPATE_ASSERT(io_uring_sq_space_left(_ring.get()) >= count, "room for a linked chain");
}

io_uring_sqe* shard::next_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(_ring.get());
    if (sqe == nullptr) {
        // The submission queue is full: hand it to the kernel now and take a fresh entry.
        // Completions are not reaped here, so nothing runs behind the caller's back.
        const int submitted = io_uring_submit(_ring.get());
        if (submitted < 0) log_error("io_uring submit: %s", std::strerror(-submitted));
        sqe = io_uring_get_sqe(_ring.get());
    }
    SPATE_ASSERT(sqe != nullptr, "a submission entry after flushing the queue");
    return sqe;
}

void shard::arm_accept() {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_multishot_accept(sqe, _listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, encode(op_kind::accept, 0, 1));
    _accept_armed = true;
    ++_ops_in_flight;
}

void shard::arm_wake_read() {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_read(sqe, _wake_fd, &_wake_value, sizeof _wake_value, 0);
    io_uring_sqe_set_data64(sqe, encode(op_kind::wake_read, 0, 1));
    _wake_read_armed = true;
    ++_ops_in_flight;
}

void shard::reap() {
    // One pass over the completion queue and one advance for the whole batch; the
    // completions run afterwards, never while the queue is being walked.
    _completions.clear();
    unsigned head = 0;
    unsigned count = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(_ring.get(), head, cqe) {
        _completions.push_back({cqe->user_data, cqe->res, cqe->flags});
        ++count;
    }
    io_uring_cq_advance(_ring.get(), count);
}

void shard::handle(const completion& done) {
    const auto kind = static_cast<op_kind>(done.user_data >> (64 - kind_bits));
    const auto step =
        static_cast<uint32_t>((done.user_data >> (32 + index_bits)) & ((1u << step_bits) - 1));
    const auto index = static_cast<uint32_t>((done.user_data >> 32) & index_max);
    const auto generation = static_cast<uint32_t>(done.user_data);
    const bool more = (done.flags & IORING_CQE_F_MORE) != 0;
    switch (kind) {
        case op_kind::ignored:
            return;
        case op_kind::accept:
            if (!more) {
                _accept_armed = false;
                --_ops_in_flight;
            }
            on_accept(done);
            return;
        case op_kind::wake_read:
            _wake_read_armed = false;
            --_ops_in_flight;
            if (!_stopping) arm_wake_read();
            return;
        case op_kind::msg_ring:
            // Only failures arrive here (successes skip their completion). EINVAL or
            // EOPNOTSUPP: the kernel lacks MSG_RING, so wake peers by eventfd from now on.
            // Other failures (a peer whose thread has already returned) concern this one
            // wake-up, which the eventfd delivers just the same.
            if ((done.res == -EINVAL || done.res == -EOPNOTSUPP) && _msg_ring_works) {
                log_warn("io_uring MSG_RING unsupported (%s), waking shards by eventfd",
                         std::strerror(-done.res));
                _msg_ring_works = false;
            }
            if (index < _peers.size()) {
                const uint64_t one = 1;
                ssize_t written = ::write(_peers[index]->_wake_fd, &one, sizeof one);
                (void)written;  // EAGAIN means the counter is already non-zero: awake anyway.
            }
            return;
        case op_kind::fsync: {
            SPATE_ASSERT(index < _fsyncs.size(), "fsync completion names a slot");
            fsync_slot& slot = _fsyncs[index];
            SPATE_ASSERT(slot.generation == generation, "fsync completion is not stale");
            unique_function<void(int)> callback = std::move(slot.done);
            slot.done = nullptr;
            ++slot.generation;
            _free_fsyncs.push_back(index);
            --_ops_in_flight;
            callback(done.res);
            return;
        }
        case op_kind::recv:
        case op_kind::send:
        case op_kind::splice_chain: {
            SPATE_ASSERT(index < _connections.size(), "completion names a connection slot");
            connection& conn = *_connections[index];
            // Slots are reused only after their last completion: a mismatch is our bug.
            SPATE_ASSERT(conn.generation == generation, "connection completion is not stale");
            SPATE_ASSERT(conn.state != connection::state_kind::free, "completion for a live slot");
            if (kind == op_kind::recv)
                on_recv(conn, done);
            else if (kind == op_kind::send)
                on_send(conn, done);
            else
                on_splice_chain(conn, done, step);
            finalize_if_done(conn);
            return;
        }
    }
    SPATE_ASSERT(false, "completion of a known kind");
}

bool shard::has_ready_work() {
    if (!_tasks.empty()) return true;
    if (_foreign_pending.load(std::memory_order_acquire)) return true;
    if (_stop_requested.load(std::memory_order_acquire) && !_stopping) return true;
    for (const auto& inbox : _inboxes)
        if (inbox && !inbox->looks_empty()) return true;
    return false;
}

void shard::submit_and_wait() {
    wake_peers();
    bool overflowing = false;
    for (const auto& pending : _overflow)
        if (!pending.empty()) overflowing = true;
    if (has_ready_work()) {
        // More work is waiting: submit, and let the kernel post completions (with
        // DEFER_TASKRUN this needs GETEVENTS), without blocking.
        const int res = io_uring_submit_and_get_events(_ring.get());
        if (res < 0 && res != -EINTR && res != -EBUSY && res != -EAGAIN)
            log_error("io_uring submit: %s", std::strerror(-res));
        return;
    }
    __kernel_timespec timeout{};
    __kernel_timespec* wait_limit = nullptr;
    long wait_ns = -1;
    if (!_timers.empty()) {
        const auto left = _timers.begin()->first.deadline - std::chrono::steady_clock::now();
        wait_ns =
            std::max<long>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
    }
    if (overflowing && (wait_ns < 0 || wait_ns > overflow_retry_ns)) wait_ns = overflow_retry_ns;
    if (wait_ns >= 0) {
        timeout.tv_sec = wait_ns / 1'000'000'000;
        timeout.tv_nsec = wait_ns % 1'000'000'000;
        wait_limit = &timeout;
    }
    // Announce the sleep, then look once more: a producer that published before seeing
    // _sleeping is caught here, one that publishes after will see it and wake us.
    _sleeping.store(true, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (has_ready_work()) {
        _sleeping.store(false, std::memory_order_relaxed);
        const int res = io_uring_submit_and_get_events(_ring.get());
        if (res < 0 && res != -EINTR && res != -EBUSY && res != -EAGAIN)
            log_error("io_uring submit: %s", std::strerror(-res));
        return;
    }
    io_uring_cqe* ignored = nullptr;
    const int res = io_uring_submit_and_wait_timeout(_ring.get(), &ignored, 1, wait_limit, nullptr);
    _sleeping.store(false, std::memory_order_relaxed);
    if (res < 0 && res != -ETIME && res != -EINTR && res != -EBUSY && res != -EAGAIN)
        log_error("io_uring wait: %s", std::strerror(-res));
}

void shard::wake_peers() {
    for (shard_id target = 0; target < _shard_count; ++target) {
        if (_wake_needed[target] == 0) continue;
        _wake_needed[target] = 0;
        shard& peer = *_peers[target];
        if (_msg_ring_works) {
            // A zero-length message with user_data 0: the peer's loop wakes and ignores it.
            // Success posts nothing here; a failure comes back as op_kind::msg_ring.
            io_uring_sqe* sqe = next_sqe();
            io_uring_prep_msg_ring(sqe, peer._ring_fd, 0, 0, 0);
            io_uring_sqe_set_data64(sqe, encode(op_kind::msg_ring, target, 0));
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        } else {
            const uint64_t one = 1;
            ssize_t written = ::write(peer._wake_fd, &one, sizeof one);
            (void)written;  // EAGAIN means the counter is already non-zero: awake anyway.
        }
    }
}

// ---- the loop ---------------------------------------------------------------------------

void shard::run() {
    SPATE_ASSERT(_ring_ready, "run() after a successful setup()");
    SPATE_ASSERT(_handler != nullptr, "a connection handler before run()");
    while (!_finished) {
        _now = std::chrono::steady_clock::now();
        // 1. I/O completions first: they return receive buffers and move sends along.
        reap();
        for (const completion& done : _completions) handle(done);
        // 2. Tasks from other threads join the local queue, behind what is there.
        if (_foreign_pending.exchange(false, std::memory_order_acq_rel)) {
            std::vector<task> foreign;
            {
                std::lock_guard lock(_foreign_mutex);
                foreign.swap(_foreign_tasks);
            }
            for (task& t : foreign) _tasks.push_back(std::move(t));
        }
        // 3. Posted tasks, bounded per turn.
        run_tasks();
        // 4. Other shards' messages, then our own that found a peer's queue full.
        drain_inboxes();
        flush_overflow();
        // 5. Due timers.
        fire_timers();
        // 6. Stopping: begin once, finish when the last operation has completed.
        if (_stop_requested.load(std::memory_order_acquire) && !_stopping) begin_stop();
        if (_stopping) maybe_finish_stop();
        if (_finished) break;
        // 7. One submit for everything queued this turn, waiting if nothing is ready.
        submit_and_wait();
    }
    // Completions nobody waits for (failed wake-ups) may still sit in the queue: the ring is
    // torn down by the runtime after every shard has returned.
}

void shard::run_tasks() {
    size_t budget = std::min<size_t>(_tasks.size(), _config.tasks_per_turn_max);
    while (budget-- > 0) {
        task t = std::move(_tasks.front());
        _tasks.pop_front();
        t();
    }
}

void shard::drain_inboxes() {
    for (auto& inbox : _inboxes) {
        if (!inbox) continue;
        // At most one queue's worth per source per turn, so one chatty peer cannot starve I/O.
        size_t budget = inbox->capacity();
        while (budget-- > 0) {
            std::optional<task> t = inbox->try_pop();
            if (!t) break;
            (*t)();
        }
    }
}

void shard::flush_overflow() {
    for (shard_id target = 0; target < _shard_count; ++target) {
        std::deque<task>& pending = _overflow[target];
        if (pending.empty()) continue;
        spsc_queue<task>& inbox = *_peers[target]->_inboxes[_id];
        while (!pending.empty() && inbox.try_push(pending.front())) pending.pop_front();
        // The peer must drain what it has even if it went to sleep before we pushed.
        _wake_needed[target] = 1;
    }
}

void shard::fire_timers() {
    // Only timers that exist now: one that re-arms itself with no delay waits a turn.
    const uint64_t newest = _next_timer_id;
    while (!_timers.empty()) {
        auto first = _timers.begin();
        if (first->first.deadline > _now || first->first.id >= newest) break;
        task t = std::move(first->second);
        _timer_deadlines.erase(first->first.id);
        _timers.erase(first);
        t();
    }
}

// ---- tasks, timers, cross-shard ---------------------------------------------------------

void shard::post(task t) {
    if (_thread.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
        _tasks.push_back(std::move(t));
        return;
    }
    {
        std::lock_guard lock(_foreign_mutex);
        _foreign_tasks.push_back(std::move(t));
    }
    _foreign_pending.store(true, std::memory_order_release);
    // Foreign posts are rare (start-up, control): always wake, no sleep protocol needed.
    const uint64_t one = 1;
    ssize_t written = ::write(_wake_fd, &one, sizeof one);
    (void)written;  // EAGAIN means the counter is already non-zero: awake anyway.
}

void shard::submit_to(shard_id target, task t) {
    SPATE_ASSERT(target < _shard_count, "submit_to an existing shard");
    // The queues have one producer each: this shard's thread.
    SPATE_ASSERT(_thread.load(std::memory_order_relaxed) == std::this_thread::get_id(),
                 "submit_to from the shard's own thread");
    if (target == _id) {
        _tasks.push_back(std::move(t));
        return;
    }
    std::deque<task>& pending = _overflow[target];
    // Behind earlier overflow, to keep this pair's order.
    if (!pending.empty() || !_peers[target]->_inboxes[_id]->try_push(t)) {
        pending.push_back(std::move(t));
        _wake_needed[target] = 1;
        return;
    }
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (_peers[target]->_sleeping.load(std::memory_order_seq_cst)) _wake_needed[target] = 1;
}

uint64_t shard::add_timer(std::chrono::milliseconds delay, task t) {
    const uint64_t id = _next_timer_id++;
    const auto deadline = _now + std::max(delay, std::chrono::milliseconds(0));
    _timers.emplace(timer_key{deadline, id}, std::move(t));
    _timer_deadlines.emplace(id, deadline);
    return id;
}

void shard::cancel_timer(uint64_t id) {
    auto found = _timer_deadlines.find(id);
    if (found == _timer_deadlines.end()) return;
    _timers.erase(timer_key{found->second, id});
    _timer_deadlines.erase(found);
}

void shard::submit_fdatasync(int fd, unique_function<void(int)> done) {
    uint32_t index = 0;
    if (!_free_fsyncs.empty()) {
        index = _free_fsyncs.back();
        _free_fsyncs.pop_back();
    } else {
        index = static_cast<uint32_t>(_fsyncs.size());
        _fsyncs.emplace_back();
    }
    fsync_slot& slot = _fsyncs[index];
    slot.done = std::move(done);
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, encode(op_kind::fsync, index, slot.generation));
    ++_ops_in_flight;
}

void shard::stop() {
    _stop_requested.store(true, std::memory_order_release);
    const uint64_t one = 1;
    ssize_t written = ::write(_wake_fd, &one, sizeof one);
    (void)written;  // EAGAIN means the counter is already non-zero: awake anyway.
}

void shard::begin_stop() {
    _stopping = true;
    log_info("shard stopping: %u connections open", _open_connections);
    if (_accept_armed) {
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_cancel64(sqe, encode(op_kind::accept, 0, 1), 0);
        io_uring_sqe_set_data64(sqe, 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    if (_wake_read_armed) {
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_cancel64(sqe, encode(op_kind::wake_read, 0, 1), 0);
        io_uring_sqe_set_data64(sqe, 0);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    for (auto& slot : _connections) {
        connection& conn = *slot;
        if (conn.state != connection::state_kind::open) continue;
        if (conn.send_in_flight) {
            // Let the bytes in flight reach the peer; stop reading meanwhile.
            conn.close_after_send = true;
            pause_recv(conn);
        } else {
            begin_close(conn);
        }
    }
    // A peer that does not read would hold its send forever: cut it after the grace period.
    add_timer(_config.stop_grace, [this] {
        for (auto& slot : _connections)
            if (slot->state == connection::state_kind::open) begin_close(*slot);
    });
}

void shard::maybe_finish_stop() {
    // The listener closes only after its multishot accept has ended.
    if (!_accept_armed && _listen_fd >= 0) {
        ::close(_listen_fd);
        _listen_fd = -1;
    }
    if (_ops_in_flight != 0 || _open_connections != 0 || !_tasks.empty()) return;
    _finished = true;
}

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

uint64_t shard::held_input_bytes() const {
    uint64_t total = 0;
    for (const auto& slot : _connections) total += slot->held_input.size();
    return total;
}

void shard::on_accept(const completion& done) {
    if (done.res < 0) {
        const int code = -done.res;
        if (code == ECANCELED) return;
        if (code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM) {
            log_warn("accept: %s; retrying in %lld ms", std::strerror(code),
                     static_cast<long long>(accept_retry_delay.count()));
            if (!_accept_armed && !_stopping)
                add_timer(accept_retry_delay, [this] {
                    if (!_accept_armed && !_stopping) arm_accept();
                });
            return;
        }
        // ECONNABORTED and friends concern one would-be connection only.
        if (code != ECONNABORTED && code != EINTR && code != EAGAIN)
            log_warn("accept: %s", std::strerror(code));
        if (!_accept_armed && !_stopping) arm_accept();
        return;
    }
    if (!_accept_armed && !_stopping) arm_accept();
    const int fd = done.res;
    if (_stopping) {
        ::close(fd);
        return;
    }
    SPATE_ASSERT(_limits != nullptr, "connection limits before accepting");
    peer_address peer;
    if (_limits->counts_addresses()) {
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        // A peer gone already has no address to count: it is admitted and closes at once.
        if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
            peer = peer_address::of(address);
    }
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
    conn.peer = peer;
    conn.last_activity = _now;
    ++_open_connections;
    arm_recv(conn);
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
    return conn.state == connection::state_kind::open && !conn.close_after_send && !_stopping &&
           !conn.waiting_for_budget && conn.responses.size() < _config.in_flight_requests_max;
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
        const bool mid_frame = conn.incoming != nullptr || conn.prefix_have > 0;
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

void shard::arm_recv(connection& conn) {
    SPATE_ASSERT(!conn.recv_armed, "one receive per connection");
    io_uring_sqe* sqe = next_sqe();
    // Multishot: one submission keeps receiving into buffers picked from the shard's ring.
    // While a frame waits for the budget, one buffer per submission instead: a connection
    // that must then wait too has been handed at most that buffer, not a batch of them.
    conn.recv_multishot = !frames_waiting();
    if (conn.recv_multishot)
        io_uring_prep_recv_multishot(sqe, conn.fd, nullptr, 0, 0);
    else
        io_uring_prep_recv(sqe, conn.fd, nullptr, _config.recv_buffer_bytes, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffer_group;
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

void shard::on_recv(connection& conn, const completion& done) {
    const bool more = (done.flags & IORING_CQE_F_MORE) != 0;
    if (!more) {
        conn.recv_armed = false;
        --conn.ops_in_flight;
        --_ops_in_flight;
    }
    if (done.res > 0) {
        SPATE_ASSERT((done.flags & IORING_CQE_F_BUFFER) != 0, "received bytes come in a buffer");
        const auto buffer_id = static_cast<uint16_t>(done.flags >> IORING_CQE_BUFFER_SHIFT);
        uint8_t* buffer = _buffer_memory + size_t{buffer_id} * _config.recv_buffer_bytes;
        conn.last_activity = _now;
        if (conn.state == connection::state_kind::open) {
            if (conn.held_input.empty())
                parse(conn, buffer, static_cast<size_t>(done.res));
            else
                conn.held_input.insert(conn.held_input.end(), buffer, buffer + done.res);
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
    // Every byte is copied once, into the frame that owns it.
    while (size > 0 && conn.state == connection::state_kind::open) {
        if (conn.responses.size() >= _config.in_flight_requests_max || conn.waiting_for_budget) {
            // At the in-flight limit, or waiting for room for the next frame: keep the rest
            // (at most the receives completing before the pause took effect) for later.
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
            std::vector<uint8_t>& bytes = conn.incoming->bytes;
            const size_t take = std::min<size_t>(conn.incoming_size - bytes.size(), size);
            if (bytes.size() + take > bytes.capacity()) {
                // Grow by doubling, but never past the announced size: the memory a frame
                // holds stays within what the budget reserved for it.
                const size_t wanted = std::max(bytes.capacity() * 2, bytes.size() + take);
                bytes.reserve(std::min<size_t>(wanted, conn.incoming_size));
            }
            bytes.insert(bytes.end(), data, data + take);
            data += take;
            size -= take;
        }
        if (conn.incoming && conn.incoming->bytes.size() == conn.incoming_size) deliver(conn);
    }
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
    release_frame_budget(conn);
    const uint64_t sequence = conn.next_sequence++;
    conn.responses.emplace_back();
    if (conn.responses.size() >= _config.in_flight_requests_max) pause_recv(conn);
    frame_ptr request = std::move(conn.incoming);
    conn.incoming_size = 0;
    _handler->on_frame(connection_ref{conn.index, conn.generation}, sequence, std::move(request));
}

void shard::close_connection(connection_ref ref) {
    if (connection* conn = lookup(ref)) begin_close(*conn);
}

void shard::begin_close(connection& conn) {
    if (conn.state != connection::state_kind::open) return;
    conn.state = connection::state_kind::closing;
    conn.incoming.reset();
    // Its reservation goes back, and a waiting place is given up (the stale queue entry is
    // dropped by the next grant): either may let the next waiter of that pool in.
    if (conn.waiting_for_budget) {
        conn.waiting_for_budget = false;
        grant_waiting_frames(pool_for(conn.waiting_size));
        conn.waiting_size = 0;
    }
    release_frame_budget(conn);
    // Wakes every operation still in flight: the receive ends, a blocked send fails.
    ::shutdown(conn.fd, SHUT_RDWR);
    _handler->on_close(connection_ref{conn.index, conn.generation});
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
    // The responses' buffers and file references are released only now that no send or
    // splice can touch them.
    conn.responses.clear();
    conn.reset_output_cursor();
    conn.held_input.clear();
    conn.resume_posted = false;
    conn.prefix_have = 0;
    conn.incoming_size = 0;
    conn.next_sequence = 0;
    conn.send_in_flight = false;
    conn.close_after_send = false;
    conn.recv_cancelled = false;
    conn.recv_multishot = false;
    conn.state = connection::state_kind::free;
    ++conn.generation;
    if (conn.generation == 0) conn.generation = 1;
    conn.frame_deadline = {};
    conn.last_activity = {};
    _limits->release(conn.peer);
    conn.peer = {};
    --_open_connections;
    _free_connections.push_back(conn.index);
}

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
    if (!conn.send_in_flight) start_output(conn);
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
    if (!conn.send_in_flight) start_output(conn);
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
    if (conn.state != connection::state_kind::open) return;
    pop_finished(conn);
    if (conn.responses.empty() || conn.responses.front().state != connection::slot_state::ready) {
        if (conn.close_after_send) begin_close(conn);
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
        start_splice(conn);
        return;
    }
    if (!gather_bytes(conn)) {
        // Everything left was zero-length pieces at the end: the response is complete.
        pop_finished(conn);
        start_output(conn);
    }
}

bool shard::gather_bytes(connection& conn) {
    // From the cursor up to the next piece of the front response; when the front ends in
    // plain bytes, on through the leading bytes of the following ready responses.
    size_t count = 0;
    bool first = true;
    for (auto& pending : conn.responses) {
        if (count == iov_max) break;
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
            conn.iov[count].iov_base = const_cast<uint8_t*>(body.bytes.data() + from);
            conn.iov[count].iov_len = until - from;
            ++count;
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
    start_output(conn);
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

void shard::start_splice(connection& conn) {
    const file_piece& piece = conn.responses.front().body.pieces[conn.piece_cursor];
    if (!conn.pipe) {
        conn.pipe = acquire_pipe();
        if (!conn.pipe) {
            // The response size is already promised: a response without the piece would
            // corrupt the stream, so the connection goes.
            begin_close(conn);
            return;
        }
        const int capacity = ::fcntl(conn.pipe->write_fd, F_GETPIPE_SZ);
        conn.pipe_capacity = capacity > 0 ? capacity : 65536;
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
}

void shard::on_splice_chain(connection& conn, const completion& done, uint32_t step) {
    SPATE_ASSERT(step < conn.chain_steps, "the completion names a step of the chain");
    conn.send_in_flight = false;
    --conn.ops_in_flight;
    --_ops_in_flight;
    // Steps before `step` posted nothing: they moved all they were asked to.
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
        ++conn.piece_cursor;
        conn.piece_read = 0;
        conn.piece_sent = 0;
        pop_finished(conn);
    }
    if (conn.close_after_send) {
        begin_close(conn);
        return;
    }
    start_output(conn);
}

}  // namespace spate::net
