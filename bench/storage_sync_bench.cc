// What one durable 1 KiB append costs by each way a shard could make it durable, at a
// fixed rate (the acks=all fsync policy's workload), all in one run and interleaved (op i
// uses way i mod N) so the machine's noise falls on every way alike:
//   direct        pwrite + fdatasync on the calling thread (the floor; a shard that did
//                 this would stall every other connection for the whole sync)
//   dsync         pwritev2(RWF_DSYNC) on the calling thread
//   uring         pwrite, IORING_OP_FSYNC, io_uring_wait_cqe (what the shard does now:
//                 an io-wq worker runs the sync and the waiting thread is woken)
//   uring-dsync   IORING_OP_WRITE with RWF_DSYNC, io_uring_wait_cqe
//   uring-range   pwrite, IORING_OP_FSYNC of the written range only (off/len), wait
//   uring-spin    pwrite, IORING_OP_FSYNC, then peeking the CQ without sleeping (the
//                 thread-wakeup share of `uring`, paid in cpu instead)
//   thread        pwrite, then a dedicated sync thread (woken through a futex) runs
//                 fdatasync and wakes the caller
//
//   storage_sync_bench [DIR (.)] [OPS_PER_WAY (3000)] [RATE (1000)]
// Prints p50/p99/p99.9/max µs per way, from write start to durable. Not a test.

#include <fcntl.h>
#include <liburing.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

void futex_wait(std::atomic<uint32_t>& word, uint32_t value) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr,
            nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>& word) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr,
            0);
}

// A thread that runs fdatasync(fd) each time `request` moves past `done`.
struct sync_thread {
    std::atomic<uint32_t> request{0};
    std::atomic<uint32_t> done{0};
    std::atomic<bool> stop{false};
    int fd = -1;
    std::thread worker;

    void start() {
        worker = std::thread([this] {
            uint32_t seen = 0;
            for (;;) {
                uint32_t r = request.load();
                while (r == seen && !stop.load()) {
                    futex_wait(request, r);
                    r = request.load();
                }
                if (stop.load()) return;
                seen = r;
                ::fdatasync(fd);
                done.store(seen);
                futex_wake(done);
            }
        });
    }

    void sync() {
        const uint32_t want = request.fetch_add(1) + 1;
        futex_wake(request);
        for (uint32_t d = done.load(); d != want; d = done.load()) futex_wait(done, d);
    }

    void finish() {
        stop.store(true);
        request.fetch_add(1);
        futex_wake(request);
        worker.join();
    }
};

enum class way { direct, dsync, uring, uring_dsync, uring_range, uring_spin, thread, count };
const char* const way_names[] = {"direct",      "dsync",      "uring", "uring-dsync",
                                 "uring-range", "uring-spin", "thread"};

void check(bool ok, const char* what) {
    if (!ok) {
        std::perror(what);
        std::exit(1);
    }
}

void uring_wait(io_uring& ring, bool spin) {
    io_uring_cqe* cqe = nullptr;
    if (spin) {
        while (io_uring_peek_cqe(&ring, &cqe) != 0) {
        }
    } else {
        check(io_uring_wait_cqe(&ring, &cqe) == 0, "io_uring_wait_cqe");
    }
    check(cqe->res >= 0, "io_uring op");
    io_uring_cqe_seen(&ring, cqe);
}

}  // namespace

int main(int argc, char** argv) {
    const std::string dir = argc > 1 ? argv[1] : ".";
    const int ops_per_way = argc > 2 ? std::atoi(argv[2]) : 3000;
    const int rate = argc > 3 ? std::atoi(argv[3]) : 1000;
    const std::string path = dir + "/storage_sync_bench.tmp";
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    check(fd >= 0, "open");
    ::unlink(path.c_str());
    io_uring ring;
    check(io_uring_queue_init(8, &ring, 0) == 0, "io_uring_queue_init");
    sync_thread syncer;
    syncer.fd = fd;
    syncer.start();

    char record[1024];
    std::fill(std::begin(record), std::end(record), 'x');
    const int ways = static_cast<int>(way::count);
    std::vector<std::vector<double>> micros(ways);
    const auto period = std::chrono::nanoseconds(1'000'000'000 / rate);
    auto next = clock_type::now();
    off_t position = 0;
    for (int i = 0; i < ops_per_way * ways; ++i) {
        std::this_thread::sleep_until(next);
        next += period;
        const auto w = static_cast<way>(i % ways);
        const auto began = clock_type::now();
        iovec vec{record, sizeof record};
        switch (w) {
            case way::direct:
                check(::pwrite(fd, record, sizeof record, position) == sizeof record, "pwrite");
                check(::fdatasync(fd) == 0, "fdatasync");
                break;
            case way::dsync:
                check(::pwritev2(fd, &vec, 1, position, RWF_DSYNC) == sizeof record, "pwritev2");
                break;
            case way::uring:
            case way::uring_spin: {
                check(::pwrite(fd, record, sizeof record, position) == sizeof record, "pwrite");
                io_uring_sqe* sqe = io_uring_get_sqe(&ring);
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
                check(io_uring_submit(&ring) == 1, "io_uring_submit");
                uring_wait(ring, w == way::uring_spin);
                break;
            }
            case way::uring_range: {
                check(::pwrite(fd, record, sizeof record, position) == sizeof record, "pwrite");
                io_uring_sqe* sqe = io_uring_get_sqe(&ring);
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
                sqe->off = static_cast<uint64_t>(position);
                sqe->len = sizeof record;
                check(io_uring_submit(&ring) == 1, "io_uring_submit");
                uring_wait(ring, false);
                break;
            }
            case way::uring_dsync: {
                io_uring_sqe* sqe = io_uring_get_sqe(&ring);
                io_uring_prep_writev(sqe, fd, &vec, 1, static_cast<uint64_t>(position));
                sqe->rw_flags = RWF_DSYNC;
                check(io_uring_submit(&ring) == 1, "io_uring_submit");
                uring_wait(ring, false);
                break;
            }
            case way::thread:
                check(::pwrite(fd, record, sizeof record, position) == sizeof record, "pwrite");
                syncer.sync();
                break;
            case way::count:
                break;
        }
        micros[static_cast<size_t>(w)].push_back(
            std::chrono::duration<double, std::micro>(clock_type::now() - began).count());
        position += sizeof record;
    }
    syncer.finish();
    io_uring_queue_exit(&ring);
    ::close(fd);

    std::printf("%-12s %9s %9s %9s %9s   (%d ops each at %d/s in all, 1 KiB appends)\n", "way",
                "p50 µs", "p99 µs", "p99.9 µs", "max µs", ops_per_way, rate);
    for (int w = 0; w < ways; ++w) {
        auto& v = micros[static_cast<size_t>(w)];
        std::sort(v.begin(), v.end());
        auto at = [&v](double q) {
            return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
        };
        std::printf("%-12s %9.1f %9.1f %9.1f %9.1f\n", way_names[w], at(0.50), at(0.99), at(0.999),
                    v.back());
    }
    return 0;
}
