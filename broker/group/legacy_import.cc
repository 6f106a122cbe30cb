// The one-time import of the old offsets files into __consumer_offsets.
#include "broker/group/legacy_import.h"

#include "broker/broker.h"
#include "broker/group/offsets_topic.h"
#include "net/log.h"

namespace spate::broker::group {

legacy_import::legacy_import(std::filesystem::path data_dir,
                             std::map<int32_t, recovered_groups> by_partition)
    : _data_dir(std::move(data_dir)),
      _by_partition(std::move(by_partition)),
      _remaining(_by_partition.size()) {}

void legacy_import::start(shard_state& shard) {
    const topic_info* topic = shard.metadata()->find(offsets_topic_name);
    if (topic == nullptr) return;
    std::map<int32_t, recovered_groups> share;
    for (const auto& [partition, groups] : _by_partition)
        if (static_cast<size_t>(partition) < topic->partition_shards.size() &&
            topic->partition_shards[static_cast<size_t>(partition)] == shard.id())
            share.emplace(partition, groups);
    if (share.empty()) return;
    shard.offsets_topic().import_legacy(
        std::move(share), [self = shared_from_this()](int32_t) { self->partition_done(); });
}

void legacy_import::partition_done() {
    if (--_remaining != 0) return;
    if (auto removed = remove_legacy_offsets(_data_dir); !removed) {
        net::log_warn("groups: the old offsets files are imported but could not be removed: %s",
                      removed.failure().message.c_str());
        return;
    }
    net::log_info("groups: the old offsets files are imported into %s and removed",
                  offsets_topic_name.c_str());
}

}  // namespace spate::broker::group
