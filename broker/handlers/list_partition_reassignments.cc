// ListPartitionReassignments (46): the reassignments in progress, with each partition's
// replica set and the replicas being added and removed. In a cluster the controller
// answers (broker/cluster/reassignment.cc; other brokers answer NOT_CONTROLLER); a single
// node never moves a partition, so its list is empty.
#include "broker/handlers/handlers.h"

namespace spate::broker {

void handle_list_partition_reassignments(request_ptr req) {
    if (req->shard->owner().cluster() != nullptr) {
        forward_to_cluster_agent<proto::list_partition_reassignments_request,
                                 proto::list_partition_reassignments_response>(
            std::move(req), "malformed ListPartitionReassignments (46) request",
            &cluster::cluster_agent::apply_list_partition_reassignments);
        return;
    }
    proto::list_partition_reassignments_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed ListPartitionReassignments (46) request");
        return;
    }
    req->shard->respond(*req, proto::list_partition_reassignments_response{});
}

}  // namespace spate::broker
