// runtime: listeners, threads, core pinning and the start/stop handshake.
#include "net/runtime.h"

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "net/log.h"

namespace spate::net {

namespace {

// Pending connections per listener before the kernel refuses more.
constexpr int listen_backlog = 1024;

// Pins the calling thread to the index-th CPU the process may run on.
void pin_to_core(uint32_t index) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    const int count = CPU_COUNT(&allowed);
    if (count <= 0) return;
    int wanted = static_cast<int>(index % static_cast<uint32_t>(count));
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (wanted-- > 0) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        const int res = pthread_setaffinity_np(pthread_self(), sizeof one, &one);
        if (res != 0) log_warn("cannot pin to cpu %d: %s", cpu, std::strerror(res));
        return;
    }
}

}  // namespace

runtime::runtime(uint32_t shard_count, const shard_config& config,
                 const std::function<connection_handler&(shard&)>& make_handler)
    : _config(config),
      _limits(std::make_unique<connection_limits>(config.connections_max,
                                                  config.connections_per_ip_max)) {
    SPATE_ASSERT(shard_count >= 1, "at least one shard");
    _shards.reserve(shard_count);
    for (shard_id id = 0; id < shard_count; ++id)
        _shards.push_back(std::make_unique<shard>(id, shard_count, config));
    std::vector<shard*> peers;
    for (auto& s : _shards) peers.push_back(s.get());
    for (auto& s : _shards) {
        s->set_peers(peers);
        s->set_connection_limits(*_limits);
        s->set_handler(make_handler(*s));
    }
}

runtime::~runtime() { stop_and_join(); }

shard& runtime::shard_at(shard_id id) {
    SPATE_ASSERT(id < _shards.size(), "shard_at an existing shard");
    return *_shards[id];
}

namespace {

// Binds a listening socket on host:port (port 0: the kernel picks one, written back to
// `port`). `shared`: SO_REUSEPORT, so each shard may have its own on the same port.
result<int> listen_on(const std::string& host_name, uint16_t& port, bool shared) {
    const auto name = [&] { return host_name + ":" + std::to_string(port); };
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string port_text = std::to_string(port);
    const char* host = host_name.empty() ? nullptr : host_name.c_str();
    const int resolved = getaddrinfo(host, port_text.c_str(), &hints, &found);
    if (resolved != 0)
        return error{EINVAL,
                     "cannot resolve listen address " + name() + ": " + gai_strerror(resolved)};
    sockaddr_storage address{};
    std::memcpy(&address, found->ai_addr, found->ai_addrlen);
    const socklen_t address_length = found->ai_addrlen;
    const int family = found->ai_family;
    freeaddrinfo(found);

    const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return error{errno, "cannot create a socket for " + name() + ": " + std::strerror(errno)};
    const auto fail = [&](const std::string& what) {
        const int code = errno;
        ::close(fd);
        return error{code, what + name() + ": " + std::strerror(code)};
    };
    const int one = 1;
    // REUSEPORT: one listener per shard on the same port, the kernel spreads connections.
    // REUSEADDR: a restart does not wait for TIME_WAIT connections of the old process.
    if (shared && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        return fail("cannot set SO_REUSEPORT on ");
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        return fail("cannot set SO_REUSEADDR on ");
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), address_length) != 0)
        return fail("cannot bind ");
    if (::listen(fd, listen_backlog) != 0) return fail("cannot listen on ");
    if (port == 0) {
        sockaddr_storage bound{};
        socklen_t bound_length = sizeof bound;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_length) != 0)
            return fail("getsockname of ");
        port = family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                  : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    }
    return fd;
}

}  // namespace

result<void> runtime::open_listeners(std::vector<int>& fds) {
    // With port 0 the first bind picks the port and every later listener joins it.
    uint16_t port = _config.listen_port;
    for (size_t i = 0; i < _shards.size(); ++i) {
        auto fd = listen_on(_config.listen_host, port, true);
        if (!fd) return fd.failure();
        fds.push_back(*fd);
    }
    _bound_port = port;
    if (!_config.http_listen) return {};
    uint16_t http_port = _config.http_listen->port;
    auto fd = listen_on(_config.http_listen->host, http_port, false);
    if (!fd) return fd.failure();
    _http_fd = *fd;
    _http_bound_port = http_port;
    return {};
}

void runtime::thread_main(shard_id id, int listen_fd, int http_fd) {
    set_log_shard(id);
    if (_config.pin_to_core) pin_to_core(id);
    // A send to a vanished peer must be an error code on this thread, never the
    // process-killing SIGPIPE (splice to a socket has no MSG_NOSIGNAL).
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);

    shard& own = *_shards[id];
    _setup_results[id] = own.setup(listen_fd, http_fd);
    _ready->count_down();
    _go->wait();
    if (_abort_start || !_setup_results[id].ok()) return;
    own.run();
}

result<void> runtime::start() {
    std::lock_guard lock(_stop_mutex);
    SPATE_ASSERT(!_started, "start() once");
    _started = true;
    std::vector<int> fds;
    if (auto opened = open_listeners(fds); !opened) {
        for (int fd : fds) ::close(fd);
        if (_http_fd >= 0) ::close(_http_fd);
        _joined = true;
        return opened;
    }
    const auto count = static_cast<ptrdiff_t>(_shards.size());
    _setup_results.assign(_shards.size(), result<void>());
    _ready = std::make_unique<std::latch>(count);
    _go = std::make_unique<std::latch>(1);
    // Every ring exists before any shard runs, so the first cross-shard wake-up has a
    // target. The shards own their listeners from here on: the HTTP one is shard 0's (a
    // scrape gathers every shard's figures from there).
    for (shard_id id = 0; id < _shards.size(); ++id)
        _threads.emplace_back([this, id, fd = fds[id], http = id == 0 ? _http_fd : -1] {
            thread_main(id, fd, http);
        });
    _ready->wait();
    for (const auto& setup : _setup_results) {
        if (setup.ok()) continue;
        _abort_start = true;
        _go->count_down();
        for (auto& thread : _threads) thread.join();
        _threads.clear();
        _joined = true;
        return setup.failure();
    }
    _go->count_down();
    return {};
}

void runtime::join() {
    std::lock_guard lock(_stop_mutex);
    if (_joined) return;
    for (auto& thread : _threads) thread.join();
    _threads.clear();
    _joined = true;
}

void runtime::stop_and_join() {
    // Stopping needs no lock (shard::stop is thread-safe), so a thread blocked in join()
    // never keeps this one from stopping the shards it waits for.
    for (auto& s : _shards) s->stop();
    join();
}

}  // namespace spate::net
