// `consume` (console consumer) and `perf consume` (consumer benchmark).
//
// Both find each partition's leader in Metadata, resolve the start offset with
// ListOffsets and keep one Fetch in flight per leader, as Kafka's own consumer does:
// the next Fetch goes out as soon as an answer arrives, before its records are decoded.
// `consume --group` is a single classic group member: the group assigns its partitions
// and keeps its committed offsets.

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "proto/assert.h"
#include "proto/error_code.h"
#include "proto/record_batch.h"
#include "tools/client_options.h"
#include "tools/cluster.h"
#include "tools/commands.h"
#include "tools/fetch_offset.h"
#include "tools/format.h"
#include "tools/group_protocol.h"

namespace spate::tools {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int64_t earliest_timestamp = -2;
constexpr int64_t latest_timestamp = -1;
// Decompressed bytes one batch may expand to; Kafka's batches are far smaller.
constexpr size_t decompressed_batch_bytes_max = 64u << 20;
// Kafka consumer's default fetch.max.wait.ms; -X fetch.max.wait.ms=N overrides it.
constexpr int32_t fetch_max_wait_ms_default = 500;
constexpr int32_t fetch_response_bytes_max = 50 << 20;

// Where one partition stands. next_offset is the consumer's position: the next record
// to hand out, which is what a group commits. fetch_offset is where the next Fetch of
// the partition starts; it runs ahead of next_offset while the records of a response
// are still being handed out.
struct partition_cursor {
    int32_t partition = 0;
    int32_t leader = -1;
    int64_t next_offset = 0;
    int64_t fetch_offset = 0;
};

// Reads one topic's partitions from their leaders, record by record, fetching ahead as
// Kafka's clients do: every leader has exactly one Fetch in flight, and the next one is
// sent as soon as a response arrives, with offsets read from the batch headers alone,
// before the records are decoded and handed out. The broker prepares the next answer
// while this one is decoded; one fetch per leader keeps the answers in order.
// Owned by one command on spatectl's thread. It uses the cluster's leader connections,
// which may be the bootstrap connection: settle() must run before anyone else sends on
// them while the reader lives, and a reader must be settled (or its cluster dropped)
// before another reader uses the same cluster.
class topic_reader {
public:
    topic_reader(cluster& brokers, topic_layout layout, int32_t partition_bytes_max,
                 int32_t max_wait_ms)
        : _brokers(brokers),
          _layout(std::move(layout)),
          _partition_bytes_max(partition_bytes_max),
          _max_wait_ms(max_wait_ms) {}
    topic_reader(const topic_reader&) = delete;
    topic_reader& operator=(const topic_reader&) = delete;

    // Chooses the partitions (all, or just `only`) and their start offsets: `offset` >= 0
    // is taken as is, otherwise the earliest or latest offset from ListOffsets.
    result<void> start(int32_t only, int64_t offset, bool from_beginning) {
        for (const auto& partition : _layout.partitions) {
            if (only >= 0 && partition.partition != only) continue;
            _cursors.push_back({partition.partition, partition.leader, offset, offset});
        }
        if (_cursors.empty())
            return error{1, "topic \"" + _layout.name + "\" has no partition " +
                                std::to_string(only) + " (" +
                                proto::error_name(proto::error_code::unknown_topic_or_partition) +
                                ")"};
        if (offset >= 0) return ok_result();
        return list_offsets(from_beginning ? earliest_timestamp : latest_timestamp);
    }

    // Reads the given partitions from the given offsets; a negative offset (nothing
    // committed) starts at the earliest or latest offset, as auto.offset.reset would.
    // Partitions the topic does not have are skipped; an empty map reads nothing.
    result<void> start_at(const std::map<int32_t, int64_t>& offsets, bool from_beginning) {
        for (const auto& partition : _layout.partitions) {
            const auto found = offsets.find(partition.partition);
            if (found != offsets.end())
                _cursors.push_back(
                    {partition.partition, partition.leader, found->second, found->second});
        }
        return list_offsets(from_beginning ? earliest_timestamp : latest_timestamp);
    }

    // The next offset to hand out of every partition read, as (partition, offset): what
    // was handed out is below it, whatever was fetched ahead.
    std::vector<std::pair<int32_t, int64_t>> positions() const {
        std::vector<std::pair<int32_t, int64_t>> out;
        for (const auto& cursor : _cursors) out.emplace_back(cursor.partition, cursor.next_offset);
        return out;
    }

    // Calls fn(partition, batch header, record) for records at or beyond each cursor, one
    // response per leader: first what a previous poll left of a response when fn stopped
    // it, else the answer to the fetch in flight (the next fetch goes out before fn sees
    // any record of it). A leader without a fetch in flight gets one before any answer
    // is awaited, so several brokers serve in parallel. fn returns false to stop; the
    // records after that one come on the next poll. Returns whether fn asked to stop.
    template <class Fn>
    result<bool> poll(Fn&& fn, uint64_t& bytes) {
        if (auto made = make_streams(); !made) return made.failure();
        for (auto& stream : _streams) {
            if (stream.in_flight) continue;
            // Nothing runs ahead of the positions now, so the fetch starts at them.
            for (auto* cursor : stream.cursors) cursor->fetch_offset = cursor->next_offset;
            if (auto sent = send_fetch(stream); !sent) return sent.failure();
        }
        for (auto& stream : _streams) {
            if (stream.undelivered) {
                int64_t handed = 0;
                auto delivered = deliver(stream, fn, bytes, handed);
                if (!delivered) return delivered;
                if (delivered.value()) return true;
                // Records were left over: they are this leader's share of the poll. When
                // fn had stopped at the response's last record, go on to the next one.
                if (handed > 0) continue;
            }
            if (auto received = receive_fetch(stream); !received) return received.failure();
            int64_t handed = 0;
            auto delivered = deliver(stream, fn, bytes, handed);
            if (!delivered) return delivered;
            if (delivered.value()) return true;
        }
        return false;
    }

    // Reads and drops the answers of the fetches in flight, and forgets what a stopped
    // poll left over, so that the leader connections are free for other requests and
    // the next poll fetches from the positions again.
    result<void> settle() {
        for (auto& stream : _streams) {
            stream.undelivered = false;
            if (!stream.in_flight) continue;
            stream.in_flight = false;
            auto received = stream.connection->template receive<proto::fetch_request>(
                stream.correlation_id, stream.version, stream.response, stream.frame);
            if (!received) return received.failure();
        }
        for (auto& cursor : _cursors) cursor.fetch_offset = cursor.next_offset;
        return ok_result();
    }

    const std::string& name() const { return _layout.name; }

private:
    // One leader's partitions and the state of its fetches. `response` and `frame` hold
    // the last answer (its records point into the frame) until it has been handed out.
    struct leader_stream {
        int32_t leader = -1;
        broker_connection* connection = nullptr;
        int16_t version = 0;
        std::vector<partition_cursor*> cursors;
        bool in_flight = false;
        int32_t correlation_id = 0;
        // fn stopped inside `response`; the rest of it comes before the next answer.
        bool undelivered = false;
        proto::fetch_response response;
        std::vector<uint8_t> frame;
    };

    // Groups the cursors by leader, once: the cursors do not change after start.
    result<void> make_streams() {
        if (!_streams.empty() || _cursors.empty()) return ok_result();
        std::map<int32_t, std::vector<partition_cursor*>> by_leader;
        for (auto& cursor : _cursors) by_leader[cursor.leader].push_back(&cursor);
        std::vector<leader_stream> streams;
        for (auto& [leader, cursors] : by_leader) {
            if (leader < 0)
                return error{1, "topic \"" + _layout.name + "\" partition " +
                                    std::to_string(cursors.front()->partition) + " has no leader"};
            auto connection = _brokers.leader(leader);
            if (!connection) return connection.failure();
            auto version = connection.value()->template version_for<proto::fetch_request>();
            if (!version) return version.failure();
            if (version.value() < 4)
                return error{1, "the broker's Fetch versions predate record batch v2"};
            leader_stream stream;
            stream.leader = leader;
            stream.connection = connection.value();
            // Fetch v13+ names the topic by id: without one from Metadata, stay below.
            stream.version = _layout.topic_id.is_zero() ? std::min<int16_t>(version.value(), 12)
                                                        : version.value();
            stream.cursors = std::move(cursors);
            streams.push_back(std::move(stream));
        }
        _streams = std::move(streams);
        return ok_result();
    }

    result<void> send_fetch(leader_stream& stream) {
        proto::fetch_request request;
        request.replica_id = -1;
        request.max_wait_ms = _max_wait_ms;
        request.min_bytes = 1;
        request.max_bytes = fetch_response_bytes_max;
        request.topics.push_back({_layout.name, _layout.topic_id, {}});
        for (const auto* cursor : stream.cursors) {
            proto::fetch_request::fetch_partition partition;
            partition.partition = cursor->partition;
            partition.fetch_offset = cursor->fetch_offset;
            partition.partition_max_bytes = _partition_bytes_max;
            request.topics[0].partitions.push_back(partition);
        }
        auto sent = stream.connection->send(request, stream.version);
        if (!sent) return sent.failure();
        stream.in_flight = true;
        stream.correlation_id = sent.value();
        return ok_result();
    }

    partition_cursor* cursor_of(leader_stream& stream, int32_t partition) {
        for (auto* cursor : stream.cursors)
            if (cursor->partition == partition) return cursor;
        return nullptr;
    }

    // Receives the answer to the stream's fetch and, unless it carries an error, sends
    // the next fetch at once from the offsets its batch headers give. An answer with an
    // error sends nothing: deliver() hands out what precedes the error and reports it.
    result<void> receive_fetch(leader_stream& stream) {
        SPATE_ASSERT(stream.in_flight, "a leader stream receives only what it has sent");
        SPATE_ASSERT(!stream.undelivered, "a response is replaced only once handed out");
        stream.in_flight = false;
        auto received = stream.connection->template receive<proto::fetch_request>(
            stream.correlation_id, stream.version, stream.response, stream.frame);
        if (!received) return received.failure();
        stream.undelivered = true;
        if (stream.response.error_code != 0) return ok_result();
        std::vector<std::pair<partition_cursor*, int64_t>> next;
        for (const auto& topic : stream.response.responses)
            for (const auto& data : topic.partitions) {
                partition_cursor* cursor = cursor_of(stream, data.partition_index);
                if (cursor == nullptr) continue;
                if (data.error_code != 0) return ok_result();
                auto offset = next_fetch_offset(data.records_.bytes, cursor->fetch_offset);
                if (!offset) return ok_result();
                next.emplace_back(cursor, offset.value());
            }
        for (const auto& [cursor, offset] : next) cursor->fetch_offset = offset;
        return send_fetch(stream);
    }

    // Hands out the records of the stream's response at or beyond each cursor; counts
    // them in `handed`. Returns whether fn asked to stop; the response stays undelivered
    // then.
    template <class Fn>
    result<bool> deliver(leader_stream& stream, Fn& fn, uint64_t& bytes, int64_t& handed) {
        const auto& response = stream.response;
        if (response.error_code != 0)
            return error{
                1, std::string("fetch failed (") + proto::error_name(response.error_code) + ")"};
        for (const auto& topic : response.responses)
            for (const auto& data : topic.partitions) {
                partition_cursor* cursor = cursor_of(stream, data.partition_index);
                if (cursor == nullptr) continue;
                // No fetch went out after an answer with an error, so fetch_offset is
                // still the offset that this answer refused.
                if (data.error_code != 0)
                    return error{1, "fetching topic \"" + _layout.name + "\" partition " +
                                        std::to_string(cursor->partition) + " at offset " +
                                        std::to_string(cursor->fetch_offset) + " failed (" +
                                        proto::error_name(data.error_code) + ")"};
                auto read = read_records(*cursor, data.records_.bytes, fn, bytes, handed);
                if (!read) return read;
                if (read.value()) return true;
            }
        stream.undelivered = false;
        return false;
    }

    result<void> list_offsets(int64_t timestamp) {
        std::map<int32_t, std::vector<partition_cursor*>> by_leader;
        // Only cursors without a position yet are resolved.
        for (auto& cursor : _cursors)
            if (cursor.next_offset < 0) by_leader[cursor.leader].push_back(&cursor);
        for (auto& [leader, cursors] : by_leader) {
            auto connection = _brokers.leader(leader);
            if (!connection) return connection.failure();
            proto::list_offsets_request request;
            request.replica_id = -1;
            request.topics.push_back({_layout.name, {}});
            for (const auto* cursor : cursors) {
                proto::list_offsets_request::list_offsets_partition partition;
                partition.partition_index = cursor->partition;
                partition.timestamp = timestamp;
                request.topics[0].partitions.push_back(partition);
            }
            auto version = connection.value()->version_for<proto::list_offsets_request>();
            if (!version) return version.failure();
            proto::list_offsets_response response;
            std::vector<uint8_t> frame;
            auto called = connection.value()->call(request, version.value(), response, frame);
            if (!called) return called;
            for (const auto& topic : response.topics)
                for (const auto& partition : topic.partitions) {
                    if (partition.error_code != 0)
                        return error{
                            1, "listing offsets of topic \"" + _layout.name + "\" partition " +
                                   std::to_string(partition.partition_index) + " failed (" +
                                   proto::error_name(partition.error_code) + ")"};
                    int64_t offset = partition.offset;
                    if (version.value() == 0)
                        offset = partition.old_style_offsets.empty()
                                     ? 0
                                     : partition.old_style_offsets[0];
                    for (auto* cursor : cursors)
                        if (cursor->partition == partition.partition_index)
                            cursor->next_offset = offset;
                }
        }
        return ok_result();
    }

    template <class Fn>
    result<bool> read_records(partition_cursor& cursor, std::span<const uint8_t> records, Fn& fn,
                              uint64_t& bytes, int64_t& handed) {
        bool stop = false;
        error failure{0, ""};
        auto split = proto::for_each_batch(
            records, [&](std::span<const uint8_t> batch, const proto::batch_header& header) {
                // A fetch may start at the batch holding the wanted offset; records before the
                // cursor were seen already. Control batches (transaction markers) are skipped.
                if (header.last_offset() < cursor.next_offset) return true;
                if (!header.is_control()) {
                    auto walked = proto::for_each_record(
                        batch, decompressed_batch_bytes_max, [&](const proto::record_view& record) {
                            const int64_t offset = header.base_offset + record.offset_delta;
                            if (offset < cursor.next_offset) return true;
                            bytes += (record.value ? record.value->size() : 0) +
                                     (record.key ? record.key->size() : 0);
                            cursor.next_offset = offset + 1;
                            ++handed;
                            if (!fn(cursor.partition, header, record)) {
                                stop = true;
                                return false;
                            }
                            return true;
                        });
                    if (!walked) {
                        failure = walked.failure();
                        return false;
                    }
                    if (stop) return false;
                }
                cursor.next_offset = std::max(cursor.next_offset, header.last_offset() + 1);
                return true;
            });
        if (!split)
            return error{1, "topic \"" + _layout.name + "\" partition " +
                                std::to_string(cursor.partition) + ": " + split.failure().message};
        if (failure.code != 0)
            return error{1, "topic \"" + _layout.name + "\" partition " +
                                std::to_string(cursor.partition) + ": cannot decode records (" +
                                failure.message + ")"};
        return stop;
    }

    cluster& _brokers;
    topic_layout _layout;
    int32_t _partition_bytes_max;
    int32_t _max_wait_ms;
    // Never resized after start: the streams point into it.
    std::vector<partition_cursor> _cursors;
    std::vector<leader_stream> _streams;
};

result<int32_t> fetch_max_wait_ms(const command_line& line) {
    const auto text = line.setting("fetch.max.wait.ms");
    if (!text) return fetch_max_wait_ms_default;
    int32_t value = -1;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < 0 || value > 300000)
        return error{usage_error_code,
                     "fetch.max.wait.ms must be between 0 and 300000, got \"" + *text + "\""};
    return value;
}

// Without long polling (fetch.max.wait.ms=0) an empty answer comes back at once; a short
// pause keeps the loop from spinning on the broker.
void pause_if_not_long_polling(int32_t max_wait_ms) {
    if (max_wait_ms == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

// Appends one fetched record to `out` in the chosen format.
void append_record(std::string& out, std::string_view topic, int32_t partition_index,
                   const proto::batch_header& header, const proto::record_view& record,
                   record_format format, bool print_headers) {
    consumed_record consumed;
    consumed.topic = topic;
    consumed.partition = partition_index;
    consumed.offset = header.base_offset + record.offset_delta;
    consumed.log_append_time = header.has_log_append_time();
    consumed.timestamp_ms =
        consumed.log_append_time
            ? header.max_timestamp
            : proto::record_timestamp(header.base_timestamp, record.timestamp_delta);
    consumed.key = record.key;
    consumed.value = record.value;
    consumed.headers = record.headers;
    format_record(out, consumed, format, print_headers);
}

struct console_options {
    std::string topic;
    int64_t max_messages = -1;     // -1: no limit
    int64_t idle_timeout_ms = -1;  // -1: wait for records forever
    record_format format = record_format::value;
    bool print_headers = false;
    int32_t max_wait_ms = fetch_max_wait_ms_default;
    bool from_beginning = false;
};

// Kafka consumer defaults, except a session timeout short enough that a killed spatectl
// leaves its group soon.
constexpr int32_t session_timeout_ms = 10000;
constexpr int32_t rebalance_timeout_ms = 30000;
constexpr auto heartbeat_interval = std::chrono::milliseconds(3000);
// JoinGroup answers that only ask to try again (MEMBER_ID_REQUIRED, a rebalance that
// started meanwhile) are retried this many times before giving up.
constexpr int join_attempts_max = 10;
// With no partitions assigned there is nothing to fetch; this paces the heartbeats.
constexpr auto unassigned_pause = std::chrono::milliseconds(100);

// What a group request's error code asks the member to do.
enum class group_reaction : uint8_t {
    carry_on,  // no error
    rejoin,    // the group is rebalancing or forgot us: join again
    fail,      // anything else
};

group_reaction react_to(int16_t code) {
    switch (static_cast<proto::error_code>(code)) {
        case proto::error_code::none:
            return group_reaction::carry_on;
        case proto::error_code::rebalance_in_progress:
        case proto::error_code::illegal_generation:
        case proto::error_code::unknown_member_id:
            return group_reaction::rejoin;
        default:
            return group_reaction::fail;
    }
}

// One member of a classic consumer group, subscribed to one topic, the way Kafka's
// consumer does it: JoinGroup (with the MEMBER_ID_REQUIRED round trip), the range
// assignment computed when this member leads, SyncGroup, then heartbeats and commits
// until LeaveGroup. Owned by run_consume on spatectl's thread; it owns the coordinator
// connection, while fetches go through the cluster's leader connections.
class group_member {
public:
    group_member(broker_connection coordinator, std::string group, std::string topic)
        : _coordinator(std::move(coordinator)),
          _group(std::move(group)),
          _topic(std::move(topic)) {}

    // Joins (or rejoins) the group and returns this member's partitions of the topic.
    result<std::vector<int32_t>> join(cluster& brokers) {
        auto join_version = _coordinator.version_for<proto::join_group_request>();
        if (!join_version) return join_version.failure();
        auto sync_version = _coordinator.version_for<proto::sync_group_request>();
        if (!sync_version) return sync_version.failure();
        for (int attempt = 0; attempt < join_attempts_max; ++attempt) {
            proto::join_group_request request;
            request.group_id = _group;
            request.session_timeout_ms = session_timeout_ms;
            request.rebalance_timeout_ms = rebalance_timeout_ms;
            request.member_id = _member_id;
            request.protocol_type = std::string(consumer_protocol_type);
            request.protocols.push_back(
                {std::string(range_assignor_name), encode_subscription({_topic})});
            proto::join_group_response response;
            std::vector<uint8_t> frame;
            auto called = _coordinator.call(request, join_version.value(), response, frame);
            if (!called) return called.failure();
            // From v4 the first join only hands out a member id to join with.
            if (response.error_code == proto::code(proto::error_code::member_id_required)) {
                _member_id = response.member_id;
                continue;
            }
            if (response.error_code == proto::code(proto::error_code::unknown_member_id)) {
                _member_id.clear();
                continue;
            }
            if (response.error_code == proto::code(proto::error_code::rebalance_in_progress))
                continue;
            if (response.error_code != 0)
                return error{1, "joining " + describe_group_error(_group, response.error_code)};
            _member_id = response.member_id;
            _generation = response.generation_id;

            proto::sync_group_request sync;
            sync.group_id = _group;
            sync.generation_id = _generation;
            sync.member_id = _member_id;
            sync.protocol_type = std::string(consumer_protocol_type);
            sync.protocol_name = response.protocol_name;
            if (response.leader == _member_id) {
                auto assignments = assign(brokers, response);
                if (!assignments) return assignments.failure();
                for (auto& [member_id, assignment] : assignments.value())
                    sync.assignments.push_back({member_id, encode_assignment(assignment)});
            }
            proto::sync_group_response synced;
            auto sync_called = _coordinator.call(sync, sync_version.value(), synced, frame);
            if (!sync_called) return sync_called.failure();
            const group_reaction reaction = react_to(synced.error_code);
            if (reaction == group_reaction::rejoin) {
                if (synced.error_code == proto::code(proto::error_code::unknown_member_id))
                    _member_id.clear();
                continue;
            }
            if (reaction == group_reaction::fail)
                return error{1, "syncing " + describe_group_error(_group, synced.error_code)};
            auto assignment = decode_assignment(synced.assignment);
            if (!assignment)
                return error{1, "group \"" + _group + "\": " + assignment.failure().message};
            _last_heartbeat = clock_type::now();
            const auto mine = assignment->find(_topic);
            if (mine == assignment->end()) return std::vector<int32_t>{};
            return mine->second;
        }
        return error{1, "group \"" + _group + "\": no stable membership after " +
                            std::to_string(join_attempts_max) + " JoinGroup attempts"};
    }

    // The committed offset of each partition, -1 where the group has none.
    result<std::map<int32_t, int64_t>> committed(const std::vector<int32_t>& partitions) {
        std::map<int32_t, int64_t> out;
        for (const int32_t partition : partitions) out[partition] = -1;
        if (partitions.empty()) return out;
        auto version = _coordinator.version_for<proto::offset_fetch_request>();
        if (!version) return version.failure();
        proto::offset_fetch_request request;
        if (version.value() >= 8) {
            proto::offset_fetch_request::offset_fetch_request_group group;
            group.group_id = _group;
            group.topics.emplace();
            group.topics->push_back({_topic, partitions});
            request.groups.push_back(std::move(group));
        } else {
            request.group_id = _group;
            request.topics.emplace();
            request.topics->push_back({_topic, partitions});
        }
        proto::offset_fetch_response response;
        std::vector<uint8_t> frame;
        auto called = _coordinator.call(request, version.value(), response, frame);
        if (!called) return called.failure();
        auto walked = for_each_committed_offset(
            response, version.value(), _group, "fetching offsets of ",
            [&](const committed_offset& c) -> result<void> {
                if (c.error_code != 0)
                    return error{1, "fetching the committed offset of topic \"" + _topic +
                                        "\" partition " + std::to_string(c.partition) + " for " +
                                        describe_group_error(_group, c.error_code)};
                if (out.count(c.partition) != 0) out[c.partition] = c.offset;
                return ok_result();
            });
        if (!walked) return walked.failure();
        return out;
    }

    // Commits the positions that moved since the last commit. Returns the reaction the
    // coordinator's answer asks for.
    result<group_reaction> commit(const std::vector<std::pair<int32_t, int64_t>>& positions) {
        proto::offset_commit_request request;
        request.group_id = _group;
        request.generation_id = _generation;
        request.member_id = _member_id;
        proto::offset_commit_request::offset_commit_request_topic topic;
        topic.name = _topic;
        for (const auto& [partition, offset] : positions) {
            if (offset < 0) continue;
            const auto last = _committed.find(partition);
            if (last != _committed.end() && last->second == offset) continue;
            proto::offset_commit_request::offset_commit_request_partition entry;
            entry.partition_index = partition;
            entry.committed_offset = offset;
            entry.committed_metadata = "";
            topic.partitions.push_back(entry);
        }
        if (topic.partitions.empty()) return group_reaction::carry_on;
        request.topics.push_back(std::move(topic));
        auto version = _coordinator.version_for<proto::offset_commit_request>();
        if (!version) return version.failure();
        proto::offset_commit_response response;
        std::vector<uint8_t> frame;
        auto called = _coordinator.call(request, version.value(), response, frame);
        if (!called) return called.failure();
        for (const auto& answered : response.topics)
            for (const auto& partition : answered.partitions) {
                const group_reaction reaction = react_to(partition.error_code);
                if (reaction == group_reaction::fail)
                    return error{1, "committing topic \"" + _topic + "\" partition " +
                                        std::to_string(partition.partition_index) + " for " +
                                        describe_group_error(_group, partition.error_code)};
                if (reaction == group_reaction::rejoin) return reaction;
            }
        for (const auto& entry : request.topics[0].partitions)
            _committed[entry.partition_index] = entry.committed_offset;
        return group_reaction::carry_on;
    }

    // Heartbeats when the interval has passed since the last one.
    result<group_reaction> heartbeat_if_due() {
        if (clock_type::now() - _last_heartbeat < heartbeat_interval)
            return group_reaction::carry_on;
        auto version = _coordinator.version_for<proto::heartbeat_request>();
        if (!version) return version.failure();
        proto::heartbeat_request request;
        request.group_id = _group;
        request.generation_id = _generation;
        request.member_id = _member_id;
        proto::heartbeat_response response;
        std::vector<uint8_t> frame;
        auto called = _coordinator.call(request, version.value(), response, frame);
        if (!called) return called.failure();
        _last_heartbeat = clock_type::now();
        const group_reaction reaction = react_to(response.error_code);
        if (reaction == group_reaction::fail)
            return error{1, "heartbeat of " + describe_group_error(_group, response.error_code)};
        return reaction;
    }

    // Leaves the group so that it rebalances (or becomes Empty) at once instead of after
    // the session timeout. Best effort: the process is exiting either way.
    void leave() {
        if (_member_id.empty()) return;
        auto version = _coordinator.version_for<proto::leave_group_request>();
        if (!version) return;
        proto::leave_group_request request;
        request.group_id = _group;
        if (version.value() >= 3)
            request.members.push_back({_member_id, std::nullopt, std::nullopt});
        else
            request.member_id = _member_id;
        proto::leave_group_response response;
        std::vector<uint8_t> frame;
        (void)_coordinator.call(request, version.value(), response, frame);
    }

    // Forgets what was committed in an earlier generation, so the new one commits afresh.
    void forget_commits() { _committed.clear(); }

private:
    // The leader's job: the range assignment over every member's subscription.
    result<std::map<std::string, partition_assignment>> assign(
        cluster& brokers, const proto::join_group_response& joined) {
        std::vector<group_member_subscription> members;
        std::set<std::string> topics;
        for (const auto& member : joined.members) {
            auto subscribed = decode_subscription(member.metadata);
            if (!subscribed)
                return error{1, "group \"" + _group + "\" member " + member.member_id + ": " +
                                    subscribed.failure().message};
            topics.insert(subscribed->begin(), subscribed->end());
            members.push_back({member.member_id, std::move(subscribed.value())});
        }
        auto layouts = brokers.metadata(std::vector<std::string>(topics.begin(), topics.end()));
        if (!layouts) return layouts.failure();
        std::map<std::string, int32_t> counts;
        for (const auto& [code, layout] : layouts.value())
            if (code == 0) counts[layout.name] = static_cast<int32_t>(layout.partitions.size());
        return range_assign(members, counts);
    }

    broker_connection _coordinator;
    std::string _group;
    std::string _topic;
    std::string _member_id;
    int32_t _generation = -1;
    clock_type::time_point _last_heartbeat = clock_type::now();
    std::map<int32_t, int64_t> _committed;
};

// `consume --group`: reads the partitions the group assigns, resuming at the committed
// offsets, commits after every batch printed, and leaves the group at exit.
result<void> consume_in_group(cluster& brokers, const std::string& group,
                              const console_options& options) {
    auto layout = brokers.topic(options.topic);
    if (!layout) return layout.failure();
    auto coordinator = open_coordinator(brokers.bootstrap(), group, brokers.timeout_ms());
    if (!coordinator) return coordinator.failure();
    group_member member(std::move(coordinator.value()), group, options.topic);

    int64_t printed = 0;
    uint64_t bytes = 0;
    std::string out;
    auto last_record = clock_type::now();
    auto finish = [&](result<void> outcome) {
        member.leave();
        return outcome;
    };
    for (;;) {
        auto partitions = member.join(brokers);
        if (!partitions) return finish(partitions.failure());
        auto offsets = member.committed(partitions.value());
        if (!offsets) return finish(offsets.failure());
        member.forget_commits();
        topic_reader reader(brokers, layout.value(), 1 << 20, options.max_wait_ms);
        auto started = reader.start_at(offsets.value(), options.from_beginning);
        if (!started) return finish(started);
        for (;;) {
            const int64_t before = printed;
            auto stopped = reader.poll(
                [&](int32_t partition_index, const proto::batch_header& header,
                    const proto::record_view& record) {
                    append_record(out, reader.name(), partition_index, header, record,
                                  options.format, options.print_headers);
                    ++printed;
                    return options.max_messages < 0 || printed < options.max_messages;
                },
                bytes);
            std::fwrite(out.data(), 1, out.size(), stdout);
            std::fflush(stdout);
            out.clear();
            if (!stopped) return finish(stopped.failure());
            // Printed first, committed second: a crash in between re-delivers rather than
            // loses, Kafka's at-least-once.
            auto committed = member.commit(reader.positions());
            if (!committed) return finish(committed.failure());
            if (stopped.value()) return finish(ok_result());
            if (committed.value() == group_reaction::rejoin) break;
            auto beat = member.heartbeat_if_due();
            if (!beat) return finish(beat.failure());
            if (beat.value() == group_reaction::rejoin) break;
            if (printed != before)
                last_record = clock_type::now();
            else if (partitions->empty())
                std::this_thread::sleep_for(unassigned_pause);
            else
                pause_if_not_long_polling(options.max_wait_ms);
            if (options.idle_timeout_ms > 0 &&
                clock_type::now() - last_record >=
                    std::chrono::milliseconds(options.idle_timeout_ms))
                return finish(ok_result());
        }
        // Rejoining: the fetches still in flight are answered before the leader
        // connections (one may be the bootstrap connection, which the group leader's
        // Metadata call uses) carry anything else, and a new reader starts from the
        // committed offsets.
        auto settled = reader.settle();
        if (!settled) return finish(settled);
    }
}

}  // namespace

result<void> run_consume(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto partition = line.integer("--partition", -1, 0, INT32_MAX);
    if (!partition) return partition.failure();
    auto offset = line.integer("--offset", -1, 0, INT64_MAX);
    if (!offset) return offset.failure();
    auto max_messages = line.integer("--max-messages", -1, 1, INT64_MAX);
    if (!max_messages) return max_messages.failure();
    auto idle_timeout = line.integer("--timeout-ms", -1, 1, INT32_MAX);
    if (!idle_timeout) return idle_timeout.failure();
    auto format = parse_record_format(line.value("--format").value_or("value"));
    if (!format) return format.failure();
    if (line.global.json) format = record_format::json;
    if (offset.value() >= 0 && line.has("--from-beginning"))
        return error{usage_error_code, "--offset and --from-beginning exclude each other"};

    auto brokers = cluster::connect(line.global);
    if (!brokers) return brokers.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();
    if (auto group = line.value("--group")) {
        if (partition.value() >= 0 || offset.value() >= 0)
            return error{usage_error_code,
                         "--group chooses partitions and offsets itself: drop "
                         "--partition and --offset"};
        // Group consumption starts with FindCoordinator and JoinGroup; say plainly when
        // the broker does not serve them instead of failing later.
        auto joined = brokers->bootstrap().version_for<proto::join_group_request>();
        if (!joined) return error{1, "consume --group: " + joined.failure().message};
        console_options options;
        options.topic = topic_name.value();
        options.max_messages = max_messages.value();
        options.idle_timeout_ms = idle_timeout.value();
        options.format = format.value();
        options.print_headers = line.has("--print-headers");
        options.max_wait_ms = max_wait_ms.value();
        options.from_beginning = line.has("--from-beginning");
        return consume_in_group(brokers.value(), *group, options);
    }
    auto layout = brokers->topic(topic_name.value());
    if (!layout) return layout.failure();
    topic_reader reader(brokers.value(), std::move(layout.value()), 1 << 20, max_wait_ms.value());
    auto started = reader.start(static_cast<int32_t>(partition.value()), offset.value(),
                                line.has("--from-beginning"));
    if (!started) return started;

    int64_t printed = 0;
    uint64_t bytes = 0;
    std::string out;
    auto last_record = clock_type::now();
    for (;;) {
        const int64_t before = printed;
        auto stopped = reader.poll(
            [&](int32_t partition_index, const proto::batch_header& header,
                const proto::record_view& record) {
                append_record(out, reader.name(), partition_index, header, record, format.value(),
                              line.has("--print-headers"));
                ++printed;
                return max_messages.value() < 0 || printed < max_messages.value();
            },
            bytes);
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        out.clear();
        if (!stopped) return stopped.failure();
        if (stopped.value()) break;
        if (printed != before)
            last_record = clock_type::now();
        else
            pause_if_not_long_polling(max_wait_ms.value());
        if (idle_timeout.value() > 0 &&
            clock_type::now() - last_record >= std::chrono::milliseconds(idle_timeout.value()))
            break;
    }
    return ok_result();
}

namespace {

// What the threads of `perf consume` share: the records counted so far (all threads
// stop once it reaches the goal) and the first failure. Owned by run_perf_consume,
// which joins every thread before it reads the totals.
struct perf_consume_shared {
    std::atomic<int64_t> consumed{0};
    std::atomic<uint64_t> bytes{0};
    std::mutex failure_mutex;
    std::optional<error> failure;

    void fail(error why) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::move(why);
    }
};

struct perf_consume_job {
    global_options global;
    std::string topic;
    std::vector<int32_t> partitions;  // this thread's share
    int64_t messages = 0;
    int32_t fetch_size = 0;
    int32_t max_wait_ms = 0;
    int64_t idle_timeout_ms = 0;
};

// One thread of `perf consume`: its own connections, reading its partitions from the
// earliest offset until the shared count reaches the goal or nothing arrives for the
// idle timeout.
void perf_consume_worker(const perf_consume_job& job, perf_consume_shared& shared) {
    auto brokers = cluster::connect(job.global);
    if (!brokers) return shared.fail(brokers.failure());
    auto layout = brokers->topic(job.topic);
    if (!layout) return shared.fail(layout.failure());
    topic_reader reader(brokers.value(), std::move(layout.value()), job.fetch_size,
                        job.max_wait_ms);
    std::map<int32_t, int64_t> offsets;
    for (int32_t partition : job.partitions) offsets[partition] = -1;
    auto started = reader.start_at(offsets, /*from_beginning=*/true);
    if (!started) return shared.fail(started.failure());
    auto last_record = clock_type::now();
    uint64_t bytes = 0;
    while (shared.consumed.load(std::memory_order_relaxed) < job.messages) {
        bool got = false;
        auto stopped = reader.poll(
            [&](int32_t, const proto::batch_header&, const proto::record_view&) {
                got = true;
                return shared.consumed.fetch_add(1, std::memory_order_relaxed) + 1 < job.messages;
            },
            bytes);
        if (!stopped) return shared.fail(stopped.failure());
        if (stopped.value()) break;
        if (got)
            last_record = clock_type::now();
        else
            pause_if_not_long_polling(job.max_wait_ms);
        if (clock_type::now() - last_record >= std::chrono::milliseconds(job.idle_timeout_ms))
            break;
    }
    shared.bytes.fetch_add(bytes, std::memory_order_relaxed);
}

}  // namespace

result<void> run_perf_consume(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto messages = line.integer("--messages", -1, 1, INT64_MAX / 2);
    if (!messages) return messages.failure();
    if (messages.value() < 0) return error{usage_error_code, "perf consume needs --messages"};
    auto fetch_size = line.integer("--fetch-size", 1 << 20, 1024, 64 << 20);
    if (!fetch_size) return fetch_size.failure();
    auto idle_timeout = line.integer("--timeout-ms", 10000, 1, INT32_MAX);
    if (!idle_timeout) return idle_timeout.failure();
    auto threads = line.integer("--threads", 1, 1, 256);
    if (!threads) return threads.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();

    // The layout is read once here to split the partitions; each thread reads it again
    // on its own connections.
    std::vector<int32_t> partitions;
    {
        auto brokers = cluster::connect(line.global);
        if (!brokers) return brokers.failure();
        auto layout = brokers->topic(topic_name.value());
        if (!layout) return layout.failure();
        for (const auto& partition : layout->partitions) partitions.push_back(partition.partition);
    }
    if (partitions.empty())
        return error{1, "topic \"" + topic_name.value() + "\" has no partitions"};
    // More threads than partitions would leave some idle: one partition per thread at most.
    const size_t thread_count = std::min(static_cast<size_t>(threads.value()), partitions.size());
    std::vector<perf_consume_job> jobs(thread_count);
    for (size_t i = 0; i < partitions.size(); ++i)
        jobs[i % thread_count].partitions.push_back(partitions[i]);
    for (auto& job : jobs) {
        job.global = line.global;
        job.topic = topic_name.value();
        job.messages = messages.value();
        job.fetch_size = static_cast<int32_t>(fetch_size.value());
        job.max_wait_ms = max_wait_ms.value();
        job.idle_timeout_ms = idle_timeout.value();
    }

    const int64_t start_wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
    const auto start = clock_type::now();
    perf_consume_shared shared;
    {
        std::vector<std::jthread> workers;
        for (size_t i = 1; i < jobs.size(); ++i)
            workers.emplace_back([&jobs, &shared, i] { perf_consume_worker(jobs[i], shared); });
        // The calling thread takes the first share itself.
        perf_consume_worker(jobs[0], shared);
    }
    const auto end = clock_type::now();
    if (shared.failure) return *shared.failure;
    const int64_t consumed = std::min(shared.consumed.load(), messages.value());
    const uint64_t bytes = shared.bytes.load();
    consume_summary summary;
    summary.records = static_cast<uint64_t>(consumed);
    summary.bytes = bytes;
    summary.start_ms = start_wall;
    summary.seconds = std::chrono::duration<double>(end - start).count();
    summary.end_ms = start_wall + static_cast<int64_t>(summary.seconds * 1000.0);
    std::string out = format_consume_summary(summary);
    const double seconds = summary.seconds > 0 ? summary.seconds : 1e-9;
    char line_text[160];
    std::snprintf(
        line_text, sizeof line_text, "%llu records received, %.1f records/sec (%.2f MB/sec)\n",
        static_cast<unsigned long long>(consumed), static_cast<double>(consumed) / seconds,
        static_cast<double>(bytes) / seconds / (1024.0 * 1024.0));
    out += line_text;
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (consumed < messages.value())
        return error{1, "only " + std::to_string(consumed) + " of " +
                            std::to_string(messages.value()) + " records arrived within " +
                            std::to_string(idle_timeout.value()) + " ms"};
    return ok_result();
}

result<void> run_perf_e2e(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto records_total = line.integer("--num-records", -1, 1, 100000000);
    if (!records_total) return records_total.failure();
    if (records_total.value() < 0) return error{usage_error_code, "perf e2e needs --num-records"};
    auto record_size = line.integer("--record-size", 100, 1, 1 << 20);
    if (!record_size) return record_size.failure();
    auto acks = parse_acks(line.value("--acks").value_or("1"));
    if (!acks) return acks.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();

    // Producer and consumer have connections of their own, as two clients would.
    auto producing = cluster::connect(line.global);
    if (!producing) return producing.failure();
    auto layout = producing->topic(topic_name.value());
    if (!layout) return layout.failure();
    // Like Kafka's EndToEndLatency, one partition carries every record.
    const auto target = layout->partitions.front();
    if (target.leader < 0)
        return error{1, "topic \"" + layout->name + "\" has no leader for partition " +
                            std::to_string(target.partition)};
    auto leader = producing->leader(target.leader);
    if (!leader) return leader.failure();
    auto produce_version = leader.value()->version_for<proto::produce_request>();
    if (!produce_version) return produce_version.failure();
    if (produce_version.value() < 3)
        return error{1, "the broker's Produce versions predate record batch v2"};

    auto consuming = cluster::connect(line.global);
    if (!consuming) return consuming.failure();
    // Its own Metadata call also fills its address book for the leader connection.
    auto consumed_layout = consuming->topic(topic_name.value());
    if (!consumed_layout) return consumed_layout.failure();
    topic_reader reader(consuming.value(), std::move(consumed_layout.value()), 1 << 20,
                        max_wait_ms.value());
    // From the end: only the records this run produces are read.
    auto started = reader.start(target.partition, -1, /*from_beginning=*/false);
    if (!started) return started;

    std::mt19937 random(std::random_device{}());
    std::string payload(static_cast<size_t>(record_size.value()), 'A');
    latency_histogram latency;
    std::vector<uint8_t> frame;
    uint64_t bytes = 0;
    const auto timeout = std::chrono::milliseconds(line.global.timeout_ms);
    for (int64_t i = 0; i < records_total.value(); ++i) {
        // A fresh payload each time, so a record read back is surely this one.
        for (auto& byte : payload) byte = static_cast<char>('A' + random() % 26);
        proto::batch_builder builder(proto::compression_codec::none,
                                     std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
        builder.add(std::nullopt, proto::byte_view(payload));
        const auto batch = builder.build();
        proto::produce_request request;
        request.acks = acks.value();
        request.timeout_ms = line.global.timeout_ms;
        request.topic_data.push_back({layout->name, {}});
        proto::produce_request::partition_produce_data data;
        data.index = target.partition;
        data.records_.bytes = batch;
        request.topic_data[0].partition_data.push_back(data);

        const auto sent_at = clock_type::now();
        if (acks.value() == 0) {
            auto sent = leader.value()->send_only(request, produce_version.value());
            if (!sent) return sent;
        } else {
            proto::produce_response response;
            auto called = leader.value()->call(request, produce_version.value(), response, frame);
            if (!called) return called;
            for (const auto& topic : response.responses)
                for (const auto& partition : topic.partition_responses)
                    if (partition.error_code != 0)
                        return error{1, "producing to topic \"" + layout->name + "\" partition " +
                                            std::to_string(partition.index) + " failed (" +
                                            proto::error_name(partition.error_code) + ")"};
        }
        bool matched = false;
        bool mismatched = false;
        while (!matched) {
            auto stopped = reader.poll(
                [&](int32_t, const proto::batch_header&, const proto::record_view& record) {
                    matched =
                        record.value && payload.size() == record.value->size() &&
                        std::equal(record.value->begin(), record.value->end(), payload.begin(),
                                   [](uint8_t a, char b) { return a == static_cast<uint8_t>(b); });
                    mismatched = !matched;
                    return false;
                },
                bytes);
            if (!stopped) return stopped.failure();
            if (mismatched)
                return error{
                    1, "record " + std::to_string(i) + " read back from topic \"" + layout->name +
                           "\" is not the one produced (is another producer writing to it?)"};
            if (!matched) {
                if (clock_type::now() - sent_at >= timeout)
                    return error{1, "record " + std::to_string(i) + " was not consumed within " +
                                        std::to_string(line.global.timeout_ms) + " ms"};
                pause_if_not_long_polling(max_wait_ms.value());
            }
        }
        const auto elapsed =
            std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - sent_at);
        latency.record(static_cast<uint64_t>(elapsed.count()));
    }

    // Kafka's EndToEndLatency lines, in microseconds rather than milliseconds.
    char text[320];
    std::snprintf(text, sizeof text,
                  "%lld records, avg latency: %.1f µs, max latency: %llu µs\n"
                  "Percentiles: 50th = %llu µs, 99th = %llu µs, 99.9th = %llu µs\n",
                  static_cast<long long>(latency.count()), latency.mean(),
                  static_cast<unsigned long long>(latency.max()),
                  static_cast<unsigned long long>(latency.percentile(50)),
                  static_cast<unsigned long long>(latency.percentile(99)),
                  static_cast<unsigned long long>(latency.percentile(99.9)));
    std::fputs(text, stdout);
    if (auto path = line.value("--histogram")) {
        std::ofstream out(*path);
        out << latency.distribution_text();
        if (!out) return error{1, "cannot write histogram file \"" + *path + "\""};
    }
    return ok_result();
}

}  // namespace spate::tools
