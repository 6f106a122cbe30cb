// InitProducerId (22): hands an idempotent producer a fresh producer id (epoch 0), or
// bumps the epoch of the id it already has (v3+). Ids are unique across restarts: the
// counter starts at the wall-clock milliseconds shifted left by 16; in a cluster they
// come from blocks of 1000 in ZooKeeper (cluster_agent::next_producer_id). Transactions are
// not supported yet: a transactional id is refused with
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED (the README says so).
#include <atomic>
#include <chrono>

#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using response_type = proto::init_producer_id_response;

int64_t allocate_producer_id() {
    static std::atomic<int64_t> next{std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count()
                                     << 16};
    return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

void handle_init_producer_id(request_ptr req) {
    proto::init_producer_id_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed InitProducerId request");
        return;
    }
    proto::init_producer_id_response response;
    response.producer_id = -1;
    response.producer_epoch = -1;
    if (body.transactional_id && !body.transactional_id->empty()) {
        response.error_code = proto::code(proto::error_code::transactional_id_authorization_failed);
    } else if (body.producer_id >= 0 && body.producer_epoch >= 0 &&
               body.producer_epoch < INT16_MAX - 1) {
        response.producer_id = body.producer_id;
        response.producer_epoch = static_cast<int16_t>(body.producer_epoch + 1);
    } else if (req->shard->owner().cluster() != nullptr) {
        // Unique across the cluster: the agent hands ids out of its ZooKeeper block.
        ask_cluster_agent<response_type>(
            std::move(req),
            [response](cluster::cluster_agent& agent) mutable {
                auto id = agent.next_producer_id();
                if (id) {
                    response.producer_id = *id;
                    response.producer_epoch = 0;
                } else {
                    response.error_code = proto::code(proto::error_code::coordinator_not_available);
                }
                return response;
            },
            [](request_ptr req, response_type answer) { req->shard->respond(*req, answer); });
        return;
    } else {
        response.producer_id = allocate_producer_id();
        response.producer_epoch = 0;
    }
    req->shard->respond(*req, response);
}

}  // namespace spate::broker
