#pragma once
// connection_limits: the broker-wide count of open connections and the count per peer
// address, shared by every shard of a runtime.
//
// Ownership and threads: the runtime owns one, created before its shards and destroyed after
// them. Any shard thread may call try_admit() and release(), once per accepted and once per
// closed connection, never per request: the total is one relaxed atomic, and the per-address
// table (used only when a per-address limit is set) takes a mutex.

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

struct sockaddr_storage;

namespace spate::net {

// A peer's IP address without its port: 4 bytes for IPv4, 16 for IPv6.
struct peer_address {
    std::array<uint8_t, 16> bytes = {};
    uint8_t length = 0;

    // The address of an accepted socket's peer; length 0 when it has none we can count
    // (a Unix socket, or getpeername failing because the peer already left).
    static peer_address of(const sockaddr_storage& address);
    bool operator==(const peer_address& other) const = default;
    // 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104.
    bool loopback() const;
    // Kafka's spelling of a client host: "/" and the address ("/127.0.0.1", "/::1");
    // empty when unknown.
    std::string text() const;
};

struct peer_address_hash {
    size_t operator()(const peer_address& address) const;
};

class connection_limits {
public:
    enum class verdict : uint8_t { admitted, broker_full, address_full };

    // `total_max` connections in all; at most `per_address_max` from one address (0: no
    // per-address limit).
    connection_limits(uint32_t total_max, uint32_t per_address_max);
    connection_limits(const connection_limits&) = delete;
    connection_limits& operator=(const connection_limits&) = delete;

    // Counts a new connection from `address` unless a limit is reached. Every admitted
    // connection is released exactly once, with the same address.
    verdict try_admit(const peer_address& address);
    void release(const peer_address& address);
    bool counts_addresses() const { return _per_address_max != 0; }
    uint32_t open_connections() const { return _open.load(std::memory_order_relaxed); }

private:
    const uint32_t _total_max;
    const uint32_t _per_address_max;
    // Relaxed: the counter orders nothing else; each fetch_add returns a distinct previous
    // value, so the limit is never overshot however many shards accept at once.
    std::atomic<uint32_t> _open{0};
    std::mutex _mutex;
    std::unordered_map<peer_address, uint32_t, peer_address_hash> _per_address;
};

}  // namespace spate::net
