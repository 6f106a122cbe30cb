// crash_writer: the victim process of the storage crash test.
//
// Usage: crash_writer <partition dir> <seed> [truncate]
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
//
// With "truncate" the writer is a follower whose leader keeps changing: each run starts
// a newer leader epoch (announced with assign_epoch, or left to the first batch to
// record), and among appends of batches stamped with the current epoch (through append
// and append_replicated alike, at the log end) it truncates to a random offset and moves
// to a newer epoch, now and then empties the log and restarts it past its end
// (truncate_fully_and_start_at), or deletes records below a random offset. It syncs every
// few appends and prints "d <durable offset>\n" after each sync, and "t <offset>\n"
// before each truncate_to(offset), which may take the log end down to the start of the
// batch holding that offset.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
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

// The truncating follower (see the top of the file). Returns the exit status.
int run_truncating(partition_log& log, std::mt19937& random,
                   std::chrono::steady_clock::time_point give_up) {
    const auto chance = [&](int percent) {
        return std::uniform_int_distribution<int>(0, 99)(random) < percent;
    };
    const auto between = [&](int64_t low, int64_t high) {
        return std::uniform_int_distribution<int64_t>(low, high)(random);
    };
    int32_t epoch = log.leader_epochs().latest_epoch() + 1;
    const auto new_leader = [&]() -> bool {
        ++epoch;
        if (chance(50)) return true;  // the first batch records the epoch
        if (auto assigned = log.assign_epoch(epoch, log.log_end_offset()); !assigned) {
            report("assign_epoch", assigned.failure());
            return false;
        }
        return true;
    };
    if (!new_leader()) return 1;
    int until_sync = 1;
    while (std::chrono::steady_clock::now() < give_up) {
        const int action = static_cast<int>(between(0, 99));
        if (action < 8 && log.log_end_offset() > log.log_start_offset()) {
            const int64_t target = between(log.log_start_offset(), log.log_end_offset() - 1);
            std::printf("t %lld\n", static_cast<long long>(target));
            std::fflush(stdout);
            if (auto truncated = log.truncate_to(target); !truncated) {
                report("truncate_to", truncated.failure());
                return 1;
            }
            if (!new_leader()) return 1;
            continue;
        }
        if (action < 9) {
            const int64_t offset = log.log_end_offset() + between(0, 20);
            if (auto emptied = log.truncate_fully_and_start_at(offset); !emptied) {
                report("truncate_fully_and_start_at", emptied.failure());
                return 1;
            }
            if (!new_leader()) return 1;
            continue;
        }
        if (action < 11) {
            const int64_t offset = between(log.log_start_offset(), log.log_end_offset());
            if (auto deleted = log.delete_records_before(offset); !deleted) {
                report("delete_records_before", deleted.failure());
                return 1;
            }
            continue;
        }
        const auto records = static_cast<int32_t>(between(1, 8));
        const auto value_bytes = static_cast<size_t>(between(10, 3000));
        const int64_t base = log.log_end_offset();
        // The batch's timestamp is its base offset, which the test checks.
        std::vector<uint8_t> batch = testing::make_stamped_batch(
            base, epoch, records, base, value_bytes, static_cast<uint8_t>(base));
        auto appended = chance(50) ? log.append(batch, records) : log.append_replicated(batch);
        if (!appended) {
            report("append", appended.failure());
            return 1;
        }
        if (--until_sync == 0) {
            if (auto synced = log.sync(); !synced) {
                report("sync", synced.failure());
                return 1;
            }
            std::printf("d %lld\n", static_cast<long long>(log.durable_offset()));
            std::fflush(stdout);
            until_sync = static_cast<int>(between(1, 6));
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const bool truncating = argc == 4 && std::string(argv[3]) == "truncate";
    if (argc != 3 && !truncating) {
        std::fprintf(stderr, "usage: %s <partition dir> <seed> [truncate]\n", argv[0]);
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
    if (truncating) return run_truncating(log, random, give_up);
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
