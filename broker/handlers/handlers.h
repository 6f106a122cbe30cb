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
void handle_leader_and_isr(request_ptr req);
void handle_update_metadata(request_ptr req);
void handle_stop_replica(request_ptr req);
void handle_alter_partition(request_ptr req);
void handle_controlled_shutdown(request_ptr req);
void handle_elect_leaders(request_ptr req);
void handle_alter_partition_reassignments(request_ptr req);
void handle_list_partition_reassignments(request_ptr req);

// Answers `req` from any thread (the cluster agent's, another shard's): the response is
// encoded and sent on the request's own shard.
template <class Response>
void respond_from_anywhere(const request_ptr& req, Response response) {
    req->shard->net_shard().post(
        [req, response = std::move(response)] { req->shard->respond(*req, response); });
}

// Runs `work` on the cluster agent's thread, then `then(req, outcome)` back on the
// request's shard. Only in a cluster (owner().cluster() non-null).
template <class T>
void ask_cluster_agent(request_ptr req, std::function<T(cluster::cluster_agent&)> work,
                       std::function<void(request_ptr, T)> then) {
    cluster::cluster_agent* agent = req->shard->owner().cluster();
    agent->submit(
        [agent, req = std::move(req), work = std::move(work), then = std::move(then)]() mutable {
            auto outcome = std::make_shared<T>(work(*agent));
            req->shard->net_shard().post(
                [req, outcome, then = std::move(then)] { then(req, std::move(*outcome)); });
        });
}

// Whether `name` exists with at least `partitions_min` partitions, each with a leader:
// what an admin change in a cluster waits for before answering.
inline bool leaders_known(const metadata_snapshot& snapshot, const std::string& name,
                          int32_t partitions_min = 1) {
    const topic_info* topic = snapshot.find(name);
    if (topic == nullptr || topic->partition_count() < partitions_min) return false;
    for (const partition_replicas& p : topic->replicas)
        if (p.leader < 0) return false;
    return true;
}

// A request's timeout_ms from now (a negative one is now).
inline std::chrono::steady_clock::time_point deadline_after(int32_t timeout_ms) {
    return std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
}

// Calls `done(true)` on `shard` once its metadata satisfies `ready` (the controller's
// answer to an admin change reached this broker), or `done(false)` at `deadline`.
void await_metadata(shard_state& shard, std::function<bool(const metadata_snapshot&)> ready,
                    std::chrono::steady_clock::time_point deadline, std::function<void(bool)> done);

// Decodes a controller request (LeaderAndIsr, UpdateMetadata, StopReplica) and hands it
// to the cluster agent's `apply`, which answers once the resulting metadata is installed
// on every shard. A single node has no controller: such a request closes the connection.
// Kafka's default.replication.factor for topics created without one, capped by the live
// brokers this shard knows of (so auto-creation works on a cluster smaller than it).
inline int32_t default_replication_factor(const shard_state& shard) {
    const auto live = static_cast<int32_t>(shard.metadata()->brokers.size());
    return std::max(1, std::min(shard.config().default_replication_factor, live));
}

// Whether a request's view of partition `p` is current (Kafka's leader epoch fencing,
// KIP-320): only the leader answers (NOT_LEADER_OR_FOLLOWER), and a request naming a
// current_leader_epoch (>= 0) older than the leader's is fenced (FENCED_LEADER_EPOCH), a
// newer one is early (UNKNOWN_LEADER_EPOCH: this broker has not heard of it yet).
inline proto::error_code fenced(const partition& p, int32_t current_leader_epoch) {
    if (!p.is_leader()) return proto::error_code::not_leader_or_follower;
    if (current_leader_epoch < 0) return proto::error_code::none;
    if (current_leader_epoch < p.leader_epoch()) return proto::error_code::fenced_leader_epoch;
    if (current_leader_epoch > p.leader_epoch()) return proto::error_code::unknown_leader_epoch;
    return proto::error_code::none;
}

template <class Request, class Response>
void forward_to_cluster_agent(
    request_ptr req, const char* name,
    void (cluster::cluster_agent::*apply)(const Request&, std::function<void(Response)>)) {
    auto body = std::make_shared<Request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, name);
        return;
    }
    cluster::cluster_agent* agent = req->shard->owner().cluster();
    if (agent == nullptr) {
        req->shard->close_connection(*req, "a controller request to a single node");
        return;
    }
    agent->submit([agent, apply, req = std::move(req), body] {
        (agent->*apply)(*body, [req](Response response) { respond_from_anywhere(req, response); });
    });
}

}  // namespace spate::broker
