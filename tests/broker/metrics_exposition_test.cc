// /metrics' text from shard reports: per-shard counters summed, families whole and in
// order, partition samples switchable, group lag from the high watermark, and the same
// text whether written at once or a few lines per turn.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "broker/metrics/exposition.h"

using namespace spate::broker::metrics;

namespace {

std::vector<shard_report> two_shards() {
    std::vector<shard_report> reports(2);
    reports[0].shard = 0;
    reports[1].shard = 1;
    reports[0].counters.api(0).requests = 3;  // Produce
    reports[1].counters.api(0).requests = 4;
    reports[0].counters.api(0).latency.record(100);
    reports[1].counters.api(0).latency.record(3000);
    reports[1].counters.errors.add(0, 6);  // NOT_LEADER_OR_FOLLOWER
    reports[1].counters.errors.add(0, 6);
    auto topic = std::make_shared<const std::string>("orders");
    for (int i = 0; i < 4; ++i) {
        partition_row row;
        row.topic = topic;
        row.index = i;
        row.log_end = 100 + i;
        row.high_watermark = 100 + i;
        row.bytes_in = 1000;
        row.records_in = 10;
        reports[static_cast<size_t>(i % 2)].partitions.push_back(row);
    }
    group_row g;
    g.id = "billing";
    g.state = "Stable";
    g.members = 2;
    g.committed = {{"orders", 0, 90}, {"orders", 1, 101}, {"elsewhere", 0, 5}};
    reports[0].groups.push_back(g);
    return reports;
}

size_t count_of(const std::string& text, const std::string& needle) {
    size_t found = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++found;
    return found;
}

}  // namespace

TEST_CASE("metrics: shards' counters are summed, each family written once") {
    const std::string text = write_exposition(two_shards(), broker_view{});
    CHECK(text.find("kafka_network_requestmetrics_requests_total{request=\"Produce\"} 7\n") !=
          std::string::npos);
    CHECK(text.find("kafka_network_requestmetrics_errors_total{request=\"Produce\",error=\"NOT_"
                    "LEADER_OR_FOLLOWER\"} 2\n") != std::string::npos);
    CHECK(text.find("spate_request_latency_seconds_count{request=\"Produce\"} 2\n") !=
          std::string::npos);
    CHECK(
        text.find("spate_request_latency_seconds_bucket{request=\"Produce\",le=\"0.0001\"} 1\n") !=
        std::string::npos);
    CHECK(text.find("kafka_server_brokertopicmetrics_messagesin_total{topic=\"orders\"} 40\n") !=
          std::string::npos);
    CHECK(count_of(text, "# TYPE kafka_log_log_logendoffset gauge") == 1);
    CHECK(count_of(text, "kafka_log_log_logendoffset{") == 4);
    CHECK(text.find("# TYPE spate_partition_bytes_in_total counter") != std::string::npos);
    // Every sample follows its own family's TYPE line: no family is split.
    std::string current;
    for (size_t at = 0; at < text.size();) {
        const size_t end = text.find('\n', at);
        const std::string line = text.substr(at, end - at);
        at = end + 1;
        if (line.rfind("# TYPE ", 0) == 0) {
            current = line.substr(7, line.find(' ', 7) - 7);
            continue;
        }
        if (line.empty() || line[0] == '#') continue;
        CHECK_MESSAGE(line.rfind(current, 0) == 0, line);
    }
}

TEST_CASE("metrics: partition samples can be left out; per-topic ones stay") {
    broker_view view;
    view.partition_labels = false;
    const std::string text = write_exposition(two_shards(), view);
    CHECK(text.find("kafka_log_log_logendoffset") == std::string::npos);
    CHECK(text.find("kafka_server_brokertopicmetrics_bytesin_total{topic=\"orders\"} 4000\n") !=
          std::string::npos);
}

TEST_CASE("metrics: group lag is the high watermark minus the commit, where led here") {
    const std::string text = write_exposition(two_shards(), broker_view{});
    CHECK(text.find("spate_group_lag{group=\"billing\",topic=\"orders\",partition=\"0\"} 10\n") !=
          std::string::npos);
    // A commit past the watermark (a truncated log) is no negative lag.
    CHECK(text.find("spate_group_lag{group=\"billing\",topic=\"orders\",partition=\"1\"} 0\n") !=
          std::string::npos);
    // No partition of "elsewhere" is led here: its offset is reported, its lag is not.
    CHECK(text.find("spate_group_committed_offset{group=\"billing\",topic=\"elsewhere\","
                    "partition=\"0\"} 5\n") != std::string::npos);
    CHECK(text.find("spate_group_lag{group=\"billing\",topic=\"elsewhere\"") == std::string::npos);
    CHECK(text.find("spate_group_state{group=\"billing\",state=\"Stable\"} 1\n") !=
          std::string::npos);
}

TEST_CASE("metrics: written a few lines at a time, the text is the same") {
    const std::string whole = write_exposition(two_shards(), broker_view{});
    exposition_job job(two_shards(), broker_view{});
    size_t turns = 0;
    while (!job.write_some(1)) ++turns;
    CHECK(turns > 10);
    CHECK(job.text() == whole);
}
