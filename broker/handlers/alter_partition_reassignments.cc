// AlterPartitionReassignments (45): an admin client moves partitions to new replicas, or
// cancels a move in progress (null replicas). In a cluster the controller does it
// (broker/cluster/reassignment.cc; other brokers answer NOT_CONTROLLER, and admin clients
// send it to the controller) and answers once each move has started. A single node has no
// other broker to move to: a partition already on this node alone answers success (there
// is nothing to move), any other target INVALID_REPLICA_ASSIGNMENT, a cancel
// NO_REASSIGNMENT_IN_PROGRESS and an unknown partition UNKNOWN_TOPIC_OR_PARTITION.
#include "broker/handlers/handlers.h"

namespace spate::broker {

namespace {

using response_type = proto::alter_partition_reassignments_response;

response_type single_node_answer(const metadata_snapshot& metadata, int32_t node_id,
                                 const proto::alter_partition_reassignments_request& request) {
    response_type response;
    for (const auto& topic : request.topics) {
        response_type::reassignable_topic_response out;
        out.name = topic.name;
        const topic_info* info = metadata.find(topic.name);
        for (const auto& p : topic.partitions) {
            response_type::reassignable_partition_response result;
            result.partition_index = p.partition_index;
            proto::error_code code = proto::error_code::none;
            std::string message;
            if (!owner_of(info, p.partition_index)) {
                code = proto::error_code::unknown_topic_or_partition;
                message = "partition " + topic.name + "-" + std::to_string(p.partition_index) +
                          " does not exist";
            } else if (!p.replicas) {
                code = proto::error_code::no_reassignment_in_progress;
                message = "no reassignment in progress on a single node";
            } else if (*p.replicas != std::vector<int32_t>{node_id}) {
                code = proto::error_code::invalid_replica_assignment;
                message = "a single node (broker " + std::to_string(node_id) +
                          ", no cluster) has no other broker to move replicas to";
            }
            result.error_code = proto::code(code);
            if (code != proto::error_code::none) result.error_message = std::move(message);
            out.partitions.push_back(std::move(result));
        }
        response.responses.push_back(std::move(out));
    }
    return response;
}

}  // namespace

void handle_alter_partition_reassignments(request_ptr req) {
    if (req->shard->owner().cluster() != nullptr) {
        forward_to_cluster_agent<proto::alter_partition_reassignments_request, response_type>(
            std::move(req), "malformed AlterPartitionReassignments (45) request",
            &cluster::cluster_agent::apply_alter_partition_reassignments);
        return;
    }
    proto::alter_partition_reassignments_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed AlterPartitionReassignments (45) request");
        return;
    }
    req->shard->respond(
        *req, single_node_answer(*req->shard->metadata(), req->shard->config().node_id, body));
}

}  // namespace spate::broker
