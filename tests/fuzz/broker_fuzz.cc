// libFuzzer target: whole requests against a real broker. One spate broker (two
// unpinned shards, small segments and retention, data in a temporary directory) runs
// in this process for the whole fuzzing run; every input is a short sequence of
// requests sent over one loopback connection, so the handlers, the group coordinator,
// storage and net/ all see what the fuzzer writes.
//
// Input layout, repeated until the input or `requests_per_input_max` runs out:
//   u8  handler selector: handler_list()[selector % size], so only served APIs
//   u8  version selector: version_min + selector % (version_max - version_min + 1)
//   u16 body length, little-endian (cut to what remains)
//   body bytes, sent as they are after a header the harness writes (correct size,
//   api key, version, correlation id, client id, tagged fields when flexible)
// A few fields that only make the broker wait or grow (Fetch max_wait_ms, JoinGroup
// timeouts, partition counts) are clamped when the body decodes, and sent re-encoded.
//
// After each request the harness sends an ApiVersions "ping" and reads until its answer:
// the request's own answer, if any (acks=0 produce has none), must come first, carry
// the right correlation id and decode at the request's version. A closed connection
// ends the input (the broker may close on bad input). After each input a fresh
// connection must get an ApiVersions answer within `health_wait`, or the run aborts.
// A crash, a sanitizer report or a SPATE_ASSERT (a trap) anywhere in the broker fails
// the run like a crash in this function. Every `cleanup_period_inputs` inputs all
// topics and groups are deleted, so state stays bounded over millions of inputs.
//
// Logging: this file defines net/log.h's functions, so the archive's net/log.o is not
// linked; warnings (one per closed connection) are dropped, errors are printed, and
// SPATE_FUZZ_LOG=1 prints everything.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "broker/handlers/handlers.h"
#include "net/log.h"
#include "proto/header.h"
#include "proto/messages.h"
#include "proto/reader.h"
#include "proto/writer.h"

namespace spate::net {

namespace {
thread_local int64_t fuzz_log_shard = -1;
bool log_everything() {
    static const bool everything = std::getenv("SPATE_FUZZ_LOG") != nullptr;
    return everything;
}
void write_log(const char* level, const char* format, va_list arguments) {
    char line[1024];
    int used = std::snprintf(line, sizeof line, "spate %s [shard %lld] ", level,
                             static_cast<long long>(fuzz_log_shard));
    if (used < 0) return;
    int body =
        std::vsnprintf(line + used, sizeof line - static_cast<size_t>(used) - 1, format, arguments);
    size_t length = static_cast<size_t>(used) + static_cast<size_t>(std::max(body, 0));
    if (length > sizeof line - 2) length = sizeof line - 2;
    line[length++] = '\n';
    ssize_t written = ::write(STDERR_FILENO, line, length);
    (void)written;
}
}  // namespace

void set_log_shard(int64_t shard) { fuzz_log_shard = shard; }

void log_info(const char* format, ...) {
    if (!log_everything()) return;
    va_list arguments;
    va_start(arguments, format);
    write_log("INFO", format, arguments);
    va_end(arguments);
}

void log_warn(const char* format, ...) {
    if (!log_everything()) return;
    va_list arguments;
    va_start(arguments, format);
    write_log("WARN", format, arguments);
    va_end(arguments);
}

void log_error(const char* format, ...) {
    va_list arguments;
    va_start(arguments, format);
    write_log("ERROR", format, arguments);
    va_end(arguments);
}

}  // namespace spate::net

namespace {

using namespace spate;
using clock_type = std::chrono::steady_clock;

constexpr size_t requests_per_input_max = 8;
// How long one input may wait for answers in all (a legitimately slow request, e.g. a
// JoinGroup waiting for members of an earlier input, is cut here, not failed).
constexpr auto input_wait = std::chrono::milliseconds(2000);
// A broker that cannot answer ApiVersions this long after an input is broken.
constexpr auto health_wait = std::chrono::milliseconds(5000);
constexpr uint64_t cleanup_period_inputs = 512;
constexpr int32_t response_bytes_max = 64 << 20;
constexpr int32_t ping_correlation_id = 0x50494e47;  // "PING"
constexpr int32_t partitions_max = 4;

struct fuzz_broker {
    std::string data_dir;
    broker::broker* process = nullptr;
    uint16_t port = 0;
    uint64_t inputs = 0;
};
fuzz_broker* the_broker = nullptr;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "broker_fuzz: %s\n", what);
    std::fflush(stderr);
    std::abort();
}

// ---- a blocking loopback client with deadlines ---------------------------------------

class client {
public:
    explicit client(uint16_t port) {
        _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (_fd < 0) fail("socket() failed");
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
            fail("cannot connect to the broker");
        int one = 1;
        (void)::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~client() { ::close(_fd); }
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // False when the broker closed the connection.
    bool send_all(const std::vector<uint8_t>& bytes) {
        size_t sent = 0;
        while (sent < bytes.size()) {
            ssize_t n = ::send(_fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            sent += static_cast<size_t>(n);
        }
        return true;
    }

    enum class status { frame, closed, timed_out };
    // Reads one response frame (without its size prefix) into `out`.
    status read_frame(clock_type::time_point deadline, std::vector<uint8_t>& out) {
        uint8_t size_bytes[4];
        if (auto got = read_exactly(deadline, size_bytes, 4); got != status::frame) return got;
        const int32_t size =
            static_cast<int32_t>((uint32_t{size_bytes[0]} << 24) | (uint32_t{size_bytes[1]} << 16) |
                                 (uint32_t{size_bytes[2]} << 8) | uint32_t{size_bytes[3]});
        if (size < 4 || size > response_bytes_max) fail("response frame with an impossible size");
        out.resize(static_cast<size_t>(size));
        return read_exactly(deadline, out.data(), out.size());
    }

private:
    status read_exactly(clock_type::time_point deadline, uint8_t* into, size_t count) {
        size_t got = 0;
        while (got < count) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            if (left.count() <= 0) return status::timed_out;
            pollfd waiting{_fd, POLLIN, 0};
            int ready = ::poll(&waiting, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) return status::timed_out;
            ssize_t n = ::recv(_fd, into + got, count - got, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return status::closed;
            got += static_cast<size_t>(n);
        }
        return status::frame;
    }

    int _fd = -1;
};

std::vector<uint8_t> frame_request(int16_t key, int16_t version, int32_t correlation_id,
                                   const uint8_t* body, size_t body_size) {
    proto::writer out(64 + body_size);
    out.int32(0);
    proto::request_header header;
    header.api_key = key;
    header.api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = "broker_fuzz";
    proto::encode_request_header(out, header);
    std::vector<uint8_t> bytes = std::move(out.buffer());
    bytes.insert(bytes.end(), body, body + body_size);
    const uint32_t size = static_cast<uint32_t>(bytes.size() - 4);
    bytes[0] = static_cast<uint8_t>(size >> 24);
    bytes[1] = static_cast<uint8_t>(size >> 16);
    bytes[2] = static_cast<uint8_t>(size >> 8);
    bytes[3] = static_cast<uint8_t>(size);
    return bytes;
}

template <class Message>
std::vector<uint8_t> frame_message(const Message& body, int16_t version, int32_t correlation_id) {
    proto::writer out;
    body.encode(out, version);
    return frame_request(static_cast<int16_t>(Message::key), version, correlation_id,
                         out.buffer().data(), out.buffer().size());
}

// Decodes a response frame for (key, version); fails the run when it does not decode.
template <class Response>
Response decode_response(const std::vector<uint8_t>& frame, int16_t key, int16_t version) {
    proto::reader in(frame.data(), frame.size());
    int32_t correlation_id = 0;
    Response body;
    if (!proto::decode_response_header(in, proto::response_header_version(key, version),
                                       correlation_id) ||
        !body.decode(in, version)) {
        std::fprintf(stderr, "broker_fuzz: api %d v%d answered with a frame that does not decode\n",
                     key, version);
        fail("undecodable response");
    }
    return body;
}

int32_t correlation_of(const std::vector<uint8_t>& frame) {
    return static_cast<int32_t>((uint32_t{frame[0]} << 24) | (uint32_t{frame[1]} << 16) |
                                (uint32_t{frame[2]} << 8) | uint32_t{frame[3]});
}

// Sends one request and waits for its answer; empty when none came in time.
template <class Response, class Request>
std::optional<Response> call(client& c, const Request& body, int16_t version,
                             std::chrono::milliseconds wait) {
    const auto key = static_cast<int16_t>(Request::key);
    if (!c.send_all(frame_message(body, version, 1))) return std::nullopt;
    std::vector<uint8_t> frame;
    if (c.read_frame(clock_type::now() + wait, frame) != client::status::frame) return std::nullopt;
    return decode_response<Response>(frame, key, version);
}

// ---- clamping what only makes the broker wait or grow -----------------------------

template <class Request, class Clamp>
void clamp_body(std::vector<uint8_t>& body, int16_t version, Clamp clamp) {
    proto::reader in(body.data(), body.size());
    Request request;
    if (!request.decode(in, version)) return;  // sent as it is: the broker must refuse it
    clamp(request);
    proto::writer out;
    request.encode(out, version);
    body = std::move(out.buffer());
}

void clamp_request(int16_t key, int16_t version, std::vector<uint8_t>& body) {
    switch (static_cast<proto::api_key>(key)) {
        case proto::api_key::fetch:
            clamp_body<proto::fetch_request>(body, version, [](proto::fetch_request& r) {
                r.max_wait_ms = std::min(r.max_wait_ms, 20);
            });
            break;
        case proto::api_key::join_group:
            clamp_body<proto::join_group_request>(body, version, [](proto::join_group_request& r) {
                r.session_timeout_ms = std::min(r.session_timeout_ms, 6000);
                r.rebalance_timeout_ms = std::min(r.rebalance_timeout_ms, 100);
            });
            break;
        case proto::api_key::create_topics:
            clamp_body<proto::create_topics_request>(
                body, version, [](proto::create_topics_request& r) {
                    for (auto& topic : r.topics)
                        topic.num_partitions = std::min(topic.num_partitions, partitions_max);
                });
            break;
        case proto::api_key::create_partitions:
            clamp_body<proto::create_partitions_request>(
                body, version, [](proto::create_partitions_request& r) {
                    for (auto& topic : r.topics)
                        topic.count = std::min(topic.count, partitions_max);
                });
            break;
        default:
            break;
    }
}

// ---- the broker's health and state ------------------------------------------------

void check_health() {
    client c(the_broker->port);
    proto::api_versions_request request;
    request.client_software_name = "broker-fuzz";
    request.client_software_version = "1";
    auto answer = call<proto::api_versions_response>(c, request, 3, health_wait);
    if (!answer || answer->error_code != 0)
        fail("the broker no longer answers ApiVersions on a fresh connection");
}

// Deletes every topic and every group the inputs so far created.
void clean_up() {
    const auto wait = std::chrono::milliseconds(3000);
    client c(the_broker->port);
    proto::metadata_request topics_request;  // v1: a null topic list asks for all topics
    topics_request.topics = std::nullopt;
    auto topics = call<proto::metadata_response>(c, topics_request, 1, wait);
    if (!topics) fail("the broker did not answer Metadata for the clean-up");
    proto::delete_topics_request deletion;
    deletion.timeout_ms = 3000;
    for (const auto& topic : topics->topics)
        if (topic.name) deletion.topic_names.push_back(*topic.name);
    if (!deletion.topic_names.empty() && !call<proto::delete_topics_response>(c, deletion, 1, wait))
        fail("the broker did not answer DeleteTopics for the clean-up");
    auto groups = call<proto::list_groups_response>(c, proto::list_groups_request{}, 0, wait);
    if (!groups) fail("the broker did not answer ListGroups for the clean-up");
    proto::delete_groups_request group_deletion;
    for (const auto& group : groups->groups) group_deletion.groups_names.push_back(group.group_id);
    // Groups with live members refuse (NON_EMPTY_GROUP); their sessions expire later.
    if (!group_deletion.groups_names.empty() &&
        !call<proto::delete_groups_response>(c, group_deletion, 0, wait))
        fail("the broker did not answer DeleteGroups for the clean-up");
}

void start_broker() {
    the_broker = new fuzz_broker;
    char pattern[] = "/tmp/spate-broker-fuzz-XXXXXX";
    const char* dir = ::mkdtemp(pattern);
    if (dir == nullptr) fail("mkdtemp failed");
    the_broker->data_dir = dir;
    broker::broker_config config;
    config.listen_host = "127.0.0.1";
    config.listen_port = 0;
    config.data_dir = the_broker->data_dir;
    config.shards = 2;
    config.pin_shards = false;
    config.socket_request_max_bytes = 1 << 20;
    config.connections_max = 64;
    config.queued_max_requests = 16;
    config.group_initial_rebalance_delay_ms = 0;
    config.log.segment_bytes = 64 << 10;
    config.log.retention_bytes = 256 << 10;
    config.log.retention_ms = 60 * 1000;
    the_broker->process = new broker::broker(config);
    if (auto started = the_broker->process->start(); !started) {
        std::fprintf(stderr, "broker_fuzz: %s\n", started.failure().message.c_str());
        fail("the broker did not start");
    }
    the_broker->port = the_broker->process->bound_port();
    std::atexit([] {
        // A clean stop on the normal exit at -max_total_time or -runs; crashes exit
        // without it, leaving the directory to the next /tmp clean-up.
        the_broker->process->stop();
        the_broker->process->wait();
        std::error_code ignored;
        std::filesystem::remove_all(the_broker->data_dir, ignored);
    });
    check_health();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    start_broker();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto handlers = broker::handler_list();
    size_t position = 0;
    {
        client c(the_broker->port);
        const auto deadline = clock_type::now() + input_wait;
        bool open = true;
        for (size_t i = 0; open && i < requests_per_input_max && size - position >= 4; ++i) {
            const broker::handler_entry& entry = handlers[data[position] % handlers.size()];
            const int range = entry.version_max - entry.version_min + 1;
            const auto version =
                static_cast<int16_t>(entry.version_min + data[position + 1] % range);
            size_t length = data[position + 2] | (size_t{data[position + 3]} << 8);
            position += 4;
            length = std::min(length, size - position);
            std::vector<uint8_t> body(data + position, data + position + length);
            position += length;
            const auto key = static_cast<int16_t>(entry.key);
            clamp_request(key, version, body);

            const auto request_id = static_cast<int32_t>(i + 1);
            std::vector<uint8_t> bytes =
                frame_request(key, version, request_id, body.data(), body.size());
            const proto::api_versions_request ping;
            std::vector<uint8_t> ping_bytes = frame_message(ping, 0, ping_correlation_id);
            bytes.insert(bytes.end(), ping_bytes.begin(), ping_bytes.end());
            if (!c.send_all(bytes)) break;
            bool answered = false;
            for (;;) {
                std::vector<uint8_t> frame;
                const auto got = c.read_frame(deadline, frame);
                if (got != client::status::frame) {
                    open = false;
                    break;
                }
                const int32_t id = correlation_of(frame);
                if (id == ping_correlation_id) break;
                if (id != request_id || answered)
                    fail("a response with an unexpected correlation id (order broken)");
                answered = true;
                proto::visit_response_type(key, [&](auto type) {
                    using response = typename decltype(type)::type;
                    (void)decode_response<response>(frame, key, version);
                });
            }
        }
    }
    check_health();
    if (++the_broker->inputs % cleanup_period_inputs == 0) clean_up();
    return 0;
}
