#pragma once
// What `spatectl top` shows, as pure functions so that tests can pin it: a scrape of a
// broker's /metrics reduced to the figures top needs (top_snapshot), and the screen made
// from two of them (format_top): rates are counter increases over the time between the
// scrapes, latency quantiles come from histogram bucket increases. The families and labels
// read are those of broker/metrics/exposition.cc; samples of other families are ignored.
//
// Stateless free functions and plain values; any thread may call them.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tools/prometheus_text.h"

namespace spate::tools {

// One bucket of a Prometheus histogram: observations <= upper_bound, cumulative.
struct histogram_bucket {
    double upper_bound = 0;
    double cumulative_count = 0;
    bool operator==(const histogram_bucket&) const = default;
};

// PromQL's histogram_quantile over `buckets` (any order; the last bound must be +Inf):
// the bucket holding the quantile's rank, interpolated linearly within it (from 0 for the
// first bucket); the highest finite bound when the rank falls in the +Inf bucket. NaN when
// there are no observations, fewer than two buckets or no +Inf bucket. Counts that go down
// from one bucket to the next (a scrape racing the recording) are raised to be monotonic,
// as Prometheus does.
double histogram_quantile(double quantile, std::span<const histogram_bucket> buckets);

// One scrape reduced to what top shows. Counters are kept as scraped (totals since the
// broker started); format_top takes their differences.
struct top_snapshot {
    struct latency {
        std::vector<histogram_bucket> buckets;  // sorted by upper_bound
        double count = 0;
    };
    struct topic_figures {
        double bytes_in = 0;
        double messages_in = 0;
        double bytes_out = 0;
    };
    struct partition_figures {
        double log_end_offset = 0;
        double size_bytes = 0;
    };
    struct group_figures {
        std::string state;  // "" until a spate_group_state sample names it
        double members = 0;
        double lag = 0;
        bool lag_known = false;  // a spate_group_lag sample was seen
    };
    struct shard_figures {
        double busy_seconds = 0;
        double loop_turns = 0;
        double connections_open = 0;
    };

    std::optional<double> up;  // spate_up: 1 serving, 0 starting; absent: not a spate
    std::string node_id;
    std::map<std::string, double> requests;    // by request name (Produce, Fetch, …)
    std::map<std::string, latency> latencies;  // by request name
    double errors = 0;
    std::map<std::string, topic_figures> topics;
    std::map<std::pair<std::string, int32_t>, partition_figures> partitions;
    std::map<std::string, group_figures> groups;
    std::map<int32_t, shard_figures> shards;
    std::optional<double> partition_count;
    std::optional<double> leader_count;
    std::optional<double> under_replicated;
    size_t malformed_lines = 0;
};

top_snapshot read_top_snapshot(const prometheus_scrape& scrape);

struct top_view_options {
    size_t rows = 10;  // rows of the topic, partition and group tables
};

// The screen (without a title line) for the interval from `before` to `after`, `seconds`
// apart: a header (node, partitions, groups, connections; request rates and Produce/Fetch
// p99 latency; totals since start), then the shard, topic, partition and group tables.
// A counter lower in `after` than in `before` was reset (a restart): its increase is its
// value in `after`, as in PromQL's rate(). Names from the broker are printed with control
// characters replaced, so a group id cannot drive the terminal.
std::string format_top(const top_snapshot& before, const top_snapshot& after, double seconds,
                       const top_view_options& options);

}  // namespace spate::tools
