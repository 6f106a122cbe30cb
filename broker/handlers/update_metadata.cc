// UpdateMetadata (6), from the cluster's controller: the live brokers and every partition's leader,
// replicas and ISR, which Metadata answers from. Applied by the cluster agent
// (broker/cluster/agent.h), fenced by controller and broker epoch.
#include "broker/handlers/handlers.h"

namespace spate::broker {

void handle_update_metadata(request_ptr req) {
    forward_to_cluster_agent<proto::update_metadata_request, proto::update_metadata_response>(
        std::move(req), "malformed UpdateMetadata (6) request",
        &cluster::cluster_agent::apply_update_metadata);
}

}  // namespace spate::broker
