// The shard loop: construction, ring setup and plumbing, completions, the loop itself,
// timers, posted tasks and cross-shard mailboxes. Connections, the receive path and the
// send path are in net/shard_connections.cc, net/shard_input.cc and net/shard_output.cc.
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
#include "net/shard_internal.h"

namespace spate::net {

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
    for (const listener& l : _listeners)
        if (l.fd >= 0) ::close(l.fd);
    if (_wake_fd >= 0) ::close(_wake_fd);
}

// ---- setup ------------------------------------------------------------------------------

result<void> shard::setup(int listen_fd, int http_listen_fd) {
    _thread.store(std::this_thread::get_id());
    _listeners[kafka_listener].fd = listen_fd;
    _listeners[http_listener].fd = http_listen_fd;
    if (auto ring = setup_ring(); !ring) return ring;
    if (auto buffers = setup_buffer_ring(); !buffers) return buffers;
    _now = std::chrono::steady_clock::now();
    arm_wake_read();
    for (uint32_t which : {kafka_listener, http_listener})
        if (_listeners[which].fd >= 0) arm_accept(which);
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
            _inline_splice = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
            _receive_marks = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
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
    ++_stats.submissions;
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

void shard::arm_accept(uint32_t which) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_multishot_accept(sqe, _listeners[which].fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, encode(op_kind::accept, which, 1));
    _listeners[which].armed = true;
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
    _stats.completions += count;
    // Waited fdatasyncs the last turn ran itself (flush_waited_syncs).
    for (const completion& done : _inline_completions) _completions.push_back(done);
    _inline_completions.clear();
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
            SPATE_ASSERT(index <= http_listener, "an accept names one of the listeners");
            if (!more) {
                _listeners[index].armed = false;
                --_ops_in_flight;
            }
            on_accept(index, done);
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
            _stats.fsync_latency.record(
                static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::steady_clock::now() - slot.submitted_at)
                                          .count()));
            ++slot.generation;
            _free_fsyncs.push_back(index);
            --_ops_in_flight;
            callback(done.res);
            return;
        }
        case op_kind::connect: {
            SPATE_ASSERT(index < _connections.size(), "completion names a connection slot");
            connection& conn = *_connections[index];
            SPATE_ASSERT(conn.generation == generation, "connection completion is not stale");
            SPATE_ASSERT(conn.connecting, "a connect completion for a connecting slot");
            on_connect(conn, done);
            finalize_if_done(conn);
            return;
        }
        case op_kind::recv:
        case op_kind::send:
        case op_kind::send_ready:
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
            else if (kind == op_kind::send_ready)
                on_send_ready(conn, done);
            else
                on_splice_chain(conn, done, step);
            maybe_move(conn);
            finalize_if_done(conn);
            return;
        }
    }
    SPATE_ASSERT(false, "completion of a known kind");
}

bool shard::has_ready_work() {
    if (!_tasks.empty() || !_output_queued.empty()) return true;
    if (_foreign_pending.load(std::memory_order_acquire)) return true;
    if (_stop_requested.load(std::memory_order_acquire) && !_stopping) return true;
    for (const auto& inbox : _inboxes)
        if (inbox && !inbox->looks_empty()) return true;
    return false;
}

void shard::submit_and_wait() {
    wake_peers();
    if (flush_waited_syncs()) {
        note_turn(std::chrono::steady_clock::now());
        return;  // its completion is handled next turn, without sleeping
    }
    bool overflowing = false;
    for (const auto& pending : _overflow)
        if (!pending.empty()) overflowing = true;
    if (has_ready_work()) {
        note_turn(std::chrono::steady_clock::now());
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
    const auto asleep = std::chrono::steady_clock::now();
    note_turn(asleep);
    const int res = io_uring_submit_and_wait_timeout(_ring.get(), &ignored, 1, wait_limit, nullptr);
    _sleeping.store(false, std::memory_order_relaxed);
    _stats.idle_ns += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - asleep)
                                                .count());
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
    _started_at = std::chrono::steady_clock::now();
    while (!_finished) {
        _now = std::chrono::steady_clock::now();
        ++_stats.loop_turns;
        // 1. I/O completions first: they return receive buffers and move sends along.
        reap();
        for (const completion& done : _completions) handle(done);
        update_receive_marks();
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
        // Responses made ready this turn: one send per connection.
        flush_output();
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

void shard::note_turn(std::chrono::steady_clock::time_point end) {
    _stats.turn_busy.record(static_cast<uint64_t>(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::microseconds>(end - _now).count())));
}

shard_stats shard::stats() const {
    shard_stats s = _stats;
    const auto lived = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now() - _started_at)
                           .count();
    s.busy_ns = static_cast<uint64_t>(std::max<int64_t>(lived, 0)) > s.idle_ns
                    ? static_cast<uint64_t>(lived) - s.idle_ns
                    : 0;
    if (_ring_ready && _ring->cq.koverflow != nullptr)
        s.cq_overflows = __atomic_load_n(_ring->cq.koverflow, __ATOMIC_RELAXED);
    for (const auto& pending : _overflow) s.cross_shard_waiting += pending.size();
    for (const auto& inbox : _inboxes)
        if (inbox) s.cross_shard_queued += inbox->approximate_size();
    s.connections_refused = _connections_refused;
    s.connections_open = _open_connections;
    s.incomplete_request_bytes = incomplete_request_bytes();
    return s;
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
    ++_stats.cross_shard_tasks;
    // Behind earlier overflow, to keep this pair's order.
    if (!pending.empty() || !_peers[target]->_inboxes[_id]->try_push(t)) {
        ++_stats.cross_shard_full;
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

uint32_t shard::take_fsync_slot(unique_function<void(int)> done) {
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
    slot.submitted_at = std::chrono::steady_clock::now();
    ++_ops_in_flight;
    return index;
}

void shard::prep_fdatasync(uint32_t index, int fd) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(sqe, encode(op_kind::fsync, index, _fsyncs[index].generation));
}

void shard::submit_fdatasync(int fd, unique_function<void(int)> done) {
    prep_fdatasync(take_fsync_slot(std::move(done)), fd);
}

void shard::submit_waited_fdatasync(int fd, unique_function<void(int)> done) {
    _waited_syncs.push_back({take_fsync_slot(std::move(done)), fd});
}

bool shard::flush_waited_syncs() {
    if (_waited_syncs.empty()) return false;
    if (_waited_syncs.size() == 1 && !has_ready_work()) {
        // Submit what this turn queued (answers, reads) and collect what already completed:
        // the sync runs inline only when nothing else is waiting for the shard.
        const int res = io_uring_submit_and_get_events(_ring.get());
        if (res < 0 && res != -EINTR && res != -EBUSY && res != -EAGAIN)
            log_error("io_uring submit: %s", std::strerror(-res));
        if (io_uring_cq_ready(_ring.get()) == 0 && !has_ready_work()) {
            const waited_sync sync = _waited_syncs.front();
            _waited_syncs.clear();
            const int synced = ::fdatasync(sync.fd) == 0 ? 0 : -errno;
            _inline_completions.push_back(
                {encode(op_kind::fsync, sync.index, _fsyncs[sync.index].generation), synced, 0});
            ++_stats.fsyncs_inline;
            return true;
        }
    }
    for (const waited_sync& sync : _waited_syncs) prep_fdatasync(sync.index, sync.fd);
    _waited_syncs.clear();
    return false;
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
    for (uint32_t which : {kafka_listener, http_listener}) {
        if (!_listeners[which].armed) continue;
        io_uring_sqe* sqe = next_sqe();
        io_uring_prep_cancel64(sqe, encode(op_kind::accept, which, 1), 0);
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
    // A listener closes only after its multishot accept has ended.
    for (listener& l : _listeners) {
        if (l.armed || l.fd < 0) continue;
        ::close(l.fd);
        l.fd = -1;
    }
    if (_ops_in_flight != 0 || _open_connections != 0 || !_tasks.empty()) return;
    _finished = true;
}

}  // namespace spate::net
