// The HTTP endpoint (metrics_listen), served by shard 0's ring:
//   GET /metrics        every shard's figures, gathered from each on its own thread, in the
//                       Prometheus text format (broker/metrics/exposition.h);
//   GET /health/live    200 while the shard's loop runs (it answers this);
//   GET /health/ready   200 once the broker serves Kafka requests (logs recovered; in a
//                       cluster, joined), else 503.
// Anything else is 404, a method other than GET 405.
#include <memory>

#include "broker/broker.h"
#include "broker/metrics/exposition.h"
#include "broker/metrics/report.h"
#include "net/http.h"

namespace spate::broker {
namespace {

struct scrape {
    std::vector<metrics::shard_report> reports;
    size_t missing = 0;
};

void answer(shard_state& shard, net::connection_ref conn, uint64_t sequence, int status,
            std::string_view reason, std::string_view content_type, std::string_view body,
            bool keep_alive) {
    shard.net_shard().respond_http(
        conn, sequence, status, reason, content_type, body,
        keep_alive ? net::http_connection::keep_alive : net::http_connection::close);
}

metrics::broker_view view_of(shard_state& shard) {
    metrics::broker_view view;
    const broker_config& config = shard.config();
    const metadata_snapshot& metadata = *shard.metadata();
    view.node_id = config.node_id;
    view.clustered = metadata.clustered;
    view.controller = metadata.clustered && metadata.controller_id == config.node_id;
    if (view.controller)
        for (const auto& entry : metadata.topics)
            for (const partition_replicas& r : entry.second->replicas)
                if (r.leader < 0) ++view.offline_partitions;
    view.partition_labels = config.metrics_partition_labels;
    view.ready = shard.owner().serving();
    return view;
}

// Sample lines written per loop turn: a fraction of a millisecond, so a scrape of a broker
// with many partitions does not hold up the requests shard 0 serves meanwhile.
constexpr size_t lines_per_turn = 2000;

void write_in_turns(shard_state& shard, std::shared_ptr<metrics::exposition_job> job,
                    net::connection_ref conn, uint64_t sequence, bool keep_alive) {
    if (!job->write_some(lines_per_turn)) {
        shard.net_shard().post(
            [&shard, job = std::move(job), conn, sequence, keep_alive]() mutable {
                write_in_turns(shard, std::move(job), conn, sequence, keep_alive);
            });
        return;
    }
    answer(shard, conn, sequence, 200, "OK", net::exposition_content_type, job->text(), keep_alive);
}

void serve_metrics(shard_state& shard, net::connection_ref conn, uint64_t sequence,
                   bool keep_alive) {
    const uint32_t shards = shard.owner().shard_count();
    auto state = std::make_shared<scrape>();
    state->reports.resize(shards);
    state->missing = shards;
    for (net::shard_id s = 0; s < shards; ++s) {
        shard.call_on<std::shared_ptr<metrics::shard_report>>(
            s,
            [](shard_state& owner,
               std::function<void(std::shared_ptr<metrics::shard_report>)> reply) {
                metrics::collect(owner, [reply = std::move(reply)](metrics::shard_report r) {
                    reply(std::make_shared<metrics::shard_report>(std::move(r)));
                });
            },
            [&shard, state, s, conn, sequence,
             keep_alive](std::shared_ptr<metrics::shard_report> report) {
                state->reports[s] = std::move(*report);
                if (--state->missing > 0) return;
                auto job = std::make_shared<metrics::exposition_job>(std::move(state->reports),
                                                                     view_of(shard));
                write_in_turns(shard, std::move(job), conn, sequence, keep_alive);
            });
    }
}

}  // namespace

bool shard_state::on_http_request(net::connection_ref conn, uint64_t sequence,
                                  const net::http_request_parser& request) {
    const bool keep_alive = request.keep_alive();
    if (request.method() != "GET") {
        answer(*this, conn, sequence, 405, "Method Not Allowed", "text/plain", "only GET\n",
               keep_alive);
        return true;
    }
    const std::string_view path = request.path();
    if (path == "/metrics") {
        serve_metrics(*this, conn, sequence, keep_alive);
        return true;
    }
    if (path == "/health/live") {
        answer(*this, conn, sequence, 200, "OK", "text/plain", "live\n", keep_alive);
        return true;
    }
    if (path == "/health/ready") {
        if (_broker.serving())
            answer(*this, conn, sequence, 200, "OK", "text/plain", "ready\n", keep_alive);
        else
            answer(*this, conn, sequence, 503, "Service Unavailable", "text/plain",
                   "not ready: starting, or joining the cluster\n", keep_alive);
        return true;
    }
    return false;
}

}  // namespace spate::broker
