// Tests of partition_log: appends, reads, rolls, reopen (clean and after a crash),
// recovery from damaged files, retention, timestamps, DeleteRecords, and a randomized
// comparison against an in-memory model.

#include "storage/log.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <csignal>
#include <fstream>
#include <map>
#include <random>

#include "proto/record_batch.h"
#include "storage/checkpoint.h"
#include "storage/segment.h"
#include "storage/shutdown.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;
using namespace spate::storage::testing;
namespace fs = std::filesystem;

log_config test_config() {
    log_config config;
    config.retention_ms = -1;
    return config;
}

std::unique_ptr<partition_log> open_log(const fs::path& dir, const log_config& config) {
    auto opened = partition_log::open(dir, config);
    if (!opened) FAIL("open failed: ", opened.failure().message);
    return std::move(opened).value();
}

// The log as the tests expect it: every appended batch with its assigned offsets.
struct model {
    std::vector<stored_batch> batches;

    int64_t end() const { return batches.empty() ? 0 : batches.back().last_offset + 1; }

    // Index of the batch holding `offset`.
    size_t holding(int64_t offset) const {
        for (size_t i = 0; i < batches.size(); ++i)
            if (batches[i].last_offset >= offset) return i;
        return batches.size();
    }
};

int64_t append_batch(partition_log& log, model& expected, int32_t records, int64_t timestamp,
                     size_t value_bytes) {
    std::vector<uint8_t> batch =
        make_batch(records, timestamp, value_bytes, static_cast<uint8_t>(expected.batches.size()));
    auto appended = log.append(batch, records);
    REQUIRE(appended.ok());
    CHECK(appended->base_offset == expected.end());
    CHECK(appended->log_append_time_ms == -1);
    expected.batches.push_back({appended->base_offset, appended->base_offset + records - 1, batch});
    return appended->base_offset;
}

void check_matches(const partition_log& log, const model& expected, size_t first_batch = 0) {
    auto all = read_all(log);
    REQUIRE_MESSAGE(all.ok(), (all.ok() ? "" : all.failure().message));
    REQUIRE(all->size() == expected.batches.size() - first_batch);
    for (size_t i = 0; i < all->size(); ++i) {
        CHECK((*all)[i].base_offset == expected.batches[first_batch + i].base_offset);
        CHECK((*all)[i].bytes == expected.batches[first_batch + i].bytes);
    }
    CHECK(log.log_end_offset() == expected.end());
}

size_t count_files(const fs::path& dir, const std::string& extension) {
    size_t count = 0;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == extension) ++count;
    return count;
}

fs::path last_log_file(const fs::path& dir) {
    fs::path last;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == ".log" && entry.path() > last) last = entry.path();
    return last;
}

}  // namespace

TEST_CASE("append and read round trip") {
    temp_dir dir("roundtrip");
    auto log = open_log(dir.path(), test_config());
    model expected;
    for (int i = 0; i < 20; ++i) append_batch(*log, expected, 1 + i % 5, 1000 + i, 50 + i);
    CHECK(log->log_start_offset() == 0);
    check_matches(*log, expected);

    // A read of one byte still hands out the whole batch holding the offset.
    for (int64_t offset = 0; offset < expected.end(); ++offset) {
        auto got = log->read(offset, 1);
        REQUIRE(got.ok());
        CHECK(got->high_watermark == expected.end());
        CHECK(slice_bytes(*got) == expected.batches[expected.holding(offset)].bytes);
    }
    auto at_end = log->read(expected.end(), 1000);
    REQUIRE(at_end.ok());
    CHECK(at_end->slices.empty());
    auto beyond = log->read(expected.end() + 1, 1000);
    REQUIRE(!beyond.ok());
    CHECK(beyond.failure().code == offset_out_of_range);
    auto negative = log->read(-1, 1000);
    REQUIRE(!negative.ok());
    CHECK(negative.failure().code == offset_out_of_range);
}

TEST_CASE("append_many writes several batches at once and assigns contiguous offsets") {
    temp_dir dir("many");
    log_config config = test_config();
    config.segment_bytes = 2000;
    auto log = open_log(dir.path(), config);
    model expected;
    append_batch(*log, expected, 2, 10, 20);
    std::vector<std::vector<uint8_t>> owned;
    for (int i = 0; i < 12; ++i)
        owned.push_back(make_batch(3, 100 + i, 300, static_cast<uint8_t>(i)));
    std::vector<std::span<uint8_t>> spans(owned.begin(), owned.end());
    auto appended = log->append_many(spans);
    REQUIRE(appended.ok());
    REQUIRE(appended->size() == owned.size());
    for (size_t i = 0; i < owned.size(); ++i) {
        CHECK((*appended)[i].base_offset == expected.end());
        expected.batches.push_back({expected.end(), expected.end() + 2, owned[i]});
    }
    CHECK(log->segment_count() > 1);
    check_matches(*log, expected);
}

TEST_CASE("append refuses a records count that disagrees with the batch") {
    temp_dir dir("mismatch");
    auto log = open_log(dir.path(), test_config());
    std::vector<uint8_t> batch = make_batch(3, 1, 10, 0);
    auto appended = log->append(batch, 2);
    REQUIRE(!appended.ok());
    CHECK(appended.failure().code == invalid_batch);
    CHECK(log->log_end_offset() == 0);
}

TEST_CASE("segments roll by size and reads cross them") {
    temp_dir dir("roll");
    log_config config = test_config();
    config.segment_bytes = 4096;
    config.index_interval_bytes = 256;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 30; ++i) append_batch(*log, expected, 2, 1000 + i, 900);
    CHECK(log->segment_count() >= 7);
    CHECK(count_files(dir.path(), ".log") == log->segment_count());
    // Closed segments have their indexes on disk.
    CHECK(count_files(dir.path(), ".index") == log->segment_count() - 1);
    check_matches(*log, expected);
    // A read never spans two segments, and a batch larger than a segment goes alone.
    append_batch(*log, expected, 1, 5000, 9000);
    auto big = log->read(expected.batches.back().base_offset, INT32_MAX);
    REQUIRE(big.ok());
    CHECK(slice_bytes(*big) == expected.batches.back().bytes);
    check_matches(*log, expected);
}

TEST_CASE("a read from the middle of a segment returns whole batches within max_bytes") {
    temp_dir dir("middle");
    log_config config = test_config();
    config.index_interval_bytes = 128;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 200; ++i)
        append_batch(*log, expected, 1 + i % 3, 1000 + i, 20 + (i * 7) % 90);
    std::mt19937 random(7);
    for (int round = 0; round < 300; ++round) {
        const int64_t offset =
            std::uniform_int_distribution<int64_t>(0, expected.end() - 1)(random);
        const int32_t max_bytes = std::uniform_int_distribution<int32_t>(1, 2000)(random);
        auto got = log->read(offset, max_bytes);
        REQUIRE(got.ok());
        const std::vector<uint8_t> bytes = slice_bytes(*got);
        // Expected: batches from the one holding `offset` while they fit, at least one.
        std::vector<uint8_t> want;
        for (size_t i = expected.holding(offset); i < expected.batches.size(); ++i) {
            const auto& b = expected.batches[i].bytes;
            if (!want.empty() && want.size() + b.size() > static_cast<size_t>(max_bytes)) break;
            want.insert(want.end(), b.begin(), b.end());
        }
        CHECK(bytes == want);
        CHECK(got->bytes == static_cast<int32_t>(want.size()));
    }
}

TEST_CASE("reopen after a clean close trusts the saved state") {
    temp_dir dir("clean");
    log_config config = test_config();
    config.segment_bytes = 3000;
    config.index_interval_bytes = 200;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 25; ++i) append_batch(*log, expected, 3, 2000 + i, 400);
        REQUIRE(log->close().ok());
        REQUIRE(log->close().ok());  // a second close does nothing
        CHECK(fs::exists(dir.path() / clean_shutdown_file_name));
        CHECK(log->durable_offset() == expected.end());
    }
    auto log = open_log(dir.path(), config);
    // The marker stays while the log is unchanged, and goes with the first append.
    CHECK(fs::exists(dir.path() / clean_shutdown_file_name));
    CHECK(log->vouched_by_clean_marker());
    CHECK(log->log_end_offset() == expected.end());
    CHECK(log->durable_offset() == expected.end());
    check_matches(*log, expected);
    for (int i = 0; i < 5; ++i) append_batch(*log, expected, 2, 3000 + i, 100);
    CHECK(!fs::exists(dir.path() / clean_shutdown_file_name));
    CHECK(!log->vouched_by_clean_marker());
    check_matches(*log, expected);
    // An idle partition holds little memory: no per-segment buffers, no loaded indexes
    // for segments nobody reads.
    REQUIRE(log->close().ok());
    auto idle = open_log(dir.path(), config);
    MESSAGE("memory_bytes of an idle partition with ", idle->segment_count(),
            " segments: ", idle->memory_bytes());
    CHECK(idle->memory_bytes() < 512 * idle->segment_count() + 1024);
}

TEST_CASE("reopen without close scans the tail and keeps everything written") {
    temp_dir dir("unclean");
    log_config config = test_config();
    config.segment_bytes = 3000;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 25; ++i) append_batch(*log, expected, 3, 2000 + i, 400);
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    append_batch(*log, expected, 1, 1, 1);
    check_matches(*log, expected);
}

TEST_CASE("missing or damaged index files are rebuilt from the log") {
    temp_dir dir("index-damage");
    log_config config = test_config();
    config.segment_bytes = 3000;
    config.index_interval_bytes = 100;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 25; ++i) append_batch(*log, expected, 3, 2000 + i, 400);
        REQUIRE(log->close().ok());
    }
    int damaged = 0;
    for (const auto& entry : fs::directory_iterator(dir.path())) {
        if (entry.path().extension() == ".index" && damaged++ % 2 == 0) {
            std::ofstream out(entry.path(), std::ios::binary | std::ios::trunc);
            out << "garbage!garbage!xyz";
        } else if (entry.path().extension() == ".timeindex") {
            fs::remove(entry.path());
        }
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    auto largest = log->offset_for_timestamp(-3);
    REQUIRE(largest.ok());
    CHECK(largest->timestamp == 2024 + 2);
}

namespace {

// Builds a log of several segments without closing it (as after a crash) and returns
// the model; the active segment holds the last few batches.
model build_unclosed(const fs::path& dir, const log_config& config, int batches) {
    model expected;
    auto log = open_log(dir, config);
    for (int i = 0; i < batches; ++i)
        append_batch(*log, expected, 1 + i % 4, 100 + i, 150 + (i * 13) % 200);
    return expected;
}

// The batches of `expected` that lie entirely below `cut` bytes into the last segment.
model prefix_before(const model& expected, const fs::path& last_file, int64_t cut) {
    const int64_t base = std::stoll(last_file.stem().string());
    model kept;
    int64_t position = 0;
    for (const auto& b : expected.batches) {
        if (b.base_offset < base) {
            kept.batches.push_back(b);
            continue;
        }
        position += static_cast<int64_t>(b.bytes.size());
        if (position > cut) break;
        kept.batches.push_back(b);
    }
    return kept;
}

}  // namespace

TEST_CASE("recovery truncates a torn tail at any byte") {
    log_config config = test_config();
    config.segment_bytes = 4000;
    config.index_interval_bytes = 300;
    std::mt19937 random(11);
    for (int round = 0; round < 25; ++round) {
        temp_dir dir("torn");
        const model expected = build_unclosed(dir.path(), config, 40);
        const fs::path last = last_log_file(dir.path());
        const auto size = static_cast<int64_t>(fs::file_size(last));
        const int64_t cut = std::uniform_int_distribution<int64_t>(0, size)(random);
        fs::resize_file(last, static_cast<uintmax_t>(cut));
        const model kept = prefix_before(expected, last, cut);
        auto log = open_log(dir.path(), config);
        check_matches(*log, kept);
        // The log goes on from the recovered end.
        model grown = kept;
        append_batch(*log, grown, 2, 9999, 10);
        check_matches(*log, grown);
    }
}

TEST_CASE("recovery stops at a flipped bit and drops everything after it") {
    log_config config = test_config();
    config.segment_bytes = 4000;
    std::mt19937 random(5);
    for (int round = 0; round < 25; ++round) {
        temp_dir dir("bitflip");
        const model expected = build_unclosed(dir.path(), config, 40);
        const fs::path last = last_log_file(dir.path());
        const auto size = static_cast<int64_t>(fs::file_size(last));
        REQUIRE(size > 0);
        const int64_t at = std::uniform_int_distribution<int64_t>(0, size - 1)(random);
        {
            std::fstream file(last, std::ios::binary | std::ios::in | std::ios::out);
            file.seekg(at);
            char byte = 0;
            file.read(&byte, 1);
            byte =
                static_cast<char>(byte ^ (1 << std::uniform_int_distribution<int>(0, 7)(random)));
            file.seekp(at);
            file.write(&byte, 1);
        }
        // Every batch that ends at or before the damaged byte survives; the damaged
        // batch and everything after it go. (A flip inside partition_leader_epoch is
        // the one change no check can see: neither the CRC nor the offsets cover it.)
        const model kept = prefix_before(expected, last, at);
        auto log = open_log(dir.path(), config);
        const int64_t base = std::stoll(last.stem().string());
        int64_t position = 0;
        bool epoch_flip = false;
        for (const auto& b : expected.batches) {
            if (b.base_offset < base) continue;
            if (at >= position + 12 && at < position + 16) epoch_flip = true;
            position += static_cast<int64_t>(b.bytes.size());
            if (position > at) break;
        }
        if (epoch_flip) {
            CHECK(log->log_end_offset() == expected.end());
        } else {
            CHECK(log->log_end_offset() == kept.end());
            check_matches(*log, kept);
        }
    }
}

TEST_CASE("recovery drops garbage appended after the last batch") {
    log_config config = test_config();
    config.segment_bytes = 4000;
    temp_dir dir("garbage");
    const model expected = build_unclosed(dir.path(), config, 30);
    const fs::path last = last_log_file(dir.path());
    const auto size = fs::file_size(last);
    {
        std::ofstream out(last, std::ios::binary | std::ios::app);
        std::mt19937 random(3);
        for (int i = 0; i < 777; ++i) out.put(static_cast<char>(random()));
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    CHECK(fs::file_size(last) == size);
    // Zeros (a preallocated or sparse tail) are garbage too.
    log.reset();
    fs::resize_file(last, size + 4096);
    auto again = open_log(dir.path(), config);
    check_matches(*again, expected);
}

namespace {

// The .log files of `dir`, in offset order.
std::vector<fs::path> log_files(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == ".log") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    return files;
}

int64_t total_size(const fs::path& dir, const std::string& extension) {
    int64_t bytes = 0;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == extension)
            bytes += static_cast<int64_t>(fs::file_size(entry.path()));
    return bytes;
}

std::vector<uint8_t> file_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The batches of `expected` in segments before `file`, and those of `file` that lie
// entirely below `cut` bytes into it.
model prefix_through(const model& expected, const fs::path& file, int64_t cut) {
    const int64_t base = std::stoll(file.stem().string());
    model kept;
    int64_t position = 0;
    for (const auto& b : expected.batches) {
        if (b.base_offset >= base) {
            position += static_cast<int64_t>(b.bytes.size());
            if (position > cut) break;
        }
        kept.batches.push_back(b);
    }
    return kept;
}

}  // namespace

// Issue 10, defect 1. close() leaves a clean-shutdown marker holding the log end, and
// open() used to adopt the active segment on the marker's word alone: a segment cut or
// extended after the close (a copy gone wrong, blocks lost by the disk) was taken
// whole, so the log end lay beyond bytes that are not batches. Every read reaching them
// failed (KAFKA_STORAGE_ERROR on each Fetch) and new appends landed after them, where
// no sequential reader could get. Open now validates the batches after the last index
// entry against the file's end and the marker, and scans when they disagree.
TEST_CASE("a clean-shutdown marker does not vouch for a tail cut or extended after the close") {
    for (const bool cut : {true, false}) {
        CAPTURE(cut);
        temp_dir dir("clean-damaged");
        log_config config = test_config();
        config.segment_bytes = 4000;
        config.index_interval_bytes = 300;
        model expected;
        {
            auto log = open_log(dir.path(), config);
            for (int i = 0; i < 30; ++i) append_batch(*log, expected, 1 + i % 3, 100 + i, 150);
            REQUIRE(log->close().ok());
        }
        const fs::path last = last_log_file(dir.path());
        const auto size = static_cast<int64_t>(fs::file_size(last));
        const auto last_batch = static_cast<int64_t>(expected.batches.back().bytes.size());
        REQUIRE(last_batch > 50);
        model kept = expected;
        if (cut) {
            fs::resize_file(last, static_cast<uintmax_t>(size - 50));
            kept = prefix_before(expected, last, size - 50);
        } else {
            std::ofstream out(last, std::ios::binary | std::ios::app);
            std::mt19937 random(7);
            for (int i = 0; i < 777; ++i) out.put(static_cast<char>(random()));
        }
        auto log = open_log(dir.path(), config);
        check_matches(*log, kept);
        const recovery_stats report = log->recovery_report();
        CHECK(report.clean_marker_rejected);
        CHECK(report.truncations == 1);
        CHECK(report.bytes_dropped == (cut ? last_batch - 50 : 777));
        CHECK(report.first_dropped_offset == kept.end());
        CHECK(count_files(dir.path(), ".corrupt") == 1);
        // A new record lands where a sequential reader finds it.
        append_batch(*log, kept, 2, 9999, 10);
        check_matches(*log, kept);
    }
}

namespace {

// The inode numbers of the files a close may write, by name: a file replaced through a
// temporary file and a rename gets a new inode, an untouched one keeps its own.
std::map<std::string, ino_t> inodes_of(const fs::path& dir) {
    std::map<std::string, ino_t> inodes;
    for (const auto& entry : fs::directory_iterator(dir)) {
        struct stat info {};
        REQUIRE(::stat(entry.path().c_str(), &info) == 0);
        inodes[entry.path().filename().string()] = info.st_ino;
    }
    return inodes;
}

}  // namespace

// An idle partition used to cost about ten fsyncs at every stop and two at every start
// (100,000 of them: 11 minutes to stop, well past a service manager's SIGKILL). A log
// opened clean now keeps its marker and writes nothing until it changes, so its close
// writes nothing either; the marker still only vouches for what the tail check sees:
// damage done after such a close is found at the next open like after any other.
TEST_CASE("a log opened clean and closed untouched writes nothing, and later damage is found") {
    temp_dir dir("untouched");
    log_config config = test_config();
    config.segment_bytes = 4000;
    config.index_interval_bytes = 300;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 30; ++i) append_batch(*log, expected, 1 + i % 3, 100 + i, 150);
        REQUIRE(log->close().ok());
    }
    const auto before = inodes_of(dir.path());
    for (int round = 0; round < 2; ++round) {
        auto log = open_log(dir.path(), config);
        CHECK(log->vouched_by_clean_marker());
        CHECK_FALSE(log->recovery_report().clean_marker_rejected);
        check_matches(*log, expected);
        REQUIRE(log->close().ok());
    }
    // Same names, same inodes: no checkpoint, index or snapshot was rewritten.
    CHECK(inodes_of(dir.path()) == before);

    const fs::path last = last_log_file(dir.path());
    const auto size = static_cast<int64_t>(fs::file_size(last));
    fs::resize_file(last, static_cast<uintmax_t>(size - 50));
    const model kept = prefix_before(expected, last, size - 50);
    auto log = open_log(dir.path(), config);
    CHECK(log->recovery_report().clean_marker_rejected);
    CHECK_FALSE(log->vouched_by_clean_marker());
    CHECK(!fs::exists(dir.path() / clean_shutdown_file_name));
    check_matches(*log, kept);
}

// The marker a clean open keeps must never outlive the first change: otherwise a kill
// after an append, a roll, a retention step or a DeleteRecords would reopen trusting a
// marker written for other files (a roll's new active segment, say, is never checked
// against it). Each change removes it durably before touching a file; without a close
// the next open then finds no marker and scans.
TEST_CASE("a log changed after a clean open never keeps a stale marker") {
    enum class change : uint8_t { append, roll, delete_records, retention };
    for (const change what :
         {change::append, change::roll, change::delete_records, change::retention}) {
        CAPTURE(static_cast<int>(what));
        temp_dir dir("stale-marker");
        log_config config = test_config();
        config.segment_bytes = 3000;
        config.index_interval_bytes = 300;
        model expected;
        {
            auto log = open_log(dir.path(), config);
            for (int i = 0; i < 20; ++i) append_batch(*log, expected, 2, 100 + i, 300);
            REQUIRE(log->close().ok());
        }
        size_t first_kept = 0;
        {
            auto log = open_log(dir.path(), config);
            REQUIRE(log->vouched_by_clean_marker());
            REQUIRE(log->segment_count() > 2);
            switch (what) {
                case change::append:
                    append_batch(*log, expected, 1, 500, 10);
                    break;
                case change::roll:
                    // Bigger than what is left of the active segment: a roll first.
                    append_batch(*log, expected, 1, 500, 2800);
                    break;
                case change::delete_records:
                    REQUIRE(log->delete_records_before(expected.batches[3].base_offset).ok());
                    first_kept = 3;
                    break;
                case change::retention: {
                    log_config by_bytes = config;
                    by_bytes.retention_bytes = 1;
                    log->set_config(by_bytes);
                    REQUIRE(log->apply_retention(0).ok());
                    first_kept = expected.holding(log->log_start_offset());
                    break;
                }
            }
            CHECK_FALSE(log->vouched_by_clean_marker());
            CHECK(!fs::exists(dir.path() / clean_shutdown_file_name));
            // No close: the log goes away as in a kill -9.
        }
        auto log = open_log(dir.path(), config);
        CHECK_FALSE(log->vouched_by_clean_marker());
        CHECK_FALSE(log->recovery_report().clean_marker_rejected);
        check_matches(*log, expected, first_kept);
    }
}

// A shutdown closes many logs with two syncfs calls instead of fsyncs per file: the
// logs that changed get their recovery point and marker only after the first syncfs,
// the untouched ones are not written at all, and every log opens clean afterwards.
TEST_CASE("close_logs closes changed and untouched logs, and all reopen clean") {
    temp_dir root("close-logs");
    log_config config = test_config();
    config.segment_bytes = 3000;
    config.index_interval_bytes = 300;
    constexpr size_t logs_count = 6;
    std::vector<model> expected(logs_count);
    for (const int filesystem : {0, 1}) {
        CAPTURE(filesystem);
        std::vector<std::unique_ptr<partition_log>> logs;
        std::vector<partition_log*> pointers;
        for (size_t i = 0; i < logs_count; ++i) {
            logs.push_back(open_log(root.path() / std::to_string(i), config));
            // The first round changes every log; the second only the even ones, one of
            // them with a roll whose sync request is still outstanding at the close.
            if (filesystem == 0 || i % 2 == 0)
                for (int b = 0; b < 8; ++b)
                    append_batch(*logs[i], expected[i], 2, 100 + b, filesystem == 0 ? 100 : 350);
            pointers.push_back(logs.back().get());
        }
        if (filesystem == 1) CHECK(logs[0]->outstanding_sync_count() > 0);
        const int fd = filesystem == 1 ? ::open(root.path().c_str(), O_RDONLY | O_DIRECTORY) : -1;
        auto closed = close_logs(pointers, fd);
        if (fd >= 0) ::close(fd);
        REQUIRE(closed.ok());
        CHECK(closed->failed == 0);
        CHECK(closed->untouched == (filesystem == 0 ? 0 : logs_count / 2));
        CHECK(closed->synced == (filesystem == 0 ? 0 : logs_count / 2));
        CHECK(closed->on_their_own == (filesystem == 0 ? logs_count : 0));
        for (size_t i = 0; i < logs_count; ++i) {
            CHECK(fs::exists(root.path() / std::to_string(i) / clean_shutdown_file_name));
            CHECK(read_checkpoint(root.path() / std::to_string(i) / recovery_point_file_name) ==
                  expected[i].end());
        }
        logs.clear();
        for (size_t i = 0; i < logs_count; ++i) {
            auto log = open_log(root.path() / std::to_string(i), config);
            CHECK(log->vouched_by_clean_marker());
            CHECK_FALSE(log->recovery_report().clean_marker_rejected);
            check_matches(*log, expected[i]);
        }
    }
}

// Creating and then stopping 100,000 empty partitions used to write a recovery point
// at each creation (two fsyncs) and two index files and two checkpoints at each stop.
// An empty log's checkpoint would say 0, which a missing file says too, and an empty
// segment's indexes are empty whatever its files hold, so neither is written: a new
// partition's directory gets its segment file, and at the stop its marker, nothing else.
TEST_CASE("an empty log writes no recovery point and no index files, and reopens clean") {
    temp_dir root("empty-log");
    const fs::path dir = root.path() / "p";
    {
        auto log = open_log(dir, test_config());
        partition_log* logs[] = {log.get()};
        const int fd = ::open(root.path().c_str(), O_RDONLY | O_DIRECTORY);
        auto closed = close_logs(logs, fd);
        ::close(fd);
        REQUIRE(closed.ok());
        CHECK(closed->synced == 1);
    }
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir))
        names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"00000000000000000000.log", clean_shutdown_file_name});
    auto log = open_log(dir, test_config());
    CHECK(log->vouched_by_clean_marker());
    CHECK(log->log_end_offset() == 0);
    model expected;
    append_batch(*log, expected, 3, 10, 10);
    check_matches(*log, expected);
}

// Issue 10, defect 1, the read side. A read returns as many whole batches as fit in
// max_bytes, walking their headers, and used to fail as a whole when a header after
// the first batch was damaged: the batches in front of the damage could then not be
// fetched with a large max_bytes at all. Closed segments are not read at a clean start
// (nor in Kafka), so such damage does reach reads.
TEST_CASE("a read serves the batches in front of a damaged header") {
    temp_dir dir("read-damaged");
    log_config config = test_config();
    config.segment_bytes = 4000;
    config.index_interval_bytes = 1 << 20;  // no index entries: reads walk every header
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 30; ++i) append_batch(*log, expected, 2, 100 + i, 150);
        REQUIRE(log->close().ok());
    }
    const std::vector<fs::path> files = log_files(dir.path());
    REQUIRE(files.size() > 1);
    // The fourth batch of the first (closed) segment gets a batch length far beyond
    // the segment.
    int64_t position = 0;
    for (size_t i = 0; i < 3; ++i)
        position += static_cast<int64_t>(expected.batches[i].bytes.size());
    {
        std::fstream file(files[0], std::ios::binary | std::ios::in | std::ios::out);
        file.seekp(position + 8);
        const char length[4] = {0x7f, 0x00, 0x00, 0x00};
        file.write(length, 4);
    }
    auto log = open_log(dir.path(), config);
    auto got = log->read(0, 1 << 20);
    REQUIRE_MESSAGE(got.ok(), (got.ok() ? "" : got.failure().message));
    std::vector<uint8_t> want;
    for (size_t i = 0; i < 3; ++i)
        want.insert(want.end(), expected.batches[i].bytes.begin(), expected.batches[i].bytes.end());
    CHECK(slice_bytes(*got) == want);
    // The damaged batch itself cannot be served.
    CHECK(!log->read(expected.batches[3].base_offset, 1 << 20).ok());
}

// Issue 10, defect 2. After a crash, recovery scans from the recovery point and ends
// the log at the first invalid byte. It used to delete the rest of the damaged segment
// and every later segment silently, although they held acknowledged records. Now the
// cut bytes and the later segments are moved aside into .corrupt files, the event is
// logged at WARN and counted in recovery_report(), and no byte that was on disk is gone.
TEST_CASE("recovery after mid-log damage moves what it drops aside and reports it") {
    temp_dir dir("mid-log");
    log_config config = test_config();
    config.segment_bytes = 3000;
    const model expected = build_unclosed(dir.path(), config, 60);
    const std::vector<fs::path> files = log_files(dir.path());
    REQUIRE(files.size() >= 4);
    const fs::path damaged = files[1];
    const auto size = static_cast<int64_t>(fs::file_size(damaged));
    const int64_t at = size / 2;
    {
        std::fstream file(damaged, std::ios::binary | std::ios::in | std::ios::out);
        file.seekg(at);
        char bytes[16];
        file.read(bytes, sizeof bytes);
        for (char& byte : bytes) byte = static_cast<char>(~byte);
        file.seekp(at);
        file.write(bytes, sizeof bytes);
    }
    const std::vector<uint8_t> damaged_before = file_bytes(damaged);
    const int64_t logs_before = total_size(dir.path(), ".log");
    const model kept = prefix_through(expected, damaged, at);
    REQUIRE(kept.end() < expected.end());

    auto log = open_log(dir.path(), config);
    check_matches(*log, kept);
    const recovery_stats report = log->recovery_report();
    CHECK(report.truncations == 1);
    CHECK(report.segments_moved_aside == static_cast<int64_t>(files.size() - 2));
    CHECK(report.first_dropped_offset == kept.end());
    CHECK(report.bytes_dropped == logs_before - total_size(dir.path(), ".log"));
    CHECK(total_size(dir.path(), ".corrupt") == report.bytes_dropped);
    CHECK(count_files(dir.path(), ".log") == 2);
    // The damaged segment's cut tail sits next to it, byte for byte.
    const int64_t valid = static_cast<int64_t>(fs::file_size(damaged));
    fs::path tail = damaged;
    tail += ".";
    tail += std::to_string(valid);
    tail += ".corrupt";
    std::vector<uint8_t> rejoined = file_bytes(damaged);
    const std::vector<uint8_t> cut_off = file_bytes(tail);
    rejoined.insert(rejoined.end(), cut_off.begin(), cut_off.end());
    CHECK(rejoined == damaged_before);
    // Reopening finds nothing more to drop and keeps the evidence.
    log.reset();
    auto again = open_log(dir.path(), config);
    check_matches(*again, kept);
    CHECK(again->recovery_report().bytes_dropped == 0);
    CHECK(total_size(dir.path(), ".corrupt") == report.bytes_dropped);
}

// Junk after the last batch of a closed segment loses no offset when the next segment
// starts where the valid data ends. Recovery used to treat it like a cut and delete
// every later segment; now only the junk is moved aside.
TEST_CASE("junk after the last batch of a closed segment keeps the later segments") {
    temp_dir dir("closed-junk");
    log_config config = test_config();
    config.segment_bytes = 3000;
    const model expected = build_unclosed(dir.path(), config, 40);
    const std::vector<fs::path> files = log_files(dir.path());
    REQUIRE(files.size() >= 3);
    {
        std::ofstream out(files[0], std::ios::binary | std::ios::app);
        std::mt19937 random(9);
        for (int i = 0; i < 300; ++i) out.put(static_cast<char>(random()));
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    const recovery_stats report = log->recovery_report();
    CHECK(report.truncations == 1);
    CHECK(report.bytes_dropped == 300);
    CHECK(report.segments_moved_aside == 0);
    CHECK(report.first_dropped_offset == -1);
}

// Issue 10, defect 8: a storage error must not outlive its cause. A write that fails
// (ENOSPC, EFBIG, EIO) is cut back to the last whole batch and reported, and a roll
// that cannot create its file (EMFILE, ENFILE) changes nothing; either way the next
// append after the cause went away succeeds and the log reads back whole. The limits
// of the test process stand in for the full disk and the exhausted descriptor table:
// RLIMIT_FSIZE fails the write with EFBIG half way, RLIMIT_NOFILE fails the open.
TEST_CASE("appends fail while a write or open error lasts and succeed once it is gone") {
    temp_dir dir("write-errors");
    log_config config = test_config();
    config.segment_bytes = 6000;
    model expected;
    auto log = open_log(dir.path(), config);
    for (int i = 0; i < 3; ++i) append_batch(*log, expected, 2, 100 + i, 500);

    // The file may grow only a little: a large batch is written in part and cut back.
    struct sigaction ignore {};
    struct sigaction previous {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGXFSZ, &ignore, &previous) == 0);
    rlimit size_limit{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &size_limit) == 0);
    const fs::path active = last_log_file(dir.path());
    const auto size = fs::file_size(active);
    rlimit tight = size_limit;
    tight.rlim_cur = size + 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &tight) == 0);
    std::vector<uint8_t> large = make_batch(3, 200, 600, 0x55);
    auto refused = log->append(large, 3);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &size_limit) == 0);
    REQUIRE(::sigaction(SIGXFSZ, &previous, nullptr) == 0);
    REQUIRE(!refused.ok());
    CHECK(refused.failure().code == EFBIG);
    CHECK(fs::file_size(active) == size);
    check_matches(*log, expected);
    append_batch(*log, expected, 3, 200, 600);
    check_matches(*log, expected);

    // No descriptor is left for the next segment: the roll fails, then works.
    const int probe = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // the lowest free number
    REQUIRE(probe >= 0);
    ::close(probe);
    rlimit files{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &files) == 0);
    rlimit no_more = files;
    no_more.rlim_cur = static_cast<rlim_t>(probe);
    const size_t segments = log->segment_count();
    std::vector<uint8_t> rolling = make_batch(2, 300, 3000, 0x66);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &no_more) == 0);
    auto no_file = log->append(rolling, 2);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &files) == 0);
    REQUIRE(!no_file.ok());
    CHECK(no_file.failure().code == EMFILE);
    CHECK(log->segment_count() == segments);
    check_matches(*log, expected);
    append_batch(*log, expected, 2, 300, 3000);
    CHECK(log->segment_count() == segments + 1);
    check_matches(*log, expected);
    REQUIRE(log->close().ok());
    auto reopened = open_log(dir.path(), config);
    check_matches(*reopened, expected);
    CHECK(reopened->recovery_report().bytes_dropped == 0);
}

TEST_CASE("retention by bytes deletes the oldest closed segments") {
    temp_dir dir("retain-bytes");
    log_config config = test_config();
    config.segment_bytes = 4096;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 40; ++i) append_batch(*log, expected, 2, 1000 + i, 900);
    const size_t segments_before = log->segment_count();
    REQUIRE(log->apply_retention(1'000'000).ok());  // nothing configured: nothing goes
    CHECK(log->segment_count() == segments_before);

    config.retention_bytes = 10'000;
    log->set_config(config);
    REQUIRE(log->apply_retention(1'000'000).ok());
    CHECK(log->segment_count() < segments_before);
    CHECK(count_files(dir.path(), ".log") == log->segment_count());
    const size_t first = expected.holding(log->log_start_offset());
    CHECK(expected.batches[first].base_offset == log->log_start_offset());
    int64_t kept_bytes = 0;
    for (size_t i = first; i < expected.batches.size(); ++i)
        kept_bytes += static_cast<int64_t>(expected.batches[i].bytes.size());
    CHECK(kept_bytes >= 10'000 - 4096);
    CHECK(kept_bytes < 10'000 + 4096);
    check_matches(*log, expected, first);
    auto below = log->read(log->log_start_offset() - 1, 100);
    REQUIRE(!below.ok());
    CHECK(below.failure().code == offset_out_of_range);

    // The new log start survives a reopen, clean or not.
    const int64_t start = log->log_start_offset();
    log.reset();
    auto reopened = open_log(dir.path(), config);
    CHECK(reopened->log_start_offset() == start);
    check_matches(*reopened, expected, first);
}

TEST_CASE("retention by time deletes closed segments whose newest record is too old") {
    temp_dir dir("retain-time");
    log_config config = test_config();
    config.segment_bytes = 4096;
    auto log = open_log(dir.path(), config);
    model expected;
    // Batch i carries timestamps around i seconds.
    for (int i = 0; i < 40; ++i) append_batch(*log, expected, 2, int64_t{i} * 1000, 900);
    config.retention_ms = 10'000;
    log->set_config(config);
    const int64_t now_ms = 30'000;
    REQUIRE(log->apply_retention(now_ms).ok());
    // Batch i is expired when i * 1000 + 1 < 20'000, so batches 0..18 are; segments hold
    // about four batches, and a segment goes only when all of its batches are expired.
    const size_t first = expected.holding(log->log_start_offset());
    CHECK(expected.batches[first].base_offset == log->log_start_offset());
    CHECK(first >= 14);
    CHECK(first <= 20);
    check_matches(*log, expected, first);
    // The active segment is never deleted, even when everything is expired.
    REQUIRE(log->apply_retention(10'000'000).ok());
    CHECK(log->segment_count() == 1);
    CHECK(log->log_start_offset() <= expected.end());
    append_batch(*log, expected, 1, 1, 1);
    CHECK(log->log_end_offset() == expected.end());
}

TEST_CASE("offset_for_timestamp finds the first record at or after a time") {
    temp_dir dir("timestamps");
    log_config config = test_config();
    config.segment_bytes = 2000;
    config.index_interval_bytes = 100;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        // Batch i holds 4 records with timestamps 100*i + 0..3.
        for (int i = 0; i < 40; ++i) append_batch(*log, expected, 4, int64_t{i} * 100, 200);
        REQUIRE(log->close().ok());
    }
    auto log = open_log(dir.path(), config);
    auto latest = log->offset_for_timestamp(-1);
    REQUIRE(latest.ok());
    CHECK(latest->offset == expected.end());
    auto earliest = log->offset_for_timestamp(-2);
    REQUIRE(earliest.ok());
    CHECK(earliest->offset == 0);
    auto largest = log->offset_for_timestamp(-3);
    REQUIRE(largest.ok());
    CHECK(largest->timestamp == 39 * 100 + 3);
    CHECK(largest->offset == expected.end() - 1);
    for (int i = 0; i < 40; ++i) {
        for (int j = 0; j < 4; ++j) {
            auto found = log->offset_for_timestamp(int64_t{i} * 100 + j);
            REQUIRE(found.ok());
            CHECK(found->offset == int64_t{i} * 4 + j);
            CHECK(found->timestamp == int64_t{i} * 100 + j);
        }
        // Between batches: the first record of the next batch.
        auto between = log->offset_for_timestamp(int64_t{i} * 100 + 50);
        REQUIRE(between.ok());
        CHECK(between->offset == (i == 39 ? -1 : int64_t{i + 1} * 4));
    }
    auto none = log->offset_for_timestamp(1'000'000);
    REQUIRE(none.ok());
    CHECK(none->offset == -1);
    // After DeleteRecords, no answer lies below the log start.
    REQUIRE(log->delete_records_before(10).ok());
    auto early = log->offset_for_timestamp(0);
    REQUIRE(early.ok());
    CHECK(early->offset == 10);
}

TEST_CASE("delete_records_before moves the log start and deletes whole segments below it") {
    temp_dir dir("delete-records");
    log_config config = test_config();
    config.segment_bytes = 4096;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 30; ++i) append_batch(*log, expected, 3, 1000 + i, 900);
    const size_t segments_before = log->segment_count();
    const int64_t target = expected.batches[13].base_offset + 1;  // inside a batch
    REQUIRE(log->delete_records_before(target).ok());
    CHECK(log->log_start_offset() == target);
    CHECK(log->segment_count() < segments_before);
    auto below = log->read(target - 1, 100);
    REQUIRE(!below.ok());
    CHECK(below.failure().code == offset_out_of_range);
    auto at = log->read(target, 1);
    REQUIRE(at.ok());
    CHECK(slice_bytes(*at) == expected.batches[13].bytes);
    // Moving backwards is a no-op, beyond the end an error.
    REQUIRE(log->delete_records_before(2).ok());
    CHECK(log->log_start_offset() == target);
    auto beyond = log->delete_records_before(expected.end() + 1);
    REQUIRE(!beyond.ok());
    CHECK(beyond.failure().code == offset_out_of_range);
    REQUIRE(log->close().ok());
    log.reset();
    auto reopened = open_log(dir.path(), config);
    CHECK(reopened->log_start_offset() == target);
    check_matches(*reopened, expected, 13);
    // Up to the log end: the log is empty but keeps its offsets.
    REQUIRE(reopened->delete_records_before(expected.end()).ok());
    CHECK(reopened->log_start_offset() == expected.end());
    append_batch(*reopened, expected, 1, 5, 5);
    check_matches(*reopened, expected, expected.batches.size() - 1);
}

TEST_CASE("durability marks and the flush policy") {
    temp_dir dir("flush");
    log_config config = test_config();
    config.flush_messages = 5;
    auto log = open_log(dir.path(), config);
    model expected;
    const auto now = std::chrono::steady_clock::now();
    CHECK(!log->flush_due(now));
    append_batch(*log, expected, 3, 1, 10);
    CHECK(log->durable_offset() == 0);
    CHECK(!log->flush_due(now));
    append_batch(*log, expected, 3, 1, 10);
    CHECK(log->flush_due(now));
    REQUIRE(log->sync().ok());
    CHECK(log->durable_offset() == 6);
    CHECK(!log->flush_due(now));
    append_batch(*log, expected, 1, 1, 10);
    CHECK(::fdatasync(log->active_file().value()->fd) == 0);
    log->mark_durable(log->log_end_offset());
    CHECK(log->durable_offset() == 7);

    config.flush_messages = INT64_MAX;
    config.flush_ms = 1000;
    log->set_config(config);
    append_batch(*log, expected, 1, 1, 10);
    CHECK(!log->flush_due(std::chrono::steady_clock::now()));
    CHECK(log->flush_due(std::chrono::steady_clock::now() + std::chrono::seconds(2)));
}

TEST_CASE("preallocated segments keep their logical size") {
    temp_dir dir("prealloc");
    log_config config = test_config();
    config.segment_bytes = 1 << 20;
    config.preallocate = true;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 10; ++i) append_batch(*log, expected, 2, i, 100);
        REQUIRE(log->close().ok());
    }
    // A sealed segment gives its preallocated blocks back.
    for (const auto& entry : fs::directory_iterator(dir.path())) {
        if (entry.path().extension() != ".log") continue;
        struct stat st {};
        REQUIRE(::stat(entry.path().c_str(), &st) == 0);
        CHECK(int64_t{st.st_blocks} * 512 <= st.st_size + (64 << 10));
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
}

TEST_CASE("blocks are reserved ahead of appends and given back when a segment is sealed") {
    temp_dir dir("reserve");
    log_config config = test_config();
    config.segment_bytes = 6 << 20;
    const auto allocated = [](const fs::path& path) {
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        return std::pair<int64_t, int64_t>{st.st_size, int64_t{st.st_blocks} * 512};
    };
    const fs::path first = dir.path() / "00000000000000000000.log";
    // Whether this file system reserves blocks at all (the log then writes plainly).
    fs::create_directories(dir.path());
    const fs::path probe = dir.path() / "probe";
    const int probe_fd = ::open(probe.c_str(), O_RDWR | O_CREAT, 0644);
    REQUIRE(probe_fd >= 0);
    const bool reserves = ::fallocate(probe_fd, FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0;
    ::close(probe_fd);
    fs::remove(probe);
    model expected;
    {
        auto log = open_log(dir.path(), config);
        append_batch(*log, expected, 2, 0, 50000);
        const auto [size, blocks] = allocated(first);
        if (reserves) CHECK(blocks >= size + (64 << 10));  // at least the first step ahead
        for (int i = 1; i < 80; ++i) append_batch(*log, expected, 2, i, 50000);  // rolls
        REQUIRE(log->segment_count() >= 2);
        const auto [closed_size, closed_blocks] = allocated(first);
        CHECK(closed_blocks <= closed_size + (64 << 10));  // the closed one holds its data
        REQUIRE(log->close().ok());
    }
    for (const auto& entry : fs::directory_iterator(dir.path())) {
        if (entry.path().extension() != ".log") continue;
        const auto [size, blocks] = allocated(entry.path());
        CHECK(blocks <= size + (64 << 10));
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    append_batch(*log, expected, 2, 80, 50000);  // the reopened active segment goes on
    check_matches(*log, expected);
    config.preallocate_ahead_bytes = 0;  // off: nothing more is reserved
    log->set_config(config);
    for (int i = 81; i < 90; ++i) append_batch(*log, expected, 2, i, 50000);
    check_matches(*log, expected);
}

TEST_CASE("appends pad the active segment with zeros that readers, seals and recovery leave out") {
    temp_dir dir("padding");
    temp_dir crashed("padding-crash");
    log_config config = test_config();
    config.segment_bytes = 4 << 20;
    const fs::path first = dir.path() / "00000000000000000000.log";
    const auto file_size = [](const fs::path& path) {
        return static_cast<int64_t>(fs::file_size(path));
    };
    const auto corrupt_files = [](const fs::path& directory) {
        return std::count_if(
            fs::directory_iterator(directory), fs::directory_iterator(),
            [](const fs::directory_entry& e) { return e.path().extension() == ".corrupt"; });
    };
    model expected;
    auto log = open_log(dir.path(), config);
    // A segment's first 64 KiB are written plainly: an idle partition holds no zeros.
    append_batch(*log, expected, 2, 0, 15000);
    CHECK(file_size(first) == log->size_bytes());
    // Java-sized batches (about 15.7 KB) past the first 64 KiB.
    for (int i = 1; i < 12; ++i) append_batch(*log, expected, 2, i, 7800);
    REQUIRE(log->size_bytes() > tail_padding_bytes);
    CHECK(file_size(first) % tail_padding_bytes == 0);
    CHECK(file_size(first) > log->size_bytes());
    CHECK(file_size(first) - log->size_bytes() < tail_padding_bytes);
    check_matches(*log, expected);  // readers stop at the data
    // An append of 64 KiB or more is not padded (it gets large folios by its length).
    append_batch(*log, expected, 2, 12, 50000);
    CHECK(file_size(first) == log->size_bytes());
    append_batch(*log, expected, 2, 13, 7800);
    CHECK(file_size(first) % tail_padding_bytes == 0);
    CHECK(file_size(first) > log->size_bytes());

    // A crash now (the files as they are): recovery cuts the zeros as padding, not damage.
    const int64_t padding = file_size(first) - log->size_bytes();
    fs::copy(dir.path(), crashed.path(),
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    {
        model after_crash = expected;
        auto recovered = open_log(crashed.path(), config);
        const recovery_stats& report = recovered->recovery_report();
        CHECK(report.padding_bytes == padding);
        CHECK(report.truncations == 0);
        CHECK(report.bytes_dropped == 0);
        CHECK(report.first_dropped_offset == -1);
        CHECK(corrupt_files(crashed.path()) == 0);
        CHECK(file_size(crashed.path() / first.filename()) == recovered->size_bytes());
        check_matches(*recovered, after_crash);
        for (int i = 0; i < 6; ++i) append_batch(*recovered, after_crash, 2, 20 + i, 7800);
        check_matches(*recovered, after_crash);
    }
    // More zeros than padding ever leaves, or zeros not ending on a 64 KiB boundary,
    // are damage as before (kept aside).
    for (const int64_t extra : {tail_padding_bytes, int64_t{1000}}) {
        temp_dir damaged("padding-damaged");
        fs::copy(dir.path(), damaged.path(),
                 fs::copy_options::recursive | fs::copy_options::overwrite_existing);
        const fs::path copy = damaged.path() / first.filename();
        fs::resize_file(copy, fs::file_size(copy) + static_cast<uintmax_t>(extra));
        auto recovered = open_log(damaged.path(), config);
        CHECK(recovered->recovery_report().truncations == 1);
        CHECK(recovered->recovery_report().padding_bytes == 0);
        CHECK(corrupt_files(damaged.path()) == 1);
        check_matches(*recovered, expected);
    }

    // A truncation cuts the padding with the data; appends then pad again.
    const int64_t cut_at = expected.batches[8].base_offset;
    REQUIRE(log->truncate_to(cut_at).ok());
    expected.batches.resize(8);
    CHECK(file_size(first) == log->size_bytes());
    for (int i = 0; i < 3; ++i) append_batch(*log, expected, 2, 30 + i, 7800);
    CHECK(file_size(first) % tail_padding_bytes == 0);
    check_matches(*log, expected);

    // A seal (here the stop) cuts it; the clean reopen trusts the file as it is.
    REQUIRE(log->close().ok());
    log.reset();
    log = open_log(dir.path(), config);
    CHECK(!log->recovery_report().clean_marker_rejected);
    CHECK(file_size(first) == log->size_bytes());
    check_matches(*log, expected);

    // Off: plain appends.
    config.tail_padding = false;
    log->set_config(config);
    for (int i = 0; i < 5; ++i) append_batch(*log, expected, 2, 40 + i, 7800);
    CHECK(file_size(first) == log->size_bytes());
    check_matches(*log, expected);
}

TEST_CASE("property: random appends, rolls, reopens and reads match a model") {
    std::mt19937 random(20240611);
    for (int trial = 0; trial < 6; ++trial) {
        temp_dir dir("property");
        log_config config = test_config();
        config.segment_bytes = std::uniform_int_distribution<int64_t>(500, 6000)(random);
        config.index_interval_bytes = std::uniform_int_distribution<int32_t>(0, 800)(random);
        auto log = open_log(dir.path(), config);
        model expected;
        for (int step = 0; step < 300; ++step) {
            const int action = std::uniform_int_distribution<int>(0, 99)(random);
            if (action < 50) {
                append_batch(*log, expected, std::uniform_int_distribution<int32_t>(1, 6)(random),
                             step, std::uniform_int_distribution<size_t>(0, 700)(random));
            } else if (action < 60) {
                std::vector<std::vector<uint8_t>> owned;
                const int count = std::uniform_int_distribution<int>(1, 6)(random);
                for (int i = 0; i < count; ++i)
                    owned.push_back(
                        make_batch(2, step, std::uniform_int_distribution<size_t>(0, 500)(random),
                                   static_cast<uint8_t>(i)));
                std::vector<std::span<uint8_t>> spans(owned.begin(), owned.end());
                auto appended = log->append_many(spans);
                REQUIRE(appended.ok());
                for (size_t i = 0; i < owned.size(); ++i) {
                    CHECK((*appended)[i].base_offset == expected.end());
                    expected.batches.push_back({expected.end(), expected.end() + 1, owned[i]});
                }
            } else if (action < 64) {
                REQUIRE(log->close().ok());
                log.reset();
                log = open_log(dir.path(), config);
            } else if (action < 68) {
                log.reset();  // as if the process died: no close
                log = open_log(dir.path(), config);
            } else if (!expected.batches.empty()) {
                const int64_t offset =
                    std::uniform_int_distribution<int64_t>(0, expected.end() - 1)(random);
                const int32_t max_bytes = std::uniform_int_distribution<int32_t>(1, 4000)(random);
                auto got = log->read(offset, max_bytes);
                REQUIRE(got.ok());
                const std::vector<uint8_t> bytes = slice_bytes(*got);
                // Whole consecutive batches from the one holding the offset, at least one,
                // within max_bytes unless it is only one.
                size_t i = expected.holding(offset);
                size_t used = 0;
                int batches = 0;
                while (used < bytes.size() && i < expected.batches.size()) {
                    const auto& b = expected.batches[i].bytes;
                    REQUIRE(used + b.size() <= bytes.size());
                    CHECK(std::equal(b.begin(), b.end(),
                                     bytes.begin() + static_cast<std::ptrdiff_t>(used)));
                    used += b.size();
                    ++i;
                    ++batches;
                }
                CHECK(batches >= 1);
                CHECK((batches == 1 || used <= static_cast<size_t>(max_bytes)));
            }
            CHECK(log->log_end_offset() == expected.end());
        }
        check_matches(*log, expected);
    }
}

namespace {

// Appends small batches until the log has rolled `rolls` more times.
void append_until_rolls(partition_log& log, model& expected, size_t rolls) {
    const size_t target = log.segment_count() + rolls;
    while (log.segment_count() < target) append_batch(log, expected, 2, 7, 300);
}

// A missing checkpoint reads as 0, as it does at open: a new log writes none.
int64_t checkpointed_recovery_point(const fs::path& dir) {
    return read_checkpoint(dir / recovery_point_file_name).value_or(0);
}

}  // namespace

TEST_CASE("a roll queues a sync request instead of syncing, completions advance in order") {
    temp_dir dir("sync-requests");
    log_config config = test_config();
    config.segment_bytes = 3000;
    auto log = open_log(dir.path(), config);
    model expected;
    append_until_rolls(*log, expected, 2);
    // Nothing was synced by the rolls: the marks stay at the open.
    CHECK(log->recovery_point() == 0);
    CHECK(log->durable_offset() == 0);
    CHECK(checkpointed_recovery_point(dir.path()) == 0);
    CHECK(log->outstanding_sync_count() == 2);
    CHECK(log->has_sync_requests());
    std::vector<sync_request> requests = log->take_sync_requests();
    REQUIRE(requests.size() == 2);
    CHECK(!log->has_sync_requests());
    CHECK(log->take_sync_requests().empty());  // each request is handed out once
    CHECK(requests[0].durable_offset < requests[1].durable_offset);
    CHECK(requests[1].durable_offset <= log->log_end_offset());

    // The active segment synced: still not durable while older segments are not.
    const int64_t end = log->log_end_offset();
    REQUIRE(::fdatasync(log->active_file().value()->fd) == 0);
    log->mark_durable(end);
    CHECK(log->durable_offset() == 0);

    // The newer request completes first: no contiguous prefix yet.
    REQUIRE(::fdatasync(requests[1].file->fd) == 0);
    REQUIRE(log->complete_sync(requests[1].durable_offset, 0).ok());
    CHECK(log->recovery_point() == 0);
    CHECK(log->durable_offset() == 0);
    CHECK(checkpointed_recovery_point(dir.path()) == 0);

    // The older one completes: both are done, the checkpoint moves to the active
    // segment's base, and the earlier mark_durable of the active segment counts.
    REQUIRE(::fdatasync(requests[0].file->fd) == 0);
    REQUIRE(log->complete_sync(requests[0].durable_offset, 0).ok());
    CHECK(log->recovery_point() == requests[1].durable_offset);
    CHECK(checkpointed_recovery_point(dir.path()) == requests[1].durable_offset);
    CHECK(log->durable_offset() == end);
    CHECK(log->outstanding_sync_count() == 0);
    // A completion reported twice (or after sync() did the work) changes nothing.
    REQUIRE(log->complete_sync(requests[0].durable_offset, 0).ok());
    CHECK(log->recovery_point() == requests[1].durable_offset);
    check_matches(*log, expected);
}

TEST_CASE("mark_durable counts inside a segment once the older segments are synced") {
    temp_dir dir("sync-partial");
    log_config config = test_config();
    config.segment_bytes = 3000;
    auto log = open_log(dir.path(), config);
    model expected;
    append_until_rolls(*log, expected, 1);
    auto requests = log->take_sync_requests();
    REQUIRE(requests.size() == 1);
    append_until_rolls(*log, expected, 1);
    // The first request completes; the second segment's is outstanding, so the durable
    // offset stops at the base of that segment even though the active one was synced.
    REQUIRE(log->complete_sync(requests[0].durable_offset, 0).ok());
    const int64_t end = log->log_end_offset();
    REQUIRE(::fdatasync(log->active_file().value()->fd) == 0);
    log->mark_durable(end);
    CHECK(log->durable_offset() == requests[0].durable_offset);
    CHECK(log->recovery_point() == requests[0].durable_offset);
    REQUIRE(log->run_sync_requests().ok());
    CHECK(log->durable_offset() == end);
    CHECK(log->outstanding_sync_count() == 0);
}

TEST_CASE("a retryable sync failure requeues the request, a write-back error stops the log") {
    temp_dir dir("sync-failure");
    log_config config = test_config();
    config.segment_bytes = 3000;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        append_until_rolls(*log, expected, 2);
        auto requests = log->take_sync_requests();
        REQUIRE(requests.size() == 2);
        auto again = log->complete_sync(requests[0].durable_offset, -EAGAIN);
        REQUIRE(!again.ok());
        CHECK(again.failure().code == EAGAIN);
        auto retaken = log->take_sync_requests();
        REQUIRE(retaken.size() == 1);
        CHECK(retaken[0].durable_offset == requests[0].durable_offset);
        CHECK(log->recovery_point() == 0);

        // EIO: a later fdatasync could succeed over lost pages, so nothing past this
        // segment may ever count as durable, and appends stop.
        auto broken = log->complete_sync(requests[0].durable_offset, -EIO);
        REQUIRE(!broken.ok());
        CHECK(broken.failure().code == EIO);
        REQUIRE(log->complete_sync(requests[1].durable_offset, 0).ok());
        CHECK(log->recovery_point() == 0);
        CHECK(log->durable_offset() == 0);
        std::vector<uint8_t> batch = make_batch(1, 1, 10, 1);
        auto refused = log->append(batch, 1);
        REQUIRE(!refused.ok());
        CHECK(refused.failure().code == log_closed);
        CHECK(!log->sync().ok());
        CHECK(log->take_sync_requests().empty());
        REQUIRE(log->close().ok());  // nothing to do: the next open recovers
    }
    // Reopening recovers from the recovery point and keeps every batch.
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    CHECK(log->durable_offset() == expected.end());
}

TEST_CASE("sync() and close() finish outstanding requests; recovery rescans unsynced segments") {
    temp_dir dir("sync-close");
    log_config config = test_config();
    config.segment_bytes = 3000;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        append_until_rolls(*log, expected, 3);
        (void)log->take_sync_requests();  // taken, never completed: the ring is gone
        REQUIRE(log->sync().ok());
        CHECK(log->outstanding_sync_count() == 0);
        CHECK(log->durable_offset() == expected.end());
        append_until_rolls(*log, expected, 2);
        CHECK(log->outstanding_sync_count() == 2);
        REQUIRE(log->close().ok());
        CHECK(log->outstanding_sync_count() == 0);
        CHECK(log->recovery_point() == expected.end());
        CHECK(checkpointed_recovery_point(dir.path()) == expected.end());
    }
    {
        auto log = open_log(dir.path(), config);
        check_matches(*log, expected);
        // Rolls with their requests never completed, then a crash: the recovery point
        // is several segments back and recovery scans all of them.
        const int64_t point = log->recovery_point();
        append_until_rolls(*log, expected, 3);
        CHECK(checkpointed_recovery_point(dir.path()) == point);
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    CHECK(log->recovery_point() == expected.end());
}

TEST_CASE("an index file emptied by a machine crash is rebuilt, not trusted") {
    temp_dir dir("index-emptied");
    log_config config = test_config();
    config.segment_bytes = 20000;
    config.index_interval_bytes = 500;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        append_until_rolls(*log, expected, 1);
        REQUIRE(log->close().ok());
    }
    // Index files written at a roll are not fsync'ed: after a power cut they may be
    // empty although their directory entries survived.
    const fs::path first = dir.path() / "00000000000000000000.index";
    const fs::path first_time = dir.path() / "00000000000000000000.timeindex";
    REQUIRE(fs::file_size(first) > 0);
    fs::resize_file(first, 0);
    fs::resize_file(first_time, 0);
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    CHECK(fs::file_size(first) > 0);
    CHECK(fs::file_size(first_time) > 0);
}

TEST_CASE("memory and descriptors of an idle partition") {
    temp_dir dir("idle");
    log_config config = test_config();
    config.segment_bytes = 64 * 1024;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        append_until_rolls(*log, expected, 4);
        // Synced closed segments give their descriptors back.
        CHECK(log->open_file_count() == 5);
        REQUIRE(log->run_sync_requests().ok());
        CHECK(log->open_file_count() == 1);
        MESSAGE("busy partition with ", log->segment_count(),
                " segments after its syncs: ", log->memory_bytes(), " bytes, ",
                log->open_file_count(), " descriptors");
        REQUIRE(log->close().ok());
    }
    auto idle = open_log(dir.path(), config);
    MESSAGE("idle partition with ", idle->segment_count(), " segments: ", idle->memory_bytes(),
            " bytes, ", idle->open_file_count(), " descriptors");
    CHECK(idle->memory_bytes() < 64 * 1024);
    CHECK(idle->open_file_count() == 1);
    temp_dir single_dir("idle-single");
    {
        auto log = open_log(single_dir.path(), config);
        model one;
        for (int i = 0; i < 20; ++i) append_batch(*log, one, 2, i, 300);
        REQUIRE(log->close().ok());
    }
    auto single = open_log(single_dir.path(), config);
    MESSAGE("idle partition with 1 segment: ", single->memory_bytes(), " bytes, ",
            single->open_file_count(), " descriptors");
    CHECK(single->memory_bytes() < 64 * 1024);
    CHECK(single->open_file_count() == 1);
}
