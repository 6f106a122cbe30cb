// top_view: from scraped samples to the screen of `spatectl top`, in the order it is
// printed: header, shards, topics, partitions, groups.
#include "tools/top_view.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string_view>

namespace spate::tools {

namespace {

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
// Names wider than this are cut, so one long topic name does not push every column off
// the screen.
constexpr size_t name_width_max = 48;

std::optional<int32_t> parse_int32(std::string_view text) {
    int32_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

std::optional<double> parse_bound(std::string_view text) {
    prometheus_sample parsed;
    // A bound is a sample value ("0.005", "+Inf"); the line parser knows their spelling.
    const std::string line = "le " + std::string(text);
    if (parse_prometheus_line(line, parsed) != prometheus_line_kind::sample) return std::nullopt;
    return parsed.value;
}

// The increase of a counter from `before` to `after`, a reset counted from zero.
double increase(double before, double after) { return after >= before ? after - before : after; }

template <class Map, class Key>
const typename Map::mapped_type* find_in(const Map& map, const Key& key) {
    const auto found = map.find(key);
    return found == map.end() ? nullptr : &found->second;
}

// `value` with `decimals` digits after the point.
std::string fixed_text(double value, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return buffer;
}

// Events per second: "0", "12.3", "4.5k", "6.7M".
std::string rate_text(double per_second) {
    if (!std::isfinite(per_second)) return "-";
    if (per_second < 0.05) return "0";
    if (per_second < 1e4) return fixed_text(per_second, 1);
    if (per_second < 1e7) return fixed_text(per_second / 1e3, 1) + "k";
    if (per_second < 1e10) return fixed_text(per_second / 1e6, 1) + "M";
    return fixed_text(per_second / 1e9, 1) + "G";
}

// Bytes in binary units: "512 B", "1.5 KiB", "3.0 MiB".
std::string bytes_text(double bytes) {
    if (!std::isfinite(bytes)) return "-";
    if (bytes < 1024) return fixed_text(std::max(bytes, 0.0), 0) + " B";
    static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double scaled = bytes / 1024;
    size_t unit = 0;
    while (scaled >= 1024 && unit + 1 < std::size(units)) {
        scaled /= 1024;
        ++unit;
    }
    return fixed_text(scaled, 1) + " " + units[unit];
}

std::string count_text(double count) {
    if (!std::isfinite(count)) return "-";
    return fixed_text(count, 0);
}

// A latency in seconds, in ms: "0.25 ms", "12.5 ms", "1.20 s"; "-" without observations.
std::string latency_text(double seconds) {
    if (std::isnan(seconds)) return "-";
    if (std::isinf(seconds)) return seconds > 0 ? "+Inf" : "-Inf";
    const double ms = seconds * 1e3;
    if (ms < 10) return fixed_text(ms, 2) + " ms";
    if (ms < 1000) return fixed_text(ms, 1) + " ms";
    return fixed_text(seconds, 2) + " s";
}

// Display width: UTF-8 continuation bytes take no column.
size_t width_of(std::string_view text) {
    return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
}

// A name from the broker as it may be printed: control characters (which could move the
// cursor or retitle the terminal) become '?', and a name wider than name_width_max keeps
// its first name_width_max - 1 characters and a '~'.
std::string printable(std::string_view name) {
    const bool cut = width_of(name) > name_width_max;
    std::string out;
    size_t characters = 0;
    for (const char c : name) {
        const auto byte = static_cast<unsigned char>(c);
        if ((byte & 0xC0) != 0x80 && ++characters == name_width_max && cut) {
            out.push_back('~');
            return out;
        }
        out.push_back(byte < 0x20 || byte == 0x7F ? '?' : c);
    }
    return out;
}

// Rows of cells, the first row the header; columns padded to their widest cell, the first
// `left_columns` left-aligned (names), the others right-aligned (numbers).
std::string table_text(const std::vector<std::vector<std::string>>& rows, size_t left_columns) {
    std::vector<size_t> widths;
    for (const auto& row : rows) {
        widths.resize(std::max(widths.size(), row.size()));
        for (size_t column = 0; column < row.size(); ++column)
            widths[column] = std::max(widths[column], width_of(row[column]));
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (size_t column = 0; column < row.size(); ++column) {
            const std::string padding(widths[column] - width_of(row[column]), ' ');
            if (column > 0) line += "  ";
            line += column < left_columns ? row[column] + padding : padding + row[column];
        }
        line.erase(line.find_last_not_of(' ') + 1);
        out += line + "\n";
    }
    return out;
}

// "TOPICS (top 10 by bytes in/s, of 42)" — or without the count when every row is shown.
std::string section_title(std::string_view name, std::string_view order, size_t shown,
                          size_t total) {
    std::string out(name);
    if (shown < total)
        out += " (top " + std::to_string(shown) + " of " + std::to_string(total) + " by " +
               std::string(order) + ")";
    return out + "\n";
}

double latency_p99(const top_snapshot& before, const top_snapshot& after,
                   const std::string& request) {
    const top_snapshot::latency* now = find_in(after.latencies, request);
    if (now == nullptr) return not_a_number;
    const top_snapshot::latency* then = find_in(before.latencies, request);
    // A count that went down is a restarted broker: everything it has is new.
    if (then == nullptr || now->count < then->count) return histogram_quantile(0.99, now->buckets);
    std::vector<histogram_bucket> delta;
    delta.reserve(now->buckets.size());
    for (const histogram_bucket& bucket : now->buckets) {
        const auto earlier = std::find_if(
            then->buckets.begin(), then->buckets.end(),
            [&](const histogram_bucket& b) { return b.upper_bound == bucket.upper_bound; });
        const double base = earlier == then->buckets.end() ? 0 : earlier->cumulative_count;
        delta.push_back({bucket.upper_bound, std::max(bucket.cumulative_count - base, 0.0)});
    }
    return histogram_quantile(0.99, delta);
}

std::string header_text(const top_snapshot& before, const top_snapshot& after, double seconds) {
    std::string out;
    // The broker: which node, whether it serves, and what it holds.
    out += after.node_id.empty() ? "broker" : "node " + printable(after.node_id);
    if (!after.up)
        out += " (no spate_up sample: not a spate broker?)";
    else
        out += *after.up >= 1 ? " serving" : " starting (not serving yet)";
    if (after.partition_count) {
        out += " | partitions " + count_text(*after.partition_count);
        if (after.leader_count) out += ", " + count_text(*after.leader_count) + " led";
        if (after.under_replicated)
            out += ", " + count_text(*after.under_replicated) + " under-replicated";
    }
    out += " | groups " + std::to_string(after.groups.size());
    double connections = 0;
    for (const auto& [shard, figures] : after.shards) connections += figures.connections_open;
    out += " | connections " + count_text(connections) + "\n";

    // Requests over the interval.
    double all_requests = 0;
    double all_before = 0;
    for (const auto& [name, count] : after.requests) {
        const double* earlier = find_in(before.requests, name);
        all_requests += increase(earlier == nullptr ? 0 : *earlier, count);
        all_before += count;
    }
    const auto request_rate = [&](const std::string& name) {
        const double* now = find_in(after.requests, name);
        const double* then = find_in(before.requests, name);
        if (now == nullptr) return 0.0;
        return increase(then == nullptr ? 0 : *then, *now) / seconds;
    };
    out += "requests/s  all " + rate_text(all_requests / seconds) + "  Produce " +
           rate_text(request_rate("Produce")) + "  Fetch " + rate_text(request_rate("Fetch")) +
           "  errors " + rate_text(increase(before.errors, after.errors) / seconds) + "\n";
    out += "p99 latency  Produce " + latency_text(latency_p99(before, after, "Produce")) +
           "  Fetch " + latency_text(latency_p99(before, after, "Fetch")) +
           "  (Fetch includes the wait for data)\n";

    // Totals since the broker started.
    double bytes_in = 0;
    double messages_in = 0;
    double bytes_out = 0;
    for (const auto& [name, topic] : after.topics) {
        bytes_in += topic.bytes_in;
        messages_in += topic.messages_in;
        bytes_out += topic.bytes_out;
    }
    out += "since start  " + count_text(all_before) + " requests, " + count_text(messages_in) +
           " messages in, " + bytes_text(bytes_in) + " in, " + bytes_text(bytes_out) + " out";
    if (after.malformed_lines > 0)
        out += " (" + std::to_string(after.malformed_lines) + " malformed lines skipped)";
    return out + "\n";
}

std::string shards_text(const top_snapshot& before, const top_snapshot& after, double seconds) {
    std::vector<std::vector<std::string>> rows = {{"SHARD", "BUSY", "TURNS/S", "CONNECTIONS"}};
    for (const auto& [shard, now] : after.shards) {
        const top_snapshot::shard_figures* then = find_in(before.shards, shard);
        const top_snapshot::shard_figures zero;
        const top_snapshot::shard_figures& base = then == nullptr ? zero : *then;
        const double busy = increase(base.busy_seconds, now.busy_seconds) / seconds;
        rows.push_back({std::to_string(shard), fixed_text(busy * 100, 1) + "%",
                        rate_text(increase(base.loop_turns, now.loop_turns) / seconds),
                        count_text(now.connections_open)});
    }
    if (rows.size() == 1) return "SHARDS\n(none)\n";
    return "SHARDS\n" + table_text(rows, 1);
}

std::string topics_text(const top_snapshot& before, const top_snapshot& after, double seconds,
                        size_t rows_max) {
    struct row {
        const std::string* name;
        top_snapshot::topic_figures rate;
    };
    std::vector<row> rows;
    for (const auto& [name, now] : after.topics) {
        const top_snapshot::topic_figures* then = find_in(before.topics, name);
        const top_snapshot::topic_figures base =
            then == nullptr ? top_snapshot::topic_figures{} : *then;
        rows.push_back({&name,
                        {increase(base.bytes_in, now.bytes_in) / seconds,
                         increase(base.messages_in, now.messages_in) / seconds,
                         increase(base.bytes_out, now.bytes_out) / seconds}});
    }
    // Busiest first; idle topics by name, so that the table stays still when nothing moves.
    std::stable_sort(rows.begin(), rows.end(), [](const row& a, const row& b) {
        if (a.rate.bytes_in != b.rate.bytes_in) return a.rate.bytes_in > b.rate.bytes_in;
        if (a.rate.messages_in != b.rate.messages_in)
            return a.rate.messages_in > b.rate.messages_in;
        return a.rate.bytes_out > b.rate.bytes_out;
    });
    const size_t shown = std::min(rows.size(), rows_max);
    std::vector<std::vector<std::string>> cells = {
        {"TOPIC", "BYTES-IN/S", "MESSAGES-IN/S", "BYTES-OUT/S"}};
    for (size_t i = 0; i < shown; ++i)
        cells.push_back({printable(*rows[i].name), bytes_text(rows[i].rate.bytes_in),
                         rate_text(rows[i].rate.messages_in), bytes_text(rows[i].rate.bytes_out)});
    const std::string title = section_title("TOPICS", "bytes in/s", shown, rows.size());
    if (rows.empty()) return title + "(none)\n";
    return title + table_text(cells, 1);
}

std::string partitions_text(const top_snapshot& before, const top_snapshot& after, double seconds,
                            size_t rows_max) {
    struct row {
        const std::pair<std::string, int32_t>* key;
        double offsets_per_second;
        const top_snapshot::partition_figures* now;
    };
    std::vector<row> rows;
    for (const auto& [key, now] : after.partitions) {
        const top_snapshot::partition_figures* then = find_in(before.partitions, key);
        // The log end is a gauge, not a counter: it may go back (truncation), which is no
        // negative rate to show.
        const double growth = then == nullptr ? 0 : now.log_end_offset - then->log_end_offset;
        rows.push_back({&key, std::max(growth, 0.0) / seconds, &now});
    }
    std::stable_sort(rows.begin(), rows.end(), [](const row& a, const row& b) {
        if (a.offsets_per_second != b.offsets_per_second)
            return a.offsets_per_second > b.offsets_per_second;
        return a.now->size_bytes > b.now->size_bytes;
    });
    const size_t shown = std::min(rows.size(), rows_max);
    std::vector<std::vector<std::string>> cells = {
        {"TOPIC", "PARTITION", "OFFSETS/S", "LOG-END", "SIZE"}};
    for (size_t i = 0; i < shown; ++i)
        cells.push_back({printable(rows[i].key->first), std::to_string(rows[i].key->second),
                         rate_text(rows[i].offsets_per_second),
                         count_text(rows[i].now->log_end_offset),
                         bytes_text(rows[i].now->size_bytes)});
    const std::string title = section_title("PARTITIONS", "log end growth/s", shown, rows.size());
    if (rows.empty()) return title + "(none, or the broker's metrics_partition_labels is off)\n";
    return title + table_text(cells, 1);
}

std::string groups_text(const top_snapshot& after, size_t rows_max) {
    using entry = std::pair<const std::string*, const top_snapshot::group_figures*>;
    std::vector<entry> rows;
    for (const auto& [name, figures] : after.groups) rows.push_back({&name, &figures});
    // Most lag first; groups without a known lag after those with one.
    std::stable_sort(rows.begin(), rows.end(), [](const entry& a, const entry& b) {
        if (a.second->lag_known != b.second->lag_known) return a.second->lag_known;
        return a.second->lag > b.second->lag;
    });
    const size_t shown = std::min(rows.size(), rows_max);
    std::vector<std::vector<std::string>> cells = {{"GROUP", "STATE", "MEMBERS", "LAG"}};
    for (size_t i = 0; i < shown; ++i) {
        const top_snapshot::group_figures& g = *rows[i].second;
        cells.push_back({printable(*rows[i].first), g.state.empty() ? "-" : printable(g.state),
                         count_text(g.members), g.lag_known ? count_text(g.lag) : "-"});
    }
    const std::string title = section_title("GROUPS", "lag", shown, rows.size());
    if (rows.empty()) return title + "(none)\n";
    return title + table_text(cells, 2);
}

}  // namespace

double histogram_quantile(double quantile, std::span<const histogram_bucket> buckets) {
    if (std::isnan(quantile)) return not_a_number;
    if (quantile < 0) return -std::numeric_limits<double>::infinity();
    if (quantile > 1) return std::numeric_limits<double>::infinity();
    std::vector<histogram_bucket> sorted(buckets.begin(), buckets.end());
    std::sort(sorted.begin(), sorted.end(),
              [](const histogram_bucket& a, const histogram_bucket& b) {
                  return a.upper_bound < b.upper_bound;
              });
    if (sorted.size() < 2 || !std::isinf(sorted.back().upper_bound) ||
        sorted.back().upper_bound < 0)
        return not_a_number;
    for (size_t i = 1; i < sorted.size(); ++i)
        sorted[i].cumulative_count =
            std::max(sorted[i].cumulative_count, sorted[i - 1].cumulative_count);
    const double observations = sorted.back().cumulative_count;
    if (!(observations > 0)) return not_a_number;
    double rank = quantile * observations;
    size_t b = 0;
    while (b + 1 < sorted.size() && sorted[b].cumulative_count < rank) ++b;
    if (b + 1 == sorted.size()) return sorted[b - 1].upper_bound;
    if (b == 0 && sorted[0].upper_bound <= 0) return sorted[0].upper_bound;
    double start = 0;
    double count = sorted[b].cumulative_count;
    if (b > 0) {
        start = sorted[b - 1].upper_bound;
        count -= sorted[b - 1].cumulative_count;
        rank -= sorted[b - 1].cumulative_count;
    }
    return start + (sorted[b].upper_bound - start) * (rank / count);
}

top_snapshot read_top_snapshot(const prometheus_scrape& scrape) {
    top_snapshot out;
    out.malformed_lines = scrape.malformed_lines;
    for (const prometheus_sample& s : scrape.samples) {
        const std::string_view name = s.name;
        if (name == "spate_up") {
            out.up = s.value;
            out.node_id = std::string(s.label("node_id"));
        } else if (name == "kafka_network_requestmetrics_requests_total") {
            out.requests[std::string(s.label("request"))] += s.value;
        } else if (name == "kafka_network_requestmetrics_errors_total") {
            out.errors += s.value;
        } else if (name == "spate_request_latency_seconds_bucket") {
            const auto bound = parse_bound(s.label("le"));
            if (!bound) continue;
            out.latencies[std::string(s.label("request"))].buckets.push_back({*bound, s.value});
        } else if (name == "spate_request_latency_seconds_count") {
            out.latencies[std::string(s.label("request"))].count = s.value;
        } else if (name == "kafka_server_brokertopicmetrics_bytesin_total") {
            out.topics[std::string(s.label("topic"))].bytes_in = s.value;
        } else if (name == "kafka_server_brokertopicmetrics_messagesin_total") {
            out.topics[std::string(s.label("topic"))].messages_in = s.value;
        } else if (name == "kafka_server_brokertopicmetrics_bytesout_total") {
            out.topics[std::string(s.label("topic"))].bytes_out = s.value;
        } else if (name == "kafka_log_log_logendoffset" || name == "kafka_log_log_size") {
            const auto partition = parse_int32(s.label("partition"));
            if (!partition) continue;
            auto& figures = out.partitions[{std::string(s.label("topic")), *partition}];
            (name == "kafka_log_log_size" ? figures.size_bytes : figures.log_end_offset) = s.value;
        } else if (name == "spate_group_members") {
            out.groups[std::string(s.label("group"))].members = s.value;
        } else if (name == "spate_group_state") {
            if (s.value >= 1) out.groups[std::string(s.label("group"))].state = s.label("state");
        } else if (name == "spate_group_lag") {
            auto& group = out.groups[std::string(s.label("group"))];
            group.lag += s.value;
            group.lag_known = true;
        } else if (name == "spate_shard_busy_seconds_total" ||
                   name == "spate_shard_loop_turns_total" || name == "spate_connections_open") {
            const auto shard = parse_int32(s.label("shard"));
            if (!shard) continue;
            auto& figures = out.shards[*shard];
            if (name == "spate_shard_busy_seconds_total")
                figures.busy_seconds = s.value;
            else if (name == "spate_shard_loop_turns_total")
                figures.loop_turns = s.value;
            else
                figures.connections_open = s.value;
        } else if (name == "kafka_server_replicamanager_partitioncount") {
            out.partition_count = s.value;
        } else if (name == "kafka_server_replicamanager_leadercount") {
            out.leader_count = s.value;
        } else if (name == "kafka_server_replicamanager_underreplicatedpartitions") {
            out.under_replicated = s.value;
        }
    }
    for (auto& [request, latency] : out.latencies)
        std::sort(latency.buckets.begin(), latency.buckets.end(),
                  [](const histogram_bucket& a, const histogram_bucket& b) {
                      return a.upper_bound < b.upper_bound;
                  });
    return out;
}

std::string format_top(const top_snapshot& before, const top_snapshot& after, double seconds,
                       const top_view_options& options) {
    // Two scrapes in the same instant have no rate; a floor keeps the division finite.
    seconds = std::max(seconds, 1e-3);
    return header_text(before, after, seconds) + "\n" + shards_text(before, after, seconds) + "\n" +
           topics_text(before, after, seconds, options.rows) + "\n" +
           partitions_text(before, after, seconds, options.rows) + "\n" +
           groups_text(after, options.rows);
}

}  // namespace spate::tools
