// ElectLeaders (43): an operator moves leadership to preferred replicas (or, unclean, to
// any live replica of a leaderless partition). In a cluster the controller does it
// (broker/cluster/elections.cc; other brokers answer NOT_CONTROLLER, and admin clients
// send it to the controller); a single node leads every partition it has already, so
// each named partition answers ELECTION_NOT_NEEDED (UNKNOWN_TOPIC_OR_PARTITION if absent).
#include "broker/handlers/handlers.h"

namespace spate::broker {

namespace {

proto::elect_leaders_response single_node_answer(const metadata_snapshot& metadata,
                                                 const proto::elect_leaders_request& request) {
    proto::elect_leaders_response response;
    if (!request.topic_partitions) return response;  // nothing moved
    for (const auto& topic : *request.topic_partitions) {
        proto::elect_leaders_response::replica_election_result out;
        out.topic = topic.topic;
        const topic_info* info = metadata.find(topic.topic);
        for (int32_t index : topic.partition_id) {
            proto::elect_leaders_response::elect_partition_result p;
            p.partition_id = index;
            const auto code = owner_of(info, index) ? proto::error_code::election_not_needed
                                                    : proto::error_code::unknown_topic_or_partition;
            p.error_code = proto::code(code);
            p.error_message = proto::error_name(code);
            out.partition_result.push_back(std::move(p));
        }
        response.replica_election_results.push_back(std::move(out));
    }
    return response;
}

}  // namespace

void handle_elect_leaders(request_ptr req) {
    if (req->shard->owner().cluster() != nullptr) {
        forward_to_cluster_agent<proto::elect_leaders_request, proto::elect_leaders_response>(
            std::move(req), "malformed ElectLeaders (43) request",
            &cluster::cluster_agent::apply_elect_leaders);
        return;
    }
    proto::elect_leaders_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed ElectLeaders (43) request");
        return;
    }
    req->shard->respond(*req, single_node_answer(*req->shard->metadata(), body));
}

}  // namespace spate::broker
