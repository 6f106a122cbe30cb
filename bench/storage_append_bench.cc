// Append throughput of partition_log against a plain sequential pwrite of the same
// bytes, in the same run: 1 KiB records in 16, 64 and 256 KiB batches.
//
// Both sides write the same byte counts (the baseline writes buffers of exactly the
// log's batch size, since unaligned writes cost the kernel more than page-aligned ones)
// into the page cache (no fsync per write), start a new file every segment_bytes and
// delete each finished file at once (the log through retention_bytes = 0). The second
// argument says what happens to each finished file, the same on both sides:
//   0  nothing: the log's sync requests are completed without an fdatasync. This prices
//      the log's own code (offset rewrite, indexes, roll, checkpoints) against bare
//      pwrite; it is the ratio the log is tuned for (goal >= 0.9).
//   1  a blocking fdatasync on the appending thread (the log: run_sync_requests after
//      each roll), which is what rolls used to cost the shard.
//   2  an fdatasync on a helper thread, standing in for IORING_OP_FSYNC on the shard's
//      ring: the appending thread never waits for it (the log: take_sync_requests and
//      complete_sync). The disk's write bandwidth is then shared with the appends.
// Report: bytes_per_second of BM_log_append / BM_pwrite_baseline for the same batch
// size and mode. Times are wall-clock (UseRealTime): the fdatasync waits are the point.
//
// The machine is shared, so run interleaved repetitions and compare medians:
//   storage_append_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//     --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/log.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;

constexpr int64_t bench_segment_bytes = 128 << 20;
constexpr size_t record_value_bytes = 1000;  // about 1 KiB with the record framing

enum class sync_mode : int64_t { none = 0, blocking = 1, background = 2 };

// Plays the ring's part for mode 2: fdatasyncs files on its own thread and hands the
// results back. Owned by one benchmark function; push/poll from the benchmark thread.
class background_syncer {
public:
    background_syncer() : _worker([this] { run(); }) {}
    ~background_syncer() {
        {
            std::lock_guard lock(_mutex);
            _stopping = true;
        }
        _wake.notify_one();
        _worker.join();
    }
    background_syncer(const background_syncer&) = delete;
    background_syncer& operator=(const background_syncer&) = delete;

    void push(std::shared_ptr<segment_file> file, int64_t tag) {
        {
            std::lock_guard lock(_mutex);
            _queued.emplace_back(std::move(file), tag);
        }
        _wake.notify_one();
    }

    // Completed (tag, res) pairs; cheap when there are none.
    std::vector<std::pair<int64_t, int>> poll() {
        std::vector<std::pair<int64_t, int>> done;
        if (!_has_done.load(std::memory_order_acquire)) return done;
        std::lock_guard lock(_mutex);
        done.swap(_done);
        _has_done.store(false, std::memory_order_release);
        return done;
    }

private:
    void run() {
        std::unique_lock lock(_mutex);
        for (;;) {
            _wake.wait(lock, [this] { return _stopping || !_queued.empty(); });
            if (_queued.empty()) return;
            auto [file, tag] = std::move(_queued.front());
            _queued.erase(_queued.begin());
            lock.unlock();
            const int res = ::fdatasync(file->fd) == 0 ? 0 : -errno;
            file.reset();
            lock.lock();
            _done.emplace_back(tag, res);
            _has_done.store(true, std::memory_order_release);
        }
    }

    std::mutex _mutex;
    std::condition_variable _wake;
    std::vector<std::pair<std::shared_ptr<segment_file>, int64_t>> _queued;
    std::vector<std::pair<int64_t, int>> _done;
    std::atomic<bool> _has_done{false};
    bool _stopping = false;
    std::thread _worker;  // last: started once everything above exists
};

// The log's batch for a target size: 1 KiB records, as many as fit the target.
std::vector<uint8_t> bench_batch(int64_t target_bytes) {
    return testing::make_batch(static_cast<int32_t>(target_bytes / 1024), 1, record_value_bytes,
                               0x5a);
}

void BM_pwrite_baseline(benchmark::State& state) {
    const size_t batch_bytes = bench_batch(state.range(0)).size();
    const auto mode = static_cast<sync_mode>(state.range(1));
    testing::temp_dir dir("bench-pwrite");
    std::filesystem::create_directories(dir.path());
    std::vector<uint8_t> buffer(batch_bytes, 0x5a);
    background_syncer syncer;
    int file_number = 0;
    std::shared_ptr<segment_file> file;
    int64_t position = bench_segment_bytes;
    std::filesystem::path current;
    for (auto _ : state) {
        if (position + static_cast<int64_t>(batch_bytes) > bench_segment_bytes) {
            if (file) {
                if (mode == sync_mode::blocking && ::fdatasync(file->fd) != 0)
                    state.SkipWithError("fdatasync failed");
                if (mode == sync_mode::background) syncer.push(std::move(file), file_number);
                file.reset();
                std::filesystem::remove(current);
            }
            current = dir.path() / (std::to_string(file_number++) + ".log");
            file = std::make_shared<segment_file>(
                ::open(current.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            position = 0;
        }
        if (::pwrite(file->fd, buffer.data(), buffer.size(), position) !=
            static_cast<ssize_t>(buffer.size()))
            state.SkipWithError("pwrite failed");
        position += static_cast<int64_t>(batch_bytes);
        (void)syncer.poll();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch_bytes));
    state.counters["batch_bytes"] = static_cast<double>(batch_bytes);
}

void BM_log_append(benchmark::State& state) {
    const auto mode = static_cast<sync_mode>(state.range(1));
    testing::temp_dir dir("bench-log");
    log_config config;
    config.segment_bytes = bench_segment_bytes;
    config.retention_bytes = 0;
    config.retention_ms = -1;
    auto opened = partition_log::open(dir.path(), config);
    if (!opened) {
        state.SkipWithError(opened.failure().message.c_str());
        return;
    }
    partition_log& log = **opened;
    background_syncer syncer;
    std::vector<uint8_t> batch = bench_batch(state.range(0));
    const auto records = static_cast<int32_t>(state.range(0) / 1024);
    size_t segments = log.segment_count();
    for (auto _ : state) {
        auto appended = log.append(batch, records);
        if (!appended) state.SkipWithError(appended.failure().message.c_str());
        if (log.has_sync_requests()) {
            if (mode == sync_mode::blocking) {
                if (!log.run_sync_requests()) state.SkipWithError("sync failed");
            } else {
                for (sync_request& request : log.take_sync_requests()) {
                    if (mode == sync_mode::background) {
                        syncer.push(std::move(request.file), request.durable_offset);
                    } else if (!log.complete_sync(request.durable_offset, 0)) {
                        state.SkipWithError("completion failed");
                    }
                }
            }
        }
        for (auto [durable_offset, res] : syncer.poll())
            if (!log.complete_sync(durable_offset, res)) state.SkipWithError("sync failed");
        if (log.segment_count() != segments) {
            // Delete the closed segment at once, as the baseline does.
            if (!log.apply_retention(0)) state.SkipWithError("retention failed");
            segments = log.segment_count();
        }
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * batch.size()));
    state.counters["batch_bytes"] = static_cast<double>(batch.size());
}

}  // namespace

BENCHMARK(BM_pwrite_baseline)
    ->ArgsProduct({{16 << 10, 64 << 10, 256 << 10}, {0, 1, 2}})
    ->MinTime(2.0)
    ->UseRealTime();
BENCHMARK(BM_log_append)
    ->ArgsProduct({{16 << 10, 64 << 10, 256 << 10}, {0, 1, 2}})
    ->MinTime(2.0)
    ->UseRealTime();

BENCHMARK_MAIN();
