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
        int32_t correlation = 0;
        auto frame = frame_of(body, version, correlation);
        auto answer = exchange(std::move(frame), correlation);
        if (!answer) return answer.failure();
        return decode_answer<Response>(*answer, static_cast<int16_t>(Request::key), version,
                                       correlation, fail("").message);
    }
    // The same without waiting: `done` runs on shard 0's thread with the answer. For
    // requests whose sender must not block (a leader's AlterPartition, while the controller
    // may be waiting for this broker's agent).
    template <class Request, class Response>
    void send(const Request& body, int16_t version, std::function<void(result<Response>)> done) {
        int32_t correlation = 0;
        auto frame = frame_of(body, version, correlation);
        const auto key = static_cast<int16_t>(Request::key);
        // The callback may outlive this client (a controller that moved): it holds copies.
        std::string who = fail("").message;
        exchange_async(std::move(frame), correlation,
                       [key, version, correlation, who = std::move(who),
                        done = std::move(done)](result<net::frame_bytes> answer) {
                           if (!answer) {
                               done(error{-1, who + answer.failure().message});
                               return;
                           }
                           done(decode_answer<Response>(*answer, key, version, correlation, who));
                       });
    }

private:
    template <class Request>
    std::vector<uint8_t> frame_of(const Request& body, int16_t version, int32_t& correlation) {
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
        correlation = header.correlation_id;
        return std::move(out.buffer());
    }
    // `who` starts every error message ("broker N at host:port: ").
    template <class Response>
    static result<Response> decode_answer(const net::frame_bytes& answer, int16_t key,
                                          int16_t version, int32_t expected,
                                          const std::string& who) {
        proto::reader in(answer.data(), answer.size());
        int32_t correlation = 0;
        if (!proto::decode_response_header(in, proto::response_header_version(key, version),
                                           correlation) ||
            correlation != expected)
            return error{-1, who + "a response header that does not match the request"};
        Response response;
        if (!response.decode(in, version)) return error{-1, who + "a malformed response"};
        return response;
    }
    result<net::frame_bytes> exchange(std::vector<uint8_t> frame, int32_t correlation_id);
    // Resolves the address (once) and hands the call to shard 0; `done` runs there.
    void exchange_async(std::vector<uint8_t> frame, int32_t correlation_id,
                        std::function<void(result<net::frame_bytes>)> done);
    bool resolve();
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
