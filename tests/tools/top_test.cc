// spatectl top: the Prometheus text parser, histogram quantiles, the HTTP client (its
// response parsing, and one real GET over loopback) and the view made of two scrapes.

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tools/http_get.h"
#include "tools/prometheus_text.h"
#include "tools/top_view.h"

using namespace spate::tools;

namespace {

prometheus_sample parse_one(std::string_view line) {
    prometheus_sample sample;
    REQUIRE(parse_prometheus_line(line, sample) == prometheus_line_kind::sample);
    return sample;
}

bool malformed(std::string_view line) {
    prometheus_sample sample;
    return parse_prometheus_line(line, sample) == prometheus_line_kind::malformed;
}

constexpr double inf = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("samples without labels, with a timestamp, with blanks around the tokens") {
    auto s = parse_one("spate_storage_rolls_total 42");
    CHECK(s.name == "spate_storage_rolls_total");
    CHECK(s.labels.empty());
    CHECK(s.value == 42);
    CHECK_FALSE(s.timestamp_ms.has_value());

    s = parse_one("  up:recorded_rule \t 1.5  1700000000000  ");
    CHECK(s.name == "up:recorded_rule");
    CHECK(s.value == 1.5);
    REQUIRE(s.timestamp_ms.has_value());
    CHECK(*s.timestamp_ms == 1700000000000);

    s = parse_one("name{} 3");
    CHECK(s.labels.empty());
    CHECK(s.value == 3);

    s = parse_one("windows 7\r");  // CRLF line ends
    CHECK(s.value == 7);
    CHECK(parse_one("negative_time 1 -5").timestamp_ms == -5);
}

TEST_CASE("label values unescape \\\\, \\\" and \\n, and may hold any other character") {
    const auto s = parse_one(R"(m{a="back\\slash",b="quote\"d",c="new\nline",d="}{,= #"} 1)");
    REQUIRE(s.labels.size() == 4);
    CHECK(s.label("a") == "back\\slash");
    CHECK(s.label("b") == "quote\"d");
    CHECK(s.label("c") == "new\nline");
    CHECK(s.label("d") == "}{,= #");
    CHECK(s.label("missing").empty());
    CHECK(parse_one(R"(m{ a = "x" , b="y", } 2)").labels ==
          std::vector<prometheus_label>{{"a", "x"}, {"b", "y"}});
    CHECK(parse_one(R"(m{a="\\"} 1)").label("a") == "\\");
    CHECK(parse_one("m{a=\"caf\xC3\xA9\"} 1").label("a") == "caf\xC3\xA9");
}

TEST_CASE("values: integers, decimals, exponents, +Inf, -Inf and NaN") {
    CHECK(parse_one("m 0").value == 0);
    CHECK(parse_one("m -12").value == -12);
    CHECK(parse_one("m +3.25").value == 3.25);
    CHECK(parse_one("m 1e-05").value == doctest::Approx(1e-5));
    CHECK(parse_one("m 2.5E+3").value == 2500);
    CHECK(parse_one("m +Inf").value == inf);
    CHECK(parse_one("m -Inf").value == -inf);
    CHECK(parse_one("m inf").value == inf);
    CHECK(std::isnan(parse_one("m NaN").value));
    CHECK(malformed("m 1e999"));  // beyond a double
    CHECK(malformed("m 0x10"));
    CHECK(malformed("m +-1"));
    CHECK(malformed("m 1.2.3"));
    CHECK(malformed("m"));
    CHECK(malformed("m 1 2 3"));
    CHECK(malformed("m 1 1.5"));  // timestamps are integers
}

TEST_CASE("histogram lines parse with le last, +Inf included") {
    const auto text =
        "# HELP spate_request_latency_seconds From arrival to response.\n"
        "# TYPE spate_request_latency_seconds histogram\n"
        "spate_request_latency_seconds_bucket{request=\"Produce\",le=\"1e-05\"} 0\n"
        "spate_request_latency_seconds_bucket{request=\"Produce\",le=\"0.0025\"} 7\n"
        "spate_request_latency_seconds_bucket{request=\"Produce\",le=\"+Inf\"} 9\n"
        "spate_request_latency_seconds_sum{request=\"Produce\"} 0.0123\n"
        "spate_request_latency_seconds_count{request=\"Produce\"} 9\n";
    const auto scrape = parse_prometheus_text(text);
    CHECK(scrape.malformed_lines == 0);
    REQUIRE(scrape.samples.size() == 5);
    CHECK(scrape.samples[0].name == "spate_request_latency_seconds_bucket");
    CHECK(scrape.samples[0].label("le") == "1e-05");
    CHECK(scrape.samples[2].label("le") == "+Inf");
    CHECK(scrape.samples[2].value == 9);
    CHECK(scrape.samples[3].value == doctest::Approx(0.0123));
    CHECK(scrape.samples[4].label("request") == "Produce");
}

TEST_CASE("comments and blank lines are skipped; garbage lines are counted, never fatal") {
    const auto scrape = parse_prometheus_text(
        "# just a comment\n"
        "\n"
        "   \t\n"
        "#TYPE no_space counter\n"
        "good_one 1\n"
        "9starts_with_digit 1\n"
        "name-with-dash 1\n"
        "m{a=\"unterminated} 1\n"
        "m{a=\"bad escape \\t\"} 1\n"
        "m{a=\"x\",a=\"y\"} 1\n"
        "m{=\"no name\"} 1\n"
        "m{a=unquoted} 1\n"
        "m{a=\"x\" 1\n"
        "m{a=\"x\"}\n"
        "m not_a_number\n"
        "<html><body>502 Bad Gateway</body></html>\n"
        "good_two{x=\"y\"} 2");  // no final newline
    CHECK(scrape.malformed_lines == 11);
    REQUIRE(scrape.samples.size() == 2);
    CHECK(scrape.samples[0].name == "good_one");
    CHECK(scrape.samples[1].label("x") == "y");
}

TEST_CASE("random bytes and cut-off lines never crash the parser") {
    // A fixed generator, so that a failure reproduces.
    uint64_t state = 0x9E3779B97F4A7C15u;
    const auto next = [&state] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    const std::string alphabet = "m_{}=\",\\ne+-.0123456789 \t\r\n#InfNa\x01\xFF";
    size_t lines = 0;
    for (int round = 0; round < 2000; ++round) {
        std::string text;
        const size_t length = next() % 80;
        for (size_t i = 0; i < length; ++i) text.push_back(alphabet[next() % alphabet.size()]);
        const auto scrape = parse_prometheus_text(text);
        lines += scrape.samples.size() + scrape.malformed_lines;
    }
    CHECK(lines > 0);
    // A line cut anywhere before its value is malformed; whole, it is a sample.
    const std::string line = R"(kafka_log_log_size{topic="t\"1",partition="0"} 1.5e3 17)";
    const size_t value_at = line.find("} ") + 2;
    for (size_t cut = 1; cut <= value_at; ++cut) CHECK(malformed(line.substr(0, cut)));
    CHECK(parse_one(line).value == 1500);
    CHECK(parse_one(line).label("topic") == "t\"1");
}

TEST_CASE("histogram_quantile interpolates within the bucket, as PromQL does") {
    const std::vector<histogram_bucket> buckets = {{0.1, 10}, {0.2, 20}, {inf, 20}};
    CHECK(histogram_quantile(0.5, buckets) == doctest::Approx(0.1));
    CHECK(histogram_quantile(0.75, buckets) == doctest::Approx(0.15));
    CHECK(histogram_quantile(0.25, buckets) == doctest::Approx(0.05));  // from 0 in the first
    CHECK(histogram_quantile(1.0, buckets) == doctest::Approx(0.2));
    // The rank in the +Inf bucket: the highest finite bound.
    const std::vector<histogram_bucket> tail = {{0.1, 10}, {0.2, 20}, {inf, 40}};
    CHECK(histogram_quantile(0.99, tail) == doctest::Approx(0.2));
    // Any order in, sorted by bound.
    const std::vector<histogram_bucket> shuffled = {{inf, 20}, {0.2, 20}, {0.1, 10}};
    CHECK(histogram_quantile(0.75, shuffled) == doctest::Approx(0.15));
    // Counts that dip are raised to be monotonic.
    const std::vector<histogram_bucket> dipping = {{0.1, 10}, {0.2, 8}, {inf, 10}};
    CHECK(histogram_quantile(0.5, dipping) == doctest::Approx(0.05));

    CHECK(std::isnan(histogram_quantile(0.99, std::vector<histogram_bucket>{{0.1, 0}, {inf, 0}})));
    CHECK(std::isnan(histogram_quantile(0.99, std::vector<histogram_bucket>{{0.1, 5}, {1, 5}})));
    CHECK(std::isnan(histogram_quantile(0.99, std::vector<histogram_bucket>{{inf, 5}})));
    CHECK(std::isnan(histogram_quantile(0.99, std::vector<histogram_bucket>{})));
    CHECK(histogram_quantile(-1, buckets) == -inf);
    CHECK(histogram_quantile(2, buckets) == inf);
}

TEST_CASE("metrics targets: HOST:PORT, an optional http:// and path") {
    auto target = parse_http_target("127.0.0.1:9646", "/metrics");
    REQUIRE(target);
    CHECK(target.value() == http_target{{"127.0.0.1", 9646}, "/metrics"});
    CHECK(http_target_text(target.value()) == "http://127.0.0.1:9646/metrics");
    target = parse_http_target("HTTP://[::1]:80/other/path", "/metrics");
    REQUIRE(target);
    CHECK(target.value() == http_target{{"::1", 80}, "/other/path"});
    CHECK(http_target_text(target.value()) == "http://[::1]:80/other/path");
    CHECK(parse_http_target("https://host:443", "/metrics").failure().code == usage_error_code);
    CHECK(parse_http_target("host", "/metrics").failure().code == usage_error_code);
    CHECK(parse_http_target("host:1/a b", "/metrics").failure().code == usage_error_code);
}

TEST_CASE("responses: Content-Length, chunked, read-to-close and their malformations") {
    const size_t max = 1 << 20;
    auto r = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, extra", max);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->reason == "OK");
    CHECK(r->body == "hello");

    r = parse_http_response(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
        max);
    REQUIRE(r);
    CHECK(r->body == "hello, world");

    r = parse_http_response("HTTP/1.0 404 Not Found\n\nno such path\n", max);  // bare LFs
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->reason == "Not Found");
    CHECK(r->body == "no such path\n");

    CHECK(parse_http_response("HTTP/1.1 204\r\n\r\n", max)->reason.empty());

    const auto message = [&](std::string_view raw, size_t limit = 1 << 20) {
        auto parsed = parse_http_response(raw, limit);
        REQUIRE_FALSE(parsed);
        return parsed.failure().message;
    };
    CHECK(message("").find("closed without a response") != std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nContent-").find("inside its head") != std::string::npos);
    CHECK(message("SSH-2.0-OpenSSH\r\n\r\n").find("not an HTTP response") != std::string::npos);
    CHECK(message("HTTP/1.1 2x0 OK\r\n\r\n").find("status line") != std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
              .find("shorter than its Content-Length (5 of 10") != std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").find("Content-Length") !=
          std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
              .find("two different") != std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
              .find("inside a chunk") != std::string::npos);
    CHECK(
        message("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").find("chunk size") !=
        std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
              .find("before its last chunk") != std::string::npos);
    // Bodies over the bound are errors, announced sizes checked before anything is kept.
    CHECK(message("HTTP/1.1 200 OK\r\n\r\n0123456789", 5).find("larger than 5") !=
          std::string::npos);
    CHECK(
        message("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 5).find("larger than") !=
        std::string::npos);
    CHECK(message("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFF\r\n", 5)
              .find("larger than") != std::string::npos);
    CHECK(message(std::string(http_head_bytes_max + 10, 'x')).find("head is larger") !=
          std::string::npos);
}

namespace {

// A one-shot HTTP server on loopback: accepts one connection, reads the request head,
// writes `response` and closes. The request it read is kept for the test to check.
class one_shot_server {
public:
    explicit one_shot_server(std::string response) {
        _listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(_listener >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(_listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(_listener, 1) == 0);
        socklen_t length = sizeof address;
        REQUIRE(::getsockname(_listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
        _port = ntohs(address.sin_port);
        _thread = std::thread([this, response = std::move(response)] {
            const int fd = ::accept(_listener, nullptr, nullptr);
            if (fd < 0) return;
            char buffer[4096];
            while (_request.find("\r\n\r\n") == std::string::npos) {
                const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
                if (n <= 0) break;
                _request.append(buffer, static_cast<size_t>(n));
            }
            (void)::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
            ::close(fd);
        });
    }
    one_shot_server(const one_shot_server&) = delete;
    one_shot_server& operator=(const one_shot_server&) = delete;
    ~one_shot_server() {
        if (_thread.joinable()) _thread.join();
        ::close(_listener);
    }

    uint16_t port() const { return _port; }
    // The request as received; call after the exchange.
    const std::string& request() {
        if (_thread.joinable()) _thread.join();
        return _request;
    }

private:
    int _listener = -1;
    uint16_t _port = 0;
    std::thread _thread;
    std::string _request;
};

}  // namespace

TEST_CASE("http_get over loopback: the body of a 200, an error naming any other status") {
    {
        one_shot_server server("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nup 1\n");
        auto body = http_get({{"127.0.0.1", server.port()}, "/metrics"}, {.timeout_ms = 5000});
        REQUIRE(body);
        CHECK(body.value() == "up 1\n");
        const std::string& request = server.request();
        CHECK(request.rfind("GET /metrics HTTP/1.1\r\n", 0) == 0);
        CHECK(request.find("\r\nConnection: close\r\n") != std::string::npos);
        CHECK(request.find("\r\nHost: 127.0.0.1:" + std::to_string(server.port()) + "\r\n") !=
              std::string::npos);
    }
    {
        one_shot_server server("HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n");
        auto body = http_get({{"127.0.0.1", server.port()}, "/nope"}, {.timeout_ms = 5000});
        REQUIRE_FALSE(body);
        CHECK(body.failure().message.find("/nope: answered 404 Not Found: not found") !=
              std::string::npos);
    }
    {
        // A port nothing listens on: the listener is closed before the GET.
        uint16_t port = 0;
        {
            one_shot_server server("");
            port = server.port();
            (void)http_get({{"127.0.0.1", port}, "/"}, {.timeout_ms = 5000});
        }
        auto body = http_get({{"127.0.0.1", port}, "/metrics"}, {.timeout_ms = 5000});
        REQUIRE_FALSE(body);
        CHECK(body.failure().message.find("cannot connect") != std::string::npos);
    }
}

namespace {

// An exposition in the shape broker/metrics/exposition.cc writes, with the figures that
// move between two scrapes as parameters.
std::string exposition(double produce_requests, double produce_le_1ms, double bytes_in,
                       double messages_in, double log_end, double busy_seconds, double turns) {
    const auto number = [](double v) { return std::to_string(v); };
    std::string text;
    text += "# TYPE spate_up gauge\nspate_up{node_id=\"3\"} 1\n";
    text += "kafka_network_requestmetrics_requests_total{request=\"Produce\"} " +
            number(produce_requests) + "\n";
    text += "kafka_network_requestmetrics_requests_total{request=\"Fetch\"} 10\n";
    text += "kafka_network_requestmetrics_errors_total{request=\"Produce\",error=\"X\"} 1\n";
    // Produce: every request at or under 1 ms, half of them at or under 0.5 ms.
    text += "spate_request_latency_seconds_bucket{request=\"Produce\",le=\"0.0005\"} " +
            number(produce_le_1ms / 2) + "\n";
    text += "spate_request_latency_seconds_bucket{request=\"Produce\",le=\"0.001\"} " +
            number(produce_le_1ms) + "\n";
    text += "spate_request_latency_seconds_bucket{request=\"Produce\",le=\"+Inf\"} " +
            number(produce_le_1ms) + "\n";
    text +=
        "spate_request_latency_seconds_count{request=\"Produce\"} " + number(produce_le_1ms) + "\n";
    for (const char* topic : {"busy", "idle"}) {
        const bool busy = std::string_view(topic) == "busy";
        text += std::string("kafka_server_brokertopicmetrics_bytesin_total{topic=\"") + topic +
                "\"} " + number(busy ? bytes_in : 5) + "\n";
        text += std::string("kafka_server_brokertopicmetrics_messagesin_total{topic=\"") + topic +
                "\"} " + number(busy ? messages_in : 1) + "\n";
        text += std::string("kafka_server_brokertopicmetrics_bytesout_total{topic=\"") + topic +
                "\"} 0\n";
    }
    text += "kafka_log_log_logendoffset{topic=\"busy\",partition=\"1\"} " + number(log_end) + "\n";
    text += "kafka_log_log_logendoffset{topic=\"idle\",partition=\"0\"} 1\n";
    text += "kafka_log_log_size{topic=\"busy\",partition=\"1\"} 2097152\n";
    text += "kafka_log_log_size{topic=\"idle\",partition=\"0\"} 70\n";
    text += "kafka_server_replicamanager_partitioncount 2\n";
    text += "kafka_server_replicamanager_leadercount 2\n";
    text += "kafka_server_replicamanager_underreplicatedpartitions 0\n";
    text += "spate_group_members{group=\"g1\"} 2\n";
    text += "spate_group_state{group=\"g1\",state=\"Stable\"} 1\n";
    text += "spate_group_lag{group=\"g1\",topic=\"busy\",partition=\"1\"} 40\n";
    text += "spate_group_lag{group=\"g1\",topic=\"idle\",partition=\"0\"} 2\n";
    text += "spate_group_members{group=\"evil\\n\x1b[2J\"} 0\n";
    text += "spate_group_state{group=\"evil\\n\x1b[2J\",state=\"Empty\"} 1\n";
    text += "spate_shard_busy_seconds_total{shard=\"0\"} " + number(busy_seconds) + "\n";
    text += "spate_shard_loop_turns_total{shard=\"0\"} " + number(turns) + "\n";
    text += "spate_connections_open{shard=\"0\"} 4\n";
    text += "spate_shard_busy_seconds_total{shard=\"1\"} 0\n";
    text += "spate_shard_loop_turns_total{shard=\"1\"} 0\n";
    text += "spate_connections_open{shard=\"1\"} 1\n";
    text += "this is not a sample\n";
    return text;
}

// The view with every run of blanks made one, to check rows apart from their padding.
std::string squeezed(std::string_view text) {
    std::string out;
    for (const char c : text)
        if (c != ' ' || (!out.empty() && out.back() != ' ')) out.push_back(c);
    return out;
}

top_snapshot snapshot_of(const std::string& text) {
    return read_top_snapshot(parse_prometheus_text(text));
}

}  // namespace

TEST_CASE("a snapshot keeps the figures top shows") {
    const auto s = snapshot_of(exposition(100, 100, 2048, 20, 500, 0.25, 1000));
    REQUIRE(s.up.has_value());
    CHECK(*s.up == 1);
    CHECK(s.node_id == "3");
    CHECK(s.requests.at("Produce") == 100);
    CHECK(s.errors == 1);
    REQUIRE(s.latencies.at("Produce").buckets.size() == 3);
    CHECK(s.latencies.at("Produce").buckets.back().upper_bound == inf);
    CHECK(s.topics.at("busy").bytes_in == 2048);
    CHECK(s.partitions.at({"busy", 1}).size_bytes == 2097152);
    CHECK(s.groups.at("g1").state == "Stable");
    CHECK(s.groups.at("g1").lag == 42);
    CHECK(s.shards.at(0).connections_open == 4);
    CHECK(s.malformed_lines == 1);
}

TEST_CASE("the view shows rates over the interval, busiest first, names made printable") {
    const auto before = snapshot_of(exposition(100, 100, 2048, 20, 500, 0.25, 1000));
    const auto after = snapshot_of(exposition(300, 300, 2048 + 2 * 10240, 220, 700, 0.75, 3000));
    const std::string view = format_top(before, after, 2.0, {.rows = 10});
    INFO(view);
    CHECK(view.find("node 3 serving | partitions 2, 2 led, 0 under-replicated | groups 2 | "
                    "connections 5") != std::string::npos);
    CHECK(view.find("requests/s  all 100.0  Produce 100.0  Fetch 0  errors 0") !=
          std::string::npos);
    // 200 new Produce requests, half under 0.5 ms, all under 1 ms: p99 at 0.99 ms.
    CHECK(view.find("p99 latency  Produce 0.99 ms  Fetch -") != std::string::npos);
    CHECK(view.find("since start  310 requests, 221 messages in") != std::string::npos);
    CHECK(view.find("(1 malformed lines skipped)") != std::string::npos);
    // Shard 0 worked 0.5 s of 2 s: 25 %, 1000 turns/s. Columns padded to the widest cell,
    // names left, numbers right.
    CHECK(view.find("SHARDS\n"
                    "SHARD   BUSY  TURNS/S  CONNECTIONS\n"
                    "0      25.0%   1000.0            4\n"
                    "1       0.0%        0            1\n") != std::string::npos);
    const std::string rows = squeezed(view);
    CHECK(rows.find("\nbusy 10.0 KiB 100.0 0 B\nidle 0 B 0 0 B\n") != std::string::npos);
    CHECK(rows.find("\nbusy 1 100.0 700 2.0 MiB\nidle 0 0 1 70 B\n") != std::string::npos);
    CHECK(rows.find("\ng1 Stable 2 42\n") != std::string::npos);
    // The group id's newline and escape are shown as '?', not sent to the terminal.
    CHECK(view.find('\x1b') == std::string::npos);
    CHECK(rows.find("\nevil??[2J Empty 0 -\n") != std::string::npos);

    // --rows bounds each table and says how many there were.
    const std::string one_row = format_top(before, after, 2.0, {.rows = 1});
    CHECK(one_row.find("TOPICS (top 1 of 2 by bytes in/s)") != std::string::npos);
    CHECK(one_row.find("idle") == std::string::npos);
    CHECK(one_row.find("GROUPS (top 1 of 2 by lag)") != std::string::npos);
}

TEST_CASE("counters that went down were reset: their value is the increase") {
    const auto before = snapshot_of(exposition(1000, 1000, 1 << 20, 5000, 9000, 100, 1e6));
    const auto after = snapshot_of(exposition(50, 50, 1024, 10, 10, 0.5, 500));
    const std::string view = format_top(before, after, 1.0, {.rows = 10});
    INFO(view);
    CHECK(view.find("Produce 50.0") != std::string::npos);
    const std::string rows = squeezed(view);
    CHECK(rows.find("\nbusy 1.0 KiB 10.0 0 B\n") != std::string::npos);
    CHECK(rows.find("\n0 50.0% 500.0 4\n") != std::string::npos);
}

TEST_CASE("an empty scrape prints every section, empty") {
    const std::string view = format_top(top_snapshot{}, top_snapshot{}, 1.0, {});
    CHECK(view.find("no spate_up sample") != std::string::npos);
    CHECK(view.find("SHARDS\n(none)") != std::string::npos);
    CHECK(view.find("TOPICS\n(none)") != std::string::npos);
    CHECK(view.find("PARTITIONS\n(none, or the broker's metrics_partition_labels is off)") !=
          std::string::npos);
    CHECK(view.find("GROUPS\n(none)") != std::string::npos);
}
