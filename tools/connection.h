#pragma once
// spatectl's connections to Kafka brokers.
//
// broker_connection: one TCP connection with a negotiated set of API versions, for admin
// commands and the consumers. I/O waits in poll() bounded by the timeout. call() sends one
// request and waits for its response; send() and receive() let a consumer keep one fetch
// in flight on every leader's connection at once.
//
// pipelined_connection: one non-blocking TCP connection that keeps many requests in
// flight (like a real producer's max.in.flight) for `perf produce`. Its owner drives it
// from a poll() loop: queue() frames, flush() on POLLOUT, receive() on POLLIN.
//
// Both are owned by the command that opened them, on the one thread spatectl runs.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "proto/error_code.h"
#include "proto/header.h"
#include "proto/messages.h"
#include "proto/result.h"
#include "proto/writer.h"
#include "tools/args.h"

namespace spate::tools {

// Largest response frame accepted: a fetch answer is bounded by the fetch's max_bytes
// (spatectl asks for at most 64 MiB), plus headroom for metadata of huge clusters.
constexpr size_t response_bytes_max = 256u << 20;

constexpr std::string_view client_id = "spatectl";

// A version range the broker advertised for one API.
struct version_range {
    int16_t min = 0;
    int16_t max = -1;
};

// The versions to use: min(ours, broker's max), or nothing when the ranges do not meet.
std::optional<int16_t> pick_version(int16_t ours_min, int16_t ours_max,
                                    const version_range& broker);

// Kafka's name of an API, e.g. "ListGroups" for key 16 (our schema names are snake_case).
std::string api_display_name(int16_t key);

// A request frame (size prefix, header, body) in a writer: its size prefix counts external
// records too (proto::records::external_length), which the writer leaves as gaps for the
// sender to fill. `size_hint`: the bytes the body is expected to take (a Produce's batches),
// reserved so the frame grows only once.
template <class Request>
proto::writer request_writer(const Request& request, int16_t version, int32_t correlation_id,
                             size_t size_hint = 0) {
    proto::writer out(256 + size_hint);
    out.int32(0);
    proto::request_header header;
    header.api_key = static_cast<int16_t>(Request::key);
    header.api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = std::string(client_id);
    proto::encode_request_header(out, header);
    request.encode(out, version);
    out.patch_int32(0, static_cast<int32_t>(out.size() - 4));
    return out;
}

// The same frame ready to send, for requests without external records.
template <class Request>
std::vector<uint8_t> encode_request(const Request& request, int16_t version, int32_t correlation_id,
                                    size_t size_hint = 0) {
    return std::move(request_writer(request, version, correlation_id, size_hint).buffer());
}

class broker_connection {
public:
    // Connects (bounded by timeout_ms) and negotiates versions with ApiVersions.
    static result<broker_connection> open(const endpoint& where, int32_t timeout_ms);
    // Tries each bootstrap server in turn; the error names the last one that failed.
    static result<broker_connection> open_any(const std::vector<endpoint>& servers,
                                              int32_t timeout_ms);

    broker_connection(broker_connection&& other) noexcept;
    broker_connection& operator=(broker_connection&& other) noexcept;
    broker_connection(const broker_connection&) = delete;
    broker_connection& operator=(const broker_connection&) = delete;
    ~broker_connection();

    const endpoint& where() const { return _where; }
    // Hands the (non-blocking) socket over to a pipelined_connection after negotiation;
    // this object is unusable afterwards.
    int release_fd() { return std::exchange(_fd, -1); }
    // The broker's advertised range for `key`, if it serves the API at all.
    std::optional<version_range> advertised(int16_t key) const;
    // The version to use for Request, or an error naming the API as unsupported.
    template <class Request>
    result<int16_t> version_for() const {
        const std::string name = api_display_name(static_cast<int16_t>(Request::key));
        const auto range = advertised(static_cast<int16_t>(Request::key));
        if (!range)
            return error{1, "the broker does not support the " + name + " API (key " +
                                std::to_string(static_cast<int>(Request::key)) + ")"};
        auto version = pick_version(Request::version_min, Request::version_max, *range);
        if (!version) return error{1, "no common version of the " + name + " API with the broker"};
        return *version;
    }

    // Sends `request` at `version` and decodes the response into `response`. The
    // response's records fields point into `frame`, which the caller keeps alive.
    template <class Request, class Response>
    result<void> call(const Request& request, int16_t version, Response& response,
                      std::vector<uint8_t>& frame) {
        auto sent = send(request, version);
        if (!sent) return sent.failure();
        return receive<Request>(sent.value(), version, response, frame);
    }
    // The two halves of call(), so that a caller can have one request in flight on each
    // of several connections at once (a fetch from every leader) instead of waiting for
    // each broker in turn. send() returns the correlation id that receive() expects;
    // responses come back in the order the requests were sent.
    template <class Request>
    result<int32_t> send(const Request& request, int16_t version) {
        const int32_t correlation_id = _next_correlation_id++;
        auto sent = send_frame(encode_request(request, version, correlation_id));
        if (!sent) return sent.failure();
        return correlation_id;
    }
    template <class Request, class Response>
    result<void> receive(int32_t correlation_id, int16_t version, Response& response,
                         std::vector<uint8_t>& frame) {
        auto received = receive_frame(frame);
        if (!received) return received;
        proto::reader in(frame);
        int32_t answered_id = 0;
        const int16_t header_version =
            proto::response_header_version(static_cast<int16_t>(Request::key), version);
        if (!proto::decode_response_header(in, header_version, answered_id))
            return failure("a malformed response header");
        if (answered_id != correlation_id)
            return failure("a response to another request (correlation id " +
                           std::to_string(answered_id) + ")");
        if (!response.decode(in, version))
            return failure(std::string("a malformed response (") + proto::to_string(in.error()) +
                           ")");
        return ok_result();
    }
    // The same with the negotiated version.
    template <class Request, class Response>
    result<void> call(const Request& request, Response& response, std::vector<uint8_t>& frame) {
        auto version = version_for<Request>();
        if (!version) return version.failure();
        return call(request, version.value(), response, frame);
    }
    // Sends a request that gets no response (Produce with acks=0).
    template <class Request>
    result<void> send_only(const Request& request, int16_t version) {
        return send_frame(encode_request(request, version, _next_correlation_id++));
    }

private:
    broker_connection(int fd, endpoint where, int32_t timeout_ms);
    result<void> negotiate();
    result<void> send_frame(const std::vector<uint8_t>& frame);
    result<void> receive_frame(std::vector<uint8_t>& frame);
    result<void> wait_for(short events, std::chrono::steady_clock::time_point deadline);
    error failure(const std::string& what) const;

    int _fd = -1;
    endpoint _where;
    int32_t _timeout_ms = 0;
    int32_t _next_correlation_id = 1;
    std::map<int16_t, version_range> _versions;
};

// Opens a non-blocking TCP connection (the connect itself is bounded by timeout_ms).
result<int> connect_socket(const endpoint& where, int32_t timeout_ms, bool non_blocking);

class pipelined_connection {
public:
    pipelined_connection(int fd, endpoint where) : _fd(fd), _where(std::move(where)) {}
    pipelined_connection(const pipelined_connection&) = delete;
    pipelined_connection& operator=(const pipelined_connection&) = delete;
    ~pipelined_connection();

    int fd() const { return _fd; }
    const endpoint& where() const { return _where; }
    // Appends bytes to the output; call flush() when poll() says POLLOUT (or at once).
    // Output is a list of pieces sent with one gathering sendmsg, so a frame may come in
    // several (a Produce's header, then its batches, each in its own buffer): nothing is
    // copied to put a frame together.
    void queue(std::span<const uint8_t> bytes);
    void queue(std::vector<uint8_t>&& bytes);
    bool wants_write() const { return !_out.empty(); }
    // Writes as much queued output as the socket takes.
    result<void> flush();
    // Reads what is available and calls on_frame(span of one response frame without the
    // size prefix) for each whole frame. The span lives for the duration of the call.
    result<void> receive(const std::function<result<void>(std::span<const uint8_t>)>& on_frame);

private:
    error failure(const std::string& what) const;

    int _fd;
    endpoint _where;
    std::deque<std::vector<uint8_t>> _out;  // never holds an empty piece
    size_t _out_sent = 0;                   // bytes of _out.front() already sent
    std::vector<uint8_t> _in;
    size_t _in_used = 0;
};

}  // namespace spate::tools
