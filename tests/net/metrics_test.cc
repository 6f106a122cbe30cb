// Prometheus text exposition: exact text of samples and families, escaping, number
// spellings, and histograms (cumulative buckets, `le` in seconds, merge).
#include "net/metrics.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

using namespace spate::net;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream stream(text);
    for (std::string line; std::getline(stream, line);) lines.push_back(line);
    return lines;
}

// The text after the last space of a sample line: its value.
std::string value_of(const std::string& line) { return line.substr(line.rfind(' ') + 1); }

// The `le` label's value of a _bucket line.
std::string le_of(const std::string& line) {
    const size_t start = line.find("le=\"") + 4;
    return line.substr(start, line.find('"', start) - start);
}

}  // namespace

TEST_CASE("a counter and a gauge, without labels and with") {
    std::string out;
    exposition_writer writer(out);
    writer.family("spate_requests_total", "Requests received.", metric_type::counter);
    writer.sample("spate_requests_total", {}, uint64_t{42});
    writer.sample("spate_requests_total", {{"api", "produce"}, {"shard", "0"}}, 7);
    writer.family("spate_connections", "Open connections.", metric_type::gauge);
    writer.sample("spate_connections", {}, -3);
    writer.sample("spate_connections", {{"listener", "kafka"}}, 2.5);
    CHECK(out ==
          "# HELP spate_requests_total Requests received.\n"
          "# TYPE spate_requests_total counter\n"
          "spate_requests_total 42\n"
          "spate_requests_total{api=\"produce\",shard=\"0\"} 7\n"
          "# HELP spate_connections Open connections.\n"
          "# TYPE spate_connections gauge\n"
          "spate_connections -3\n"
          "spate_connections{listener=\"kafka\"} 2.5\n");
}

TEST_CASE("labels built at run time") {
    std::string out;
    exposition_writer writer(out);
    std::vector<label> labels = {{"topic", "orders"}};
    labels.push_back({"partition", "3"});
    writer.sample("spate:bytes", labels, uint64_t{10});
    CHECK(out == "spate:bytes{topic=\"orders\",partition=\"3\"} 10\n");
}

TEST_CASE("label values escape backslash, double quote and newline; HELP escapes two") {
    std::string out;
    exposition_writer writer(out);
    writer.family("spate_x", "a \\ back\nslash \"quoted\"", metric_type::gauge);
    writer.sample("spate_x", {{"path", "C:\\dir \"q\"\nnext"}}, 1);
    CHECK(out ==
          "# HELP spate_x a \\\\ back\\nslash \"quoted\"\n"
          "# TYPE spate_x gauge\n"
          "spate_x{path=\"C:\\\\dir \\\"q\\\"\\nnext\"} 1\n");
}

TEST_CASE(
    "integers print exactly, doubles round-trip, NaN and infinities as Prometheus spells them") {
    std::string out;
    exposition_writer writer(out);
    writer.sample("a", {}, std::numeric_limits<uint64_t>::max());
    writer.sample("b", {}, std::numeric_limits<int64_t>::min());
    writer.sample("c", {}, 0.1);
    writer.sample("d", {}, 1e-300);
    writer.sample("e", {}, std::numeric_limits<double>::quiet_NaN());
    writer.sample("f", {}, std::numeric_limits<double>::infinity());
    writer.sample("g", {}, -std::numeric_limits<double>::infinity());
    writer.sample("h", {}, 1.0f);
    CHECK(out ==
          "a 18446744073709551615\n"
          "b -9223372036854775808\n"
          "c 0.1\n"
          "d 1e-300\n"
          "e NaN\n"
          "f +Inf\n"
          "g -Inf\n"
          "h 1\n");
    const double third = 1.0 / 3.0;
    std::string precise;
    exposition_writer(precise).sample("x", {}, third);
    CHECK(std::strtod(value_of(precise.substr(0, precise.size() - 1)).c_str(), nullptr) == third);
}

TEST_CASE("latency_histogram records into the bucket whose bound includes the value") {
    latency_histogram histogram;
    histogram.record(0);         // bucket 0 (le 10 µs)
    histogram.record(10);        // bucket 0: bounds are inclusive
    histogram.record(11);        // bucket 1 (le 25 µs)
    histogram.record(10000000);  // the last bounded bucket (le 10 s)
    histogram.record(10000001);  // +Inf
    CHECK(histogram.buckets[0] == 2);
    CHECK(histogram.buckets[1] == 1);
    CHECK(histogram.buckets[latency_histogram::bucket_count - 2] == 1);
    CHECK(histogram.buckets[latency_histogram::bucket_count - 1] == 1);
    CHECK(histogram.count == 5);
    CHECK(histogram.sum_us == 20000022);
}

TEST_CASE("a histogram's buckets are cumulative with increasing le in seconds") {
    latency_histogram histogram;
    histogram.record(5);
    histogram.record(300);
    histogram.record(300);
    histogram.record(2000000);
    histogram.record(60000000);  // a minute: only in +Inf
    std::string out;
    exposition_writer writer(out);
    writer.family("spate_latency_seconds", "Latency.", metric_type::histogram);
    writer.histogram("spate_latency_seconds", {{"api", "fetch"}}, histogram);

    const auto lines = lines_of(out);
    REQUIRE(lines.size() == 2 + latency_histogram::bucket_count + 2);
    CHECK(lines[2] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"0.00001\"} 1");
    CHECK(lines[3] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"0.000025\"} 1");
    CHECK(lines[7] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"0.0005\"} 3");
    CHECK(lines[17] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"1\"} 3");
    CHECK(lines[18] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"2.5\"} 4");
    CHECK(lines[20] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"10\"} 4");
    CHECK(lines[21] == "spate_latency_seconds_bucket{api=\"fetch\",le=\"+Inf\"} 5");
    CHECK(lines[22] == "spate_latency_seconds_sum{api=\"fetch\"} 62.000605");
    CHECK(lines[23] == "spate_latency_seconds_count{api=\"fetch\"} 5");

    double previous_le = -1;
    uint64_t previous_count = 0;
    for (size_t i = 2; i < 2 + latency_histogram::bucket_count - 1; ++i) {
        const double le = std::strtod(le_of(lines[i]).c_str(), nullptr);
        const uint64_t count = std::strtoull(value_of(lines[i]).c_str(), nullptr, 10);
        CHECK(le > previous_le);
        CHECK(le * 1e6 == doctest::Approx(latency_histogram::bucket_bounds_us[i - 2]));
        CHECK(count >= previous_count);
        previous_le = le;
        previous_count = count;
    }
    CHECK(value_of(lines[21]) == value_of(lines[23]));
}

TEST_CASE("a histogram without labels has only le in braces") {
    std::string out;
    exposition_writer(out).histogram("h", {}, latency_histogram{});
    const auto lines = lines_of(out);
    CHECK(lines.front() == "h_bucket{le=\"0.00001\"} 0");
    CHECK(lines[latency_histogram::bucket_count - 1] == "h_bucket{le=\"+Inf\"} 0");
    CHECK(lines[latency_histogram::bucket_count] == "h_sum 0");
    CHECK(lines.back() == "h_count 0");
}

TEST_CASE("merge adds two shards' histograms bucket by bucket") {
    latency_histogram first;
    first.record(20);
    first.record(4000);
    latency_histogram second;
    second.record(20);
    second.record(20000000);
    first.merge(second);
    CHECK(first.buckets[1] == 2);  // le 25 µs
    CHECK(first.buckets[8] == 1);  // le 5 ms
    CHECK(first.buckets[latency_histogram::bucket_count - 1] == 1);
    CHECK(first.count == 4);
    CHECK(first.sum_us == 20004040);
    CHECK(second.count == 2);
}
