// write_exposition: the families of /metrics, in the order of the README's table.
#include "broker/metrics/exposition.h"

#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker::metrics {
namespace {

using net::exposition_writer;
using net::label;
using net::metric_type;

// Kafka's request names: ListOffsets for list_offsets.
std::string request_name(size_t key) {
    const proto::api_description* api = proto::find_api(static_cast<int16_t>(key));
    if (api == nullptr) return "Unknown";
    std::string name;
    bool upper = true;
    for (const char* c = api->name; *c != '\0'; ++c) {
        if (*c == '_') {
            upper = true;
            continue;
        }
        name.push_back(upper ? static_cast<char>(*c - 'a' + 'A') : *c);
        upper = false;
    }
    return name;
}

std::string errno_name(size_t code, bool last) {
    if (last) return "other";
    const char* name = strerrorname_np(static_cast<int>(code));
    return name != nullptr ? name : std::to_string(code);
}

// One family whose samples are per-shard values: writes HELP/TYPE, then a sample per shard.
template <class Get>
void per_shard(exposition_writer& out, std::string_view name, std::string_view help,
               metric_type type, const std::vector<shard_report>& reports, Get get) {
    out.family(name, help, type);
    for (const shard_report& r : reports) {
        const std::string shard = std::to_string(r.shard);
        out.sample(name, {{"shard", shard}}, get(r));
    }
}

void write_requests(exposition_writer& out, const std::vector<shard_report>& reports) {
    std::array<api_figures, shard_counters::api_slots> sums{};
    for (const shard_report& r : reports) {
        for (size_t key = 0; key < sums.size(); ++key) {
            const api_figures& from = r.counters.apis[key];
            sums[key].requests += from.requests;
            sums[key].bytes_in += from.bytes_in;
            sums[key].bytes_out += from.bytes_out;
            sums[key].latency.merge(from.latency);
        }
    }
    std::vector<std::pair<size_t, std::string>> used;
    for (size_t key = 0; key < sums.size(); ++key)
        if (sums[key].requests > 0 || sums[key].bytes_in > 0)
            used.emplace_back(key, request_name(key));

    out.family("kafka_network_requestmetrics_requests_total",
               "Requests answered (or acks=0 produces taken), by API.", metric_type::counter);
    for (const auto& [key, name] : used)
        out.sample("kafka_network_requestmetrics_requests_total", {{"request", name}},
                   sums[key].requests);
    out.family("spate_request_bytes_in_total", "Request bytes received, by API.",
               metric_type::counter);
    for (const auto& [key, name] : used)
        out.sample("spate_request_bytes_in_total", {{"request", name}}, sums[key].bytes_in);
    out.family("spate_request_bytes_out_total", "Response bytes sent, by API.",
               metric_type::counter);
    for (const auto& [key, name] : used)
        out.sample("spate_request_bytes_out_total", {{"request", name}}, sums[key].bytes_out);
    out.family("spate_request_latency_seconds",
               "From a request's arrival to its response being queued, by API.",
               metric_type::histogram);
    for (const auto& [key, name] : used)
        out.histogram("spate_request_latency_seconds", {{"request", name}}, sums[key].latency);

    std::map<std::pair<int16_t, int16_t>, uint64_t> errors;
    uint64_t overflow = 0;
    for (const shard_report& r : reports) {
        for (const auto& e : r.counters.errors.entries)
            if (e.api >= 0) errors[{e.api, e.code}] += e.count;
        overflow += r.counters.errors.overflow;
    }
    out.family("kafka_network_requestmetrics_errors_total",
               "Error codes in responses (NONE not counted), by API and error.",
               metric_type::counter);
    for (const auto& [key, count] : errors)
        out.sample("kafka_network_requestmetrics_errors_total",
                   {{"request", request_name(static_cast<size_t>(key.first))},
                    {"error", proto::error_name(key.second)}},
                   count);
    if (overflow > 0)
        out.sample("kafka_network_requestmetrics_errors_total",
                   {{"request", "other"}, {"error", "other"}}, overflow);
}

void write_topics(exposition_writer& out, const std::vector<shard_report>& reports) {
    struct topic_sums {
        uint64_t bytes_in = 0;
        uint64_t records_in = 0;
        uint64_t bytes_out = 0;
    };
    std::map<std::string, topic_sums> topics;
    for (const shard_report& r : reports) {
        for (const partition_row& p : r.partitions) {
            topic_sums& t = topics[p.topic];
            t.bytes_in += p.bytes_in;
            t.records_in += p.records_in;
        }
    }
    // Bytes fetched from topics that still exist here (a deleted topic's count is dropped).
    for (const shard_report& r : reports)
        for (const auto& [topic, bytes] : r.counters.topic_bytes_out)
            if (auto t = topics.find(topic); t != topics.end()) t->second.bytes_out += bytes;
    out.family("kafka_server_brokertopicmetrics_bytesin_total",
               "Bytes of record batches produced to the topic's partitions led here.",
               metric_type::counter);
    for (const auto& [name, t] : topics)
        out.sample("kafka_server_brokertopicmetrics_bytesin_total", {{"topic", name}}, t.bytes_in);
    out.family("kafka_server_brokertopicmetrics_messagesin_total",
               "Records produced to the topic's partitions led here.", metric_type::counter);
    for (const auto& [name, t] : topics)
        out.sample("kafka_server_brokertopicmetrics_messagesin_total", {{"topic", name}},
                   t.records_in);
    out.family("kafka_server_brokertopicmetrics_bytesout_total",
               "Record bytes fetched by consumers (not followers) from the topic.",
               metric_type::counter);
    for (const auto& [name, t] : topics)
        out.sample("kafka_server_brokertopicmetrics_bytesout_total", {{"topic", name}},
                   t.bytes_out);
}

void write_partitions(exposition_writer& out, const std::vector<shard_report>& reports) {
    struct family {
        const char* name;
        const char* help;
        metric_type type;
        int64_t (*get)(const partition_row&);
    };
    static const family families[] = {
        {"kafka_log_log_logendoffset", "The offset after the last record of the partition.",
         metric_type::gauge, [](const partition_row& p) { return p.log_end; }},
        {"kafka_log_log_logstartoffset", "The partition's first offset.", metric_type::gauge,
         [](const partition_row& p) { return p.log_start; }},
        {"spate_partition_high_watermark", "The partition's high watermark.", metric_type::gauge,
         [](const partition_row& p) { return p.high_watermark; }},
        {"kafka_log_log_size", "Bytes of the partition's segments on disk.", metric_type::gauge,
         [](const partition_row& p) { return p.size_bytes; }},
        {"kafka_log_log_numlogsegments", "Segments of the partition.", metric_type::gauge,
         [](const partition_row& p) { return static_cast<int64_t>(p.segments); }},
        {"kafka_cluster_partition_underreplicated",
         "1 when this broker leads the partition and its ISR is smaller than its replicas.",
         metric_type::gauge,
         [](const partition_row& p) { return int64_t{p.leader && p.in_sync < p.replicas}; }},
        {"spate_partition_leader", "1 when this broker leads the partition.", metric_type::gauge,
         [](const partition_row& p) { return int64_t{p.leader}; }},
    };
    for (const family& f : families) {
        out.family(f.name, f.help, f.type);
        for (const shard_report& r : reports) {
            for (const partition_row& p : r.partitions) {
                const std::string index = std::to_string(p.index);
                out.sample(f.name, {{"topic", p.topic}, {"partition", index}}, f.get(p));
            }
        }
    }
}

void write_replica_manager(exposition_writer& out, const std::vector<shard_report>& reports,
                           const broker_view& view) {
    int64_t partitions = 0;
    int64_t leaders = 0;
    int64_t under_replicated = 0;
    uint64_t shrinks = 0;
    uint64_t expands = 0;
    uint64_t leader_changes = 0;
    uint64_t controller_changes = 0;
    for (const shard_report& r : reports) {
        for (const partition_row& p : r.partitions) {
            ++partitions;
            leaders += p.leader ? 1 : 0;
            under_replicated += p.leader && p.in_sync < p.replicas ? 1 : 0;
        }
        shrinks += r.counters.isr_shrinks;
        expands += r.counters.isr_expands;
        leader_changes += r.counters.leader_changes;
        controller_changes += r.counters.controller_changes;
    }
    const auto gauge = [&](const char* name, const char* help, int64_t value) {
        out.family(name, help, metric_type::gauge);
        out.sample(name, {}, value);
    };
    const auto counter = [&](const char* name, const char* help, uint64_t value) {
        out.family(name, help, metric_type::counter);
        out.sample(name, {}, value);
    };
    gauge("kafka_server_replicamanager_partitioncount", "Partitions hosted here.", partitions);
    gauge("kafka_server_replicamanager_leadercount", "Partitions led here.", leaders);
    gauge("kafka_server_replicamanager_underreplicatedpartitions",
          "Partitions led here whose ISR is smaller than their replicas.", under_replicated);
    counter("kafka_server_replicamanager_isrshrinks_total",
            "ISR shrinks this broker proposed as a leader.", shrinks);
    counter("kafka_server_replicamanager_isrexpands_total",
            "ISR expansions this broker proposed as a leader.", expands);
    gauge("kafka_controller_kafkacontroller_activecontrollercount",
          "1 on the cluster's controller (and on a single node), else 0.",
          view.clustered ? int64_t{view.controller} : 1);
    gauge("kafka_controller_kafkacontroller_offlinepartitionscount",
          "On the controller: partitions without a leader. 0 elsewhere.",
          view.controller ? view.offline_partitions : 0);
    counter("spate_partition_leader_changes_total",
            "Leader changes of the partitions hosted here, as the controller announced them.",
            leader_changes);
    counter("spate_controller_changes_total", "Times this broker saw a new controller.",
            controller_changes);
}

void write_groups(exposition_writer& out, const std::vector<shard_report>& reports) {
    // The high watermark of every partition led here: a group's lag is computed for those.
    std::map<std::pair<std::string_view, int32_t>, int64_t> ends;
    for (const shard_report& r : reports)
        for (const partition_row& p : r.partitions)
            if (p.leader) ends[{p.topic, p.index}] = p.high_watermark;
    size_t groups = 0;
    for (const shard_report& r : reports) groups += r.groups.size();
    out.family("kafka_coordinator_group_groupmetadatamanager_numgroups",
               "Consumer groups this broker coordinates.", metric_type::gauge);
    out.sample("kafka_coordinator_group_groupmetadatamanager_numgroups", {}, groups);
    out.family("spate_group_members", "Members of the group.", metric_type::gauge);
    for (const shard_report& r : reports)
        for (const group_row& g : r.groups)
            out.sample("spate_group_members", {{"group", g.id}}, g.members);
    out.family("spate_group_state", "1 for the group's state (Kafka's names).", metric_type::gauge);
    for (const shard_report& r : reports)
        for (const group_row& g : r.groups)
            out.sample("spate_group_state", {{"group", g.id}, {"state", g.state}}, 1);
    out.family("spate_group_committed_offset", "The group's committed offset of the partition.",
               metric_type::gauge);
    for (const shard_report& r : reports) {
        for (const group_row& g : r.groups) {
            for (const committed_row& c : g.committed) {
                const std::string index = std::to_string(c.partition);
                out.sample("spate_group_committed_offset",
                           {{"group", g.id}, {"topic", c.topic}, {"partition", index}}, c.offset);
            }
        }
    }
    out.family("spate_group_lag",
               "High watermark minus the committed offset, for partitions led by this broker.",
               metric_type::gauge);
    for (const shard_report& r : reports) {
        for (const group_row& g : r.groups) {
            for (const committed_row& c : g.committed) {
                auto end = ends.find({c.topic, c.partition});
                if (end == ends.end() || c.offset < 0) continue;
                const std::string index = std::to_string(c.partition);
                out.sample("spate_group_lag",
                           {{"group", g.id}, {"topic", c.topic}, {"partition", index}},
                           std::max<int64_t>(end->second - c.offset, 0));
            }
        }
    }
}

void write_storage(exposition_writer& out, const std::vector<shard_report>& reports) {
    net::latency_histogram fsyncs;
    uint64_t appends = 0;
    uint64_t rolls = 0;
    uint64_t truncations = 0;
    std::array<uint64_t, 160> errors{};
    for (const shard_report& r : reports) {
        fsyncs.merge(r.runtime.fsync_latency);
        appends += r.counters.appends;
        rolls += r.rolls;
        truncations += r.recovery_truncations;
        for (size_t i = 0; i < errors.size(); ++i) errors[i] += r.counters.storage_errors[i];
    }
    out.family("spate_storage_fsync_latency_seconds",
               "fdatasync of log segments, from submission to completion.", metric_type::histogram);
    out.histogram("spate_storage_fsync_latency_seconds", {}, fsyncs);
    out.family("spate_storage_appends_total", "Batches appended to logs (leader or follower).",
               metric_type::counter);
    out.sample("spate_storage_appends_total", {}, appends);
    out.family("spate_storage_rolls_total",
               "Segments rolled by the logs open now, since they were opened.",
               metric_type::counter);
    out.sample("spate_storage_rolls_total", {}, rolls);
    out.family("spate_storage_recovery_truncations_total",
               "Segments recovery cut at a damaged batch when the logs open now were opened.",
               metric_type::counter);
    out.sample("spate_storage_recovery_truncations_total", {}, truncations);
    out.family("spate_storage_errors_total", "Storage operations that failed, by errno.",
               metric_type::counter);
    for (size_t i = 0; i < errors.size(); ++i)
        if (errors[i] > 0)
            out.sample("spate_storage_errors_total",
                       {{"errno", errno_name(i, i + 1 == errors.size())}}, errors[i]);
}

void write_runtime(exposition_writer& out, const std::vector<shard_report>& reports) {
    using R = const shard_report&;
    per_shard(out, "spate_shard_loop_turns_total", "Turns of the shard's event loop.",
              metric_type::counter, reports, [](R r) { return r.runtime.loop_turns; });
    per_shard(out, "spate_shard_busy_seconds_total",
              "Time the shard's loop spent working (not waiting in the kernel); its rate is "
              "the busy fraction.",
              metric_type::counter, reports,
              [](R r) { return static_cast<double>(r.runtime.busy_ns) / 1e9; });
    per_shard(out, "spate_shard_ring_submissions_total", "io_uring submission entries.",
              metric_type::counter, reports, [](R r) { return r.runtime.submissions; });
    per_shard(out, "spate_shard_ring_completions_total", "io_uring completions reaped.",
              metric_type::counter, reports, [](R r) { return r.runtime.completions; });
    per_shard(out, "spate_shard_ring_cq_overflows_total",
              "Completions the kernel could not post to the full completion queue.",
              metric_type::counter, reports, [](R r) { return r.runtime.cq_overflows; });
    per_shard(out, "spate_shard_cross_shard_tasks_total", "Tasks sent to other shards.",
              metric_type::counter, reports, [](R r) { return r.runtime.cross_shard_tasks; });
    per_shard(out, "spate_shard_cross_shard_queue_full_total",
              "Tasks that found the other shard's queue full and waited.", metric_type::counter,
              reports, [](R r) { return r.runtime.cross_shard_full; });
    per_shard(out, "spate_shard_cross_shard_waiting",
              "Tasks waiting now for room in other shards' queues.", metric_type::gauge, reports,
              [](R r) { return r.runtime.cross_shard_waiting; });
    per_shard(out, "spate_connections_open", "Connections open (incoming and outgoing).",
              metric_type::gauge, reports, [](R r) { return r.runtime.connections_open; });
    per_shard(out, "spate_connections_accepted_total", "Connections accepted.",
              metric_type::counter, reports, [](R r) { return r.runtime.connections_accepted; });
    per_shard(out, "spate_connections_refused_total",
              "Connections refused at connections_max or max_connections_per_ip.",
              metric_type::counter, reports, [](R r) { return r.runtime.connections_refused; });
    per_shard(out, "spate_incomplete_request_bytes",
              "Bytes reserved for request frames still being received.", metric_type::gauge,
              reports, [](R r) { return r.runtime.incomplete_request_bytes; });
}

}  // namespace

std::string write_exposition(const std::vector<shard_report>& reports, const broker_view& view) {
    std::string text;
    text.reserve(64 << 10);
    exposition_writer out(text);
    out.family("spate_up", "1 while the broker serves requests (0 while it starts).",
               metric_type::gauge);
    out.sample("spate_up", {{"node_id", std::to_string(view.node_id)}}, int64_t{view.ready});
    write_requests(out, reports);
    write_topics(out, reports);
    if (view.partition_labels) write_partitions(out, reports);
    write_replica_manager(out, reports, view);
    write_groups(out, reports);
    write_storage(out, reports);
    write_runtime(out, reports);
    return text;
}

}  // namespace spate::broker::metrics
