#pragma once
// legacy_import: the one-time upgrade of a single node from the per-shard offsets files
// (broker/group/offset_store.h) to __consumer_offsets. At start-up the broker reads the
// old files and creates the topic if needed; each shard then writes the groups of the
// partitions it leads into them once they have loaded (offsets_topic::import_legacy),
// and when the last partition is done the old files are removed. A crash before that
// imports again at the next start, where every group the log already knows is skipped:
// the log is newer than the files, so nothing committed since is overwritten.
//
// Threads: created before the shards run, then shared by them; the count of partitions
// left is the only state they touch (atomically).

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>

#include "broker/group/offset_store.h"

namespace spate::broker {
class shard_state;
}

namespace spate::broker::group {

class legacy_import : public std::enable_shared_from_this<legacy_import> {
public:
    legacy_import(std::filesystem::path data_dir, std::map<int32_t, recovered_groups> by_partition);
    // Hands `shard` the share of the partitions it leads (call once per shard, after its
    // first snapshot is installed).
    void start(shard_state& shard);

private:
    void partition_done();

    std::filesystem::path _data_dir;
    std::map<int32_t, recovered_groups> _by_partition;
    std::atomic<size_t> _remaining;
};

}  // namespace spate::broker::group
