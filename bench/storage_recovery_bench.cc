// Crash recovery of partition_log against reading the same bytes with pread + CRC-32C,
// in the same run.
//
// The fixture writes a 256 MiB log of 1 KiB records in 16 KiB batches over 64 MiB
// segments and never completes the rolls' sync requests, so the recovery point stays at
// offset 0; the log is then dropped without close(), so no clean-shutdown marker exists:
// what a crashed broker leaves behind. One untimed open recovers it once, which writes
// the data back to disk; every timed open after that finds it clean in the page cache.
//
//   BM_log_recovery       partition_log::open on the crashed directory: every segment is
//                         read in 1 MiB chunks, each batch checked (size, magic, CRC-32C,
//                         contiguous offsets), indexes rebuilt, closed segments sealed
//                         (index files written with fsync). Before each open (untimed)
//                         the recovery-point checkpoint is removed, so the scan starts
//                         again at offset 0, as after the crash.
//   BM_pread_crc32c       baseline: the same .log files read with 1 MiB preads and
//                         checksummed whole with proto::crc32c.
//   Report: the s_per_GiB counter of each (manual time: only the open / the read loop
//   is timed) and their ratio. Warm-cache figures: the bytes are in the page cache, so
//   this prices the CPU and syscall work of recovery, not the disk.
//
//   storage_recovery_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proto/crc32c.h"
#include "storage/log.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;

constexpr int64_t fixture_log_bytes = 256 << 20;
constexpr int32_t records_per_batch = 16;     // 16 KiB batches of 1 KiB records
constexpr size_t record_value_bytes = 1000;   // about 1 KiB with the record framing
constexpr size_t read_chunk_bytes = 1 << 20;  // what the recovery scan reads at a time
constexpr double gib = 1024.0 * 1024.0 * 1024.0;

log_config fixture_config() {
    log_config config;
    config.segment_bytes = 64 << 20;
    config.retention_ms = -1;
    return config;
}

// The crashed log directory both benchmarks read. Owned by fixture(); the benchmark
// thread is the only user. Errors while building leave `failure` set.
struct recovery_fixture {
    testing::temp_dir dir{"bench-recovery"};
    int64_t log_bytes = 0;
    int64_t log_end = 0;
    std::string failure;

    recovery_fixture() {
        std::vector<uint8_t> batch =
            testing::make_batch(records_per_batch, 1, record_value_bytes, 0x5a);
        {
            auto opened = partition_log::open(dir.path(), fixture_config());
            if (!opened) {
                failure = opened.failure().message;
                return;
            }
            partition_log& log = **opened;
            for (int64_t written = 0;
                 written + static_cast<int64_t>(batch.size()) <= fixture_log_bytes;
                 written += static_cast<int64_t>(batch.size())) {
                if (auto appended = log.append(batch, records_per_batch); !appended) {
                    failure = appended.failure().message;
                    return;
                }
                log_bytes += static_cast<int64_t>(batch.size());
            }
            // Sync requests are left outstanding and close() is never called: the
            // recovery point stays at 0 and there is no clean-shutdown marker.
            log_end = log.log_end_offset();
        }
        if (!recover_once()) failure = "first recovery failed";
    }

    // Reopens the directory as after a crash; true when the whole log came back.
    bool recover_once() const {
        std::error_code ec;
        std::filesystem::remove(dir.path() / "recovery-point.checkpoint", ec);
        std::filesystem::remove(dir.path() / "clean-shutdown.checkpoint", ec);
        auto opened = partition_log::open(dir.path(), fixture_config());
        return opened && (*opened)->log_end_offset() == log_end;
    }

    std::vector<std::filesystem::path> log_files() const {
        std::vector<std::filesystem::path> files;
        for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
            if (entry.path().extension() == ".log") files.push_back(entry.path());
        return files;
    }
};

recovery_fixture& fixture() {
    static recovery_fixture built;
    return built;
}

void BM_log_recovery(benchmark::State& state) {
    recovery_fixture& f = fixture();
    if (!f.failure.empty()) {
        state.SkipWithError(f.failure.c_str());
        return;
    }
    double seconds = 0;
    for (auto _ : state) {
        std::error_code ec;
        std::filesystem::remove(f.dir.path() / "recovery-point.checkpoint", ec);
        std::filesystem::remove(f.dir.path() / "clean-shutdown.checkpoint", ec);
        const auto start = std::chrono::steady_clock::now();
        auto opened = partition_log::open(f.dir.path(), fixture_config());
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        state.SetIterationTime(elapsed.count());
        seconds += elapsed.count();
        if (!opened || (*opened)->log_end_offset() != f.log_end)
            state.SkipWithError("recovery did not restore the whole log");
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * f.log_bytes);
    state.counters["s_per_GiB"] = seconds / (static_cast<double>(state.iterations()) *
                                             static_cast<double>(f.log_bytes) / gib);
    state.counters["log_MiB"] = static_cast<double>(f.log_bytes) / (1 << 20);
}

void BM_pread_crc32c(benchmark::State& state) {
    recovery_fixture& f = fixture();
    if (!f.failure.empty()) {
        state.SkipWithError(f.failure.c_str());
        return;
    }
    const std::vector<std::filesystem::path> files = f.log_files();
    std::vector<uint8_t> buffer(read_chunk_bytes);
    double seconds = 0;
    int64_t bytes = 0;
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        uint32_t crc = 0;
        for (const std::filesystem::path& path : files) {
            const segment_file file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            if (file.fd < 0) {
                state.SkipWithError("open failed");
                break;
            }
            for (int64_t position = 0;;) {
                const ssize_t got = ::pread(file.fd, buffer.data(), buffer.size(), position);
                if (got < 0) state.SkipWithError("pread failed");
                if (got <= 0) break;
                crc = spate::proto::crc32c(
                    std::span<const uint8_t>(buffer.data(), static_cast<size_t>(got)), crc);
                position += got;
                bytes += got;
            }
        }
        benchmark::DoNotOptimize(crc);
        const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
        state.SetIterationTime(elapsed.count());
        seconds += elapsed.count();
    }
    state.SetBytesProcessed(bytes);
    state.counters["s_per_GiB"] = bytes > 0 ? seconds / (static_cast<double>(bytes) / gib) : 0.0;
}

}  // namespace

// No MinTime here: pass --benchmark_min_time (each open takes a fraction of a second).
BENCHMARK(BM_log_recovery)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pread_crc32c)->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
