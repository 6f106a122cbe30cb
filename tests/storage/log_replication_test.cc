// Tests of partition_log's replication side: appends at the leader's offsets (gaps
// included), leader epochs taken from the batches and announced, truncate_to and
// truncate_fully_and_start_at (files, indexes, marks, epochs, reopen with and without a
// close), reads bounded by an offset, the epoch file's rebuild, and a randomized
// comparison of all of them against a model.

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <random>

#include "proto/record_batch.h"
#include "storage/checkpoint.h"
#include "storage/leader_epoch.h"
#include "storage/log.h"
#include "storage/segment.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;
using namespace spate::storage::testing;
namespace fs = std::filesystem;
namespace proto = spate::proto;

using entries = std::vector<epoch_entry>;
using answer = std::pair<int32_t, int64_t>;

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

// A batch as the tests expect to find it in the log.
struct written {
    int64_t base_offset;
    int64_t last_offset;
    int32_t epoch;
    int64_t first_timestamp;
    std::vector<uint8_t> bytes;
};

struct model {
    std::vector<written> batches;
    int64_t start = 0;
    int64_t end = 0;
    leader_epoch_cache epochs;

    // The batches a read from the log start sees (the first may begin before it).
    std::vector<written> visible() const {
        std::vector<written> out;
        for (const written& b : batches)
            if (b.last_offset >= start) out.push_back(b);
        return out;
    }
};

// Appends through append(): `epoch` is stamped as a leader stamps its batches.
const written& append_at_epoch(partition_log& log, model& expected, int32_t epoch, int32_t records,
                               size_t value_bytes, int64_t timestamp) {
    std::vector<uint8_t> batch =
        make_batch(records, timestamp, value_bytes, static_cast<uint8_t>(expected.batches.size()));
    proto::set_partition_leader_epoch(batch, epoch);
    auto appended = log.append(batch, records);
    REQUIRE_MESSAGE(appended.ok(), (appended.ok() ? "" : appended.failure().message));
    CHECK(appended->base_offset == expected.end);
    const int64_t base = appended->base_offset;
    expected.batches.push_back({base, base + records - 1, epoch, timestamp, batch});
    expected.end = base + records;
    expected.epochs.assign(epoch, base);
    return expected.batches.back();
}

// Appends through append_replicated() at `base`.
const written& replicate(partition_log& log, model& expected, int64_t base, int32_t epoch,
                         int32_t records, size_t value_bytes, int64_t timestamp) {
    std::vector<uint8_t> batch = make_stamped_batch(base, epoch, records, timestamp, value_bytes,
                                                    static_cast<uint8_t>(expected.batches.size()));
    auto appended = log.append_replicated(batch);
    REQUIRE_MESSAGE(appended.ok(), (appended.ok() ? "" : appended.failure().message));
    CHECK(appended->base_offset == base);
    expected.batches.push_back({base, base + records - 1, epoch, timestamp, batch});
    expected.end = base + records;
    expected.epochs.assign(epoch, base);
    return expected.batches.back();
}

// The log from its start to its end, batch by batch through read(), gaps allowed:
// offsets must increase and every batch must be whole and valid.
std::vector<stored_batch> read_batches(const partition_log& log) {
    std::vector<stored_batch> out;
    int64_t offset = log.log_start_offset();
    while (offset < log.log_end_offset()) {
        auto got = log.read(offset, 1 << 20);
        REQUIRE(got.ok());
        const std::vector<uint8_t> bytes = slice_bytes(*got);
        if (bytes.empty()) break;  // a gap up to the log end
        size_t position = 0;
        while (position < bytes.size()) {
            std::span<const uint8_t> rest(bytes.data() + position, bytes.size() - position);
            auto header = proto::read_batch_header(rest);
            REQUIRE(header.ok());
            const auto total = static_cast<size_t>(header->total_size());
            REQUIRE(total <= rest.size());
            const proto::batch_check check =
                proto::validate_batch(rest.first(total), total, proto::batch_source::log);
            REQUIRE(check.error == proto::batch_error::none);
            REQUIRE(header->last_offset() >= offset);
            out.push_back({header->base_offset, header->last_offset(),
                           std::vector<uint8_t>(rest.begin(), rest.begin() + total)});
            offset = header->last_offset() + 1;
            position += total;
        }
    }
    return out;
}

void check_matches(const partition_log& log, const model& expected) {
    CHECK(log.log_start_offset() == expected.start);
    CHECK(log.log_end_offset() == expected.end);
    const std::vector<written> want = expected.visible();
    const std::vector<stored_batch> got = read_batches(log);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].base_offset == want[i].base_offset);
        CHECK(got[i].bytes == want[i].bytes);
    }
    CHECK(log.leader_epochs().entries() == expected.epochs.entries());
}

std::string file_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Base offsets of the segment files in the directory, ascending.
std::vector<int64_t> segment_bases(const fs::path& dir) {
    std::vector<int64_t> bases;
    for (const auto& entry : fs::directory_iterator(dir))
        if (entry.path().extension() == ".log") bases.push_back(std::stoll(entry.path().stem()));
    std::sort(bases.begin(), bases.end());
    return bases;
}

// What truncate_to(offset) must leave: the batches ending below `offset` (the one
// holding it goes whole), ending at the last of them or at the start of the segment that
// held `offset`, whichever is later (a segment may start after a gap).
void truncate_model(model& expected, const fs::path& dir, int64_t offset) {
    if (offset >= expected.end) return;
    int64_t holder_base = 0;
    for (int64_t base : segment_bases(dir))
        if (base <= offset) holder_base = base;
    std::erase_if(expected.batches, [&](const written& b) { return b.last_offset >= offset; });
    expected.end =
        std::max(holder_base,
                 expected.batches.empty() ? holder_base : expected.batches.back().last_offset + 1);
    expected.start = std::min(expected.start, expected.end);
    expected.epochs.truncate_from_end(expected.end);
}

// What an open does to the epochs: the log start applies, entries from the end go.
void reopen_model(model& expected) {
    expected.epochs.truncate_from_start(expected.start);
    expected.epochs.truncate_from_end(expected.end);
}

// Timestamps grow with offsets in these tests (each record's is its batch's first plus
// its place in the batch).
void check_timestamps(const partition_log& log, const model& expected) {
    const std::vector<written> visible = expected.visible();
    for (const written& b : visible) {
        auto found = log.offset_for_timestamp(b.first_timestamp);
        REQUIRE(found.ok());
        CHECK(found->offset == std::max(b.base_offset, expected.start));
    }
    int64_t largest = -1;
    for (const written& b : visible)
        largest = std::max(largest, b.first_timestamp + (b.last_offset - b.base_offset));
    auto beyond = log.offset_for_timestamp(largest + 1);
    REQUIRE(beyond.ok());
    CHECK(beyond->offset == -1);
    auto max_timestamp = log.offset_for_timestamp(-3);
    REQUIRE(max_timestamp.ok());
    CHECK(max_timestamp->timestamp == largest);
}

}  // namespace

TEST_CASE("append_replicated keeps the leader's offsets, accepts gaps, refuses to go back") {
    temp_dir dir("replicated");
    log_config config = test_config();
    config.segment_bytes = 4000;
    config.index_interval_bytes = 300;
    auto log = open_log(dir.path(), config);
    model expected;
    replicate(*log, expected, 0, 1, 3, 100, 1000);
    CHECK(log->log_end_offset() == 3);
    CHECK_FALSE(fs::exists(dir.path() / replicated_gaps_file_name));
    replicate(*log, expected, 10, 1, 2, 100, 1010);
    CHECK(log->log_end_offset() == 12);
    // The first gap is on disk before its batch, for recovery's sake.
    CHECK(read_checkpoint(dir.path() / replicated_gaps_file_name) == 10);

    // Below the log end, or overlapping it: refused, and nothing is written.
    for (int64_t base : {11, 5, 0}) {
        std::vector<uint8_t> batch = make_stamped_batch(base, 1, 2, 5, 10, 0);
        auto refused = log->append_replicated(batch);
        REQUIRE_FALSE(refused.ok());
        CHECK(refused.failure().code == offset_out_of_order);
        CHECK(log->log_end_offset() == 12);
    }
    std::vector<uint8_t> torn = make_stamped_batch(12, 1, 2, 5, 10, 0);
    torn.pop_back();
    CHECK(log->append_replicated(torn).failure().code == invalid_batch);

    // A read inside the gap starts at the batch after it.
    auto in_gap = log->read(5, 1);
    REQUIRE(in_gap.ok());
    CHECK(slice_bytes(*in_gap) == expected.batches[1].bytes);

    // Many more, every third after a gap, over several segments; append() continues.
    for (int i = 0; i < 40; ++i)
        replicate(*log, expected, expected.end + (i % 3 == 0 ? 7 : 0), 1, 1 + i % 4, 200,
                  2000 + i * 10);
    CHECK(log->segment_count() > 3);
    append_at_epoch(*log, expected, 1, 2, 100, 3000);
    // A gap wider than the segment's int32 reach: a new segment starts at the batch.
    const int64_t far = expected.end + 3'000'000'000LL;
    const size_t segments = log->segment_count();
    replicate(*log, expected, far, 2, 3, 100, 4000);
    CHECK(log->segment_count() == segments + 1);
    CHECK(segment_bases(dir.path()).back() == far);
    replicate(*log, expected, expected.end + 1, 2, 3, 100, 4010);
    check_matches(*log, expected);
    check_timestamps(*log, expected);

    // A kill (no close): recovery accepts the gaps and drops nothing.
    log.reset();
    log = open_log(dir.path(), config);
    CHECK(log->recovery_report().truncations == 0);
    CHECK(log->recovery_report().segments_moved_aside == 0);
    reopen_model(expected);
    check_matches(*log, expected);
    // A clean close: the tail check accepts them too.
    REQUIRE(log->close().ok());
    log.reset();
    log = open_log(dir.path(), config);
    CHECK(log->vouched_by_clean_marker());
    CHECK_FALSE(log->recovery_report().clean_marker_rejected);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
}

TEST_CASE("epochs are recorded from batch headers through append and append_replicated") {
    temp_dir dir("epochs");
    log_config config = test_config();
    config.segment_bytes = 3000;
    auto log = open_log(dir.path(), config);
    const fs::path file = dir.path() / leader_epoch_file_name;
    // A new log writes no epoch file until it has a batch.
    CHECK_FALSE(fs::exists(file));
    model expected;
    append_at_epoch(*log, expected, -1, 2, 100, 1000);  // unstamped: no epoch
    CHECK(log->leader_epochs().entries().empty());
    CHECK(file_text(file) == "0\n0\n");
    const int64_t second = append_at_epoch(*log, expected, 2, 3, 100, 1010).base_offset;
    append_at_epoch(*log, expected, 2, 3, 100, 1020);
    append_at_epoch(*log, expected, 1, 3, 100, 1030);  // older than the latest: ignored
    CHECK(log->leader_epochs().entries() == entries{{2, second}});
    const int64_t fifth = replicate(*log, expected, expected.end, 5, 2, 100, 1040).base_offset;
    CHECK(log->leader_epochs().entries() == entries{{2, second}, {5, fifth}});
    CHECK(file_text(file) == leader_epoch_cache(entries{{2, second}, {5, fifth}}).serialize());

    // A new leader announces its epoch before it has a batch.
    const int64_t end = log->log_end_offset();
    REQUIRE(log->assign_epoch(7, end).ok());
    CHECK(log->leader_epochs().latest_epoch() == 7);
    REQUIRE(log->assign_epoch(6, end).ok());  // older: ignored
    CHECK(log->assign_epoch(8, end + 1).failure().code == offset_out_of_range);
    CHECK(log->leader_epochs().entries() == entries{{2, second}, {5, fifth}, {7, end}});
    CHECK(file_text(file) == log->leader_epochs().serialize());
    expected.epochs.assign(7, end);
    append_at_epoch(*log, expected, 7, 2, 100, 1050);
    CHECK(log->leader_epochs().entries() == entries{{2, second}, {5, fifth}, {7, end}});

    // Several epochs in one append_many, across a roll.
    std::vector<std::vector<uint8_t>> batches;
    const int32_t epochs_of[] = {8, 8, 9, 9, 9, 11, 11};
    for (int32_t epoch : epochs_of) {
        batches.push_back(make_batch(2, 1100, 600, 1));
        proto::set_partition_leader_epoch(batches.back(), epoch);
    }
    std::vector<std::span<uint8_t>> spans(batches.begin(), batches.end());
    const size_t segments = log->segment_count();
    auto appended = log->append_many(spans);
    REQUIRE(appended.ok());
    CHECK(log->segment_count() > segments);
    for (size_t i = 0; i < batches.size(); ++i) {
        const int64_t base = (*appended)[i].base_offset;
        expected.batches.push_back({base, base + 1, epochs_of[i], 1100, batches[i]});
        expected.epochs.assign(epochs_of[i], base);
    }
    expected.end = expected.batches.back().last_offset + 1;
    check_matches(*log, expected);
    CHECK(file_text(file) == expected.epochs.serialize());

    // OffsetsForLeaderEpoch.
    const int64_t eighth = (*appended)[0].base_offset;
    CHECK(log->end_offset_for_epoch(0) == answer{-1, -1});
    CHECK(log->end_offset_for_epoch(2) == answer{2, fifth});
    CHECK(log->end_offset_for_epoch(4) == answer{2, fifth});
    CHECK(log->end_offset_for_epoch(7) == answer{7, eighth});
    CHECK(log->end_offset_for_epoch(11) == answer{11, expected.end});
    CHECK(log->end_offset_for_epoch(12) == answer{11, expected.end});

    // The same after a clean close and after a kill.
    REQUIRE(log->close().ok());
    log.reset();
    log = open_log(dir.path(), config);
    check_matches(*log, expected);
    append_at_epoch(*log, expected, 11, 2, 100, 1200);
    log.reset();
    log = open_log(dir.path(), config);
    check_matches(*log, expected);
}

TEST_CASE("truncate_to inside the active segment, inside a batch and at a batch boundary") {
    temp_dir dir("truncate-active");
    log_config config = test_config();
    config.index_interval_bytes = 200;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 20; ++i) {
        const int32_t epoch = i < 5 ? 0 : i < 12 ? 1 : i < 16 ? 2 : 3;
        append_at_epoch(*log, expected, epoch, 3, 150, 1000 + i * 10);
    }
    REQUIRE(log->segment_count() == 1);
    const int64_t b5 = expected.batches[5].base_offset;
    const int64_t b12 = expected.batches[12].base_offset;
    CHECK(log->leader_epochs().entries() ==
          entries{{0, 0}, {1, b5}, {2, b12}, {3, expected.batches[16].base_offset}});

    // Inside batch 15: the whole batch goes, the log ends at its start.
    const int64_t b15 = expected.batches[15].base_offset;
    auto truncated = log->truncate_to(b15 + 1);
    REQUIRE(truncated.ok());
    CHECK(*truncated == b15);
    truncate_model(expected, dir.path(), b15 + 1);
    CHECK(expected.end == b15);
    CHECK(log->truncation_count() == 1);
    CHECK(log->leader_epochs().entries() == entries{{0, 0}, {1, b5}, {2, b12}});
    CHECK(file_text(dir.path() / leader_epoch_file_name) == log->leader_epochs().serialize());
    int64_t kept_bytes = 0;
    for (const written& b : expected.batches) kept_bytes += static_cast<int64_t>(b.bytes.size());
    CHECK(static_cast<int64_t>(fs::file_size(segment::log_path(dir.path(), 0))) == kept_bytes);
    // The cut is synced: every mark is at the new end.
    CHECK(log->durable_offset() == b15);
    CHECK(log->recovery_point() == b15);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
    for (int64_t offset = 0; offset < expected.end; ++offset) {
        auto got = log->read(offset, 1);
        REQUIRE(got.ok());
        CHECK(got->high_watermark == expected.end);
        const auto holding =
            std::find_if(expected.batches.begin(), expected.batches.end(),
                         [&](const written& b) { return b.last_offset >= offset; });
        CHECK(slice_bytes(*got) == holding->bytes);
    }

    // At a batch boundary: exactly there.
    const int64_t b10 = expected.batches[10].base_offset;
    truncated = log->truncate_to(b10);
    REQUIRE(truncated.ok());
    CHECK(*truncated == b10);
    truncate_model(expected, dir.path(), b10);
    CHECK(log->leader_epochs().entries() == entries{{0, 0}, {1, b5}});
    check_matches(*log, expected);
    check_timestamps(*log, expected);

    // At or beyond the end nothing happens; below the start is refused.
    CHECK(log->truncate_to(b10).value() == b10);
    CHECK(log->truncate_to(b10 + 100).value() == b10);
    CHECK(log->truncation_count() == 2);
    REQUIRE(log->delete_records_before(2).ok());
    expected.start = 2;
    expected.epochs.truncate_from_start(2);
    CHECK(log->truncate_to(1).failure().code == offset_out_of_range);

    // Appends continue at the new end, in a new epoch, across the old end.
    for (int i = 0; i < 15; ++i) append_at_epoch(*log, expected, 4, 3, 150, 2000 + i * 10);
    CHECK(log->leader_epochs().entries() == entries{{0, 2}, {1, b5}, {4, b10}});
    check_matches(*log, expected);
    check_timestamps(*log, expected);

    // Reopened after a kill and after a clean close: the same log.
    log.reset();
    log = open_log(dir.path(), config);
    reopen_model(expected);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
    REQUIRE(log->truncate_to(expected.batches[20].base_offset + 2).ok());
    truncate_model(expected, dir.path(), expected.batches[20].base_offset + 2);
    REQUIRE(log->close().ok());
    log.reset();
    log = open_log(dir.path(), config);
    CHECK(log->vouched_by_clean_marker());
    reopen_model(expected);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
}

TEST_CASE("truncate_to across segments deletes the later ones and cuts the holder's indexes") {
    temp_dir dir("truncate-segments");
    log_config config = test_config();
    config.segment_bytes = 2000;
    config.index_interval_bytes = 200;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 60; ++i) append_at_epoch(*log, expected, i / 10, 2, 200, 1000 + i * 10);
    const std::vector<int64_t> bases = segment_bases(dir.path());
    REQUIRE(bases.size() >= 6);
    REQUIRE(log->outstanding_sync_count() == bases.size() - 1);  // nothing synced yet

    // Into the middle of the third segment: the segments after it go, with their sync
    // requests; its own request goes too (the truncation synced it).
    const int64_t target = bases[2] + (bases[3] - bases[2]) / 2 + 1;
    auto truncated = log->truncate_to(target);
    REQUIRE(truncated.ok());
    truncate_model(expected, dir.path(), target);
    CHECK(*truncated == expected.end);
    CHECK(*truncated < target);
    CHECK(segment_bases(dir.path()) == std::vector<int64_t>(bases.begin(), bases.begin() + 3));
    for (size_t i = 3; i < bases.size(); ++i) {
        const fs::path path = segment::log_path(dir.path(), bases[i]);
        CHECK_FALSE(fs::exists(path));
        CHECK_FALSE(fs::exists(fs::path(path).replace_extension(".index")));
        CHECK_FALSE(fs::exists(fs::path(path).replace_extension(".timeindex")));
    }
    CHECK(log->segment_count() == 3);
    CHECK(log->outstanding_sync_count() == 2);
    // The older segments are not synced yet: the marks wait for them.
    CHECK(log->recovery_point() == 0);
    CHECK(log->durable_offset() == 0);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
    REQUIRE(log->run_sync_requests().ok());
    CHECK(log->durable_offset() == expected.end);
    CHECK(log->recovery_point() == bases[2]);

    // Exactly at a segment's base: that segment stays, empty, as the active one.
    truncated = log->truncate_to(bases[1]);
    REQUIRE(truncated.ok());
    CHECK(*truncated == bases[1]);
    truncate_model(expected, dir.path(), bases[1]);
    CHECK(segment_bases(dir.path()) == std::vector<int64_t>{bases[0], bases[1]});
    CHECK(fs::file_size(segment::log_path(dir.path(), bases[1])) == 0);
    check_matches(*log, expected);
    check_timestamps(*log, expected);

    // Appending again rolls again, and both reopens agree.
    for (int i = 0; i < 30; ++i) append_at_epoch(*log, expected, 7, 2, 200, 5000 + i * 10);
    CHECK(log->segment_count() > 3);
    check_matches(*log, expected);
    REQUIRE(log->truncate_to(expected.batches[25].base_offset + 1).ok());
    truncate_model(expected, dir.path(), expected.batches[25].base_offset + 1);
    log.reset();
    log = open_log(dir.path(), config);
    reopen_model(expected);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
    REQUIRE(log->close().ok());
    log.reset();
    log = open_log(dir.path(), config);
    check_matches(*log, expected);
    check_timestamps(*log, expected);
}

TEST_CASE("truncate_to below a log start inside the cut batch brings the log start down") {
    temp_dir dir("truncate-start");
    auto log = open_log(dir.path(), test_config());
    model expected;
    for (int i = 0; i < 3; ++i) append_at_epoch(*log, expected, 1, 3, 50, 100 + i);
    REQUIRE(log->delete_records_before(4).ok());
    CHECK(log->leader_epochs().entries() == entries{{1, 4}});
    auto truncated = log->truncate_to(4);
    REQUIRE(truncated.ok());
    CHECK(*truncated == 3);
    CHECK(log->log_start_offset() == 3);
    CHECK(log->log_end_offset() == 3);
    CHECK(log->leader_epochs().entries().empty());
    log.reset();
    log = open_log(dir.path(), test_config());
    CHECK(log->log_start_offset() == 3);
    CHECK(log->log_end_offset() == 3);
}

TEST_CASE("truncate_to aborts a compaction run in progress") {
    temp_dir dir("truncate-compaction");
    log_config config = test_config();
    config.segment_bytes = 2000;
    config.cleanup_compact = true;
    config.compaction_step_bytes = 1;  // one batch per step: the run stays in progress
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 30; ++i) append_at_epoch(*log, expected, 0, 2, 200, 1000 + i);
    REQUIRE(log->run_sync_requests().ok());
    auto stepped = log->compact_step(1'000'000);
    REQUIRE(stepped.ok());
    REQUIRE(*stepped);
    REQUIRE(log->truncate_to(expected.batches[3].base_offset).ok());
    CHECK(log->compaction_progress().runs_aborted == 1);
    for (const auto& entry : fs::directory_iterator(dir.path()))
        CHECK(entry.path().extension() != ".cleaned");
}

TEST_CASE("truncate_fully_and_start_at empties the log and restarts it at the offset") {
    temp_dir dir("truncate-fully");
    log_config config = test_config();
    config.segment_bytes = 2000;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 10; ++i) append_at_epoch(*log, expected, 1, 2, 300, 1000 + i);
    replicate(*log, expected, expected.end + 5, 2, 2, 300, 2000);  // a gap
    for (int i = 0; i < 10; ++i) append_at_epoch(*log, expected, 2, 2, 300, 3000 + i);
    REQUIRE(log->segment_count() > 2);
    REQUIRE(fs::exists(dir.path() / replicated_gaps_file_name));

    REQUIRE(log->truncate_fully_and_start_at(5000).ok());
    expected = model{};
    expected.start = expected.end = 5000;
    CHECK(log->truncation_count() == 1);
    CHECK(log->segment_count() == 1);
    CHECK(segment_bases(dir.path()) == std::vector<int64_t>{5000});
    CHECK(log->leader_epochs().entries().empty());
    CHECK(file_text(dir.path() / leader_epoch_file_name) == "0\n0\n");
    CHECK_FALSE(fs::exists(dir.path() / replicated_gaps_file_name));
    CHECK(log->durable_offset() == 5000);
    CHECK(log->recovery_point() == 5000);
    CHECK(log->outstanding_sync_count() == 0);
    CHECK(log->read(4999, 100).failure().code == offset_out_of_range);
    check_matches(*log, expected);

    append_at_epoch(*log, expected, 3, 2, 300, 6000);
    CHECK(log->leader_epochs().entries() == entries{{3, 5000}});
    log.reset();
    log = open_log(dir.path(), config);
    check_matches(*log, expected);

    // Back below the old start: the log simply starts there.
    REQUIRE(log->truncate_fully_and_start_at(10).ok());
    expected = model{};
    expected.start = expected.end = 10;
    append_at_epoch(*log, expected, 4, 2, 300, 7000);
    REQUIRE(log->close().ok());
    log.reset();
    log = open_log(dir.path(), config);
    check_matches(*log, expected);
}

TEST_CASE("read with max_offset returns only batches that end below it") {
    temp_dir dir("read-bounded");
    log_config config = test_config();
    config.index_interval_bytes = 150;
    auto log = open_log(dir.path(), config);
    model expected;
    for (int i = 0; i < 30; ++i) append_at_epoch(*log, expected, 0, 3, 100, 1000 + i);
    const int64_t end = expected.end;
    for (int64_t bound = 0; bound <= end + 2; ++bound) {
        for (const written& from : expected.batches) {
            for (int32_t max_bytes : {1, 500, 1 << 20}) {
                auto got = log->read(from.base_offset, max_bytes, bound);
                REQUIRE(got.ok());
                CHECK(got->high_watermark == std::min(bound, end));
                // The batches from `from` on that end below the bound and fit (at least one).
                std::vector<uint8_t> want;
                for (const written& b : expected.batches) {
                    if (b.base_offset < from.base_offset || b.last_offset >= bound) continue;
                    if (!want.empty() &&
                        static_cast<int64_t>(want.size() + b.bytes.size()) > max_bytes)
                        break;
                    want.insert(want.end(), b.bytes.begin(), b.bytes.end());
                }
                CHECK(slice_bytes(*got) == want);
            }
        }
    }
    // The two-argument read is bounded by the log end, as before.
    auto whole = log->read(0, 1 << 20);
    REQUIRE(whole.ok());
    CHECK(whole->high_watermark == end);
    CHECK(whole->bytes == log->read(0, 1 << 20, end).value().bytes);
}

TEST_CASE("a missing or damaged epoch file is rebuilt from the batch headers") {
    temp_dir dir("epoch-rebuild");
    log_config config = test_config();
    config.segment_bytes = 3000;
    config.index_interval_bytes = 150;
    model expected;
    // Epoch changes at the first batch, inside segments, right after an index entry, in
    // the tail after a segment's last entry, and three in a row.
    const std::map<int, int32_t> changes = {{0, -1}, {3, 0},  {4, 1},  {17, 2}, {18, 5},
                                            {40, 6}, {41, 7}, {42, 8}, {79, 9}};
    {
        auto log = open_log(dir.path(), config);
        int32_t epoch = -1;
        for (int i = 0; i < 80; ++i) {
            if (auto change = changes.find(i); change != changes.end()) epoch = change->second;
            append_at_epoch(*log, expected, epoch, 1 + i % 3, 100 + (i * 37) % 200, 1000 + i);
        }
        REQUIRE(log->segment_count() > 5);
        CHECK(log->leader_epochs().entries() == expected.epochs.entries());
        REQUIRE(expected.epochs.entries().size() == 8);
        REQUIRE(log->close().ok());
    }
    const fs::path file = dir.path() / leader_epoch_file_name;
    const std::string saved = file_text(file);
    const auto reopen_and_check = [&] {
        auto log = open_log(dir.path(), config);
        reopen_model(expected);
        check_matches(*log, expected);
        CHECK(file_text(file) == expected.epochs.serialize());
        return log;
    };
    SUBCASE("missing") {
        fs::remove(file);
        reopen_and_check();
        CHECK(file_text(file) == saved);
    }
    SUBCASE("damaged") {
        std::ofstream(file, std::ios::trunc) << "0\n3\n1 0\n";
        reopen_and_check();
        CHECK(file_text(file) == saved);
    }
    SUBCASE("missing after a kill and a moved log start") {
        {
            auto log = open_log(dir.path(), config);
            REQUIRE(log->delete_records_before(expected.batches[41].base_offset + 1).ok());
            expected.start = expected.batches[41].base_offset + 1;
            append_at_epoch(*log, expected, 10, 2, 100, 5000);
        }
        fs::remove(file);
        reopen_and_check();
    }
    SUBCASE("missing with every index file gone too") {
        fs::remove(file);
        for (const auto& entry : fs::directory_iterator(dir.path()))
            if (entry.path().extension() == ".index" || entry.path().extension() == ".timeindex")
                fs::remove(entry.path());
        reopen_and_check();
    }
}

TEST_CASE("an open drops the epochs that start at or after the log end, and says so on disk") {
    temp_dir dir("epoch-beyond-end");
    log_config config = test_config();
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 5; ++i) append_at_epoch(*log, expected, 3, 2, 100, 1000 + i);
        REQUIRE(log->close().ok());
    }
    // As a crash leaves it: an epoch announced, or recorded before its batch was written.
    const fs::path file = dir.path() / leader_epoch_file_name;
    std::ofstream(file, std::ios::trunc)
        << leader_epoch_cache(entries{{3, 0}, {4, expected.end}, {6, expected.end + 4}})
               .serialize();
    {
        auto log = open_log(dir.path(), config);
        CHECK(log->vouched_by_clean_marker());
        CHECK(log->leader_epochs().entries() == entries{{3, 0}});
        // The file is corrected before the log grows past the dropped entries, even by
        // a batch that brings no new epoch.
        append_at_epoch(*log, expected, 3, 6, 100, 2000);
        CHECK(file_text(file) == "0\n1\n3 0\n");
    }
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
}

TEST_CASE("epochs the file lost to a power loss are taken back from the scanned batches") {
    // A new epoch's entry is written unsynced before its first batch (storage/log.h): a
    // power loss can leave the batches that writeback had flushed and the older file.
    temp_dir dir("epoch-unsynced");
    log_config config = test_config();
    config.segment_bytes = 2000;
    config.index_interval_bytes = 150;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 12; ++i) append_at_epoch(*log, expected, 1, 2, 120, 1000 + i);
        REQUIRE(log->close().ok());
    }
    const fs::path file = dir.path() / leader_epoch_file_name;
    const std::string before = file_text(file);
    REQUIRE(before == "0\n1\n1 0\n");
    {
        // New epochs in the active segment and in segments rolled after it, then a crash
        // (no close): nothing synced, so the recovery point stays where the close left it.
        auto log = open_log(dir.path(), config);
        const size_t segments = log->segment_count();
        for (int i = 0; i < 30; ++i)
            append_at_epoch(*log, expected, i < 4 ? 1 : i < 20 ? 3 : 4, 2, 120, 2000 + i);
        REQUIRE(log->segment_count() > segments + 1);
        CHECK(log->leader_epochs().entries() == expected.epochs.entries());
        REQUIRE(expected.epochs.entries().size() == 3);
    }
    std::ofstream(file, std::ios::trunc) << before;
    {
        auto log = open_log(dir.path(), config);
        check_matches(*log, expected);
        // Written back at the open, before its recovery point passed those batches.
        CHECK(file_text(file) == expected.epochs.serialize());
        // The same from a file that lost only the newest epoch.
        for (int i = 0; i < 3; ++i) append_at_epoch(*log, expected, 6, 2, 120, 3000 + i);
    }
    std::ofstream(file, std::ios::trunc)
        << leader_epoch_cache(
               entries{expected.epochs.entries().begin(), expected.epochs.entries().end() - 1})
               .serialize();
    auto log = open_log(dir.path(), config);
    check_matches(*log, expected);
    CHECK(file_text(file) == expected.epochs.serialize());
}

TEST_CASE("batches left below the log start by a cut-short full truncation lend no epoch") {
    // truncate_fully_and_start_at writes the new log start and the emptied epoch file
    // before deleting the segments: a crash in between leaves old batches under the log
    // start, whose epochs may be higher than the ones written next.
    temp_dir dir("epoch-leftovers");
    log_config config = test_config();
    config.segment_bytes = 4000;
    config.index_interval_bytes = 150;
    model expected;
    {
        auto log = open_log(dir.path(), config);
        for (int i = 0; i < 14; ++i) append_at_epoch(*log, expected, 7, 2, 120, 1000 + i);
        REQUIRE(log->segment_count() == 2);
        REQUIRE(log->close().ok());
    }
    // The state the crash left: the new log start at the old end, an empty epoch file.
    const int64_t old_end = expected.end;
    REQUIRE(write_checkpoint(dir.path() / log_start_file_name, old_end).ok());
    std::ofstream(dir.path() / leader_epoch_file_name, std::ios::trunc)
        << leader_epoch_cache().serialize();
    expected.start = old_end;
    expected.epochs = leader_epoch_cache();
    {
        // The next leader's batches, at a lower epoch, then a crash (no close).
        auto log = open_log(dir.path(), config);
        check_matches(*log, expected);
        for (int i = 0; i < 3; ++i) append_at_epoch(*log, expected, 2, 2, 120, 2000 + i);
        check_matches(*log, expected);
    }
    // The scan reads the active segment, old batches included: only those from the log
    // start on count.
    auto log = open_log(dir.path(), config);
    REQUIRE(log->segment_count() == 1);
    check_matches(*log, expected);
    CHECK(log->leader_epochs().entries() == entries{{2, old_end}});
}

// The model test: random appends (both kinds, some after gaps), epoch changes,
// truncations of both kinds, DeleteRecords and reopens with and without a close,
// compared after every step with what the model says the log holds.
TEST_CASE("property: random replication, truncations and reopens match a model") {
    for (uint32_t seed : {1u, 2u, 3u}) {
        CAPTURE(seed);
        std::mt19937 random(seed);
        const auto chance = [&](int percent) {
            return std::uniform_int_distribution<int>(0, 99)(random) < percent;
        };
        const auto between = [&](int64_t low, int64_t high) {
            return std::uniform_int_distribution<int64_t>(low, high)(random);
        };
        temp_dir dir("replication-model");
        log_config config = test_config();
        config.segment_bytes = 2500;
        config.index_interval_bytes = static_cast<int32_t>(between(0, 400));
        auto log = open_log(dir.path(), config);
        model expected;
        int32_t epoch = 0;
        int64_t timestamp = 1000;
        for (int step = 0; step < 400; ++step) {
            CAPTURE(step);
            const int action = static_cast<int>(between(0, 99));
            const auto records = static_cast<int32_t>(between(1, 5));
            const auto value_bytes = static_cast<size_t>(between(20, 500));
            timestamp += 10;
            if (action < 40) {
                append_at_epoch(*log, expected, chance(10) ? -1 : epoch, records, value_bytes,
                                timestamp);
            } else if (action < 70) {
                const int64_t gap = chance(20) ? between(1, 30) : 0;
                replicate(*log, expected, expected.end + gap, epoch, records, value_bytes,
                          timestamp);
            } else if (action < 78) {
                epoch += static_cast<int32_t>(between(1, 2));
                if (chance(50)) {
                    REQUIRE(log->assign_epoch(epoch, expected.end).ok());
                    expected.epochs.assign(epoch, expected.end);
                }
            } else if (action < 88) {
                const int64_t target = between(expected.start, expected.end);
                auto truncated = log->truncate_to(target);
                REQUIRE_MESSAGE(truncated.ok(),
                                (truncated.ok() ? "" : truncated.failure().message));
                truncate_model(expected, dir.path(), target);
                CHECK(*truncated == expected.end);
            } else if (action < 91) {
                const int64_t target = between(expected.start, expected.end);
                REQUIRE(log->delete_records_before(target).ok());
                expected.start = std::max(expected.start, target);
                expected.epochs.truncate_from_start(expected.start);
            } else if (action < 93) {
                const int64_t offset = expected.end + between(0, 50);
                REQUIRE(log->truncate_fully_and_start_at(offset).ok());
                expected = model{};
                expected.start = expected.end = offset;
            } else if (action < 96) {
                if (chance(50)) REQUIRE(log->run_sync_requests().ok());
                log.reset();  // a kill: no close
                log = open_log(dir.path(), config);
                CHECK(log->recovery_report().truncations == 0);
                CHECK(log->recovery_report().segments_moved_aside == 0);
                reopen_model(expected);
            } else {
                REQUIRE(log->close().ok());
                log.reset();
                log = open_log(dir.path(), config);
                CHECK(log->vouched_by_clean_marker());
                reopen_model(expected);
            }
            check_matches(*log, expected);
            if (step % 20 == 0) check_timestamps(*log, expected);
        }
    }
}
