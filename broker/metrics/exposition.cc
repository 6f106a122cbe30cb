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
            topic_sums& t = topics[*p.topic];
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

struct partition_family {
    const char* name;
    const char* help;
    metric_type type;
    int64_t (*get)(const partition_row&);
};
constexpr partition_family partition_families[] = {
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
    {"spate_partition_bytes_in_total",
     "Bytes of record batches produced to the partition while led here.", metric_type::counter,
     [](const partition_row& p) { return static_cast<int64_t>(p.bytes_in); }},
    {"spate_partition_records_in_total", "Records produced to the partition while led here.",
     metric_type::counter,
     [](const partition_row& p) { return static_cast<int64_t>(p.records_in); }},
};

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

void write_group_summary(exposition_writer& out, const std::vector<shard_report>& reports) {
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
}

void write_storage(exposition_writer& out, const std::vector<shard_report>& reports) {
    net::latency_histogram fsyncs;
    uint64_t appends = 0;
    uint64_t copied = 0;
    uint64_t spliced = 0;
    uint64_t rolls = 0;
    uint64_t truncations = 0;
    uint64_t fsyncs_inline = 0;
    uint64_t file_bytes_inline = 0;
    uint64_t file_bytes_chained = 0;
    std::array<uint64_t, 160> errors{};
    for (const shard_report& r : reports) {
        fsyncs.merge(r.runtime.fsync_latency);
        fsyncs_inline += r.runtime.fsyncs_inline;
        file_bytes_inline += r.runtime.file_bytes_inline;
        file_bytes_chained += r.runtime.file_bytes_chained;
        appends += r.counters.appends;
        copied += r.counters.fetch_answers_copied;
        spliced += r.counters.fetch_answers_spliced;
        rolls += r.rolls;
        truncations += r.recovery_truncations;
        for (size_t i = 0; i < errors.size(); ++i) errors[i] += r.counters.storage_errors[i];
    }
    out.family("spate_storage_fsync_latency_seconds",
               "fdatasync of log segments, from submission to completion.", metric_type::histogram);
    out.histogram("spate_storage_fsync_latency_seconds", {}, fsyncs);
    out.family("spate_storage_fsyncs_inline_total",
               "Of those, waited ones a shard ran itself instead of going to sleep.",
               metric_type::counter);
    out.sample("spate_storage_fsyncs_inline_total", {}, fsyncs_inline);
    out.family("spate_storage_appends_total", "Batches appended to logs (leader or follower).",
               metric_type::counter);
    out.sample("spate_storage_appends_total", {}, appends);
    out.family("spate_fetch_answers_total",
               "Fetch answers with records, by how the records left: copied from the page "
               "cache (small answers) or spliced from the log files.",
               metric_type::counter);
    out.sample("spate_fetch_answers_total", {{"transfer", "copy"}}, copied);
    out.sample("spate_fetch_answers_total", {{"transfer", "splice"}}, spliced);
    out.family("spate_file_bytes_sent_total",
               "Log file bytes spliced to sockets, by who moved them: the shard itself (in page "
               "cache, non-blocking) or the kernel's io-wq (a splice chain).",
               metric_type::counter);
    out.sample("spate_file_bytes_sent_total", {{"by", "shard"}}, file_bytes_inline);
    out.sample("spate_file_bytes_sent_total", {{"by", "io_wq"}}, file_bytes_chained);
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
    out.family("spate_shard_turn_busy_seconds",
               "How long each turn of the shard's loop worked before waiting or turning again "
               "(not counting the kernel's work in the turn's submit, at most one 256 KiB send "
               "per connection): the longest delay a request could meet on that shard.",
               metric_type::histogram);
    for (const shard_report& r : reports)
        out.histogram("spate_shard_turn_busy_seconds", {{"shard", std::to_string(r.shard)}},
                      r.runtime.turn_busy);
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
    per_shard(out, "spate_shard_cross_shard_queued",
              "Tasks other shards queued for this one, not yet run (queue depth).",
              metric_type::gauge, reports, [](R r) { return r.runtime.cross_shard_queued; });
    per_shard(out, "spate_connections_open", "Connections open (incoming and outgoing).",
              metric_type::gauge, reports, [](R r) { return r.runtime.connections_open; });
    per_shard(out, "spate_connections_accepted_total", "Connections accepted.",
              metric_type::counter, reports, [](R r) { return r.runtime.connections_accepted; });
    per_shard(out, "spate_connections_moved_in_total",
              "Connections moved here from other shards, to the shard owning their partitions.",
              metric_type::counter, reports, [](R r) { return r.runtime.connections_moved_in; });
    per_shard(out, "spate_connections_moved_out_total", "Connections moved to other shards.",
              metric_type::counter, reports, [](R r) { return r.runtime.connections_moved_out; });
    per_shard(out, "spate_connections_refused_total",
              "Connections refused at connections_max or max_connections_per_ip.",
              metric_type::counter, reports, [](R r) { return r.runtime.connections_refused; });
    per_shard(out, "spate_incomplete_request_bytes",
              "Bytes reserved for request frames still being received.", metric_type::gauge,
              reports, [](R r) { return r.runtime.incomplete_request_bytes; });
}

}  // namespace

exposition_job::exposition_job(std::vector<shard_report> reports, broker_view view)
    : _reports(std::move(reports)), _view(view), _out(_text) {
    for (const shard_report& r : _reports) {
        for (const group_row& g : r.groups)
            for (const committed_row& c : g.committed) {
                _committed.push_back({&g, &c});
                _ends.emplace(std::pair<std::string_view, int32_t>{c.topic, c.partition}, -1);
            }
    }
    for (const shard_report& r : _reports) {
        for (const partition_row& p : r.partitions) {
            _rows.push_back(&p);
            if (!p.leader || _ends.empty()) continue;
            if (auto end = _ends.find({*p.topic, p.index}); end != _ends.end())
                end->second = p.high_watermark;
        }
    }
    // About what the text will take, so it grows without copying megabytes as it goes.
    const size_t partition_lines = _view.partition_labels ? _rows.size() * 7 : 0;
    _text.reserve((64 << 10) + partition_lines * 80 + _committed.size() * 2 * 100);
    const auto whole = [this](void (*write)(exposition_job&)) {
        _steps.push_back([this, write](size_t& budget) {
            write(*this);
            budget = budget > whole_step_lines ? budget - whole_step_lines : 0;
            return true;
        });
    };
    whole([](exposition_job& job) {
        job._out.family("spate_up", "1 while the broker serves requests (0 while it starts).",
                        metric_type::gauge);
        job._out.sample("spate_up", {{"node_id", std::to_string(job._view.node_id)}},
                        int64_t{job._view.ready});
        write_requests(job._out, job._reports);
    });
    whole([](exposition_job& job) { write_topics(job._out, job._reports); });
    if (_view.partition_labels)
        for (const partition_family& f : partition_families)
            add_rows(f.name, f.help, f.type, _rows.size(), [this, &f](size_t i) {
                const partition_row& p = *_rows[i];
                const std::string index = std::to_string(p.index);
                _out.sample(f.name, {{"topic", *p.topic}, {"partition", index}}, f.get(p));
            });
    whole([](exposition_job& job) { write_replica_manager(job._out, job._reports, job._view); });
    whole([](exposition_job& job) { write_group_summary(job._out, job._reports); });
    add_rows("spate_group_committed_offset", "The group's committed offset of the partition.",
             metric_type::gauge, _committed.size(), [this](size_t i) {
                 const auto [g, c] = _committed[i];
                 const std::string index = std::to_string(c->partition);
                 _out.sample("spate_group_committed_offset",
                             {{"group", g->id}, {"topic", c->topic}, {"partition", index}},
                             c->offset);
             });
    add_rows("spate_group_lag",
             "High watermark minus the committed offset, for partitions led by this broker.",
             metric_type::gauge, _committed.size(), [this](size_t i) {
                 const auto [g, c] = _committed[i];
                 auto end = _ends.find({c->topic, c->partition});
                 if (end == _ends.end() || end->second < 0 || c->offset < 0) return;
                 const std::string index = std::to_string(c->partition);
                 _out.sample("spate_group_lag",
                             {{"group", g->id}, {"topic", c->topic}, {"partition", index}},
                             std::max<int64_t>(end->second - c->offset, 0));
             });
    whole([](exposition_job& job) { write_storage(job._out, job._reports); });
    whole([](exposition_job& job) { write_runtime(job._out, job._reports); });
}

void exposition_job::add_rows(const char* name, const char* help, metric_type type, size_t count,
                              std::function<void(size_t)> write_row) {
    _steps.push_back([this, name, help, type, count, write_row = std::move(write_row),
                      next = size_t{0}](size_t& budget) mutable {
        if (next == 0) _out.family(name, help, type);
        for (; next < count && budget > 0; ++next, --budget) write_row(next);
        return next == count;
    });
}

bool exposition_job::write_some(size_t lines) {
    while (_next < _steps.size() && lines > 0)
        if (_steps[_next](lines)) ++_next;
    return _next == _steps.size();
}

std::string write_exposition(const std::vector<shard_report>& reports, const broker_view& view) {
    exposition_job job(reports, view);
    while (!job.write_some(SIZE_MAX)) {
    }
    return std::move(job.text());
}

}  // namespace spate::broker::metrics
