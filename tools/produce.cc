// `produce` (console producer) and `perf produce` (producer benchmark).

#include <poll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>

#include "proto/error_code.h"
#include "proto/record_batch.h"
#include "tools/client_options.h"
#include "tools/cluster.h"
#include "tools/commands.h"
#include "tools/format.h"
#include "tools/histogram.h"
#include "tools/latency_stamp.h"

namespace spate::tools {

namespace {

using clock_type = std::chrono::steady_clock;

int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               clock_type::now().time_since_epoch())
        .count();
}

int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Longest line the console producer accepts: Kafka's default max.request.size.
constexpr size_t console_line_bytes_max = 1u << 20;
// Records the console producer gathers before it sends, whatever the batch size says.
constexpr size_t console_records_per_send_max = 10000;

// ---- console producer ----

// Reads stdin in large chunks and hands out lines; tells whether more input is already
// buffered, so the producer sends as soon as the typist (or the pipe) pauses.
class line_reader {
public:
    // The next line without its '\n' in `line`; false at end of input. A final line
    // without '\n' still counts.
    result<bool> next(std::string& line, int32_t wait_ms) {
        for (;;) {
            const auto newline = std::find(_buffer.begin() + static_cast<std::ptrdiff_t>(_start),
                                           _buffer.end(), '\n');
            if (newline != _buffer.end()) {
                line.assign(_buffer.begin() + static_cast<std::ptrdiff_t>(_start), newline);
                _start = static_cast<size_t>(newline - _buffer.begin()) + 1;
                return true;
            }
            if (_buffer.size() - _start > console_line_bytes_max)
                return error{1, "an input line is longer than " +
                                    std::to_string(console_line_bytes_max) + " bytes"};
            if (_eof) {
                if (_start == _buffer.size()) return false;
                line.assign(_buffer.begin() + static_cast<std::ptrdiff_t>(_start), _buffer.end());
                _start = _buffer.size();
                return true;
            }
            if (wait_ms >= 0) {
                pollfd waiting{STDIN_FILENO, POLLIN, 0};
                if (::poll(&waiting, 1, wait_ms) == 0) return error{EAGAIN, "no input yet"};
            }
            _buffer.erase(_buffer.begin(), _buffer.begin() + static_cast<std::ptrdiff_t>(_start));
            _start = 0;
            char chunk[65536];
            const ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                return error{1, std::string("reading stdin failed (") + std::strerror(errno) + ")"};
            if (n == 0) _eof = true;
            _buffer.insert(_buffer.end(), chunk, chunk + n);
        }
    }
    // True when a whole line is already buffered (no system call needed to get it).
    bool has_buffered_line() const {
        return std::find(_buffer.begin() + static_cast<std::ptrdiff_t>(_start), _buffer.end(),
                         '\n') != _buffer.end();
    }

private:
    std::vector<char> _buffer;
    size_t _start = 0;
    bool _eof = false;
};

struct pending_partition {
    std::optional<proto::batch_builder> builder;
    int32_t records = 0;
};

// Sends every pending batch, one Produce request per leader; failures are reported per
// partition on stderr and counted.
result<void> send_pending(cluster& brokers, const topic_layout& topic,
                          std::map<int32_t, pending_partition>& pending,
                          const producer_settings& settings, uint64_t& failed_records) {
    std::map<int32_t, std::vector<int32_t>> by_leader;
    for (auto& [partition, state] : pending)
        if (state.records > 0) {
            int32_t leader = -1;
            for (const auto& layout : topic.partitions)
                if (layout.partition == partition) leader = layout.leader;
            by_leader[leader].push_back(partition);
        }
    for (auto& [leader, partitions] : by_leader) {
        if (leader < 0)
            return error{1, "topic \"" + topic.name + "\" has no leader for partition " +
                                std::to_string(partitions.front())};
        auto connection = brokers.leader(leader);
        if (!connection) return connection.failure();
        auto version = connection.value()->version_for<proto::produce_request>();
        if (!version) return version.failure();
        if (version.value() < 3)
            return error{1, "the broker's Produce versions predate record batch v2"};
        std::vector<std::vector<uint8_t>> batches;
        proto::produce_request request;
        request.acks = settings.acks;
        request.timeout_ms = brokers.timeout_ms();
        request.topic_data.push_back({topic.name, {}});
        for (int32_t partition : partitions) {
            batches.push_back(pending[partition].builder->build());
            proto::produce_request::partition_produce_data data;
            data.index = partition;
            data.records_.bytes = batches.back();
            request.topic_data[0].partition_data.push_back(data);
        }
        if (settings.acks == 0) {
            auto sent = connection.value()->send_only(request, version.value());
            if (!sent) return sent;
        } else {
            proto::produce_response response;
            std::vector<uint8_t> frame;
            auto called = connection.value()->call(request, version.value(), response, frame);
            if (!called) return called;
            for (const auto& topic_response : response.responses)
                for (const auto& partition : topic_response.partition_responses) {
                    if (partition.error_code == 0) continue;
                    const int32_t lost = pending[partition.index].records;
                    failed_records += static_cast<uint64_t>(lost);
                    std::fprintf(stderr,
                                 "spatectl: producing %d record(s) to topic \"%s\" partition %d "
                                 "failed (%s)%s%s\n",
                                 lost, topic.name.c_str(), partition.index,
                                 proto::error_name(partition.error_code),
                                 partition.error_message ? ": " : "",
                                 partition.error_message ? partition.error_message->c_str() : "");
                }
        }
    }
    for (auto& [partition, state] : pending) {
        state.builder.reset();
        state.records = 0;
    }
    return ok_result();
}

}  // namespace

result<void> run_produce(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto fixed_partition = line.integer("--partition", -1, 0, INT32_MAX);
    if (!fixed_partition) return fixed_partition.failure();
    auto settings = parse_producer_settings(line, 1);
    if (!settings) return settings.failure();
    const auto separator = line.value("--key-separator");
    if (separator && separator->empty())
        return error{usage_error_code, "--key-separator must not be empty"};
    std::vector<header_setting> header_settings;
    if (auto text = line.value("--headers")) {
        auto parsed = parse_header_settings(*text);
        if (!parsed) return parsed.failure();
        header_settings = std::move(parsed.value());
    }
    // Views of the parsed headers, built once: every record carries the same ones.
    std::vector<proto::record_header_view> headers;
    for (const auto& header : header_settings) {
        proto::record_header_view view{header.key, std::nullopt};
        if (header.value) view.value = proto::byte_view(*header.value);
        headers.push_back(view);
    }

    auto brokers = cluster::connect(line.global);
    if (!brokers) return brokers.failure();
    auto topic = brokers->topic(topic_name.value());
    if (!topic) return topic.failure();
    const auto partition_count = static_cast<int32_t>(topic->partitions.size());
    if (fixed_partition.value() >= partition_count)
        return error{1, "topic \"" + topic->name + "\" has no partition " +
                            std::to_string(fixed_partition.value()) + " (" +
                            proto::error_name(proto::error_code::unknown_topic_or_partition) + ")"};

    std::map<int32_t, pending_partition> pending;
    line_reader input;
    std::string text;
    uint64_t failed = 0;
    uint64_t total = 0;
    size_t gathered = 0;
    size_t gathered_bytes = 0;
    int32_t sticky_partition = 0;
    for (;;) {
        // Block for the first line of a send; afterwards take only what has already
        // arrived (waiting at most linger.ms), so interactive input goes out at once.
        const int32_t wait_ms = gathered == 0 ? -1 : settings->linger_ms;
        auto got = input.next(text, wait_ms);
        if (!got && got.failure().code != EAGAIN) return got.failure();
        const bool idle = !got;
        const bool more = got && got.value();
        if (more) {
            std::optional<std::span<const uint8_t>> key;
            std::span<const uint8_t> value = proto::byte_view(text);
            if (separator) {
                const size_t at = text.find(*separator);
                if (at != std::string::npos) {
                    key = proto::byte_view(std::string_view(text).substr(0, at));
                    value = proto::byte_view(std::string_view(text).substr(at + separator->size()));
                }
            }
            int32_t partition = sticky_partition;
            if (fixed_partition.value() >= 0)
                partition = static_cast<int32_t>(fixed_partition.value());
            else if (key)
                partition = static_cast<int32_t>(kafka_key_hash(*key) %
                                                 static_cast<uint32_t>(partition_count));
            auto& state = pending[topic->partitions[static_cast<size_t>(partition)].partition];
            if (!state.builder) state.builder.emplace(settings->codec, wall_ms());
            state.builder->add(key, value, headers);
            ++state.records;
            ++gathered;
            ++total;
            gathered_bytes += text.size();
        }
        const bool full = gathered >= console_records_per_send_max ||
                          gathered_bytes >= static_cast<size_t>(settings->batch_bytes);
        const bool pause = idle || (!input.has_buffered_line() && settings->linger_ms == 0);
        if (gathered > 0 && (!more || full || pause)) {
            auto sent =
                send_pending(brokers.value(), topic.value(), pending, settings.value(), failed);
            if (!sent) return sent;
            gathered = 0;
            gathered_bytes = 0;
            sticky_partition = (sticky_partition + 1) % partition_count;
        }
        if (got && !more) break;
    }
    if (failed > 0)
        return error{1, std::to_string(failed) + " of " + std::to_string(total) +
                            " record(s) were not produced to topic \"" + topic->name + "\""};
    return ok_result();
}

// ---- perf produce ----

namespace {

// The most a record adds to a batch beyond its key and value: its length, attributes,
// timestamp delta, offset delta, key and value lengths and header count, each a varint at
// its widest.
constexpr size_t record_overhead_bytes_max = 5 + 1 + 10 + 5 + 5 + 5 + 5;

// Latencies of acknowledged records: of the whole run (the final line, --histogram) and
// of the current 5-second window (the progress line, which Kafka prints per window).
struct produce_latencies {
    latency_histogram run;
    latency_histogram window;

    void record(uint64_t micros) {
        run.record(micros);
        window.record(micros);
    }
};

// A batch that is built and waiting for a free in-flight slot on its leader's connection.
struct ready_batch {
    int32_t partition = 0;
    std::vector<uint8_t> bytes;
    std::vector<int64_t> created_us;  // when each record was handed to the producer
};

struct in_flight_request {
    int32_t correlation_id = 0;
    std::vector<ready_batch> batches;
};

// One leader broker: its pipelined connection and what is in flight on it, oldest first.
struct leader_state {
    std::unique_ptr<pipelined_connection> connection;
    int16_t produce_version = 0;
    int32_t next_correlation_id = 1;
    std::deque<in_flight_request> in_flight;
    std::deque<ready_batch> ready;
};

struct open_partition {
    int32_t partition = 0;
    int32_t leader = 0;
    std::optional<proto::batch_builder> builder;
    std::vector<int64_t> created_us;
    int64_t first_record_us = 0;
    int32_t next_sequence = 0;  // idempotent producer: the next batch's base sequence
};

// The producer id and epoch of an idempotent producer (both -1 when not idempotent).
struct producer_identity {
    int64_t id = -1;
    int16_t epoch = -1;
};

// InitProducerId without a transactional id: any broker hands out a producer id.
result<producer_identity> init_producer_id(cluster& brokers) {
    auto& connection = brokers.bootstrap();
    proto::init_producer_id_request request;
    request.transaction_timeout_ms = -1;
    proto::init_producer_id_response response;
    std::vector<uint8_t> frame;
    auto called = connection.call(request, response, frame);
    if (!called) return error{1, "InitProducerId failed: " + called.failure().message};
    if (response.error_code != 0)
        return error{1, std::string("InitProducerId failed (") +
                            proto::error_name(response.error_code) + ")"};
    return producer_identity{response.producer_id, response.producer_epoch};
}

// Records of `perf produce --payload-file`: the file's lines (empty ones skipped), as
// kafka-producer-perf-test splits its payload file at its default delimiter '\n'.
result<std::vector<std::string>> read_payload_file(const std::string& path) {
    // The whole file is held in memory, so it is bounded first.
    constexpr std::uintmax_t payload_file_bytes_max = 1u << 30;
    std::ifstream in(path, std::ios::binary);
    if (!in) return error{1, "cannot read --payload-file \"" + path + "\""};
    in.seekg(0, std::ios::end);
    const auto size = static_cast<std::uintmax_t>(in.tellg());
    if (size > payload_file_bytes_max)
        return error{1, "--payload-file \"" + path + "\" is larger than " +
                            std::to_string(payload_file_bytes_max) + " bytes"};
    in.seekg(0, std::ios::beg);
    std::vector<std::string> payloads;
    std::string line_text;
    while (std::getline(in, line_text))
        if (!line_text.empty()) payloads.push_back(line_text);
    if (payloads.empty()) return error{1, "--payload-file \"" + path + "\" holds no records"};
    return payloads;
}

// The topic `perf produce` writes to. With --partitions N (`partitions` > 0) a topic that
// does not exist is created with N partitions and the broker's default replication
// factor, which is what a kafka-producer-perf-test user gets from the Java producer's
// topic auto-creation; an existing topic is used as it is (a different partition count is
// noted on stderr, not changed). Waits, bounded by the timeout, until every partition of
// a new topic has a leader.
result<topic_layout> perf_topic(cluster& brokers, const std::string& name, int32_t partitions) {
    if (partitions <= 0) return brokers.topic(name);
    auto topics = brokers.metadata({name});
    if (!topics) return topics.failure();
    bool missing = true;
    for (const auto& [code, layout] : topics.value())
        if (layout.name == name &&
            code != proto::code(proto::error_code::unknown_topic_or_partition))
            missing = false;
    if (!missing) {
        auto layout = brokers.topic(name);
        if (layout && static_cast<int32_t>(layout->partitions.size()) != partitions)
            std::fprintf(stderr,
                         "spatectl: topic \"%s\" exists with %zu partition(s); --partitions %d "
                         "applies only when the topic is created\n",
                         name.c_str(), layout->partitions.size(), partitions);
        return layout;
    }

    auto& connection = brokers.bootstrap();
    auto version = connection.version_for<proto::create_topics_request>();
    if (!version)
        return error{1, "cannot create topic \"" + name + "\": " + version.failure().message};
    proto::create_topics_request request;
    request.timeout_ms = brokers.timeout_ms();
    proto::create_topics_request::creatable_topic topic;
    topic.name = name;
    topic.num_partitions = partitions;
    // Before v4 the broker cannot fill in its default, so Kafka's default of 1 is sent.
    topic.replication_factor = static_cast<int16_t>(version.value() >= 4 ? -1 : 1);
    request.topics.push_back(std::move(topic));
    proto::create_topics_response response;
    std::vector<uint8_t> frame;
    auto called = connection.call(request, version.value(), response, frame);
    if (!called) return called.failure();
    for (const auto& created : response.topics)
        // Another producer may have created it in the meantime, which is as good.
        if (created.error_code != 0 &&
            created.error_code != proto::code(proto::error_code::topic_already_exists))
            return error{1, "creating " + describe_topic_error(name, created.error_code,
                                                               created.error_message)};

    // Leaders are elected after the topic is created; poll Metadata until all are known.
    const auto deadline = clock_type::now() + std::chrono::milliseconds(brokers.timeout_ms());
    for (;;) {
        auto layout = brokers.topic(name);
        bool led = false;
        if (layout) {
            led = true;
            for (const auto& partition : layout->partitions)
                if (partition.leader < 0) led = false;
        }
        if (led || clock_type::now() >= deadline) return layout;
        ::usleep(50000);
    }
}

// Queues a Produce request whose records are external (proto::records::external_id
// indexes `batches`): the encoded fields, then each batch's buffer at its gap. The batches'
// bytes move into the connection's output; the rest of each batch stays for the response.
void queue_request(pipelined_connection& connection, const proto::produce_request& request,
                   int16_t version, int32_t correlation_id, std::vector<ready_batch>& batches) {
    proto::writer out = request_writer(request, version, correlation_id);
    const std::vector<uint8_t>& fields = out.buffer();
    size_t from = 0;
    for (const proto::external_gap& gap : out.gaps()) {
        connection.queue(std::span<const uint8_t>(fields).subspan(from, gap.position - from));
        connection.queue(std::move(batches[gap.id].bytes));
        from = gap.position;
    }
    connection.queue(std::span<const uint8_t>(fields).subspan(from));
}

class perf_producer {
public:
    perf_producer(std::string topic, const producer_settings& settings, int32_t timeout_ms,
                  producer_identity identity)
        : _topic(std::move(topic)),
          _settings(settings),
          _timeout_ms(timeout_ms),
          _identity(identity) {}

    result<void> open(cluster& brokers, const topic_layout& layout) {
        for (const auto& partition : layout.partitions) {
            if (partition.leader < 0)
                return error{1, "topic \"" + _topic + "\" has no leader for partition " +
                                    std::to_string(partition.partition)};
            if (_leaders.find(partition.leader) == _leaders.end()) {
                const auto address = brokers.address_of(partition.leader);
                if (!address)
                    return error{1, "no address for broker " + std::to_string(partition.leader)};
                auto negotiated = broker_connection::open(*address, _timeout_ms);
                if (!negotiated) return negotiated.failure();
                auto version = negotiated->version_for<proto::produce_request>();
                if (!version) return version.failure();
                if (version.value() < 3)
                    return error{1, "the broker's Produce versions predate record batch v2"};
                leader_state state;
                state.produce_version = version.value();
                state.connection =
                    std::make_unique<pipelined_connection>(negotiated->release_fd(), *address);
                _leaders.emplace(partition.leader, std::move(state));
            }
            _partitions.push_back({partition.partition, partition.leader, std::nullopt, {}, 0, 0});
        }
        return ok_result();
    }

    // Hands one record to the producer (sticky partitioner: fill one batch, then move on).
    void add(std::span<const uint8_t> value, int64_t now) {
        // A batch never grows past batch.size unless one record alone is larger, as with
        // Kafka's producer: the broker refuses batches above its message.max.bytes (just
        // over 1 MiB by default), so a 1 MiB batch.size must not yield 1 MiB + 1 record.
        if (auto& open = _partitions[_sticky];
            open.builder && proto::batch_header_size + open.builder->uncompressed_records_bytes() +
                                    value.size() + record_overhead_bytes_max >
                                static_cast<size_t>(_settings.batch_bytes))
            seal(open);
        auto& partition = _partitions[_sticky];
        if (!partition.builder) {
            // An idempotent producer numbers its records per partition; batches of one
            // partition leave in order on one connection, so the numbering holds.
            if (_identity.id >= 0)
                partition.builder.emplace(_settings.codec, wall_ms(), _identity.id, _identity.epoch,
                                          partition.next_sequence);
            else
                partition.builder.emplace(_settings.codec, wall_ms());
            // Address space only: pages are touched as records fill them.
            partition.builder->reserve(static_cast<size_t>(_settings.batch_bytes));
            partition.first_record_us = now;
            partition.created_us = take_time_vector();
        }
        partition.builder->add(std::nullopt, value);
        partition.created_us.push_back(now);
        if (proto::batch_header_size + partition.builder->uncompressed_records_bytes() >=
            static_cast<size_t>(_settings.batch_bytes))
            seal(partition);
    }

    // Seals batches whose linger time is up (all of them when `everything`).
    void seal_lingering(int64_t now, bool everything) {
        for (auto& partition : _partitions)
            if (partition.builder && (everything || now - partition.first_record_us >=
                                                        int64_t{_settings.linger_ms} * 1000))
                seal(partition);
    }

    // Whether the producer may take more records now (bounds memory like buffer.memory).
    bool has_room() const { return _ready_count < 2 * _partitions.size() + 4; }
    bool idle() const {
        if (_ready_count > 0) return false;
        for (const auto& [node, leader] : _leaders)
            if (!leader.in_flight.empty() || leader.connection->wants_write()) return false;
        for (const auto& partition : _partitions)
            if (partition.builder) return false;
        return true;
    }
    int64_t next_linger_deadline() const {
        int64_t deadline = INT64_MAX;
        for (const auto& partition : _partitions)
            if (partition.builder)
                deadline = std::min(
                    deadline, partition.first_record_us + int64_t{_settings.linger_ms} * 1000);
        return deadline;
    }

    // Sends ready batches while the leaders have free in-flight slots, then does one
    // ppoll() round of I/O, waiting at most wait_us. Microseconds, not poll()'s
    // milliseconds: at 10k records/s the next record is due in 100 us, and a millisecond
    // timeout would round that to a busy loop, whose spinning core delays the broker
    // sharing the machine by a scheduler slice (ms) — the very tail being measured.
    result<void> pump(int64_t wait_us, produce_latencies& latency, uint64_t& acked,
                      uint64_t& failed) {
        for (auto& [node, leader] : _leaders) {
            while (!leader.ready.empty() &&
                   (_settings.acks == 0 ||
                    leader.in_flight.size() < static_cast<size_t>(_settings.max_in_flight))) {
                send_request(leader, latency, acked);
            }
        }
        std::vector<pollfd> fds;
        std::vector<leader_state*> owners;
        for (auto& [node, leader] : _leaders) {
            short events = 0;
            if (!leader.in_flight.empty()) events |= POLLIN;
            if (leader.connection->wants_write()) events |= POLLOUT;
            if (events == 0) continue;
            fds.push_back({leader.connection->fd(), events, 0});
            owners.push_back(&leader);
        }
        const int64_t capped_us = std::min<int64_t>(wait_us, 100000);
        const timespec timeout{static_cast<time_t>(capped_us / 1000000),
                               static_cast<long>(capped_us % 1000000 * 1000)};
        if (fds.empty()) {
            if (capped_us > 0) ::nanosleep(&timeout, nullptr);
            return ok_result();
        }
        const int ready = ::ppoll(fds.data(), fds.size(), &timeout, nullptr);
        if (ready < 0 && errno != EINTR)
            return error{1, std::string("poll failed: ") + std::strerror(errno)};
        for (size_t i = 0; i < fds.size(); ++i) {
            auto& leader = *owners[i];
            if (fds[i].revents & (POLLOUT | POLLERR | POLLHUP)) {
                auto flushed = leader.connection->flush();
                if (!flushed) return flushed;
            }
            if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                auto received = leader.connection->receive([&](std::span<const uint8_t> frame) {
                    return complete(leader, frame, latency, acked, failed);
                });
                if (!received) return received;
            }
        }
        return ok_result();
    }

    const std::string& first_failure() const { return _first_failure; }

private:
    std::vector<int64_t> take_time_vector() {
        if (_spare_times.empty()) return {};
        auto times = std::move(_spare_times.back());
        _spare_times.pop_back();
        times.clear();
        return times;
    }

    // Closes the partition's batch and queues it for its leader. As Kafka's sticky
    // partitioner does (KIP-480), the next record goes to the next partition once the
    // sticky one's batch is sealed, whether full or lingered out: a paced producer whose
    // batches never fill still spreads its records over every partition.
    void seal(open_partition& partition) {
        if (&partition == &_partitions[_sticky]) _sticky = (_sticky + 1) % _partitions.size();
        ready_batch batch;
        batch.partition = partition.partition;
        // Sequences wrap from INT32_MAX to 0, as Kafka's do (counted before release()
        // empties the builder).
        const int64_t next = int64_t{partition.next_sequence} + partition.builder->records_count();
        batch.bytes = partition.builder->release();
        batch.created_us = std::move(partition.created_us);
        partition.next_sequence =
            static_cast<int32_t>(next > INT32_MAX ? next - INT32_MAX - 1 : next);
        partition.builder.reset();
        _leaders[partition.leader].ready.push_back(std::move(batch));
        ++_ready_count;
    }

    // One Produce request per leader carrying at most one ready batch per partition, in
    // the order they were sealed, up to max.request.size (at least one batch).
    void send_request(leader_state& leader, produce_latencies& latency, uint64_t& acked) {
        in_flight_request request_state;
        request_state.correlation_id = leader.next_correlation_id++;
        proto::produce_request request;
        request.acks = _settings.acks;
        request.timeout_ms = _timeout_ms;
        request.topic_data.push_back({_topic, {}});
        auto& data = request.topic_data[0].partition_data;
        size_t request_bytes = 0;
        for (auto it = leader.ready.begin(); it != leader.ready.end();) {
            const bool taken = std::any_of(data.begin(), data.end(),
                                           [&](const auto& d) { return d.index == it->partition; });
            if (taken) {
                ++it;
                continue;
            }
            if (!data.empty() &&
                request_bytes + it->bytes.size() > static_cast<size_t>(_settings.max_request_bytes))
                break;
            request_bytes += it->bytes.size();
            request_state.batches.push_back(std::move(*it));
            it = leader.ready.erase(it);
            --_ready_count;
            proto::produce_request::partition_produce_data entry;
            entry.index = request_state.batches.back().partition;
            data.push_back(entry);
        }
        // The batches are not copied into the frame: the encoder leaves a gap for each, and
        // the connection sends the pieces between them and the batches' own buffers.
        for (size_t i = 0; i < data.size(); ++i) {
            data[i].records_.external_length =
                static_cast<int32_t>(request_state.batches[i].bytes.size());
            data[i].records_.external_id = static_cast<uint32_t>(i);
        }
        queue_request(*leader.connection, request, leader.produce_version,
                      request_state.correlation_id, request_state.batches);
        if (_settings.acks == 0) {
            // Nothing comes back: a record counts as done once it is handed to the socket.
            const int64_t now = now_us();
            for (auto& batch : request_state.batches) {
                for (int64_t created : batch.created_us)
                    latency.record(static_cast<uint64_t>(std::max<int64_t>(0, now - created)));
                acked += batch.created_us.size();
                _spare_times.push_back(std::move(batch.created_us));
            }
            return;
        }
        leader.in_flight.push_back(std::move(request_state));
    }

    result<void> complete(leader_state& leader, std::span<const uint8_t> frame,
                          produce_latencies& latency, uint64_t& acked, uint64_t& failed) {
        const int64_t now = now_us();
        proto::reader in(frame);
        int32_t correlation_id = 0;
        const int16_t header_version = proto::response_header_version(
            static_cast<int16_t>(proto::api_key::produce), leader.produce_version);
        if (!proto::decode_response_header(in, header_version, correlation_id))
            return error{1, "a malformed Produce response header"};
        if (leader.in_flight.empty() || leader.in_flight.front().correlation_id != correlation_id)
            return error{1, "a Produce response out of order (correlation id " +
                                std::to_string(correlation_id) + ")"};
        proto::produce_response response;
        if (!response.decode(in, leader.produce_version))
            return error{1, "a malformed Produce response"};
        auto request_state = std::move(leader.in_flight.front());
        leader.in_flight.pop_front();
        for (auto& batch : request_state.batches) {
            int16_t code = proto::code(proto::error_code::unknown_server_error);
            for (const auto& topic : response.responses)
                for (const auto& partition : topic.partition_responses)
                    if (partition.index == batch.partition) code = partition.error_code;
            if (code == 0) {
                for (int64_t created : batch.created_us)
                    latency.record(static_cast<uint64_t>(std::max<int64_t>(0, now - created)));
                acked += batch.created_us.size();
            } else {
                failed += batch.created_us.size();
                if (_first_failure.empty())
                    _first_failure = "partition " + std::to_string(batch.partition) + ": " +
                                     proto::error_name(code);
            }
            _spare_times.push_back(std::move(batch.created_us));
        }
        return ok_result();
    }

    std::string _topic;
    producer_settings _settings;
    int32_t _timeout_ms;
    producer_identity _identity;
    std::map<int32_t, leader_state> _leaders;
    std::vector<open_partition> _partitions;
    size_t _sticky = 0;
    size_t _ready_count = 0;
    std::vector<std::vector<int64_t>> _spare_times;
    std::string _first_failure;
};

}  // namespace

result<void> run_perf_produce(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto records_total = line.integer("--num-records", -1, 1, INT64_MAX / 2);
    if (!records_total) return records_total.failure();
    if (records_total.value() < 0)
        return error{usage_error_code, "perf produce needs --num-records"};
    auto record_size = line.integer("--record-size", 100, 0, 16 << 20);
    if (!record_size) return record_size.failure();
    auto throughput = line.integer("--throughput", -1, -1, INT32_MAX);
    if (!throughput) return throughput.failure();
    if (throughput.value() == 0)
        return error{usage_error_code, "--throughput must be -1 or positive"};
    const bool idempotent =
        line.has("--idempotence") || line.setting("enable.idempotence") == "true";
    // An idempotent producer defaults to acks=all and needs it, as Kafka's does.
    auto settings = parse_producer_settings(line, idempotent ? -1 : 1);
    if (!settings) return settings.failure();
    if (idempotent && settings->acks != -1)
        return error{usage_error_code, "--idempotence needs --acks all (-1)"};
    if (idempotent && settings->max_in_flight > 5)
        return error{usage_error_code, "--idempotence allows at most 5 requests in flight"};
    if (line.has("--payload-file") && line.has("--record-size"))
        return error{usage_error_code, "--payload-file and --record-size exclude each other"};
    // --stamp overwrites the first bytes of the one fixed payload before each record.
    const bool stamp = line.has("--stamp");
    if (stamp && line.has("--payload-file"))
        return error{usage_error_code, "--stamp and --payload-file exclude each other"};
    if (stamp && record_size.value() < static_cast<int64_t>(latency_stamp_bytes))
        return error{usage_error_code, "--stamp needs --record-size of at least " +
                                           std::to_string(latency_stamp_bytes)};
    auto partitions = line.integer("--partitions", -1, 1, 1 << 20);
    if (!partitions) return partitions.failure();

    // Either a fixed payload of printable random bytes, as the Kafka tool uses, or the
    // payload file's lines, picked at random for each record.
    std::vector<std::string> payloads;
    std::mt19937 random(12345);
    if (auto path = line.value("--payload-file")) {
        auto read = read_payload_file(*path);
        if (!read) return read.failure();
        payloads = std::move(read.value());
    } else {
        std::string payload(static_cast<size_t>(record_size.value()), 'A');
        for (auto& byte : payload) byte = static_cast<char>('A' + random() % 26);
        payloads.push_back(std::move(payload));
    }

    auto brokers = cluster::connect(line.global);
    if (!brokers) return brokers.failure();
    auto layout =
        perf_topic(brokers.value(), topic_name.value(), static_cast<int32_t>(partitions.value()));
    if (!layout) return layout.failure();
    producer_identity identity;
    if (idempotent) {
        auto initialised = init_producer_id(brokers.value());
        if (!initialised) return initialised.failure();
        identity = initialised.value();
    }
    // Wake-ups on time to the microsecond (the default slack is 50 us): a throttled run
    // sends each record when it is due, not when the timer happens to fire.
    (void)::prctl(PR_SET_TIMERSLACK, 1UL);
    perf_producer producer(topic_name.value(), settings.value(), line.global.timeout_ms, identity);
    auto opened = producer.open(brokers.value(), layout.value());
    if (!opened) return opened;

    produce_latencies latency;
    uint64_t created = 0;
    uint64_t acked = 0;
    uint64_t failed = 0;
    // Bytes of the records created so far, and of those acknowledged (sizes vary with a
    // payload file; records are acknowledged in creation order per partition, so the
    // running average of created sizes stands for the acknowledged ones).
    uint64_t created_bytes = 0;
    auto acked_bytes = [&](uint64_t records) {
        return created == 0 ? 0
                            : static_cast<uint64_t>(static_cast<double>(created_bytes) *
                                                    static_cast<double>(records) /
                                                    static_cast<double>(created));
    };
    const auto total = static_cast<uint64_t>(records_total.value());
    const int64_t start = now_us();
    int64_t window_start = start;
    uint64_t window_acked = 0;
    const int64_t deadline_slack_us = int64_t{line.global.timeout_ms} * 1000;
    int64_t last_progress_us = start;
    while (acked + failed < total) {
        int64_t now = now_us();
        uint64_t allowed = total;
        if (throughput.value() > 0) {
            const double elapsed_s = static_cast<double>(now - start) / 1e6;
            allowed = std::min<uint64_t>(
                total,
                static_cast<uint64_t>(elapsed_s * static_cast<double>(throughput.value())) + 1);
        }
        // Create records in bounded bursts so I/O is serviced between them.
        uint64_t burst = 0;
        while (created < allowed && producer.has_room() && burst < 4096) {
            auto& payload =
                payloads.size() == 1 ? payloads.front() : payloads[random() % payloads.size()];
            // The builder copies the value, so the one payload is stamped anew each time.
            if (stamp)
                write_latency_stamp({reinterpret_cast<uint8_t*>(payload.data()), payload.size()},
                                    realtime_ns());
            producer.add(proto::byte_view(payload), now);
            created_bytes += payload.size();
            ++created;
            ++burst;
            if ((burst & 255) == 0) now = now_us();
        }
        producer.seal_lingering(now, created == total);
        int64_t wait_us = 0;
        if (created == allowed || !producer.has_room()) {
            int64_t next_us = now + 100000;
            // Without room only an answer lets the next record in, however late it is:
            // waiting for the throttle's due time would spin (it has passed) and take the
            // core the brokers need to answer.
            if (throughput.value() > 0 && created < total && producer.has_room())
                next_us = std::min(
                    next_us, start + static_cast<int64_t>(static_cast<double>(created) * 1e6 /
                                                          static_cast<double>(throughput.value())));
            next_us = std::min(next_us, producer.next_linger_deadline());
            wait_us = std::max<int64_t>(0, next_us - now);
        }
        const uint64_t acked_before = acked;
        auto pumped = producer.pump(wait_us, latency, acked, failed);
        if (!pumped) return pumped;
        if (acked != acked_before) last_progress_us = now_us();
        now = now_us();
        if (now - last_progress_us > deadline_slack_us && !producer.idle())
            return error{1, "no produce acknowledgement for " +
                                std::to_string(line.global.timeout_ms) + " ms"};
        if (now - window_start >= 5000000) {
            produce_summary progress{acked - window_acked, acked_bytes(acked - window_acked),
                                     static_cast<double>(now - window_start) / 1e6,
                                     &latency.window};
            std::printf("%s\n", format_produce_progress(progress).c_str());
            std::fflush(stdout);
            window_start = now;
            window_acked = acked;
            latency.window.reset();
        }
    }
    const double seconds = static_cast<double>(now_us() - start) / 1e6;
    produce_summary summary{acked, acked_bytes(acked), seconds, &latency.run};
    std::printf("%s\n", format_produce_summary(summary).c_str());
    if (auto path = line.value("--histogram"))
        if (auto written = latency.run.write_distribution(*path); !written) return written;
    if (failed > 0)
        return error{
            1, std::to_string(failed) + " record(s) failed, first: " + producer.first_failure()};
    return ok_result();
}

}  // namespace spate::tools
