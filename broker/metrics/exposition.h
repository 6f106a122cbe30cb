#pragma once
// The /metrics text: every shard's report (broker/metrics/report.h) written as one
// Prometheus exposition. Kafka's metric names (in the lower-case spelling Prometheus
// exporters give JMX beans) where Kafka has the metric, spate_* names for the rest; the
// README's table lists them all.
//
// Threads: a pure function of its arguments, run on the shard answering the scrape.

#include <cstdint>
#include <string>
#include <vector>

#include "broker/metrics/report.h"

namespace spate::broker::metrics {

// What the scrape knows of the broker beyond the shards' reports.
struct broker_view {
    int32_t node_id = 0;
    bool clustered = false;
    // In a cluster: whether this broker is the controller, and (then) how many partitions
    // have no leader, from its metadata.
    bool controller = false;
    int64_t offline_partitions = 0;
    // Per-partition samples (labels topic and partition); off for brokers with many
    // partitions, leaving the per-topic ones.
    bool partition_labels = true;
    // Whether the broker serves requests (logs recovered, in a cluster: joined).
    bool ready = false;
};

std::string write_exposition(const std::vector<shard_report>& reports, const broker_view& view);

}  // namespace spate::broker::metrics
