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
// So that group requests get past the member check, the member id "@" and the
// generation -2 in a decodable group request stand for the member id and generation of
// the last JoinGroup answer of this input (a fuzzer cannot guess a generated id).
//
// Seeds: `SPATE_FUZZ_WRITE_SEEDS=DIR broker_fuzz` writes the seed corpus (real record
// batches of every codec, encoded with the project's codecs) to DIR and exits; the
// committed tests/fuzz/broker_corpus/ came from it.
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
#include <type_traits>
#include <vector>

#include "broker/broker.h"
#include "broker/handlers/handlers.h"
#include "net/log.h"
#include "proto/header.h"
#include "proto/messages.h"
#include "proto/reader.h"
#include "proto/record_batch.h"
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
// How long one input may wait in all for the APIs that may legitimately wait (Fetch
// long polls, JoinGroup and SyncGroup wait for the other members): the input is cut
// there, not failed.
constexpr auto input_wait = std::chrono::milliseconds(1000);
// Every other API answers at once: no answer this long after the request is a lost
// response (the connection's later responses are stuck behind it), and fails the run.
constexpr auto answer_wait = std::chrono::milliseconds(5000);
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
        if (::connect(_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 &&
            !finish_interrupted_connect()) {
            std::fprintf(stderr, "broker_fuzz: connect: %s\n", std::strerror(errno));
            fail("cannot connect to the broker");
        }
        int one = 1;
        (void)::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // Close with a reset: two connections per input would otherwise leave thousands
        // of sockets in TIME_WAIT a second and run out of ephemeral ports in seconds.
        linger abort_on_close{1, 0};
        (void)::setsockopt(_fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
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
    // libFuzzer's -timeout alarm (SIGALRM) may interrupt a blocking connect, which then
    // goes on in the background: wait for it and read its outcome.
    bool finish_interrupted_connect() {
        if (errno != EINTR) return false;
        pollfd waiting{_fd, POLLOUT, 0};
        int ready = 0;
        do {
            ready = ::poll(&waiting, 1, static_cast<int>(answer_wait.count()));
        } while (ready < 0 && errno == EINTR);
        if (ready <= 0) return false;
        int failure = 0;
        socklen_t length = sizeof failure;
        if (::getsockopt(_fd, SOL_SOCKET, SO_ERROR, &failure, &length) != 0) return false;
        errno = failure;
        return failure == 0;
    }

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

bool may_wait(proto::api_key key) {
    return key == proto::api_key::fetch || key == proto::api_key::join_group ||
           key == proto::api_key::sync_group;
}

// What the last JoinGroup answer of the current input said, and every member the
// input's JoinGroups created: they leave at the end of the input, so that the next
// input's JoinGroup does not wait a session timeout for them to rejoin.
constexpr const char* member_placeholder = "@";
constexpr int32_t generation_placeholder = -2;
struct membership {
    std::string member_id = member_placeholder;
    int32_t generation_id = generation_placeholder;
    std::string last_join_group;
    std::vector<std::pair<std::string, std::string>> joined_members;  // (group, member)
};

void substitute(std::string& member_id, const membership& joined) {
    if (member_id == member_placeholder) member_id = joined.member_id;
}
void substitute_generation(int32_t& generation_id, const membership& joined) {
    if (generation_id == generation_placeholder) generation_id = joined.generation_id;
}

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

void clamp_request(int16_t key, int16_t version, std::vector<uint8_t>& body, membership& joined) {
    switch (static_cast<proto::api_key>(key)) {
        case proto::api_key::fetch:
            clamp_body<proto::fetch_request>(body, version, [](proto::fetch_request& r) {
                r.max_wait_ms = std::min(r.max_wait_ms, 20);
            });
            break;
        case proto::api_key::join_group:
            clamp_body<proto::join_group_request>(body, version, [&](proto::join_group_request& r) {
                r.session_timeout_ms = std::min(r.session_timeout_ms, 6000);
                r.rebalance_timeout_ms = std::min(r.rebalance_timeout_ms, 100);
                substitute(r.member_id, joined);
                joined.last_join_group = r.group_id;
            });
            break;
        case proto::api_key::sync_group:
            clamp_body<proto::sync_group_request>(body, version, [&](proto::sync_group_request& r) {
                substitute(r.member_id, joined);
                substitute_generation(r.generation_id, joined);
                for (auto& assignment : r.assignments) substitute(assignment.member_id, joined);
            });
            break;
        case proto::api_key::heartbeat:
            clamp_body<proto::heartbeat_request>(body, version, [&](proto::heartbeat_request& r) {
                substitute(r.member_id, joined);
                substitute_generation(r.generation_id, joined);
            });
            break;
        case proto::api_key::leave_group:
            clamp_body<proto::leave_group_request>(body, version,
                                                   [&](proto::leave_group_request& r) {
                                                       substitute(r.member_id, joined);
                                                       for (auto& member : r.members)
                                                           substitute(member.member_id, joined);
                                                   });
            break;
        case proto::api_key::offset_commit:
            clamp_body<proto::offset_commit_request>(
                body, version, [&](proto::offset_commit_request& r) {
                    substitute(r.member_id, joined);
                    substitute_generation(r.generation_id, joined);
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

// The members an input's JoinGroups created leave (answers are not checked: the
// member may have left or expired already).
void leave_groups(const membership& joined) {
    if (joined.joined_members.empty()) return;
    client c(the_broker->port);
    for (const auto& [group, member] : joined.joined_members) {
        proto::leave_group_request leave;
        leave.group_id = group;
        leave.member_id = member;
        if (!call<proto::leave_group_response>(c, leave, 0, answer_wait))
            fail("the broker did not answer a LeaveGroup of the harness");
    }
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

// ---- the seed corpus ----------------------------------------------------------------

// One seed input, built request by request in the layout described at the top.
class seed_input {
public:
    template <class Request>
    seed_input& add(const Request& body, int16_t version) {
        const auto handlers = broker::handler_list();
        size_t index = 0;
        while (handlers[index].key != Request::key) ++index;
        proto::writer out;
        body.encode(out, version);
        const std::vector<uint8_t>& encoded = out.buffer();
        if (encoded.size() > 0xffff) fail("a seed request is too long for the input layout");
        _bytes.push_back(static_cast<uint8_t>(index));
        _bytes.push_back(static_cast<uint8_t>(version - handlers[index].version_min));
        _bytes.push_back(static_cast<uint8_t>(encoded.size()));
        _bytes.push_back(static_cast<uint8_t>(encoded.size() >> 8));
        _bytes.insert(_bytes.end(), encoded.begin(), encoded.end());
        return *this;
    }

    void write(const std::string& dir, const char* name) const {
        const std::string path = dir + "/" + name;
        FILE* file = std::fopen(path.c_str(), "wb");
        if (file == nullptr || std::fwrite(_bytes.data(), 1, _bytes.size(), file) != _bytes.size())
            fail("cannot write a seed");
        std::fclose(file);
    }

private:
    std::vector<uint8_t> _bytes;
};

std::vector<uint8_t> seed_batch(proto::compression_codec codec, int64_t producer_id = -1,
                                int16_t producer_epoch = -1, int32_t base_sequence = -1) {
    proto::batch_builder builder(codec, 1764720000000, producer_id, producer_epoch, base_sequence);
    const std::string text = "a value that compresses: spate spate spate spate spate";
    for (int i = 0; i < 3; ++i) {
        const std::string key = "key-" + std::to_string(i);
        const proto::record_header_view header{"trace", proto::byte_view("fuzz")};
        builder.add(proto::byte_view(key), proto::byte_view(text),
                    std::span<const proto::record_header_view>(&header, 1));
    }
    return builder.build();
}

proto::create_topics_request create_topic(
    const std::string& name, int32_t partitions,
    std::vector<std::pair<std::string, std::string>> configs = {}) {
    proto::create_topics_request request;
    request.timeout_ms = 3000;
    proto::create_topics_request::creatable_topic topic;
    topic.name = name;
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    for (auto& [key, value] : configs) topic.configs.push_back({key, value});
    request.topics.push_back(topic);
    return request;
}

proto::produce_request produce(const std::string& topic, const std::vector<uint8_t>& batch,
                               int16_t acks) {
    proto::produce_request request;
    request.acks = acks;
    request.timeout_ms = 1000;
    proto::produce_request::partition_produce_data data;
    data.index = 0;
    data.records_.bytes = batch;
    request.topic_data.push_back({topic, {data}});
    return request;
}

proto::fetch_request fetch(const std::string& topic, int64_t offset) {
    proto::fetch_request request;
    request.max_wait_ms = 10;
    request.min_bytes = 1;
    request.max_bytes = 1 << 20;
    proto::fetch_request::fetch_partition partition;
    partition.partition = 0;
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    request.topics.push_back({topic, {}, {partition}});
    return request;
}

proto::list_offsets_request list_offsets(const std::string& topic, int64_t timestamp) {
    proto::list_offsets_request request;
    request.replica_id = -1;
    proto::list_offsets_request::list_offsets_partition partition;
    partition.timestamp = timestamp;
    request.topics.push_back({topic, {partition}});
    return request;
}

proto::metadata_request metadata(std::vector<std::string> names, bool auto_create) {
    proto::metadata_request request;
    request.topics.emplace();
    for (auto& name : names) request.topics->push_back({proto::uuid{}, name});
    request.allow_auto_topic_creation = auto_create;
    return request;
}

proto::join_group_request join(const std::string& group, const std::string& member) {
    proto::join_group_request request;
    request.group_id = group;
    request.session_timeout_ms = 6000;
    request.rebalance_timeout_ms = 100;
    request.member_id = member;
    request.protocol_type = "consumer";
    const std::vector<uint8_t> subscription = {0, 1,   0,   0,    0,    1,    0,
                                               2, 'f', 'z', 0xff, 0xff, 0xff, 0xff};
    request.protocols.push_back({"range", subscription});
    return request;
}

proto::sync_group_request sync(const std::string& group) {
    proto::sync_group_request request;
    request.group_id = group;
    request.generation_id = generation_placeholder;
    request.member_id = member_placeholder;
    request.protocol_type = "consumer";
    request.protocol_name = "range";
    const std::vector<uint8_t> assignment = {0, 1, 0, 0, 0, 1, 0, 2,    'f',  'z',  0,
                                             0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    request.assignments.push_back({member_placeholder, assignment});
    return request;
}

proto::heartbeat_request heartbeat(const std::string& group) {
    proto::heartbeat_request request;
    request.group_id = group;
    request.generation_id = generation_placeholder;
    request.member_id = member_placeholder;
    return request;
}

proto::offset_commit_request commit(const std::string& group, const std::string& member,
                                    int32_t generation) {
    proto::offset_commit_request request;
    request.group_id = group;
    request.generation_id = generation;
    request.member_id = member;
    proto::offset_commit_request::offset_commit_request_partition partition;
    partition.committed_offset = 1;
    partition.committed_metadata = "seed";
    request.topics.push_back({"fz", {partition}});
    return request;
}

proto::offset_fetch_request offset_fetch(const std::string& group) {
    proto::offset_fetch_request request;
    request.group_id = group;
    request.topics =
        std::vector<proto::offset_fetch_request::offset_fetch_request_topic>{{"fz", {0}}};
    request.groups.push_back({group, std::nullopt});
    return request;
}

proto::leave_group_request leave(const std::string& group) {
    proto::leave_group_request request;
    request.group_id = group;
    request.member_id = member_placeholder;
    request.members.push_back({member_placeholder, std::nullopt, std::string("seed")});
    return request;
}

proto::find_coordinator_request find_coordinator(const std::string& group) {
    proto::find_coordinator_request request;
    request.key_ = group;
    request.coordinator_keys.push_back(group);
    return request;
}

void write_seeds(const std::string& dir) {
    using codec = proto::compression_codec;
    std::filesystem::create_directories(dir);
    const auto plain = seed_batch(codec::none);
    seed_input()
        .add(create_topic("fz", 2), 5)
        .add(produce("fz", plain, 1), 9)
        .add(fetch("fz", 0), 12)
        .add(list_offsets("fz", -1), 7)
        .add(metadata({"fz"}, false), 12)
        .write(dir, "produce_none_fetch");
    const auto gzip = seed_batch(codec::gzip);
    seed_input().add(produce("fz", gzip, -1), 3).add(fetch("fz", 0), 4).write(dir, "produce_gzip");
    const auto snappy = seed_batch(codec::snappy);
    seed_input()
        .add(produce("fz", snappy, 1), 7)
        .add(fetch("fz", 1), 11)
        .write(dir, "produce_snappy");
    const auto lz4 = seed_batch(codec::lz4);
    seed_input()
        .add(produce("fz", lz4, 0), 8)
        .add(fetch("fz", 0), 7)
        .write(dir, "produce_lz4_acks0");
    const auto zstd = seed_batch(codec::zstd);
    seed_input().add(produce("fz", zstd, 1), 9).add(fetch("fz", 0), 12).write(dir, "produce_zstd");
    const auto idempotent = seed_batch(codec::none, 0, 0, 0);
    proto::init_producer_id_request init;
    init.transaction_timeout_ms = 60000;
    seed_input()
        .add(init, 4)
        .add(produce("fz", idempotent, -1), 9)
        .add(produce("fz", idempotent, -1), 9)
        .write(dir, "idempotent_produce");
    proto::delete_records_request delete_records;
    delete_records.timeout_ms = 1000;
    delete_records.topics.push_back({"fz", {{0, 1}}});
    proto::offset_for_leader_epoch_request epochs;
    epochs.topics.push_back({"fz", {{0, -1, 0}}});
    seed_input()
        .add(produce("fz", plain, 1), 9)
        .add(delete_records, 2)
        .add(list_offsets("fz", -2), 7)
        .add(list_offsets("fz", 1764720000000), 1)
        .add(list_offsets("fz", -1), 0)
        .add(epochs, 4)
        .write(dir, "delete_records");
    seed_input()
        .add(find_coordinator("g"), 4)
        .add(join("g", ""), 5)
        .add(join("g", member_placeholder), 5)
        .add(sync("g"), 5)
        .add(heartbeat("g"), 4)
        .add(commit("g", member_placeholder, generation_placeholder), 8)
        .add(offset_fetch("g"), 8)
        .add(leave("g"), 5)
        .write(dir, "group_lifecycle");
    proto::describe_groups_request describe_groups;
    describe_groups.groups.push_back("g0");
    seed_input()
        .add(find_coordinator("g0"), 0)
        .add(join("g0", ""), 0)
        .add(sync("g0"), 0)
        .add(heartbeat("g0"), 0)
        .add(commit("g0", member_placeholder, generation_placeholder), 2)
        .add(offset_fetch("g0"), 1)
        .add(describe_groups, 0)
        .add(leave("g0"), 0)
        .write(dir, "group_old_versions");
    proto::offset_delete_request offset_delete;
    offset_delete.group_id = "gs";
    offset_delete.topics.push_back({"fz", {{0}}});
    proto::describe_groups_request describe_simple;
    describe_simple.groups.push_back("gs");
    proto::delete_groups_request delete_groups;
    delete_groups.groups_names.push_back("gs");
    seed_input()
        .add(commit("gs", "", -1), 8)
        .add(offset_fetch("gs"), 5)
        .add(offset_delete, 0)
        .add(proto::list_groups_request{}, 4)
        .add(describe_simple, 5)
        .add(delete_groups, 2)
        .write(dir, "simple_consumer_offsets");
    proto::describe_configs_request describe_configs;
    describe_configs.resources.push_back({2, "fz-admin", std::nullopt});
    proto::incremental_alter_configs_request alter;
    alter.resources.push_back({2, "fz-admin", {{"segment.bytes", 0, std::string("16384")}}});
    proto::create_partitions_request more_partitions;
    more_partitions.timeout_ms = 3000;
    more_partitions.topics.push_back({"fz-admin", 3, std::nullopt});
    proto::delete_topics_request delete_topics;
    delete_topics.timeout_ms = 3000;
    delete_topics.topics.push_back({std::string("fz-admin"), proto::uuid{}});
    seed_input()
        .add(create_topic("fz-admin", 1,
                          {{"retention.bytes", "65536"}, {"cleanup.policy", "delete"}}),
             2)
        .add(describe_configs, 4)
        .add(alter, 1)
        .add(more_partitions, 3)
        .add(proto::describe_cluster_request{}, 1)
        .add(metadata({}, false), 1)
        .add(delete_topics, 6)
        .write(dir, "topic_admin");
    const auto keyed = seed_batch(codec::gzip);
    seed_input()
        .add(create_topic("fz-compact", 1,
                          {{"cleanup.policy", "compact"}, {"segment.bytes", "4096"}}),
             7)
        .add(produce("fz-compact", keyed, 1), 9)
        .add(produce("fz-compact", keyed, 1), 5)
        .add(fetch("fz-compact", 0), 12)
        .write(dir, "compacted_topic");
    proto::api_versions_request versions;
    versions.client_software_name = "broker-fuzz";
    versions.client_software_version = "1";
    seed_input()
        .add(versions, 3)
        .add(metadata({"fz-auto"}, true), 4)
        .add(metadata({"fz-auto"}, false), 12)
        .add(produce("fz-auto", plain, 1), 2)
        .add(fetch("fz-auto", 0), 0)
        .write(dir, "metadata_auto_create");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    if (const char* seeds = std::getenv("SPATE_FUZZ_WRITE_SEEDS")) {
        write_seeds(seeds);
        std::exit(0);
    }
    start_broker();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto handlers = broker::handler_list();
    size_t position = 0;
    {
        client c(the_broker->port);
        const auto input_deadline = clock_type::now() + input_wait;
        bool open = true;
        membership joined;
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
            clamp_request(key, version, body, joined);

            const auto request_id = static_cast<int32_t>(i + 1);
            std::vector<uint8_t> bytes =
                frame_request(key, version, request_id, body.data(), body.size());
            const proto::api_versions_request ping;
            std::vector<uint8_t> ping_bytes = frame_message(ping, 0, ping_correlation_id);
            bytes.insert(bytes.end(), ping_bytes.begin(), ping_bytes.end());
            if (!c.send_all(bytes)) break;
            bool answered = false;
            const bool waits = may_wait(entry.key);
            const auto deadline = waits ? input_deadline : clock_type::now() + answer_wait;
            for (;;) {
                std::vector<uint8_t> frame;
                const auto got = c.read_frame(deadline, frame);
                if (got == client::status::timed_out && !waits) {
                    std::fprintf(stderr, "broker_fuzz: api %d v%d: no answer in %lld ms\n", key,
                                 version, static_cast<long long>(answer_wait.count()));
                    fail("a request that never waits got no answer");
                }
                if (got != client::status::frame) {
                    net::log_info(
                        "fuzz: api %d v%d: %s", key, version,
                        got == client::status::closed ? "connection closed" : "no answer in time");
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
                    auto decoded = decode_response<response>(frame, key, version);
                    if constexpr (requires { decoded.error_code; })
                        net::log_info("fuzz: api %d v%d answered, error_code %d", key, version,
                                      decoded.error_code);
                    else
                        net::log_info("fuzz: api %d v%d answered", key, version);
                    if constexpr (std::is_same_v<response, proto::join_group_response>) {
                        if (!decoded.member_id.empty()) {
                            joined.member_id = decoded.member_id;
                            joined.joined_members.emplace_back(joined.last_join_group,
                                                               decoded.member_id);
                        }
                        if (decoded.generation_id >= 0)
                            joined.generation_id = decoded.generation_id;
                    }
                });
            }
        }
        leave_groups(joined);
    }
    check_health();
    if (++the_broker->inputs % cleanup_period_inputs == 0) clean_up();
    return 0;
}
