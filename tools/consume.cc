// `consume` (console consumer); `perf consume` and `perf e2e` are in perf_consume.cc.
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
#include "tools/topic_reader.h"

namespace spate::tools {

namespace {

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

}  // namespace spate::tools
