// The crash test: a separate writer process (crash_writer) appends and syncs; this test
// kills it with SIGKILL at random moments, reopens the log and checks that every offset
// the writer reported durable is present and intact, and that offsets stay contiguous.
// The same directory is reused across runs, so each run also recovers from the crash
// before it (sometimes closed cleanly by the checker, sometimes not).
//
// A SIGKILL leaves the page cache intact, so this proves the recovery logic (torn
// group writes, rolls and checkpoints cut at any point, recovery itself interrupted)
// rather than the disk's honesty about fdatasync, which only a power cut could test.
// The writer's segments are small, so most runs roll several times and are killed with
// sync requests outstanding (taken, completed out of order, or never taken): the
// promise covers every way of driving them (see crash_writer.cc).

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "proto/record_batch.h"
#include "storage/leader_epoch.h"
#include "storage/log.h"
#include "tests/storage/crash_writer_config.h"
#include "tests/storage/test_support.h"

#ifndef SPATE_CRASH_WRITER
#error "SPATE_CRASH_WRITER must name the crash_writer executable"
#endif

namespace {

using namespace spate::storage;
using namespace spate::storage::testing;

struct run_outcome {
    std::vector<std::string> lines;  // every complete line the writer printed, in order
    bool exited_by_itself = false;
};

// Starts the writer (with `mode` as its third argument unless null), lets it run for
// `run_for`, kills it, and collects its reports.
// With `after_first_report`, `run_for` counts from the writer's first report (or at most
// start_wait_max from the start): a writer that is slow to start (a sanitizer build, a
// loaded machine) would otherwise mostly die in its start-up, before appending anything.
constexpr auto start_wait_max = std::chrono::seconds(5);
run_outcome run_writer(const std::filesystem::path& dir, uint32_t seed,
                       std::chrono::microseconds run_for, bool after_first_report,
                       const char* mode = nullptr) {
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(pipe_fds[1], STDOUT_FILENO);
        const std::string seed_text = std::to_string(seed);
        ::execl(SPATE_CRASH_WRITER, SPATE_CRASH_WRITER, dir.c_str(), seed_text.c_str(), mode,
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(pipe_fds[1]);
    run_outcome outcome;
    std::string pending;
    const auto parse = [&](bool final_read) {
        size_t newline;
        while ((newline = pending.find('\n')) != std::string::npos) {
            outcome.lines.push_back(pending.substr(0, newline));
            pending.erase(0, newline + 1);
        }
        // A line cut by the kill was never completely promised; ignore it.
        if (final_read) pending.clear();
    };
    auto deadline = std::chrono::steady_clock::now() +
                    (after_first_report ? std::chrono::microseconds(start_wait_max) : run_for);
    bool waiting_for_first = after_first_report;
    char buffer[4096];
    bool open = true;
    while (open) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd readable{pipe_fds[0], POLLIN, 0};
        if (::poll(&readable, 1, static_cast<int>(left.count())) <= 0) continue;
        const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (n <= 0) {
            open = false;
            break;
        }
        pending.append(buffer, static_cast<size_t>(n));
        parse(false);
        if (waiting_for_first && !outcome.lines.empty()) {
            waiting_for_first = false;
            deadline = std::chrono::steady_clock::now() + run_for;
        }
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    outcome.exited_by_itself = WIFEXITED(status);
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);
    // Whatever the writer printed before dying still counts.
    ssize_t n;
    while ((n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) {
        pending.append(buffer, static_cast<size_t>(n));
        parse(false);
    }
    parse(true);
    ::close(pipe_fds[0]);
    return outcome;
}

}  // namespace

TEST_CASE("crash: every offset reported durable survives SIGKILL at random moments") {
    temp_dir dir("crash");
    std::mt19937 random(424242);
    constexpr int runs = 220;
    // The kill moments are random in time, so on a loaded machine fewer writers get as
    // far as reporting before they die: keep going (up to 4x) until the runs covered both
    // cases the checks below demand, instead of failing on the machine's load.
    constexpr int runs_max = runs * 4;
    int64_t durable_ever = 0;  // no run may lose what an earlier run made durable
    int64_t deleted_below = 0;
    int reports = 0;
    int killed_with_syncs_outstanding = 0;
    const auto started = std::chrono::steady_clock::now();
    int run = 0;
    for (; run < runs_max; ++run) {
        if (run >= runs && reports > runs / 4 && killed_with_syncs_outstanding > runs / 10) break;
        const auto run_for =
            std::chrono::microseconds(std::uniform_int_distribution<int64_t>(0, 40'000)(random));
        // One run in three is killed at a moment counted from its start, so start-up and
        // recovery themselves get interrupted; the others from the first report.
        const run_outcome outcome =
            run_writer(dir.path(), static_cast<uint32_t>(random()), run_for, run % 3 != 1);
        // "<durable offset> <outstanding sync requests>" lines.
        int64_t durable_max = -1;
        size_t outstanding_syncs_last = 0;
        for (const std::string& line : outcome.lines) {
            durable_max = std::max<int64_t>(durable_max, std::stoll(line));
            const size_t space = line.find(' ');
            if (space != std::string::npos)
                outstanding_syncs_last = std::stoul(line.substr(space + 1));
        }
        if (durable_max >= 0) ++reports;
        if (outstanding_syncs_last > 0) ++killed_with_syncs_outstanding;
        durable_ever = std::max(durable_ever, durable_max);

        log_config config = crash_log_config();
        auto opened = partition_log::open(dir.path(), config);
        REQUIRE_MESSAGE(opened.ok(), (opened.ok() ? "" : opened.failure().message));
        partition_log& log = **opened;
        INFO("run ", run, " log end ", log.log_end_offset(), " durable ", durable_ever);
        REQUIRE(log.log_end_offset() >= durable_ever);
        // Recovery leaves nothing outstanding: all it kept is synced and checkpointed.
        CHECK(log.durable_offset() == log.log_end_offset());
        CHECK(log.recovery_point() == log.log_end_offset());
        CHECK(log.outstanding_sync_count() == 0);
        CHECK(log.log_start_offset() == deleted_below);
        auto batches = read_all(log);
        REQUIRE_MESSAGE(batches.ok(), (batches.ok() ? "" : batches.failure().message));
        // The writer stamps each batch with its own base offset as timestamp: a batch
        // found at another offset would be a misplaced one.
        for (const stored_batch& b : *batches) {
            auto header = spate::proto::read_batch_header(b.bytes);
            REQUIRE(header.ok());
            CHECK(header->base_timestamp == b.base_offset);
        }
        // Keep the directory small so the runs stay fast; retention moves the log start.
        if (log.segment_count() > 12) {
            config.retention_bytes = 192 * 1024;
            log.set_config(config);
            REQUIRE(log.apply_retention(0).ok());
            deleted_below = log.log_start_offset();
        }
        if (run % 3 == 0) REQUIRE(log.close().ok());
    }
    const auto elapsed = std::chrono::steady_clock::now() - started;
    MESSAGE(run, " kills, ", reports, " runs reported durable offsets, ",
            killed_with_syncs_outstanding,
            " killed with sync requests outstanding, final durable offset ", durable_ever, ", ",
            std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), " ms");
    CHECK(killed_with_syncs_outstanding > runs / 10);
    CHECK(reports > runs / 4);
}

// The follower's crash test: the writer (crash_writer ... truncate) truncates and
// re-appends with ever newer leader epochs, empties and restarts the log, deletes
// records, and is killed at random moments, in the middle of any of these. Every reopen
// must find a log that opens, with contiguous offsets and intact batches, an epoch
// cache whose entries increase in both columns and lie within [log start, log end], and
// every batch carrying the epoch the cache names for its offset (the cache never lacks
// a batch's epoch, nor keeps one a truncation removed). Offsets reported durable survive
// unless a truncation announced since may have removed them.
TEST_CASE("crash: truncations and re-appends killed at random moments reopen consistent") {
    temp_dir dir("crash-truncate");
    std::mt19937 random(515151);
    constexpr int runs = 150;
    // On a loaded machine fewer writers get far before they die: keep going (up to 4x)
    // until the runs covered what the checks below demand, as the test above does.
    constexpr int runs_max = runs * 4;
    // The largest log end every reopen must reach: the durable reports, lowered by each
    // announced truncation to the start of the batch holding its target (a batch holds
    // at most 8 records).
    constexpr int64_t batch_records_max = 8;
    int64_t floor = 0;
    int truncations = 0;
    int reports = 0;
    // Runs killed after announcing a truncation and before their next sync: in it, or
    // in the appends right after it.
    int killed_after_truncation = 0;
    const auto started = std::chrono::steady_clock::now();
    int run = 0;
    for (; run < runs_max; ++run) {
        if (run >= runs && reports > runs / 4 && truncations > runs / 4 &&
            killed_after_truncation > 0)
            break;
        const auto run_for =
            std::chrono::microseconds(std::uniform_int_distribution<int64_t>(0, 40'000)(random));
        const run_outcome outcome = run_writer(dir.path(), static_cast<uint32_t>(random()), run_for,
                                               run % 3 != 1, "truncate");
        for (const std::string& line : outcome.lines) {
            REQUIRE(line.size() > 2);
            const int64_t value = std::stoll(line.substr(2));
            if (line[0] == 'd') {
                floor = std::max(floor, value);
                ++reports;
            } else {
                REQUIRE(line[0] == 't');
                floor = std::min(floor, value - batch_records_max + 1);
                ++truncations;
            }
        }
        if (!outcome.lines.empty() && outcome.lines.back()[0] == 't') ++killed_after_truncation;

        const log_config config = crash_log_config();
        auto opened = partition_log::open(dir.path(), config);
        REQUIRE_MESSAGE(opened.ok(), (opened.ok() ? "" : opened.failure().message));
        partition_log& log = **opened;
        INFO("run ", run, " log start ", log.log_start_offset(), " end ", log.log_end_offset(),
             " floor ", floor);
        REQUIRE(log.log_end_offset() >= floor);
        CHECK(log.durable_offset() == log.log_end_offset());
        CHECK(log.recovery_point() == log.log_end_offset());
        CHECK(log.outstanding_sync_count() == 0);
        const std::vector<epoch_entry>& epochs = log.leader_epochs().entries();
        for (size_t i = 0; i < epochs.size(); ++i) {
            CHECK(epochs[i].start_offset >= log.log_start_offset());
            CHECK(epochs[i].start_offset <= log.log_end_offset());
            if (i == 0) continue;
            CHECK(epochs[i - 1].epoch < epochs[i].epoch);
            CHECK(epochs[i - 1].start_offset < epochs[i].start_offset);
        }
        auto batches = read_all(log);
        REQUIRE_MESSAGE(batches.ok(), (batches.ok() ? "" : batches.failure().message));
        for (const stored_batch& b : *batches) {
            auto header = spate::proto::read_batch_header(b.bytes);
            REQUIRE(header.ok());
            CHECK(header->base_timestamp == b.base_offset);
            // The entry covering the batch (from the log start on, where the first batch
            // may begin before it).
            const int64_t at = std::max(b.base_offset, log.log_start_offset());
            auto covering = std::upper_bound(
                epochs.begin(), epochs.end(), at,
                [](int64_t value, const epoch_entry& e) { return value < e.start_offset; });
            REQUIRE_MESSAGE(covering != epochs.begin(), "no epoch covers offset ", at);
            CHECK(std::prev(covering)->epoch == header->partition_leader_epoch);
        }
        // Keep the directory small so the runs stay fast.
        if (log.segment_count() > 12) {
            log_config smaller = config;
            smaller.retention_bytes = 192 * 1024;
            log.set_config(smaller);
            REQUIRE(log.apply_retention(0).ok());
        }
        if (run % 3 == 0) REQUIRE(log.close().ok());
        floor = std::min(floor, log.log_end_offset());
    }
    const auto elapsed = std::chrono::steady_clock::now() - started;
    MESSAGE(run, " kills, ", reports, " sync reports, ", truncations, " truncations announced, ",
            killed_after_truncation, " kills after one, ",
            std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), " ms");
    CHECK(reports > runs / 4);
    CHECK(truncations > runs / 4);
    CHECK(killed_after_truncation > 0);
}
