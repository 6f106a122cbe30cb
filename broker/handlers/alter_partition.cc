// AlterPartition (56), from a partition's leader to the controller: a new ISR, fenced by
// the leader epoch and the partition's state version. Applied by the cluster agent
// (broker/cluster/isr_changes.cc); a broker that is not the controller answers
// NOT_CONTROLLER, and a single node (no controller) closes the connection.
#include "broker/handlers/handlers.h"

namespace spate::broker {

void handle_alter_partition(request_ptr req) {
    forward_to_cluster_agent<proto::alter_partition_request, proto::alter_partition_response>(
        std::move(req), "malformed AlterPartition (56) request",
        &cluster::cluster_agent::apply_alter_partition);
}

}  // namespace spate::broker
