// crash_writer: the victim process of the storage crash test.
//
// Usage: crash_writer <partition dir> <seed>
// Opens (and so recovers) the log, then appends batches of random size forever to a log
// with small segments (so it rolls every few appends), and prints a line
// "<durable offset> <outstanding sync requests>\n" each time either number changes:
// every offset below the first is promised durable, and the second tells the test how
// often the kill landed with sync requests outstanding. The test kills this process
// with SIGKILL at a random moment and checks the promise. It stops by itself after a
// few seconds so that a lost test never leaves it running.
//
// The seed also picks how the writer makes data durable, covering each way a caller
// may drive the log:
//   blocking   sync() every few appends (the flush policy's path).
//   ring       as the broker does on its ring: sync requests are taken after appends
//              and completed later, lazily and out of order, so several are usually
//              outstanding when the kill lands; the active segment is fdatasync'ed with
//              its end captured first and reported through mark_durable.
//   inline     run_sync_requests() now and then, plus the ring's active-segment sync.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "storage/log.h"
#include "tests/storage/crash_writer_config.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;

enum class durability_mode : uint8_t { blocking, ring, inline_requests };

void report(const char* what, const spate::error& failure) {
    std::fprintf(stderr, "%s: %s\n", what, failure.message.c_str());
}

// One durability step of the ring and inline modes: completes a random part of the
// taken requests in random order, sometimes runs the rest inline, and syncs the active
// segment.
bool ring_step(partition_log& log, std::vector<sync_request>& in_flight, std::mt19937& random,
               durability_mode mode) {
    for (sync_request& request : log.take_sync_requests()) in_flight.push_back(std::move(request));
    std::shuffle(in_flight.begin(), in_flight.end(), random);
    const size_t finishing = std::uniform_int_distribution<size_t>(0, in_flight.size())(random);
    for (size_t i = 0; i < finishing; ++i) {
        const int res = ::fdatasync(in_flight.back().file->fd) == 0 ? 0 : -errno;
        if (auto completed = log.complete_sync(in_flight.back().durable_offset, res); !completed) {
            report("complete_sync", completed.failure());
            return false;
        }
        in_flight.pop_back();
    }
    if (mode == durability_mode::inline_requests &&
        std::uniform_int_distribution<int>(0, 2)(random) == 0) {
        if (auto ran = log.run_sync_requests(); !ran) {
            report("run_sync_requests", ran.failure());
            return false;
        }
        in_flight.clear();  // their completions would now be stale, which is harmless
    }
    const int64_t end = log.log_end_offset();
    auto file = log.active_file();
    if (!file) {
        report("active_file", file.failure());
        return false;
    }
    if (::fdatasync((*file)->fd) != 0) {
        std::perror("fdatasync");
        return false;
    }
    log.mark_durable(end);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <partition dir> <seed>\n", argv[0]);
        return 2;
    }
    const auto seed = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10));
    std::mt19937 random(seed);
    const auto mode = static_cast<durability_mode>(seed % 3);
    auto opened = partition_log::open(argv[1], testing::crash_log_config());
    if (!opened) {
        report("open", opened.failure());
        return 1;
    }
    partition_log& log = **opened;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::vector<sync_request> in_flight;
    int64_t reported = -1;
    size_t outstanding = 0;
    int until_sync = 1;
    while (std::chrono::steady_clock::now() < give_up) {
        const int32_t records = std::uniform_int_distribution<int32_t>(1, 8)(random);
        const size_t value_bytes = std::uniform_int_distribution<size_t>(10, 3000)(random);
        std::vector<uint8_t> batch = testing::make_batch(
            records, log.log_end_offset(), value_bytes, static_cast<uint8_t>(log.log_end_offset()));
        auto appended = log.append(batch, records);
        if (!appended) {
            report("append", appended.failure());
            return 1;
        }
        if (--until_sync == 0) {
            if (mode == durability_mode::blocking) {
                if (auto synced = log.sync(); !synced) {
                    report("sync", synced.failure());
                    return 1;
                }
            } else if (!ring_step(log, in_flight, random, mode)) {
                return 1;
            }
            until_sync = std::uniform_int_distribution<int>(1, 6)(random);
        }
        if (log.durable_offset() > reported || log.outstanding_sync_count() != outstanding) {
            reported = log.durable_offset();
            outstanding = log.outstanding_sync_count();
            std::printf("%lld %zu\n", static_cast<long long>(reported), outstanding);
            std::fflush(stdout);
        }
    }
    return 0;
}
