// `consume` (console consumer) and `perf consume` (consumer benchmark).
//
// Both fetch without a consumer group: they find each partition's leader in Metadata,
// resolve the start offset with ListOffsets and keep one Fetch in flight per leader,
// as Kafka's own consumer does.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "proto/error_code.h"
#include "proto/record_batch.h"
#include "tools/cluster.h"
#include "tools/commands.h"
#include "tools/format.h"

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

struct partition_cursor {
    int32_t partition = 0;
    int32_t leader = -1;
    int64_t next_offset = 0;
};

// Reads one topic's partitions from their leaders, record by record.
class topic_reader {
public:
    topic_reader(cluster& brokers, topic_layout layout, int32_t partition_bytes_max, int32_t max_wait_ms)
        : _brokers(brokers),
          _layout(std::move(layout)),
          _partition_bytes_max(partition_bytes_max),
          _max_wait_ms(max_wait_ms) {}

    // Chooses the partitions (all, or just `only`) and their start offsets: `offset` >= 0
    // is taken as is, otherwise the earliest or latest offset from ListOffsets.
    result<void> start(int32_t only, int64_t offset, bool from_beginning) {
        for (const auto& partition : _layout.partitions) {
            if (only >= 0 && partition.partition != only) continue;
            _cursors.push_back({partition.partition, partition.leader, offset});
        }
        if (_cursors.empty())
            return error{1, "topic \"" + _layout.name + "\" has no partition " + std::to_string(only) +
                                " (" + proto::error_name(proto::error_code::unknown_topic_or_partition) + ")"};
        if (offset >= 0) return ok_result();
        return list_offsets(from_beginning ? earliest_timestamp : latest_timestamp);
    }

    // One Fetch per leader; calls fn(partition, batch header, record) for every record at or
    // beyond the cursor. fn returns false to stop. Returns whether fn asked to stop.
    template <class Fn>
    result<bool> poll(Fn&& fn, uint64_t& bytes) {
        std::map<int32_t, std::vector<partition_cursor*>> by_leader;
        for (auto& cursor : _cursors) by_leader[cursor.leader].push_back(&cursor);
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
            proto::fetch_request request;
            request.replica_id = -1;
            request.max_wait_ms = _max_wait_ms;
            request.min_bytes = 1;
            request.max_bytes = fetch_response_bytes_max;
            request.topics.push_back({_layout.name, {}});
            for (const auto* cursor : cursors) {
                proto::fetch_request::fetch_partition partition;
                partition.partition = cursor->partition;
                partition.fetch_offset = cursor->next_offset;
                partition.partition_max_bytes = _partition_bytes_max;
                request.topics[0].partitions.push_back(partition);
            }
            proto::fetch_response response;
            auto called = connection.value()->call(request, version.value(), response, _frame);
            if (!called) return called.failure();
            if (response.error_code != 0)
                return error{1, std::string("fetch failed (") + proto::error_name(response.error_code) + ")"};
            for (const auto& topic : response.responses)
                for (const auto& data : topic.partitions) {
                    partition_cursor* cursor = nullptr;
                    for (auto* candidate : cursors)
                        if (candidate->partition == data.partition_index) cursor = candidate;
                    if (cursor == nullptr) continue;
                    if (data.error_code != 0)
                        return error{1, "fetching topic \"" + _layout.name + "\" partition " +
                                            std::to_string(cursor->partition) + " at offset " +
                                            std::to_string(cursor->next_offset) + " failed (" +
                                            proto::error_name(data.error_code) + ")"};
                    auto stopped = read_records(*cursor, data.records_.bytes, fn, bytes);
                    if (!stopped) return stopped;
                    if (stopped.value()) return true;
                }
        }
        return false;
    }

    const std::string& name() const { return _layout.name; }

private:
    result<void> list_offsets(int64_t timestamp) {
        std::map<int32_t, std::vector<partition_cursor*>> by_leader;
        for (auto& cursor : _cursors) by_leader[cursor.leader].push_back(&cursor);
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
                        return error{1, "listing offsets of topic \"" + _layout.name + "\" partition " +
                                            std::to_string(partition.partition_index) + " failed (" +
                                            proto::error_name(partition.error_code) + ")"};
                    int64_t offset = partition.offset;
                    if (version.value() == 0)
                        offset = partition.old_style_offsets.empty() ? 0 : partition.old_style_offsets[0];
                    for (auto* cursor : cursors)
                        if (cursor->partition == partition.partition_index) cursor->next_offset = offset;
                }
        }
        return ok_result();
    }

    template <class Fn>
    result<bool> read_records(partition_cursor& cursor, std::span<const uint8_t> records, Fn& fn,
                              uint64_t& bytes) {
        bool stop = false;
        error failure{0, ""};
        auto split = proto::for_each_batch(records, [&](std::span<const uint8_t> batch,
                                                        const proto::batch_header& header) {
            // A fetch may start at the batch holding the wanted offset; records before the
            // cursor were seen already. Control batches (transaction markers) are skipped.
            if (header.last_offset() < cursor.next_offset) return true;
            if (!header.is_control()) {
                auto walked = proto::for_each_record(batch, decompressed_batch_bytes_max,
                                                     [&](const proto::record_view& record) {
                    const int64_t offset = header.base_offset + record.offset_delta;
                    if (offset < cursor.next_offset) return true;
                    bytes += (record.value ? record.value->size() : 0) + (record.key ? record.key->size() : 0);
                    cursor.next_offset = offset + 1;
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
        if (!split) return error{1, "topic \"" + _layout.name + "\" partition " + std::to_string(cursor.partition) +
                                        ": " + split.failure().message};
        if (failure.code != 0)
            return error{1, "topic \"" + _layout.name + "\" partition " + std::to_string(cursor.partition) +
                                ": cannot decode records (" + failure.message + ")"};
        return stop;
    }

    cluster& _brokers;
    topic_layout _layout;
    int32_t _partition_bytes_max;
    int32_t _max_wait_ms;
    std::vector<partition_cursor> _cursors;
    std::vector<uint8_t> _frame;
};

result<int32_t> fetch_max_wait_ms(const command_line& line) {
    const auto text = line.setting("fetch.max.wait.ms");
    if (!text) return fetch_max_wait_ms_default;
    int32_t value = -1;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || end != text->data() + text->size() || value < 0 || value > 300000)
        return error{usage_error_code, "fetch.max.wait.ms must be between 0 and 300000, got \"" + *text + "\""};
    return value;
}

// Without long polling (fetch.max.wait.ms=0) an empty answer comes back at once; a short
// pause keeps the loop from spinning on the broker.
void pause_if_not_long_polling(int32_t max_wait_ms) {
    if (max_wait_ms == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
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
    if (line.has("--group")) {
        // Group consumption starts with FindCoordinator and JoinGroup; say plainly when
        // the broker does not serve them instead of failing later.
        auto joined = brokers->bootstrap().version_for<proto::join_group_request>();
        if (!joined) return error{1, "consume --group: " + joined.failure().message};
        return error{1, "consume --group: spatectl reads without consumer groups so far; drop --group"};
    }
    auto layout = brokers->topic(topic_name.value());
    if (!layout) return layout.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();
    topic_reader reader(brokers.value(), std::move(layout.value()), 1 << 20, max_wait_ms.value());
    auto started = reader.start(static_cast<int32_t>(partition.value()), offset.value(), line.has("--from-beginning"));
    if (!started) return started;

    int64_t printed = 0;
    uint64_t bytes = 0;
    std::string out;
    auto last_record = clock_type::now();
    for (;;) {
        const int64_t before = printed;
        auto stopped = reader.poll(
            [&](int32_t partition_index, const proto::batch_header& header, const proto::record_view& record) {
                consumed_record consumed;
                consumed.topic = reader.name();
                consumed.partition = partition_index;
                consumed.offset = header.base_offset + record.offset_delta;
                consumed.log_append_time = header.has_log_append_time();
                consumed.timestamp_ms = consumed.log_append_time ? header.max_timestamp
                                                                 : header.base_timestamp + record.timestamp_delta;
                consumed.key = record.key;
                consumed.value = record.value;
                consumed.headers = record.headers;
                format_record(out, consumed, format.value());
                ++printed;
                return max_messages.value() < 0 || printed < max_messages.value();
            },
            bytes);
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        out.clear();
        if (!stopped) return stopped.failure();
        if (stopped.value()) break;
        if (printed != before) last_record = clock_type::now();
        else pause_if_not_long_polling(max_wait_ms.value());
        if (idle_timeout.value() > 0 &&
            clock_type::now() - last_record >= std::chrono::milliseconds(idle_timeout.value()))
            break;
    }
    return ok_result();
}

result<void> run_perf_consume(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto messages = line.integer("--messages", -1, 1, INT64_MAX);
    if (!messages) return messages.failure();
    if (messages.value() < 0) return error{usage_error_code, "perf consume needs --messages"};
    auto fetch_size = line.integer("--fetch-size", 1 << 20, 1024, 64 << 20);
    if (!fetch_size) return fetch_size.failure();
    auto idle_timeout = line.integer("--timeout-ms", 10000, 1, INT32_MAX);
    if (!idle_timeout) return idle_timeout.failure();

    auto brokers = cluster::connect(line.global);
    if (!brokers) return brokers.failure();
    auto layout = brokers->topic(topic_name.value());
    if (!layout) return layout.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();
    topic_reader reader(brokers.value(), std::move(layout.value()), static_cast<int32_t>(fetch_size.value()),
                        max_wait_ms.value());
    auto started = reader.start(-1, -1, /*from_beginning=*/true);
    if (!started) return started;

    const int64_t start_wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
    const auto start = clock_type::now();
    auto last_record = start;
    int64_t consumed = 0;
    uint64_t bytes = 0;
    while (consumed < messages.value()) {
        const int64_t before = consumed;
        auto stopped = reader.poll(
            [&](int32_t, const proto::batch_header&, const proto::record_view&) {
                return ++consumed < messages.value();
            },
            bytes);
        if (!stopped) return stopped.failure();
        if (stopped.value()) break;
        if (consumed != before) last_record = clock_type::now();
        else pause_if_not_long_polling(max_wait_ms.value());
        if (clock_type::now() - last_record >= std::chrono::milliseconds(idle_timeout.value())) break;
    }
    const auto end = clock_type::now();
    consume_summary summary;
    summary.records = static_cast<uint64_t>(consumed);
    summary.bytes = bytes;
    summary.start_ms = start_wall;
    summary.seconds = std::chrono::duration<double>(end - start).count();
    summary.end_ms = start_wall + static_cast<int64_t>(summary.seconds * 1000.0);
    std::string out = format_consume_summary(summary);
    const double seconds = summary.seconds > 0 ? summary.seconds : 1e-9;
    char line_text[160];
    std::snprintf(line_text, sizeof line_text, "%llu records received, %.1f records/sec (%.2f MB/sec)\n",
                  static_cast<unsigned long long>(consumed), static_cast<double>(consumed) / seconds,
                  static_cast<double>(bytes) / seconds / (1024.0 * 1024.0));
    out += line_text;
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (consumed < messages.value())
        return error{1, "only " + std::to_string(consumed) + " of " + std::to_string(messages.value()) +
                            " records arrived within " + std::to_string(idle_timeout.value()) + " ms"};
    return ok_result();
}

}  // namespace spate::tools
