#include "storage/shutdown.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "net/log.h"

namespace spate::storage {

namespace {

result<void> sync_filesystem(int fd) {
    while (::syncfs(fd) != 0) {
        if (errno != EINTR) return error{errno, std::string("syncfs: ") + std::strerror(errno)};
    }
    return {};
}

int64_t elapsed_ms(std::chrono::steady_clock::time_point& since) {
    const auto now = std::chrono::steady_clock::now();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - since);
    since = now;
    return elapsed.count();
}

void note_failure(close_report& report, const partition_log& log, const error& failure) {
    ++report.failed;
    net::log_error("closing %s: %s (it will be recovered by a scan at the next start)",
                   log.directory().c_str(), failure.message.c_str());
}

}  // namespace

result<close_report> close_logs(std::span<partition_log* const> logs, int filesystem_fd) {
    close_report report;
    auto step_start = std::chrono::steady_clock::now();
    struct stat filesystem {};
    const bool batched = filesystem_fd >= 0 && ::fstat(filesystem_fd, &filesystem) == 0;
    // Step 1: stop every log; those that changed get their indexes written unsynced.
    std::vector<partition_log*> to_finish;
    for (partition_log* log : logs) {
        if (log->vouched_by_clean_marker()) {
            if (auto closed = log->close(); !closed) note_failure(report, *log, closed.failure());
            ++report.untouched;
            continue;
        }
        struct stat directory {};
        if (!batched || ::stat(log->directory().c_str(), &directory) != 0 ||
            directory.st_dev != filesystem.st_dev) {
            // The shared syncfs would not cover this log's files.
            if (auto closed = log->close(); !closed)
                note_failure(report, *log, closed.failure());
            else
                ++report.on_their_own;
            continue;
        }
        auto begun = log->close_unsynced();
        if (!begun) {
            note_failure(report, *log, begun.failure());
            continue;
        }
        if (*begun)
            to_finish.push_back(log);
        else
            ++report.failed;  // stopped by a write-back error, which was reported then
    }
    report.stop_ms = elapsed_ms(step_start);
    if (to_finish.empty()) return report;
    // Step 2: every segment, index and directory entry written above is on disk once
    // this returns success; nothing vouching for them has been written yet.
    if (auto synced = sync_filesystem(filesystem_fd); !synced) {
        report.failed += to_finish.size();
        return error{synced.failure().code, synced.failure().message + ": " +
                                                std::to_string(to_finish.size()) +
                                                " logs closed without a clean-shutdown marker"};
    }
    report.first_sync_ms = elapsed_ms(step_start);
    // Step 3: the recovery points and markers, over data already durable.
    for (partition_log* log : to_finish) {
        if (auto finished = log->close_after_sync(); !finished)
            note_failure(report, *log, finished.failure());
        else
            ++report.synced;
    }
    // Step 4: the markers are durable before the process exits, so a machine crash right
    // after a clean stop does not cost a scan of every changed log.
    report.markers_ms = elapsed_ms(step_start);
    if (auto synced = sync_filesystem(filesystem_fd); !synced) return synced.failure();
    report.second_sync_ms = elapsed_ms(step_start);
    return report;
}

}  // namespace spate::storage
