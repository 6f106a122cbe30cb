// DescribeCluster (60): a single node as broker and controller; in a cluster, the live
// brokers and the controller from the controller's last UpdateMetadata.
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_describe_cluster(request_ptr req) {
    proto::describe_cluster_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeCluster request");
        return;
    }
    shard_state& shard = *req->shard;
    proto::describe_cluster_response response;
    response.endpoint_type = body.endpoint_type;
    if (req->version() >= 1 && body.endpoint_type != 1) {
        // Only broker endpoints exist here (1 = BROKERS, 2 = CONTROLLERS).
        response.error_code = proto::code(proto::error_code::unsupported_version);
        response.error_message = "only broker endpoints (endpoint_type 1) are served";
        shard.respond(*req, response);
        return;
    }
    const metadata_snapshot& snapshot = *shard.metadata();
    // Until the controller's first UpdateMetadata arrives a cluster's broker knows only
    // itself, and says so rather than listing no broker at all.
    if (snapshot.clustered && !snapshot.brokers.empty()) {
        response.cluster_id = snapshot.cluster_id;
        response.controller_id = snapshot.controller_id;
        for (const cluster_broker& broker : snapshot.brokers)
            response.brokers.push_back({broker.id, broker.host, broker.port, broker.rack});
    } else {
        response.cluster_id = snapshot.clustered ? snapshot.cluster_id : shard.config().cluster_id;
        response.controller_id =
            snapshot.clustered ? snapshot.controller_id : shard.config().node_id;
        proto::describe_cluster_response::describe_cluster_broker self;
        self.broker_id = shard.config().node_id;
        self.host = shard.owner().advertised_host();
        self.port = shard.owner().advertised_port();
        response.brokers.push_back(self);
    }
    response.cluster_authorized_operations = INT32_MIN;
    shard.respond(*req, response);
}

}  // namespace spate::broker
