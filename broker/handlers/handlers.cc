// The handler list. Version ranges are those of proto/'s descriptions (what the codec
// can encode and decode), narrowed here only where a handler serves less.
#include "broker/handlers/handlers.h"

namespace spate::broker {

std::span<const handler_entry> handler_list() {
    using proto::api_key;
    static const handler_entry list[] = {
        {api_key::produce, 0, 9, handle_produce},
        {api_key::fetch, 0, 17, handle_fetch},
        {api_key::list_offsets, 0, 7, handle_list_offsets},
        {api_key::metadata, 0, 12, handle_metadata},
        {api_key::api_versions, 0, 3, handle_api_versions},
        {api_key::create_topics, 0, 7, handle_create_topics},
        {api_key::delete_topics, 0, 6, handle_delete_topics},
        {api_key::delete_records, 0, 2, handle_delete_records},
        {api_key::init_producer_id, 0, 4, handle_init_producer_id},
        {api_key::offset_for_leader_epoch, 0, 4, handle_offset_for_leader_epoch},
        {api_key::describe_configs, 0, 4, handle_describe_configs},
        {api_key::create_partitions, 0, 3, handle_create_partitions},
        {api_key::incremental_alter_configs, 0, 1, handle_incremental_alter_configs},
        {api_key::describe_cluster, 0, 1, handle_describe_cluster},
        {api_key::find_coordinator, 0, 4, handle_find_coordinator},
        {api_key::join_group, 0, 9, handle_join_group},
        {api_key::sync_group, 0, 5, handle_sync_group},
        {api_key::heartbeat, 0, 4, handle_heartbeat},
        {api_key::leave_group, 0, 5, handle_leave_group},
        {api_key::offset_commit, 0, 8, handle_offset_commit},
        {api_key::offset_fetch, 0, 8, handle_offset_fetch},
        {api_key::list_groups, 0, 4, handle_list_groups},
        {api_key::describe_groups, 0, 5, handle_describe_groups},
        {api_key::delete_groups, 0, 2, handle_delete_groups},
        {api_key::offset_delete, 0, 0, handle_offset_delete},
        {api_key::describe_log_dirs, 0, 4, handle_describe_log_dirs},
        {api_key::describe_producers, 0, 0, handle_describe_producers},
        {api_key::describe_topic_partitions, 0, 0, handle_describe_topic_partitions},
        {api_key::describe_acls, 0, 3, handle_describe_acls},
        {api_key::create_acls, 0, 3, handle_create_acls},
        {api_key::delete_acls, 0, 3, handle_delete_acls},
        {api_key::leader_and_isr, 5, 5, handle_leader_and_isr},
        {api_key::stop_replica, 3, 3, handle_stop_replica},
        {api_key::alter_partition, 0, 0, handle_alter_partition},
        {api_key::controlled_shutdown, 3, 3, handle_controlled_shutdown},
        {api_key::elect_leaders, 0, 2, handle_elect_leaders},
        {api_key::alter_partition_reassignments, 0, 0, handle_alter_partition_reassignments},
        {api_key::list_partition_reassignments, 0, 0, handle_list_partition_reassignments},
        {api_key::update_metadata, 7, 7, handle_update_metadata},
    };
    return list;
}

void await_metadata(shard_state& shard, std::function<bool(const metadata_snapshot&)> ready,
                    std::chrono::steady_clock::time_point deadline,
                    std::function<void(bool)> done) {
    if (ready(*shard.metadata())) {
        done(true);
        return;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
        done(false);
        return;
    }
    // Snapshots arrive as tasks on this shard; a short poll is simpler than a waiter list
    // and costs nothing measurable for admin requests.
    shard.net_shard().add_timer(std::chrono::milliseconds(5), [&shard, ready = std::move(ready),
                                                               deadline, done = std::move(done)] {
        await_metadata(shard, std::move(ready), deadline, std::move(done));
    });
}

const handler_entry* find_handler(int16_t api_key) {
    for (const handler_entry& entry : handler_list())
        if (static_cast<int16_t>(entry.key) == api_key) return &entry;
    return nullptr;
}

}  // namespace spate::broker
