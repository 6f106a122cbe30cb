// collect(): one shard's part of a scrape, read on its own thread a bounded number of
// partitions per loop turn.
#include "broker/metrics/report.h"

#include "broker/broker.h"
#include "broker/group/coordinator.h"

namespace spate::broker::metrics {
namespace {

// Partitions read per loop turn: about a tenth of a millisecond.
constexpr size_t partitions_per_turn = 1000;

partition_row row_of(const partition& p, std::shared_ptr<const std::string> topic) {
    partition_row row;
    row.topic = std::move(topic);
    row.index = p.index();
    row.leader = p.is_leader();
    if (p.replicated()) {
        row.replicas = static_cast<int32_t>(p.replicas().size());
        row.in_sync = static_cast<int32_t>(p.isr().size());
    }
    const storage::partition_log& log = p.log();
    row.log_start = log.log_start_offset();
    row.log_end = log.log_end_offset();
    row.high_watermark = p.high_watermark();
    row.size_bytes = log.size_bytes();
    row.segments = log.segment_count();
    row.bytes_in = p.produced().bytes_in;
    row.records_in = p.produced().records_in;
    return row;
}

struct collect_run {
    shard_report report;
    // The topics as they were when the scrape began, and where the walk stands: a topic
    // deleted meanwhile is skipped, partitions added meanwhile may be missed.
    std::vector<std::shared_ptr<const std::string>> topics;
    size_t topic = 0;
    size_t index = 0;
    std::function<void(shard_report)> done;
};

void add_groups(shard_state& shard, shard_report& report) {
    shard.groups().visit_groups([&](const group::group_coordinator::group_view& g) {
        group_row row;
        row.id = g.id;
        row.state = group::state_name(g.state);
        row.members = g.members;
        for (const auto& [where, committed] : g.offsets)
            row.committed.push_back({where.topic, where.partition, committed.offset});
        report.groups.push_back(std::move(row));
    });
}

void collect_some(shard_state& shard, const std::shared_ptr<collect_run>& run) {
    size_t budget = partitions_per_turn;
    for (; run->topic < run->topics.size() && budget > 0; ++run->topic, run->index = 0) {
        const auto found = shard.partitions().find(*run->topics[run->topic]);
        if (found == shard.partitions().end()) continue;
        const auto& owned = found->second;
        for (; run->index < owned.size() && budget > 0; ++run->index, --budget) {
            const partition* p = owned[run->index].get();
            if (p == nullptr) continue;
            run->report.partitions.push_back(row_of(*p, run->topics[run->topic]));
            run->report.rolls += p->log().roll_count();
            run->report.recovery_truncations +=
                static_cast<uint64_t>(p->log().recovery_report().truncations);
        }
        if (run->index < owned.size()) break;  // the budget ran out inside this topic
    }
    if (run->topic < run->topics.size()) {
        shard.net_shard().post([&shard, run] { collect_some(shard, run); });
        return;
    }
    add_groups(shard, run->report);
    run->done(std::move(run->report));
}

}  // namespace

void collect(shard_state& shard, std::function<void(shard_report)> done) {
    auto run = std::make_shared<collect_run>();
    run->done = std::move(done);
    run->report.shard = shard.id();
    run->report.counters = local();
    run->report.runtime = shard.net_shard().stats();
    size_t hosted = 0;
    for (const auto& entry : shard.partitions()) {
        hosted += entry.second.size();
        run->topics.push_back(std::make_shared<const std::string>(entry.first));
    }
    run->report.partitions.reserve(hosted);
    collect_some(shard, run);
}

}  // namespace spate::broker::metrics
