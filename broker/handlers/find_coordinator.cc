// FindCoordinator (10): a group's coordinator is the leader of its partition of the
// internal topic __consumer_offsets (abs(Java hashCode of the id) mod the topic's
// partition count; broker/group/offsets_topic.h). The first lookup creates the topic:
// a single node creates it (replication factor 1) and answers at once; in a cluster the
// znodes are written (offsets_topic_replication_factor replicas, refused while fewer
// brokers are alive, as Kafka does) and the answer is COORDINATOR_NOT_AVAILABLE until
// the controller has elected the partitions' leaders, which clients retry. Transactions
// are not supported: key type 1 gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as
// InitProducerId answers a transactional id, so a transactional producer fails at once
// with a clear, fatal error instead of retrying COORDINATOR_NOT_AVAILABLE until it times
// out. v4 answers a batch of keys.
#include "broker/group/offsets_topic.h"
#include "broker/handlers/handlers.h"
#include "net/log.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;

struct coordinator {
    error_code error = error_code::coordinator_not_available;
    std::optional<std::string> message;
    int32_t node_id = -1;
    std::string host;
    int32_t port = -1;
};

error_code key_error(int8_t key_type, const std::string& key) {
    if (key_type == 1) return error_code::transactional_id_authorization_failed;
    if (key_type != 0) return error_code::invalid_request;
    if (key.empty()) return error_code::invalid_group_id;
    return error_code::none;
}

coordinator coordinator_of(shard_state& shard, int8_t key_type, const std::string& key) {
    coordinator out;
    out.error = key_error(key_type, key);
    if (out.error != error_code::none) return out;
    out.error = error_code::coordinator_not_available;
    const metadata_snapshot& snapshot = *shard.metadata();
    const topic_info* topic = snapshot.find(group::offsets_topic_name);
    if (topic == nullptr || topic->partition_count() == 0) return out;
    const auto partition =
        static_cast<size_t>(group::offsets_partition_of(key, topic->partition_count()));
    if (!snapshot.clustered) {
        if (topic->partition_shards[partition] == not_hosted) return out;
        const broker& process = shard.owner();
        return {error_code::none, std::nullopt, process.config().node_id, process.advertised_host(),
                process.advertised_port()};
    }
    if (partition >= topic->replicas.size()) return out;
    const int32_t leader = topic->replicas[partition].leader;
    for (const cluster_broker& b : snapshot.brokers)
        if (b.id == leader) return {error_code::none, std::nullopt, b.id, b.host, b.port};
    return out;
}

// Whether a lookup in `body` needs __consumer_offsets, which does not exist yet.
bool needs_topic(const shard_state& shard, const proto::find_coordinator_request& body,
                 int16_t version) {
    if (shard.metadata()->find(group::offsets_topic_name) != nullptr) return false;
    if (version < 4) return key_error(body.key_type, body.key_) == error_code::none;
    for (const std::string& key : body.coordinator_keys)
        if (key_error(body.key_type, key) == error_code::none) return true;
    return false;
}

void answer(request_ptr req, const proto::find_coordinator_request& body,
            const std::optional<std::string>& why_unavailable) {
    shard_state& shard = *req->shard;
    auto lookup = [&](const std::string& key) {
        coordinator found = coordinator_of(shard, body.key_type, key);
        if (found.error == error_code::coordinator_not_available) found.message = why_unavailable;
        return found;
    };
    proto::find_coordinator_response response;
    if (req->version() >= 4) {
        for (const std::string& key : body.coordinator_keys) {
            const coordinator found = lookup(key);
            proto::find_coordinator_response::coordinator entry;
            entry.key_ = key;
            entry.error_code = proto::code(found.error);
            entry.error_message = found.message;
            entry.node_id = found.node_id;
            entry.host = found.host;
            entry.port = found.port;
            response.coordinators.push_back(std::move(entry));
        }
    } else {
        const coordinator found = lookup(body.key_);
        response.error_code = proto::code(found.error);
        response.error_message = found.message;
        response.node_id = found.node_id;
        response.host = found.host;
        response.port = found.port;
    }
    shard.respond(*req, response);
}

// In a cluster: writes the topic's znodes when enough brokers are alive, then answers
// (COORDINATOR_NOT_AVAILABLE until the leaders are elected).
void create_in_cluster(request_ptr req, std::shared_ptr<proto::find_coordinator_request> body) {
    const broker_config& config = req->shard->config();
    const auto live = static_cast<int32_t>(req->shard->metadata()->brokers.size());
    const int32_t replicas = config.offsets_topic_replication_factor;
    if (live < replicas) {
        answer(std::move(req), *body,
               "__consumer_offsets needs offsets_topic_replication_factor = " +
                   std::to_string(replicas) + " live brokers; " + std::to_string(live) +
                   " are alive");
        return;
    }
    const int32_t partitions = config.offsets_topic_num_partitions;
    ask_cluster_agent<int>(
        std::move(req),
        [partitions, replicas](cluster::cluster_agent& agent) {
            (void)agent.create_topic(group::offsets_topic_name, partitions, replicas, {},
                                     group::offsets_topic_configs(), false);
            return 0;
        },
        [body](request_ptr req, int) { answer(std::move(req), *body, std::nullopt); });
}

}  // namespace

void handle_find_coordinator(request_ptr req) {
    auto body = std::make_shared<proto::find_coordinator_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed FindCoordinator request");
        return;
    }
    shard_state& shard = *req->shard;
    if (!needs_topic(shard, *body, req->version())) {
        answer(std::move(req), *body, std::nullopt);
        return;
    }
    if (shard.metadata()->clustered) {
        create_in_cluster(std::move(req), std::move(body));
        return;
    }
    const int32_t partitions = shard.config().offsets_topic_num_partitions;
    shard.change_metadata(
        [partitions](metadata_store& store) -> result<snapshot_ptr> {
            if (store.snapshot()->find(group::offsets_topic_name) != nullptr)
                return store.snapshot();
            return store.create_topic(group::offsets_topic_name, partitions,
                                      group::offsets_topic_configs());
        },
        [req, body](result<snapshot_ptr> created) {
            if (!created)
                net::log_error("groups: cannot create %s: %s", group::offsets_topic_name.c_str(),
                               created.failure().message.c_str());
            answer(req, *body, std::nullopt);
        });
}

}  // namespace spate::broker
