// LeaderAndIsr (4), from the cluster's controller: which partitions this broker leads or follows,
// with their ISR and leader epoch. Applied by the cluster agent (broker/cluster/agent.h), fenced by
// controller and broker epoch.
#include "broker/handlers/handlers.h"

namespace spate::broker {

void handle_leader_and_isr(request_ptr req) {
    forward_to_cluster_agent<proto::leader_and_isr_request, proto::leader_and_isr_response>(
        std::move(req), "malformed LeaderAndIsr (4) request",
        &cluster::cluster_agent::apply_leader_and_isr);
}

}  // namespace spate::broker
