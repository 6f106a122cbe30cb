// crash_writer: the victim process of the storage crash test.
//
// Usage: crash_writer <partition dir> <seed>
// Opens (and so recovers) the log, then appends batches of random size forever,
// calling sync() every few appends and printing, after each successful sync, one line
// "<log end offset>\n": every offset below it is promised durable. The test kills this
// process with SIGKILL at a random moment and checks the promise. It stops by itself
// after a few seconds so that a lost test never leaves it running.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "storage/log.h"
#include "tests/storage/crash_writer_config.h"
#include "tests/storage/test_support.h"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s <partition dir> <seed>\n", argv[0]);
        return 2;
    }
    using namespace spate::storage;
    std::mt19937 random(static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 10)));
    auto opened = partition_log::open(argv[1], spate::storage::testing::crash_log_config());
    if (!opened) {
        std::fprintf(stderr, "open: %s\n", opened.failure().message.c_str());
        return 1;
    }
    partition_log& log = **opened;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    int until_sync = 1;
    while (std::chrono::steady_clock::now() < give_up) {
        const int32_t records = std::uniform_int_distribution<int32_t>(1, 8)(random);
        const size_t value_bytes = std::uniform_int_distribution<size_t>(10, 3000)(random);
        std::vector<uint8_t> batch = spate::storage::testing::make_batch(
            records, log.log_end_offset(), value_bytes, static_cast<uint8_t>(log.log_end_offset()));
        auto appended = log.append(batch, records);
        if (!appended) {
            std::fprintf(stderr, "append: %s\n", appended.failure().message.c_str());
            return 1;
        }
        if (--until_sync == 0) {
            if (auto synced = log.sync(); !synced) {
                std::fprintf(stderr, "sync: %s\n", synced.failure().message.c_str());
                return 1;
            }
            std::printf("%lld\n", static_cast<long long>(log.durable_offset()));
            std::fflush(stdout);
            until_sync = std::uniform_int_distribution<int>(1, 6)(random);
        }
    }
    return 0;
}
