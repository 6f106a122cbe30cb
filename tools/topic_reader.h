#pragma once
// topic_reader: reads one topic's partitions from their leaders for spatectl's consumers
// (`consume`, `perf consume`, `perf e2e`), with the fetch settings they share, in a fetch
// session per leader where the broker has them.

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
    // The fetch offset its leader's fetch session holds for it (-1: not sent in it yet).
    int64_t session_offset = -1;
};

// Reads one topic's partitions from their leaders, record by record, fetching ahead as
// Kafka's clients do: every leader has exactly one Fetch in flight, and the next one is
// sent as soon as a response arrives, with offsets read from the batch headers alone,
// before the records are decoded and handed out. The broker prepares the next answer
// while this one is decoded; one fetch per leader keeps the answers in order.
// With Fetch v7+ each leader's fetches run in a fetch session (KIP-227), as the Java
// consumer's do: after the first, a fetch names only the partitions whose fetch offset
// moved, and the answer carries only the partitions with news; a session the broker lost
// (FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH) starts again with a full fetch.
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
            follow_session(stream);  // the session lives on; its offsets are what was sent
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
        // The fetch session: its id (0: none yet, or the broker made none) and the epoch
        // of the next fetch (-1: the broker's Fetch predates sessions).
        int32_t session_id = 0;
        int32_t session_epoch = -1;
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
            if (stream.version >= 7) restart_session(stream);
            streams.push_back(std::move(stream));
        }
        _streams = std::move(streams);
        return ok_result();
    }

    // Forgets the stream's session: the next fetch asks for a new one, naming everything.
    static void restart_session(leader_stream& stream) {
        stream.session_id = 0;
        stream.session_epoch = 0;
        for (auto* cursor : stream.cursors) cursor->session_offset = -1;
    }

    result<void> send_fetch(leader_stream& stream) {
        proto::fetch_request request;
        request.replica_id = -1;
        request.max_wait_ms = _max_wait_ms;
        request.min_bytes = 1;
        request.max_bytes = fetch_response_bytes_max;
        request.session_id = stream.session_id;
        request.session_epoch = stream.session_epoch;
        // In an open session, only what moved: the broker keeps the others' offsets.
        const bool incremental = stream.session_id != 0;
        proto::fetch_request::fetch_topic topic{_layout.name, _layout.topic_id, {}};
        for (auto* cursor : stream.cursors) {
            if (incremental && cursor->session_offset == cursor->fetch_offset) continue;
            proto::fetch_request::fetch_partition partition;
            partition.partition = cursor->partition;
            partition.fetch_offset = cursor->fetch_offset;
            partition.partition_max_bytes = _partition_bytes_max;
            topic.partitions.push_back(partition);
            cursor->session_offset = cursor->fetch_offset;
        }
        if (!topic.partitions.empty()) request.topics.push_back(std::move(topic));
        auto sent = stream.connection->send(request, stream.version);
        if (!sent) return sent.failure();
        if (incremental)  // the epoch after INT32_MAX is 1, as Kafka's
            stream.session_epoch = stream.session_epoch == INT32_MAX ? 1 : stream.session_epoch + 1;
        stream.in_flight = true;
        stream.correlation_id = sent.value();
        return ok_result();
    }

    // Takes the session the broker answered with. Returns false when the broker lost the
    // session: it is started again, and the answer carries nothing.
    static bool follow_session(leader_stream& stream) {
        if (stream.session_epoch < 0) return true;
        const auto code = static_cast<proto::error_code>(stream.response.error_code);
        if (code == proto::error_code::fetch_session_id_not_found ||
            code == proto::error_code::invalid_fetch_session_epoch) {
            restart_session(stream);
            return false;
        }
        if (stream.session_id == 0 && stream.response.session_id != 0) {
            stream.session_id = stream.response.session_id;
            stream.session_epoch = 1;
        }
        return true;
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
        if (!follow_session(stream)) {
            // Nothing to hand out: fetch again, everything, from the same offsets.
            stream.response = proto::fetch_response{};
            return send_fetch(stream);
        }
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

inline result<int32_t> fetch_max_wait_ms(const command_line& line) {
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
inline void pause_if_not_long_polling(int32_t max_wait_ms) {
    if (max_wait_ms == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace spate::tools
