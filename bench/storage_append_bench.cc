// Append throughput of partition_log against a plain sequential pwrite of the same
// bytes, in the same run: 1 KiB records in 16, 64 and 256 KiB batches.
//
// Both sides write into the page cache only (no fsync per write) and both start a new
// file every segment_bytes, deleting old files so the disk footprint stays bounded.
// The log additionally rewrites base offsets, keeps its indexes and, on each roll,
// fdatasyncs the segment it closes and writes a checkpoint: the ratio prices exactly
// that bookkeeping. BM_pwrite_baseline's second argument adds the same fdatasync of
// each finished file that the log does on roll, which separates the cost of that
// durability choice (the disk's write bandwidth) from the cost of the log's code.
// Report: bytes_per_second of BM_log_append / BM_pwrite_baseline for the same batch
// size, with and without the per-file sync. Times are wall-clock (UseRealTime): the
// fdatasync waits are the point.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "storage/log.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;

constexpr int64_t bench_segment_bytes = 128 << 20;
constexpr size_t record_value_bytes = 1000;  // about 1 KiB with the record framing

void BM_pwrite_baseline(benchmark::State& state) {
    const auto batch_bytes = static_cast<size_t>(state.range(0));
    const bool sync_each_file = state.range(1) != 0;
    testing::temp_dir dir("bench-pwrite");
    std::filesystem::create_directories(dir.path());
    std::vector<uint8_t> buffer(batch_bytes, 0x5a);
    int file_number = 0;
    int fd = -1;
    int64_t position = bench_segment_bytes;
    std::filesystem::path current;
    for (auto _ : state) {
        if (position + static_cast<int64_t>(batch_bytes) > bench_segment_bytes) {
            if (fd >= 0) {
                if (sync_each_file && ::fdatasync(fd) != 0) state.SkipWithError("fdatasync failed");
                ::close(fd);
                std::filesystem::remove(current);
            }
            current = dir.path() / (std::to_string(file_number++) + ".log");
            fd = ::open(current.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            position = 0;
        }
        if (::pwrite(fd, buffer.data(), buffer.size(), position) !=
            static_cast<ssize_t>(buffer.size()))
            state.SkipWithError("pwrite failed");
        position += static_cast<int64_t>(batch_bytes);
    }
    if (fd >= 0) ::close(fd);
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch_bytes));
}

void BM_log_append(benchmark::State& state) {
    const auto batch_target_bytes = static_cast<size_t>(state.range(0));
    testing::temp_dir dir("bench-log");
    log_config config;
    config.segment_bytes = bench_segment_bytes;
    config.retention_bytes = bench_segment_bytes;
    config.retention_ms = -1;
    auto opened = partition_log::open(dir.path(), config);
    if (!opened) {
        state.SkipWithError(opened.failure().message.c_str());
        return;
    }
    partition_log& log = **opened;
    const auto records = static_cast<int32_t>(batch_target_bytes / 1024);
    std::vector<uint8_t> batch = testing::make_batch(records, 1, record_value_bytes, 0x5a);
    size_t segments = log.segment_count();
    for (auto _ : state) {
        auto appended = log.append(batch, records);
        if (!appended) state.SkipWithError(appended.failure().message.c_str());
        if (log.segment_count() != segments) {
            // Keep the disk footprint bounded, as the baseline does.
            if (!log.apply_retention(0)) state.SkipWithError("retention failed");
            segments = log.segment_count();
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
    state.counters["batch_bytes"] = static_cast<double>(batch.size());
}

}  // namespace

BENCHMARK(BM_pwrite_baseline)
    ->ArgsProduct({{16 << 10, 64 << 10, 256 << 10}, {0, 1}})
    ->MinTime(2.0)
    ->UseRealTime();
BENCHMARK(BM_log_append)->Arg(16 << 10)->Arg(64 << 10)->Arg(256 << 10)->MinTime(2.0)->UseRealTime();

BENCHMARK_MAIN();
