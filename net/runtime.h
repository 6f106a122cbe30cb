#pragma once
// runtime: starts N shards on N threads, each with its own SO_REUSEPORT listener on the
// same host:port (and, when configured, one HTTP listener that shard 0 serves), and stops
// them.
//
// Ownership: the process (the broker, a test) owns one runtime; the runtime owns the shards,
// their threads and listeners. Construct, start(), then stop_and_join() from any thread but
// a shard's own; the destructor stops and joins too. Shards are destroyed only after every
// thread has returned, so one shard may always wake another.

#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "net/shard.h"
#include "proto/result.h"

namespace spate::net {

class runtime {
public:
    // Creates the shards and, for each, its handler through `make_handler` (called here, on
    // the constructing thread, once per shard in id order). The handler must outlive the
    // runtime.
    runtime(uint32_t shard_count, const shard_config& config,
            const std::function<connection_handler&(shard&)>& make_handler);
    ~runtime();
    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;

    // Binds the listeners (the error names host:port), then starts one thread per shard:
    // pinned to a core if configured, each sets up its ring before this returns. On failure
    // nothing keeps running.
    result<void> start();
    shard& shard_at(shard_id id);
    uint32_t shard_count() const { return static_cast<uint32_t>(_shards.size()); }
    // Waits until every shard's loop has returned (after shard::stop() on each, from
    // wherever). Thread-safe and idempotent; not from a shard's own thread (it would join
    // itself).
    void join();
    // stop() on every shard, then join(). Same rules as join().
    void stop_and_join();
    // The port the listeners are bound to (useful with listen_port 0).
    uint16_t bound_port() const { return _bound_port; }
    // The HTTP listener's port (config.http_listen), 0 without one.
    uint16_t http_bound_port() const { return _http_bound_port; }

private:
    result<void> open_listeners(std::vector<int>& fds);
    void thread_main(shard_id id, int listen_fd, int http_fd);

    shard_config _config;
    // Declared before the shards, so it outlives them.
    std::unique_ptr<connection_limits> _limits;
    std::vector<std::unique_ptr<shard>> _shards;
    std::vector<std::thread> _threads;
    std::vector<result<void>> _setup_results;
    std::unique_ptr<std::latch> _ready;
    std::unique_ptr<std::latch> _go;
    bool _abort_start = false;
    std::mutex _stop_mutex;
    bool _started = false;
    bool _joined = false;
    uint16_t _bound_port = 0;
    int _http_fd = -1;
    uint16_t _http_bound_port = 0;
};

}  // namespace spate::net
