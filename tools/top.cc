// top: a live view of one broker from its Prometheus endpoint (metrics_listen), for an
// operator without Grafana. It scrapes /metrics every --interval-ms, keeps the previous
// scrape and prints the view of the interval between the two (tools/top_view.h), clearing
// the terminal before each. With --once, or when stdout is not a terminal, it prints the
// view of one interval (two scrapes --interval-ms apart) and exits.
//
// The first scrape failing is an error (exit 1): the endpoint is wrong or down. Once the
// view runs, a failed scrape is shown on the screen and retried at the next tick, the last
// good scrape staying the base of the rates, so a broker restart does not end the view.

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <thread>

#include "tools/commands.h"
#include "tools/http_get.h"
#include "tools/prometheus_text.h"
#include "tools/top_view.h"

namespace spate::tools {

namespace {

using clock_type = std::chrono::steady_clock;

// The refresh interval: below 100 ms the scrapes themselves would load the broker's shard 0
// (a scrape gathers every shard's figures); above an hour nothing is "live".
constexpr int64_t interval_ms_default = 1000;
constexpr int64_t interval_ms_min = 100;
constexpr int64_t interval_ms_max = int64_t{3600} * 1000;
constexpr int64_t rows_default = 10;
constexpr int64_t rows_max = 10000;

// Moves the cursor home and clears the screen (ANSI), before each refresh on a terminal.
constexpr std::string_view clear_screen = "\x1b[H\x1b[2J";

struct scrape_result {
    top_snapshot snapshot;
    // The middle of the exchange: the broker read its counters somewhere in it.
    clock_type::time_point taken;
};

result<scrape_result> scrape(const http_target& target, const http_get_options& options) {
    const auto start = clock_type::now();
    auto body = http_get(target, options);
    if (!body) return body.failure();
    const auto end = clock_type::now();
    const prometheus_scrape samples = parse_prometheus_text(body.value());
    return scrape_result{read_top_snapshot(samples), start + (end - start) / 2};
}

std::string wall_clock_text() {
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buffer[16];
    std::strftime(buffer, sizeof buffer, "%H:%M:%S", &local);
    return buffer;
}

void print(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

}  // namespace

result<void> run_top(const command_line& line) {
    auto text = line.required("--metrics");
    if (!text) return text.failure();
    auto target = parse_http_target(text.value(), "/metrics");
    if (!target) return target.failure();
    auto interval_ms =
        line.integer("--interval-ms", interval_ms_default, interval_ms_min, interval_ms_max);
    if (!interval_ms) return interval_ms.failure();
    auto rows = line.integer("--rows", rows_default, 1, rows_max);
    if (!rows) return rows.failure();
    const bool live = !line.has("--once") && ::isatty(STDOUT_FILENO) == 1;
    const http_get_options options{.timeout_ms = line.global.timeout_ms};
    const top_view_options view{.rows = static_cast<size_t>(rows.value())};
    const auto interval = std::chrono::milliseconds(interval_ms.value());

    auto first = scrape(target.value(), options);
    if (!first) return error{1, "cannot scrape the metrics endpoint: " + first.failure().message};
    scrape_result previous = std::move(first.value());
    if (live)
        print(std::string(clear_screen) + "spatectl top  " + http_target_text(target.value()) +
              "  waiting " + std::to_string(interval_ms.value()) + " ms for a second scrape\n");
    auto next_attempt = previous.taken + interval;
    while (true) {
        std::this_thread::sleep_until(next_attempt);
        auto next = scrape(target.value(), options);
        if (!next) {
            if (!live)
                return error{1, "cannot scrape the metrics endpoint: " + next.failure().message};
            print(std::string(clear_screen) + "spatectl top  " + http_target_text(target.value()) +
                  "  " + wall_clock_text() + "\nscrape failed, retrying every " +
                  std::to_string(interval_ms.value()) + " ms: " + next.failure().message + "\n");
            // The last good scrape stays the base: the next view's rates span the gap.
            next_attempt = clock_type::now() + interval;
            continue;
        }
        const double seconds = std::chrono::duration<double>(next->taken - previous.taken).count();
        char rates[64];
        std::snprintf(rates, sizeof rates, "rates over %.2f s", seconds);
        std::string screen = "spatectl top  " + http_target_text(target.value()) + "  " +
                             wall_clock_text() + "  " + rates + "\n" +
                             format_top(previous.snapshot, next->snapshot, seconds, view);
        print(live ? std::string(clear_screen) + screen : screen);
        if (!live) return ok_result();
        previous = std::move(next.value());
        next_attempt = previous.taken + interval;
    }
}

}  // namespace spate::tools
