#pragma once
// broker_client: the controller's connection to one broker, for LeaderAndIsr,
// UpdateMetadata and StopReplica. Blocking, on the cluster agent's thread: controller
// requests are rare, may wait (CLUSTER.md: the control plane may block on its own
// thread), and never touch a shard. The replica fetchers of the replication issue, which
// are data plane, go through net/'s rings instead.

#include <cstdint>
#include <string>

#include "proto/header.h"
#include "proto/messages.h"
#include "proto/result.h"

namespace spate::broker::cluster {

class broker_client {
public:
    broker_client(std::string host, int32_t port, int32_t node_id, int32_t timeout_ms)
        : _host(std::move(host)),
          _port(port),
          _client_id("spate-controller-" + std::to_string(node_id)),
          _timeout_ms(timeout_ms) {}
    ~broker_client();
    broker_client(const broker_client&) = delete;
    broker_client& operator=(const broker_client&) = delete;

    const std::string& host() const { return _host; }
    int32_t port() const { return _port; }

    // Sends `body` at `version` and decodes the answer; connects on first use and after a
    // failure (which closes the connection, so the next call starts afresh).
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
        auto answer = exchange(out.buffer());
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
    result<std::vector<uint8_t>> exchange(const std::vector<uint8_t>& frame);
    error fail(const std::string& what);
    void disconnect();

    std::string _host;
    int32_t _port;
    std::string _client_id;
    int32_t _timeout_ms;
    int32_t _correlation_id = 0;
    int _fd = -1;
};

}  // namespace spate::broker::cluster
