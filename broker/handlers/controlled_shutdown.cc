// ControlledShutdown (7), from a stopping broker to the controller: move its leaderships
// and drop it from the ISRs (broker/cluster/controlled_shutdown.cc).
#include "broker/handlers/handlers.h"

namespace spate::broker {

void handle_controlled_shutdown(request_ptr req) {
    forward_to_cluster_agent<proto::controlled_shutdown_request,
                             proto::controlled_shutdown_response>(
        std::move(req), "malformed ControlledShutdown (7) request",
        &cluster::cluster_agent::apply_controlled_shutdown);
}

}  // namespace spate::broker
