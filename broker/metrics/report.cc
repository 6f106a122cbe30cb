// collect(): one shard's part of a scrape, read on its own thread.
#include "broker/metrics/report.h"

#include "broker/broker.h"
#include "broker/group/coordinator.h"

namespace spate::broker::metrics {
namespace {

partition_row row_of(const partition& p) {
    partition_row row;
    row.topic = p.topic();
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

}  // namespace

shard_report collect(shard_state& shard) {
    shard_report report;
    report.shard = shard.id();
    report.counters = local();
    report.runtime = shard.net_shard().stats();
    for (const auto& entry : shard.partitions()) {
        for (const auto& p : entry.second) {
            if (!p) continue;
            report.partitions.push_back(row_of(*p));
            report.rolls += p->log().roll_count();
            report.recovery_truncations +=
                static_cast<uint64_t>(p->log().recovery_report().truncations);
        }
    }
    shard.groups().visit_groups([&](const group::group_coordinator::group_view& g) {
        group_row row;
        row.id = g.id;
        row.state = group::state_name(g.state);
        row.members = g.members;
        for (const auto& [where, committed] : g.offsets)
            row.committed.push_back({where.topic, where.partition, committed.offset});
        report.groups.push_back(std::move(row));
    });
    return report;
}

}  // namespace spate::broker::metrics
