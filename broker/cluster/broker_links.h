#pragma once
// broker_links: the connections from this broker to the others, on shard 0's io_uring ring
// (net::shard::connect). The controller's requests go through them: the cluster agent's
// broker_client hands a whole request frame over (as a task posted to shard 0), and the
// answer with the same correlation id comes back through the callback, on shard 0.
//
// Threads: owned by the broker, used only on shard 0's thread. One connection per broker
// id, opened on first use and again after a close; a request not answered within its
// timeout fails and closes the connection, so a late answer is never taken for another.

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "net/shard.h"
#include "proto/result.h"

namespace spate::broker::cluster {

// One request to another broker: a whole frame (size prefix included) whose correlation
// id is `correlation_id`, and where the answer goes.
struct outgoing_call {
    int32_t broker_id = -1;
    sockaddr_storage address{};
    socklen_t address_length = 0;
    std::vector<uint8_t> frame;
    int32_t correlation_id = 0;
    int32_t timeout_ms = 5000;
    // The answer frame (after its size prefix), or why there is none.
    std::function<void(result<net::frame_bytes>)> done;
};

// Resolves a broker's advertised host and port (a numeric address needs no lookup; a
// name blocks the caller once). False when it does not resolve.
bool resolve_address(const std::string& host, int32_t port, sockaddr_storage& address,
                     socklen_t& length);

class broker_links final : public net::connection_handler {
public:
    explicit broker_links(net::shard& shard) : _shard(shard) {}

    void call(outgoing_call request);

    void on_frame(net::connection_ref conn, uint64_t sequence, net::frame_ptr answer) override;
    void on_close(net::connection_ref conn) override;

private:
    struct link {
        net::connection_ref conn;
        bool open = false;
        sockaddr_storage address{};
        socklen_t address_length = 0;
        std::map<int32_t, std::function<void(result<net::frame_bytes>)>> pending;
    };
    link* link_of(net::connection_ref conn, int32_t& broker_id);
    void fail_all(link& target, const std::string& why);

    net::shard& _shard;
    std::map<int32_t, link> _links;
};

}  // namespace spate::broker::cluster
