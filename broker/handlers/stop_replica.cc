// StopReplica (5), from the cluster's controller: partitions this broker stops serving, deleting
// their logs when their topic is deleted. Applied by the cluster agent (broker/cluster/agent.h),
// fenced by controller and broker epoch.
#include "broker/handlers/handlers.h"

namespace spate::broker {

void handle_stop_replica(request_ptr req) {
    forward_to_cluster_agent<proto::stop_replica_request, proto::stop_replica_response>(
        std::move(req), "malformed StopReplica (5) request",
        &cluster::cluster_agent::apply_stop_replica);
}

}  // namespace spate::broker
