#pragma once
// The one handler list: it drives dispatch AND the ApiVersions answer, so the broker
// can never advertise an API or version it does not serve. One handler per file in
// this folder; a handler never throws, answers partition-level failures with
// per-partition error codes, and must end with exactly one respond/skip_response.

#include <span>

#include "broker/broker.h"
#include "proto/messages.h"

namespace spate::broker {

using handler_fn = void (*)(request_ptr);

struct handler_entry {
    proto::api_key key;
    int16_t version_min;
    int16_t version_max;
    handler_fn handle;
};

std::span<const handler_entry> handler_list();
const handler_entry* find_handler(int16_t api_key);

void handle_api_versions(request_ptr req);
void handle_metadata(request_ptr req);
void handle_produce(request_ptr req);
void handle_fetch(request_ptr req);
void handle_list_offsets(request_ptr req);
void handle_create_topics(request_ptr req);
void handle_delete_topics(request_ptr req);
void handle_create_partitions(request_ptr req);
void handle_describe_configs(request_ptr req);
void handle_incremental_alter_configs(request_ptr req);
void handle_init_producer_id(request_ptr req);
void handle_describe_cluster(request_ptr req);
void handle_delete_records(request_ptr req);
void handle_offset_for_leader_epoch(request_ptr req);
void handle_find_coordinator(request_ptr req);
void handle_join_group(request_ptr req);
void handle_sync_group(request_ptr req);
void handle_heartbeat(request_ptr req);
void handle_leave_group(request_ptr req);
void handle_offset_commit(request_ptr req);
void handle_offset_fetch(request_ptr req);
void handle_list_groups(request_ptr req);
void handle_describe_groups(request_ptr req);
void handle_delete_groups(request_ptr req);
void handle_offset_delete(request_ptr req);
void handle_describe_log_dirs(request_ptr req);
void handle_describe_producers(request_ptr req);
void handle_describe_topic_partitions(request_ptr req);
void handle_describe_acls(request_ptr req);
void handle_create_acls(request_ptr req);
void handle_delete_acls(request_ptr req);

}  // namespace spate::broker
