#pragma once
// The /metrics text: every shard's report (broker/metrics/report.h) written as one
// Prometheus exposition. Kafka's metric names (in the lower-case spelling Prometheus
// exporters give JMX beans) where Kafka has the metric, spate_* names for the rest; the
// README's table lists them all.
//
// Threads: a pure function of its arguments, run on the shard answering the scrape.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
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

// Writes the exposition a bounded piece at a time, so a broker with many partitions is
// scraped without holding its shard for the whole text: write_some() between loop turns
// until it says done.
class exposition_job {
public:
    exposition_job(std::vector<shard_report> reports, broker_view view);
    exposition_job(const exposition_job&) = delete;
    exposition_job& operator=(const exposition_job&) = delete;

    // Writes about `lines` more sample lines (a small family counts as whole_step_lines);
    // true once the whole exposition is written.
    bool write_some(size_t lines);
    std::string& text() { return _text; }

    static constexpr size_t whole_step_lines = 200;

private:
    // A family with one sample per row (partitions, committed offsets), written `budget`
    // rows at a time; write_row may skip a row.
    void add_rows(const char* name, const char* help, net::metric_type type, size_t count,
                  std::function<void(size_t)> write_row);

    std::vector<shard_report> _reports;
    broker_view _view;
    std::string _text;
    net::exposition_writer _out;
    std::vector<std::function<bool(size_t& budget)>> _steps;
    size_t _next = 0;
    std::vector<const partition_row*> _rows;
    std::vector<std::pair<const group_row*, const committed_row*>> _committed;
    // The high watermarks of the partitions groups committed, -1 where not led here (a
    // group's lag is computed for the others).
    std::map<std::pair<std::string_view, int32_t>, int64_t> _ends;
};

// The whole exposition at once (tests).
std::string write_exposition(const std::vector<shard_report>& reports, const broker_view& view);

}  // namespace spate::broker::metrics
