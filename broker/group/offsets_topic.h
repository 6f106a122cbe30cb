#pragma once
// offsets_topic: a shard's side of the internal topic __consumer_offsets — the
// environment its group coordinator writes through, and the loading and unloading of the
// partitions of that topic the shard leads (CLUSTER.md, Consumer groups in a cluster).
//
// A partition this shard starts leading is read from its
// log start to the log end as it was then, a chunk per loop turn, so a large partition does
// not stall the shard; its groups answer COORDINATOR_LOAD_IN_PROGRESS meanwhile. Records
// are Kafka's (broker/group/group_records.h). A partition no longer led here is unloaded.
// Everything the log holds at leadership start is the new leader's to keep (a leader
// never truncates its own log), so reading to the log end, not the high watermark, misses
// no commit the old leader acknowledged.
//
// Ownership and threads: one per shard, owned by its shard_state and used only on its
// thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "broker/group/coordinator.h"
#include "broker/metadata.h"

namespace spate::broker {
class shard_state;
}

namespace spate::broker::group {

// A std::string, so lookups by name build none.
inline const std::string offsets_topic_name = "__consumer_offsets";
// The topic's configs at creation (Kafka's): compacted, 100 MiB segments, and batches
// kept as the coordinator writes them.
topic_configs offsets_topic_configs();

class offsets_topic final : public coordinator_environment {
public:
    explicit offsets_topic(shard_state& shard) : _shard(shard) {}

    int64_t wall_clock_ms() override;
    uint64_t add_timer(int64_t delay_ms, std::function<void()> fire) override;
    void cancel_timer(uint64_t id) override;
    void append_records(int32_t partition, const std::vector<offset_record>& records,
                        std::function<void(proto::error_code)> done) override;

    // After each metadata snapshot: the partition count, then loads of the partitions this
    // shard now leads and unloads of those it no longer leads.
    void update(group_coordinator& coordinator);

    // Upgrade from the per-shard offsets files: `groups` by partition. Each partition's
    // share is written into it once it has loaded, for the groups the partition does not
    // know already (the log is newer than the old files), then `imported(partition)`
    // runs. Partitions this shard never leads are never imported here.
    void import_legacy(std::map<int32_t, recovered_groups> groups,
                       std::function<void(int32_t)> imported);

private:
    using clock = std::chrono::steady_clock;
    struct leadership {
        uint64_t load = 0;  // which load is current (an older one stops at its next step)
    };
    struct load_state {
        int32_t partition;
        uint64_t load;
        int64_t start;  // the log start when the load began
        int64_t next;
        int64_t end;
        recovered_groups groups;
        clock::time_point started;
        bool stalled = false;
    };
    void load_step(std::shared_ptr<load_state> state);
    void loaded(load_state& state);
    void import_into(int32_t partition);

    shard_state& _shard;
    std::map<int32_t, leadership> _led;
    uint64_t _loads = 0;
    std::map<int32_t, recovered_groups> _legacy;
    std::function<void(int32_t)> _imported;
};

}  // namespace spate::broker::group
