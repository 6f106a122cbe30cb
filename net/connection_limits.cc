// connection_limits: the broker-wide and per-address connection counts.
#include "net/connection_limits.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "proto/assert.h"

namespace spate::net {

peer_address peer_address::of(const sockaddr_storage& address) {
    peer_address out;
    if (address.ss_family == AF_INET) {
        const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
        std::memcpy(out.bytes.data(), &v4.sin_addr, 4);
        out.length = 4;
    } else if (address.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
        std::memcpy(out.bytes.data(), &v6.sin6_addr, 16);
        out.length = 16;
    }
    return out;
}

bool peer_address::loopback() const {
    if (length == 4) return bytes[0] == 127;
    if (length != 16) return false;
    static constexpr std::array<uint8_t, 16> v6_loopback = {0, 0, 0, 0, 0, 0, 0, 0,
                                                            0, 0, 0, 0, 0, 0, 0, 1};
    if (bytes == v6_loopback) return true;
    static constexpr std::array<uint8_t, 12> v4_mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::equal(v4_mapped.begin(), v4_mapped.end(), bytes.begin()) && bytes[12] == 127;
}

std::string peer_address::text() const {
    if (length != 4 && length != 16) return {};
    char buffer[INET6_ADDRSTRLEN + 1] = {'/'};
    const int family = length == 4 ? AF_INET : AF_INET6;
    if (::inet_ntop(family, bytes.data(), buffer + 1, INET6_ADDRSTRLEN) == nullptr) return {};
    return buffer;
}

size_t peer_address_hash::operator()(const peer_address& address) const {
    // FNV-1a over the significant bytes: addresses are few and short, any spread will do.
    uint64_t hash = 1469598103934665603ull;
    for (uint8_t i = 0; i < address.length; ++i) {
        hash ^= address.bytes[i];
        hash *= 1099511628211ull;
    }
    return static_cast<size_t>(hash);
}

connection_limits::connection_limits(uint32_t total_max, uint32_t per_address_max)
    : _total_max(total_max), _per_address_max(per_address_max) {
    SPATE_ASSERT(total_max >= 1, "at least one connection may be open");
}

connection_limits::verdict connection_limits::try_admit(const peer_address& address) {
    if (_open.fetch_add(1, std::memory_order_relaxed) >= _total_max) {
        _open.fetch_sub(1, std::memory_order_relaxed);
        return verdict::broker_full;
    }
    if (_per_address_max == 0 || address.length == 0) return verdict::admitted;
    std::lock_guard lock(_mutex);
    uint32_t& count = _per_address[address];
    if (count >= _per_address_max) {
        _open.fetch_sub(1, std::memory_order_relaxed);
        return verdict::address_full;
    }
    ++count;
    return verdict::admitted;
}

void connection_limits::release(const peer_address& address) {
    const uint32_t before = _open.fetch_sub(1, std::memory_order_relaxed);
    SPATE_ASSERT(before >= 1, "release an admitted connection");
    if (_per_address_max == 0 || address.length == 0) return;
    std::lock_guard lock(_mutex);
    auto found = _per_address.find(address);
    SPATE_ASSERT(found != _per_address.end(), "release an address that was admitted");
    SPATE_ASSERT(found->second >= 1, "an admitted address has a count");
    if (--found->second == 0) _per_address.erase(found);
}

}  // namespace spate::net
