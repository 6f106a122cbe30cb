// Read path of partition_log against plain-file baselines, in the same run.
//
// One fixture, built on first use and shared by every benchmark: a 128 MiB log of 1 KiB
// records in 16 KiB batches over 32 MiB segments (four segments, every batch indexed
// since a batch is larger than index_interval_bytes), and a plain file holding the same
// bytes. Both sit in the page cache: these are warm-cache figures, which is what a fetch
// of recent data sees.
//
//   BM_log_read_splice/R   read(offset, R) walking the log front to back, each returned
//                          file_slice moved to /dev/null by splice through a pipe.
//   BM_file_splice/R       baseline: the same byte counts (whole batches fitting R, as
//                          the log hands out) spliced from the plain file front to back.
//   Report: bytes_per_second of BM_log_read_splice / BM_file_splice for each R.
//
//   BM_log_read_lookup     read(random offset, 1): segment search, offset-index lookup and
//                          one batch header pread; nothing is transferred. Report ns.
//   BM_pread_header        baseline: one pread of a batch header at a random batch
//                          boundary of the plain file, the syscall the lookup cannot avoid.
//   BM_index_position_floor/N  offset_index::position_floor on an index of N entries
//                          (2048: about one 32 MiB segment here; 262144: a 1 GiB segment at 4 KiB
//                          spacing).
//   BM_upper_bound/N       baseline: std::upper_bound over a plain vector of the same keys.
//
// The machine is shared, so run interleaved repetitions and compare medians:
//   storage_read_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
//     --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "storage/index.h"
#include "storage/log.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;

constexpr int64_t fixture_log_bytes = 128 << 20;
constexpr int64_t fixture_segment_bytes = 32 << 20;
constexpr int32_t records_per_batch = 16;    // 16 KiB batches of 1 KiB records
constexpr size_t record_value_bytes = 1000;  // about 1 KiB with the record framing
constexpr size_t random_sample_count = 4096;
constexpr size_t batch_header_bytes = 61;

// The log and the plain file every benchmark reads. Owned by fixture(); the benchmark
// thread is the only user. Errors while building leave `failure` set.
struct read_fixture {
    testing::temp_dir dir{"bench-read"};
    std::unique_ptr<partition_log> log;
    std::unique_ptr<segment_file> plain;
    int64_t plain_bytes = 0;
    int64_t batch_bytes = 0;
    std::string failure;

    read_fixture() {
        std::filesystem::create_directories(dir.path() / "log");
        log_config config;
        config.segment_bytes = fixture_segment_bytes;
        config.retention_ms = -1;
        auto opened = partition_log::open(dir.path() / "log", config);
        if (!opened) {
            failure = opened.failure().message;
            return;
        }
        log = std::move(*opened);
        std::vector<uint8_t> batch =
            testing::make_batch(records_per_batch, 1, record_value_bytes, 0x5a);
        batch_bytes = static_cast<int64_t>(batch.size());
        const std::filesystem::path plain_path = dir.path() / "plain.bin";
        plain = std::make_unique<segment_file>(
            ::open(plain_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (plain->fd < 0) {
            failure = "open " + plain_path.string() + " failed";
            return;
        }
        for (int64_t written = 0; written + batch_bytes <= fixture_log_bytes;
             written += batch_bytes) {
            if (auto appended = log->append(batch, records_per_batch); !appended) {
                failure = appended.failure().message;
                return;
            }
            // The log rewrote base_offset in place; the plain file gets the same bytes.
            if (::pwrite(plain->fd, batch.data(), batch.size(), plain_bytes) != batch_bytes) {
                failure = "pwrite of the plain file failed";
                return;
            }
            plain_bytes += batch_bytes;
            // Rolls queue sync requests; completing them without an fdatasync keeps the
            // log in its steady state (closed segments synced) without disk traffic.
            for (sync_request& request : log->take_sync_requests())
                if (!log->complete_sync(request.durable_offset, 0))
                    failure = "sync completion failed";
        }
    }
};

read_fixture& fixture() {
    static read_fixture built;
    return built;
}

// A pipe into /dev/null: splice moves file pages into the pipe and the pipe into
// /dev/null, which is what a zero-copy fetch does with a socket in place of /dev/null.
// Owned by one benchmark function.
class null_sink {
public:
    null_sink() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) == 0) {
            _pipe_read = fds[0];
            _pipe_write = fds[1];
            // A full MiB (the unprivileged maximum by default) lets large ranges move in
            // few calls; if refused, the default 64 KiB pipe still works.
            const int size = ::fcntl(_pipe_write, F_SETPIPE_SZ, 1 << 20);
            _pipe_bytes = size > 0 ? size : 64 << 10;
        }
        _null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    }
    ~null_sink() {
        for (int fd : {_pipe_read, _pipe_write, _null})
            if (fd >= 0) ::close(fd);
    }
    null_sink(const null_sink&) = delete;
    null_sink& operator=(const null_sink&) = delete;

    bool usable() const { return _pipe_read >= 0 && _null >= 0; }

    // Moves `length` bytes of `fd` from `position` to /dev/null; false on any error.
    bool move(int fd, int64_t position, int64_t length) {
        loff_t offset = position;
        while (length > 0) {
            const size_t want = static_cast<size_t>(std::min<int64_t>(length, _pipe_bytes));
            const ssize_t in = ::splice(fd, &offset, _pipe_write, nullptr, want, SPLICE_F_MOVE);
            if (in <= 0) return false;
            for (ssize_t left = in; left > 0;) {
                const ssize_t out = ::splice(_pipe_read, nullptr, _null, nullptr,
                                             static_cast<size_t>(left), SPLICE_F_MOVE);
                if (out <= 0) return false;
                left -= out;
            }
            length -= in;
        }
        return true;
    }

private:
    int _pipe_read = -1;
    int _pipe_write = -1;
    int _null = -1;
    int64_t _pipe_bytes = 64 << 10;
};

bool fixture_ready(benchmark::State& state) {
    read_fixture& f = fixture();
    if (!f.failure.empty()) {
        state.SkipWithError(f.failure.c_str());
        return false;
    }
    return true;
}

void BM_log_read_splice(benchmark::State& state) {
    if (!fixture_ready(state)) return;
    read_fixture& f = fixture();
    null_sink sink;
    if (!sink.usable()) {
        state.SkipWithError("pipe or /dev/null unavailable");
        return;
    }
    const auto max_bytes = static_cast<int32_t>(state.range(0));
    int64_t offset = f.log->log_start_offset();
    int64_t bytes = 0;
    for (auto _ : state) {
        auto read = f.log->read(offset, max_bytes);
        if (!read || read->bytes <= 0) {
            state.SkipWithError("read failed");
            break;
        }
        for (const file_slice& slice : read->slices)
            if (!sink.move(slice.file->fd, slice.position, slice.length))
                state.SkipWithError("splice failed");
        bytes += read->bytes;
        // Every batch has the same size and record count, so the bytes say how far to go.
        offset += read->bytes / f.batch_bytes * records_per_batch;
        if (offset >= f.log->log_end_offset()) offset = f.log->log_start_offset();
    }
    state.SetBytesProcessed(bytes);
    state.counters["bytes_per_read"] =
        benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kAvgIterations);
}

void BM_file_splice(benchmark::State& state) {
    if (!fixture_ready(state)) return;
    read_fixture& f = fixture();
    null_sink sink;
    if (!sink.usable()) {
        state.SkipWithError("pipe or /dev/null unavailable");
        return;
    }
    // Whole batches fitting the range, at least one: the byte count the log hands out.
    const int64_t length = std::max<int64_t>(state.range(0) / f.batch_bytes, 1) * f.batch_bytes;
    int64_t position = 0;
    int64_t bytes = 0;
    for (auto _ : state) {
        if (position + length > f.plain_bytes) position = 0;
        if (!sink.move(f.plain->fd, position, length)) state.SkipWithError("splice failed");
        position += length;
        bytes += length;
    }
    state.SetBytesProcessed(bytes);
    state.counters["bytes_per_read"] =
        benchmark::Counter(static_cast<double>(bytes), benchmark::Counter::kAvgIterations);
}

void BM_log_read_lookup(benchmark::State& state) {
    if (!fixture_ready(state)) return;
    read_fixture& f = fixture();
    std::mt19937_64 random(42);
    std::uniform_int_distribution<int64_t> pick(f.log->log_start_offset(),
                                                f.log->log_end_offset() - 1);
    std::vector<int64_t> offsets(random_sample_count);
    for (int64_t& offset : offsets) offset = pick(random);
    size_t next = 0;
    for (auto _ : state) {
        auto read = f.log->read(offsets[next], 1);
        if (!read || read->slices.empty()) state.SkipWithError("read failed");
        benchmark::DoNotOptimize(read);
        next = (next + 1) % offsets.size();
    }
    state.counters["segments"] = static_cast<double>(f.log->segment_count());
}

void BM_pread_header(benchmark::State& state) {
    if (!fixture_ready(state)) return;
    read_fixture& f = fixture();
    std::mt19937_64 random(42);
    std::uniform_int_distribution<int64_t> pick(0, f.plain_bytes / f.batch_bytes - 1);
    std::vector<int64_t> positions(random_sample_count);
    for (int64_t& position : positions) position = pick(random) * f.batch_bytes;
    std::array<uint8_t, batch_header_bytes> header{};
    size_t next = 0;
    for (auto _ : state) {
        if (::pread(f.plain->fd, header.data(), header.size(), positions[next]) !=
            static_cast<ssize_t>(header.size()))
            state.SkipWithError("pread failed");
        benchmark::DoNotOptimize(header);
        next = (next + 1) % positions.size();
    }
}

// Index entries 4 KiB apart (index_interval_bytes), as in a 1 GiB segment of small
// batches; positions only need to grow, the search compares relative offsets.
constexpr int32_t index_position_step = 4 << 10;

void BM_index_position_floor(benchmark::State& state) {
    const auto entries = static_cast<int32_t>(state.range(0));
    offset_index index;
    for (int32_t i = 0; i < entries; ++i)
        index.append(i * records_per_batch + records_per_batch - 1, i * index_position_step);
    std::mt19937 random(42);
    std::uniform_int_distribution<int32_t> pick(0, entries * records_per_batch - 1);
    std::vector<int32_t> lookups(random_sample_count);
    for (int32_t& lookup : lookups) lookup = pick(random);
    size_t next = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(index.position_floor(lookups[next]));
        next = (next + 1) % lookups.size();
    }
}

void BM_upper_bound(benchmark::State& state) {
    const auto entries = static_cast<int32_t>(state.range(0));
    std::vector<int32_t> keys(static_cast<size_t>(entries));
    for (int32_t i = 0; i < entries; ++i)
        keys[static_cast<size_t>(i)] = i * records_per_batch + records_per_batch - 1;
    std::mt19937 random(42);
    std::uniform_int_distribution<int32_t> pick(0, entries * records_per_batch - 1);
    std::vector<int32_t> lookups(random_sample_count);
    for (int32_t& lookup : lookups) lookup = pick(random);
    size_t next = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(std::upper_bound(keys.begin(), keys.end(), lookups[next]));
        next = (next + 1) % lookups.size();
    }
}

}  // namespace

// No MinTime here: pass --benchmark_min_time so a quick run stays quick.
BENCHMARK(BM_log_read_splice)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_file_splice)->Arg(64 << 10)->Arg(1 << 20)->UseRealTime();
BENCHMARK(BM_log_read_lookup);
BENCHMARK(BM_pread_header);
BENCHMARK(BM_index_position_floor)->Arg(2048)->Arg(262144);
BENCHMARK(BM_upper_bound)->Arg(2048)->Arg(262144);

BENCHMARK_MAIN();
