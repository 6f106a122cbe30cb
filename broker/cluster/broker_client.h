#pragma once
// broker_client: the controller's requests to one broker (LeaderAndIsr, UpdateMetadata,
// StopReplica). The bytes travel on shard 0's io_uring ring (broker_links.h); the call
// itself waits for the answer on the cluster agent's thread, which keeps the controller's
// decisions in order (CLUSTER.md: the control plane may block on its own thread; the
// shards never wait for it).

#include <cstdint>
#include <functional>
#include <string>

#include "broker/cluster/broker_links.h"
#include "proto/header.h"
#include "proto/messages.h"
#include "proto/result.h"

namespace spate::broker::cluster {

class broker_client {
public:
    // `send` hands a request to shard 0 (broker::start_cluster posts it to broker_links).
    broker_client(int32_t broker_id, std::string host, int32_t port, int32_t node_id,
                  int32_t timeout_ms, std::function<void(outgoing_call)> send)
        : _broker_id(broker_id),
          _host(std::move(host)),
          _port(port),
          _client_id("spate-controller-" + std::to_string(node_id)),
          _timeout_ms(timeout_ms),
          _send(std::move(send)) {}
    broker_client(const broker_client&) = delete;
    broker_client& operator=(const broker_client&) = delete;

    const std::string& host() const { return _host; }
    int32_t port() const { return _port; }

    // Sends `body` at `version` and waits for the answer (at most the timeout); the
    // connection is opened on first use and again after a failure.
    template <class Request, class Response>
    result<Response> call(const Request& body, int16_t version) {
        proto::writer out(256);
        out.int32(0);
        proto::request_header header;
        header.api_key = static_cast<int16_t>(Request::key);
        header.api_version = version;
        header.correlation_id = ++_correlation_id;
        header.client_id = _client_id;
        proto::encode_request_header(out, header);
        body.encode(out, version);
        out.patch_int32(0, static_cast<int32_t>(out.size() - 4));
        auto answer = exchange(out.buffer(), header.correlation_id);
        if (!answer) return answer.failure();
        proto::reader in(answer->data(), answer->size());
        int32_t correlation = 0;
        if (!proto::decode_response_header(
                in, proto::response_header_version(header.api_key, version), correlation) ||
            correlation != header.correlation_id)
            return fail("a response header that does not match the request");
        Response response;
        if (!response.decode(in, version)) return fail("a malformed response");
        return response;
    }

private:
    result<std::vector<uint8_t>> exchange(std::vector<uint8_t> frame, int32_t correlation_id);
    error fail(const std::string& what) const;

    int32_t _broker_id;
    std::string _host;
    int32_t _port;
    std::string _client_id;
    int32_t _timeout_ms;
    std::function<void(outgoing_call)> _send;
    int32_t _correlation_id = 0;
    // The resolved address, looked up on first use.
    sockaddr_storage _address{};
    socklen_t _address_length = 0;
};

}  // namespace spate::broker::cluster
