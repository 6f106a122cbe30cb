#pragma once
// group_coordinator: the classic consumer-group protocol and committed offsets for the
// groups one shard coordinates (see "Where groups live" below).
//
// Ownership and threads: one group_coordinator per shard, owned by that shard's
// shard_state and called only on its thread. Requests for a group reach it through
// call_on from whichever shard read them. Time comes from a coordinator_environment,
// so the unit tests drive the state machine with a fake clock; in the broker the
// environment is the shard's timer list and ring (shard_environment).
//
// State machine of a group (Kafka's classic protocol):
//
//   Empty --join--> PreparingRebalance --all joined / rebalance timeout-->
//   CompletingRebalance --leader's SyncGroup--> Stable
//   Stable/CompletingRebalance --join with new metadata, leave, session expiry-->
//   PreparingRebalance; a rebalance that ends with no members --> Empty.
//   Dead is reported for groups that do not exist (DescribeGroups); such groups
//   are simply absent from the table.
//
// Callbacks given to join/sync/commit may run later (when the rebalance completes or
// the commit is durable), always on this shard.
//
// Where groups live (CLUSTER.md, Consumer groups in a cluster): a group belongs to the
// partition offsets_partition_of(group id) of the internal topic __consumer_offsets, and
// the shard that leads that partition coordinates it. The shard tells its coordinator
// which partitions it leads (begin_load, finish_load, unload); every request for a group
// of another partition gets NOT_COORDINATOR, and one of a partition still being read
// COORDINATOR_LOAD_IN_PROGRESS. Commits, group snapshots and tombstones are records of
// that partition (broker/group/group_records.h), written through the environment.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker/group/offset_store.h"
#include "net/shard.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker::group {

enum class group_state : uint8_t {
    empty,
    preparing_rebalance,
    completing_rebalance,
    stable,
    dead,
};
// Kafka's names, as DescribeGroups and ListGroups report them ("Stable", ...).
const char* state_name(group_state state);

// Time, timers and durability, as the coordinator sees them.
class coordinator_environment {
public:
    virtual ~coordinator_environment() = default;
    // Wall-clock milliseconds (commit timestamps).
    virtual int64_t wall_clock_ms() = 0;
    // Runs `fire` after `delay_ms`; the id may be given to cancel_timer.
    virtual uint64_t add_timer(int64_t delay_ms, std::function<void()> fire) = 0;
    virtual void cancel_timer(uint64_t id) = 0;
    // Appends `records` (all of one group) to partition `partition` of __consumer_offsets,
    // then calls done(error) once they are as safe as an acknowledged commit must be
    // (acks=all: past the high watermark, and on disk under acks_all_policy = "fsync").
    // The error is already the coordinator's answer (NOT_COORDINATOR, ...).
    // The records are encoded before the call returns.
    virtual void append_records(int32_t partition, const std::vector<offset_record>& records,
                                std::function<void(proto::error_code)> done) = 0;
};

// Kafka's longest topic name (Topic.MAX_NAME_LENGTH).
inline constexpr size_t topic_name_bytes_max = 249;

struct coordinator_config {
    // Kafka's group.min.session.timeout.ms / group.max.session.timeout.ms.
    int32_t session_timeout_min_ms = 6000;
    int32_t session_timeout_max_ms = 1800000;
    // Kafka's group.initial.rebalance.delay.ms: how long the first rebalance of an empty
    // group waits for more members, so a starting fleet does not rebalance N times.
    int32_t initial_rebalance_delay_ms = 3000;
    // Kafka's offset.metadata.max.bytes.
    int32_t offset_metadata_bytes_max = 4096;
    // Longest group id, member id and instance id accepted (bounded before storing).
    size_t id_bytes_max = 1024;
    // Kafka's group.max.size, bounded here: members plus pending member ids per group,
    // so a peer cannot grow a group without limit.
    size_t group_members_max = 10000;
    // Kafka's offsets.retention.minutes (in ms) and offsets.retention.check.interval.ms:
    // committed offsets of an Empty group expire this long after the later of their
    // commit and the moment the group became empty.
    int64_t offsets_retention_ms = int64_t{7} * 24 * 60 * 60 * 1000;
    int64_t offsets_retention_check_interval_ms = 600000;
};

// Who sent a request (DescribeGroups shows it) and at which version.
struct member_context {
    std::string client_id;
    std::string client_host;
    int16_t version = 0;
};

// A requested topic of OffsetFetch, in the same form for v0-7 and v8.
struct fetch_topic {
    std::string name;
    std::vector<int32_t> partitions;
};

class group_coordinator {
public:
    using join_callback = std::function<void(proto::join_group_response)>;
    using sync_callback = std::function<void(proto::sync_group_response)>;
    using commit_callback = std::function<void(proto::offset_commit_response)>;
    using error_callback = std::function<void(proto::error_code)>;
    using offset_delete_callback = std::function<void(proto::offset_delete_response)>;

    group_coordinator(coordinator_config config, coordinator_environment& environment);
    ~group_coordinator();
    group_coordinator(const group_coordinator&) = delete;
    group_coordinator& operator=(const group_coordinator&) = delete;

    // The partition count of __consumer_offsets, which places groups in partitions
    // (offsets_topic_num_partitions, or the topic's count once it exists).
    void set_partition_count(int32_t count) { _partition_count = count; }
    int32_t partition_of(const std::string& group_id) const;
    // This shard leads `partition` and is reading it: its groups get
    // COORDINATOR_LOAD_IN_PROGRESS until finish_load.
    void begin_load(int32_t partition);
    // Installs the groups read from `partition` (offsets and the last snapshots). Groups
    // that were Stable come back Stable with their members, whose sessions start now: a
    // coordinator move or a restart costs no rebalance.
    void finish_load(int32_t partition, recovered_groups recovered);
    // This shard no longer leads `partition`: its groups are forgotten, their waiting
    // joins and syncs answered NOT_COORDINATOR, so the members find the new coordinator.
    void unload(int32_t partition);
    // Whether this coordinator serves `partition` (led here and read).
    bool loaded(int32_t partition) const;
    // Whether this coordinator may answer for `group_id` now: none, NOT_COORDINATOR or
    // COORDINATOR_LOAD_IN_PROGRESS.
    proto::error_code availability(const std::string& group_id) const;
    // Whether a loaded partition's coordinator already knows `group_id`.
    bool knows(const std::string& group_id) const { return find(group_id) != nullptr; }
    // Cancels the timers (shutdown).
    void close();

    void join(const proto::join_group_request& request, const member_context& context,
              join_callback done);
    void sync(const proto::sync_group_request& request, sync_callback done);
    proto::error_code heartbeat(const proto::heartbeat_request& request);
    // `members` in the v3+ form; the handler turns v0-2's single member id into one entry.
    proto::leave_group_response leave(
        const std::string& group_id,
        const std::vector<proto::leave_group_request::member_identity>& members);
    void commit(const proto::offset_commit_request& request, commit_callback done);
    // Committed offsets of one group; `topics` null means every committed partition.
    proto::offset_fetch_response::offset_fetch_response_group fetch(
        const std::string& group_id, const std::optional<std::vector<fetch_topic>>& topics) const;
    std::vector<proto::list_groups_response::listed_group> list(
        const std::vector<std::string>& states_filter) const;
    proto::describe_groups_response::described_group describe(const std::string& group_id) const;
    void delete_group(const std::string& group_id, error_callback done);
    void delete_offsets(const proto::offset_delete_request& request, offset_delete_callback done);
    // Removes expired offsets (see coordinator_config); cheap to call often, it scans at
    // most once per check interval. Called from the shard's housekeeping.
    void expire_offsets();

    // Inspection, for tests and tools.
    std::optional<group_state> state_of(const std::string& group_id) const;
    int32_t generation_of(const std::string& group_id) const;
    size_t member_count(const std::string& group_id) const;
    std::string leader_of(const std::string& group_id) const;
    // Every group held here, for /metrics (broker/metrics/report.h).
    struct group_view {
        const std::string& id;
        group_state state;
        size_t members;
        const group_offsets& offsets;
    };
    void visit_groups(const std::function<void(const group_view&)>& visit) const;

private:
    struct member {
        std::string id;
        std::optional<std::string> instance_id;
        std::string client_id;
        std::string client_host;
        int32_t session_timeout_ms = 0;
        int32_t rebalance_timeout_ms = 0;
        std::string protocol_type;
        std::vector<std::pair<std::string, std::vector<uint8_t>>> protocols;
        std::vector<uint8_t> assignment;
        join_callback awaiting_join;
        sync_callback awaiting_sync;
        uint64_t session_timer = 0;
        uint64_t session_epoch = 0;
    };
    struct group {
        std::string id;
        group_state state = group_state::empty;
        int32_t generation = 0;
        std::string protocol_type;
        std::optional<std::string> protocol_name;
        std::string leader_id;
        std::map<std::string, member> members;
        // group.instance.id -> member id of the static members.
        std::map<std::string, std::string> static_members;
        // Member ids handed out with MEMBER_ID_REQUIRED, not yet back; the rebalance
        // waits for them too. Value: the timer that forgets them.
        std::map<std::string, uint64_t> pending_members;
        uint64_t rebalance_timer = 0;
        uint64_t rebalance_epoch = 0;
        bool initial_delay = false;
        // Wall-clock time the group last became Empty; -1 when unknown (recovered).
        int64_t empty_since_ms = -1;
        group_offsets offsets;
        // Whether a snapshot of the group was written: forgetting it then takes a tombstone.
        bool persisted = false;
    };

    group* find(const std::string& group_id);
    const group* find(const std::string& group_id) const;
    group& find_or_create(const std::string& group_id);
    void drop_if_unused(const std::string& group_id);

    std::string new_member_id(const std::string& client_id);
    bool protocols_compatible(const group& g, const std::string& protocol_type,
                              const proto::join_group_request& request) const;
    std::optional<std::string> select_protocol(const group& g) const;
    const std::vector<uint8_t>* selected_metadata(const group& g, const member& m) const;

    void add_member_and_rebalance(group& g, member m, join_callback done);
    void update_member_and_rebalance(group& g, member& m, const proto::join_group_request& request,
                                     join_callback done);
    void prepare_rebalance(group& g);
    void maybe_complete_join(group& g);
    void complete_join(group& g);
    void remove_member(group& g, const std::string& member_id, proto::error_code why);
    void answer_join(group& g, member& m, proto::error_code error);
    void schedule_session(group& g, member& m);
    void schedule_rebalance_timer(group& g, int64_t delay_ms);
    void on_session_expired(const std::string& group_id, const std::string& member_id,
                            uint64_t epoch);
    void on_rebalance_timer(const std::string& group_id, uint64_t epoch);
    // Records the group as it is now (Stable or Empty) for recovery; not awaited.
    void persist_snapshot(group& g);
    // Appends records of one group to its partition; once they are acknowledged, applies
    // them to the group's offsets and calls done(error).
    void persist(std::vector<offset_record> records, error_callback done);
    void cancel_timers(group& g);
    // Cancels a group's timers and answers its waiting joins and syncs with `why`.
    void abandon(group& g, proto::error_code why);

    coordinator_config _config;
    coordinator_environment& _environment;
    std::map<std::string, group> _groups;
    int32_t _partition_count = 50;
    // Partitions of __consumer_offsets this shard leads: loaded (true) or loading.
    std::map<int32_t, bool> _partitions;
    uint64_t _member_counter = 0;
    int64_t _last_expiry_check_ms = 0;
};

}  // namespace spate::broker::group
