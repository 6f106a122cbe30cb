// Tests of log compaction: the key map, batch rewriting (plain and compressed), the
// chunked run of a partition_log, tombstones, gaps, reopen, crash leftovers of a swap,
// retention racing a run, a randomized comparison against a model, and the longest
// single step on a large log (printed, not asserted).

#include "storage/compaction.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <string>

#include "proto/record_batch.h"
#include "storage/checkpoint.h"
#include "storage/log.h"
#include "tests/storage/test_support.h"

namespace {

using namespace spate;
using namespace spate::storage;
using namespace spate::storage::testing;
namespace fs = std::filesystem;

constexpr int64_t now_base_ms = 1'000'000;

// "<prefix><number>", built without operator+ on a literal, which g++ 12 misreads
// (a false -Wrestrict).
std::string named(const char* prefix, int64_t number) {
    std::string out(prefix);
    out += std::to_string(number);
    return out;
}

log_config compact_config() {
    log_config config;
    config.retention_ms = -1;
    config.cleanup_delete = false;
    config.cleanup_compact = true;
    config.segment_bytes = 2000;
    config.index_interval_bytes = 200;
    config.delete_retention_ms = 1000;
    return config;
}

std::unique_ptr<partition_log> open_log(const fs::path& dir, const log_config& config) {
    auto opened = partition_log::open(dir, config);
    if (!opened) FAIL("open failed: ", opened.failure().message);
    return std::move(opened).value();
}

struct keyed {
    std::string key;  // empty: no key
    std::optional<std::string> value;
};

std::vector<uint8_t> keyed_batch(const std::vector<keyed>& records, int64_t timestamp_ms,
                                 proto::compression_codec codec = proto::compression_codec::none) {
    proto::batch_builder builder(codec, timestamp_ms);
    for (const keyed& r : records) {
        std::optional<std::span<const uint8_t>> key;
        if (!r.key.empty()) key = proto::byte_view(r.key);
        std::optional<std::span<const uint8_t>> value;
        if (r.value) value = proto::byte_view(*r.value);
        builder.add(key, value, {}, timestamp_ms);
    }
    return builder.build();
}

int64_t append(partition_log& log, const std::vector<keyed>& records, int64_t timestamp_ms,
               proto::compression_codec codec = proto::compression_codec::none) {
    std::vector<uint8_t> batch = keyed_batch(records, timestamp_ms, codec);
    auto appended = log.append(batch, static_cast<int32_t>(records.size()));
    REQUIRE(appended.ok());
    return appended->base_offset;
}

struct read_record {
    int64_t offset;
    std::string key;
    bool has_key;
    std::optional<std::string> value;
};

// Every record of the log through read(), checking each batch (CRC included) and that
// batch offsets strictly increase.
std::vector<read_record> read_records(const partition_log& log) {
    std::vector<read_record> out;
    int64_t offset = log.log_start_offset();
    int64_t previous_last = -1;
    while (offset < log.log_end_offset()) {
        auto got = log.read(offset, 1 << 20);
        REQUIRE(got.ok());
        const std::vector<uint8_t> bytes = slice_bytes(*got);
        if (bytes.empty()) break;  // only gaps remain up to the log end
        size_t position = 0;
        while (position < bytes.size()) {
            std::span<const uint8_t> rest(bytes.data() + position, bytes.size() - position);
            const proto::batch_check check =
                proto::validate_batch(rest, rest.size(), proto::batch_source::log);
            REQUIRE(check.error == proto::batch_error::none);
            const proto::batch_header& h = check.header;
            REQUIRE(h.base_offset > previous_last);
            REQUIRE(h.records_count > 0);
            previous_last = h.last_offset();
            auto walked = proto::for_each_record(
                rest.first(static_cast<size_t>(h.total_size())), 1 << 26,
                [&](const proto::record_view& r) {
                    read_record record{h.base_offset + r.offset_delta, {}, r.key.has_value(), {}};
                    if (r.key) record.key.assign(r.key->begin(), r.key->end());
                    if (r.value) record.value = std::string(r.value->begin(), r.value->end());
                    out.push_back(record);
                });
            REQUIRE(walked.ok());
            offset = h.last_offset() + 1;
            position += static_cast<size_t>(h.total_size());
        }
    }
    for (size_t i = 1; i < out.size(); ++i) CHECK(out[i - 1].offset < out[i].offset);
    return out;
}

// Runs compaction steps until no run is in progress; returns the number of steps.
int compact_fully(partition_log& log, int64_t now_ms) {
    int steps = 0;
    while (true) {
        auto stepped = log.compact_step(now_ms);
        REQUIRE_MESSAGE(stepped.ok(), (stepped.ok() ? "" : stepped.failure().message));
        ++steps;
        if (!*stepped) return steps;
        REQUIRE(steps < 100000);
    }
}

// Appends `rounds` updates of each of `keys` keys, one record per batch, each value
// naming its key and round; returns the latest value per key.
std::map<std::string, std::string> append_updates(partition_log& log, int keys, int rounds,
                                                  int64_t timestamp_ms) {
    std::map<std::string, std::string> latest;
    for (int round = 0; round < rounds; ++round) {
        for (int k = 0; k < keys; ++k) {
            const std::string key = named("key-", k);
            const std::string value = key + named("-round-", round);
            append(log, {{key, value}}, timestamp_ms);
            latest[key] = value;
        }
    }
    return latest;
}

size_t count_with_suffix(const fs::path& dir, const std::string& suffix) {
    size_t count = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
            ++count;
    }
    return count;
}

}  // namespace

TEST_CASE("key_offset_map keeps the latest offset per key and refuses new keys past its cap") {
    key_offset_map map(3);
    CHECK(map.put(hash_key(proto::byte_view("a")), 1));
    CHECK(map.put(hash_key(proto::byte_view("b")), 2));
    CHECK(map.put(hash_key(proto::byte_view("a")), 7));
    CHECK(map.put(hash_key(proto::byte_view("c")), 3));
    CHECK_FALSE(map.put(hash_key(proto::byte_view("d")), 4));
    CHECK(map.put(hash_key(proto::byte_view("b")), 9));  // known keys still update
    CHECK(map.get(hash_key(proto::byte_view("a"))) == 7);
    CHECK(map.get(hash_key(proto::byte_view("b"))) == 9);
    CHECK_FALSE(map.get(hash_key(proto::byte_view("d"))));
    CHECK(map.size() == 3);

    // Growth keeps every entry, and distinct keys get distinct digests.
    key_offset_map big(100000);
    for (int i = 0; i < 50000; ++i)
        REQUIRE(big.put(hash_key(proto::byte_view(named("key", i))), i));
    for (int i = 0; i < 50000; ++i)
        REQUIRE(big.get(hash_key(proto::byte_view(named("key", i)))) == i);
    CHECK_FALSE(hash_key(proto::byte_view("")) == hash_key(proto::byte_view(std::string(1, '\0'))));
}

TEST_CASE("clean_batch keeps offsets, recompresses with the batch's codec and fixes the CRC") {
    for (auto codec : {proto::compression_codec::none, proto::compression_codec::gzip,
                       proto::compression_codec::snappy, proto::compression_codec::lz4,
                       proto::compression_codec::zstd}) {
        CAPTURE(static_cast<int>(codec));
        std::vector<uint8_t> batch = keyed_batch(
            {{"a", "a1"}, {"b", "b1"}, {"", "no key"}, {"a", "a2"}, {"c", std::nullopt}}, 5000,
            codec);
        proto::set_base_offset(batch, 100);
        key_offset_map map(16);
        auto mapped = for_each_keyed_record(
            batch, [&](const key_hash& key, int64_t offset) { REQUIRE(map.put(key, offset)); });
        REQUIRE(mapped.ok());
        CHECK(map.get(hash_key(proto::byte_view("a"))) == 103);
        // "b" is superseded later in the log.
        REQUIRE(map.put(hash_key(proto::byte_view("b")), 500));

        // Before the tombstone's horizon: a1 and b1 go, the tombstone stays.
        auto early = clean_batch(batch, map, clean_rules{5000 + 999, 1000});
        REQUIRE(early.ok());
        REQUIRE(early->result == cleaned_batch::outcome::rewritten);
        CHECK(early->records_removed == 2);
        CHECK(early->tombstone_due_ms == 6000);
        const proto::batch_check check =
            proto::validate_batch(early->bytes, early->bytes.size(), proto::batch_source::log);
        REQUIRE(check.error == proto::batch_error::none);
        CHECK(check.header.base_offset == 100);
        CHECK(check.header.last_offset_delta == 4);
        CHECK(check.header.records_count == 3);
        CHECK(check.header.codec() == codec);
        std::vector<int64_t> offsets;
        auto walked = proto::for_each_record(
            early->bytes, 1 << 20,
            [&](const proto::record_view& r) { offsets.push_back(100 + r.offset_delta); });
        REQUIRE(walked.ok());
        CHECK(offsets == std::vector<int64_t>{102, 103, 104});

        // After it, the tombstone goes too; a batch left empty is dropped.
        auto late = clean_batch(batch, map, clean_rules{6000, 1000});
        REQUIRE(late.ok());
        CHECK(late->records_removed == 3);
        key_offset_map all(16);
        REQUIRE(all.put(hash_key(proto::byte_view("a")), 1000));
        REQUIRE(all.put(hash_key(proto::byte_view("b")), 1000));
        std::vector<uint8_t> keyed_only = keyed_batch({{"a", "x"}, {"b", "y"}}, 1, codec);
        auto gone = clean_batch(keyed_only, all, clean_rules{0, 1000});
        REQUIRE(gone.ok());
        CHECK(gone->result == cleaned_batch::outcome::dropped);
        // Nothing to remove: unchanged.
        auto same = clean_batch(keyed_only, key_offset_map(4), clean_rules{0, 1000});
        REQUIRE(same.ok());
        CHECK(same->result == cleaned_batch::outcome::unchanged);
    }
}

TEST_CASE("compaction keeps the latest value per key in closed segments, reads cross the gaps") {
    temp_dir dir("compact-basic");
    log_config config = compact_config();
    auto log = open_log(dir.path(), config);
    const auto latest = append_updates(*log, 5, 40, now_base_ms);
    append(*log, {{"", "keyless"}}, now_base_ms);
    REQUIRE(log->run_sync_requests().ok());
    REQUIRE(log->segment_count() > 3);
    const int64_t end = log->log_end_offset();
    const auto before = read_records(*log);

    compact_fully(*log, now_base_ms);
    CHECK(log->compaction_progress().runs_completed >= 1);
    CHECK(log->compaction_progress().segments_rewritten >= 1);
    CHECK(log->log_end_offset() == end);

    const auto after = read_records(*log);
    CHECK(after.size() < before.size());
    // Every key's latest value is there at its original offset; closed segments hold
    // no older version of any key; the keyless record survives.
    std::map<std::string, int64_t> latest_offset;
    for (const auto& r : before)
        if (r.has_key) latest_offset[r.key] = r.offset;
    std::map<std::string, int> seen;
    bool keyless = false;
    for (const auto& r : after) {
        if (!r.has_key) {
            keyless = true;
            continue;
        }
        ++seen[r.key];
        if (r.offset == latest_offset[r.key]) CHECK(r.value == latest.at(r.key));
    }
    CHECK(keyless);
    for (const auto& [key, offset] : latest_offset) {
        bool found = false;
        for (const auto& r : after) found = found || (r.offset == offset && r.key == key);
        CHECK(found);
    }
    // Reads at every offset (most now in gaps) return the next batch at or after it.
    for (int64_t offset = 0; offset < end; ++offset) {
        auto got = log->read(offset, 1);
        REQUIRE(got.ok());
        const auto bytes = slice_bytes(*got);
        REQUIRE(bytes.size() >= proto::batch_header_size);
        auto header = proto::read_batch_header(bytes);
        REQUIRE(header.ok());
        CHECK(header->last_offset() >= offset);
        const auto next = std::find_if(after.begin(), after.end(),
                                       [&](const read_record& r) { return r.offset >= offset; });
        REQUIRE(next != after.end());
        CHECK(header->base_offset <= next->offset);
    }
    // Nothing new: a second call does nothing.
    CHECK_FALSE(*log->compact_step(now_base_ms));

    // Offsets for timestamps still answer inside the compacted log.
    auto at = log->offset_for_timestamp(now_base_ms);
    REQUIRE(at.ok());
    CHECK(at->offset >= 0);
    CHECK(count_with_suffix(dir.path(), ".cleaned") == 0);
    CHECK(count_with_suffix(dir.path(), ".swap") == 0);
}

TEST_CASE("tombstones stay for delete.retention.ms past their batch, then go") {
    temp_dir dir("compact-tombstone");
    log_config config = compact_config();
    auto log = open_log(dir.path(), config);
    append_updates(*log, 3, 20, now_base_ms);
    const int64_t tombstone = append(*log, {{"key-1", std::nullopt}}, now_base_ms + 10);
    // Roll past the tombstone so that it lies in a closed segment.
    append_updates(*log, 1, 30, now_base_ms + 20);
    REQUIRE(log->run_sync_requests().ok());

    compact_fully(*log, now_base_ms + 100);
    auto records = read_records(*log);
    auto has = [&](const std::vector<read_record>& rs, const std::string& key) {
        return std::any_of(rs.begin(), rs.end(),
                           [&](const read_record& r) { return r.key == key; });
    };
    CHECK(std::any_of(records.begin(), records.end(),
                      [&](const read_record& r) { return r.offset == tombstone && !r.value; }));
    CHECK(std::count_if(records.begin(), records.end(),
                        [](const read_record& r) { return r.key == "key-1"; }) == 1);

    // Before the horizon nothing changes; after it the tombstone is gone, without any
    // new segment (the run is due by time).
    compact_fully(*log, now_base_ms + 10 + config.delete_retention_ms - 1);
    CHECK(has(read_records(*log), "key-1"));
    compact_fully(*log, now_base_ms + 10 + config.delete_retention_ms);
    records = read_records(*log);
    CHECK_FALSE(has(records, "key-1"));
    CHECK(has(records, "key-2"));
}

TEST_CASE("compressed batches are recompressed with their codec and stay valid") {
    for (auto codec : {proto::compression_codec::gzip, proto::compression_codec::zstd,
                       proto::compression_codec::lz4, proto::compression_codec::snappy}) {
        CAPTURE(static_cast<int>(codec));
        temp_dir dir("compact-codec");
        auto log = open_log(dir.path(), compact_config());
        std::map<std::string, std::string> latest;
        for (int round = 0; round < 30; ++round) {
            std::vector<keyed> records;
            for (int k = 0; k < 4; ++k) {
                const std::string key = named("k", (round + k) % 6);
                records.push_back({key, key + named("@", round) + std::string(40, 'x')});
                latest[key] = records.back().value.value();
            }
            append(*log, records, now_base_ms, codec);
        }
        REQUIRE(log->run_sync_requests().ok());
        compact_fully(*log, now_base_ms);
        CHECK(log->compaction_progress().records_removed > 0);
        // read_records validates every batch (CRC included) and decodes its records.
        const auto records = read_records(*log);
        for (const auto& [key, value] : latest) {
            CHECK(std::any_of(records.begin(), records.end(), [&](const read_record& r) {
                return r.key == key && r.value == value;
            }));
        }
        auto got = log->read(log->log_start_offset(), 1 << 20);
        REQUIRE(got.ok());
        const auto bytes = slice_bytes(*got);
        auto header = proto::read_batch_header(bytes);
        REQUIRE(header.ok());
        CHECK(header->codec() == codec);
    }
}

TEST_CASE("a compacted log reopens intact after a clean close and after a crash") {
    for (bool clean : {true, false}) {
        CAPTURE(clean);
        temp_dir dir("compact-reopen");
        log_config config = compact_config();
        std::vector<read_record> expected;
        int64_t end = 0;
        {
            auto log = open_log(dir.path(), config);
            append_updates(*log, 4, 40, now_base_ms);
            REQUIRE(log->run_sync_requests().ok());
            compact_fully(*log, now_base_ms);
            REQUIRE(log->compaction_progress().segments_rewritten > 0);
            expected = read_records(*log);
            end = log->log_end_offset();
            if (clean) REQUIRE(log->close().ok());
        }
        // Without the recovery point the whole log is scanned: gaps below the
        // cleaned-through checkpoint are accepted there.
        if (!clean) fs::remove(dir.path() / recovery_point_file_name);
        auto log = open_log(dir.path(), config);
        CHECK(log->log_end_offset() == end);
        const auto again = read_records(*log);
        REQUIRE(again.size() == expected.size());
        for (size_t i = 0; i < again.size(); ++i) {
            CHECK(again[i].offset == expected[i].offset);
            CHECK(again[i].value == expected[i].value);
        }
        // Lost index files of a compacted segment are rebuilt across its gaps.
        for (const auto& entry : fs::directory_iterator(dir.path()))
            if (entry.path().extension() == ".index") fs::remove(entry.path());
        log.reset();
        auto rebuilt = open_log(dir.path(), config);
        CHECK(read_records(*rebuilt).size() == expected.size());
        // And it goes on: appends and another run.
        append_updates(*rebuilt, 4, 20, now_base_ms);
        REQUIRE(rebuilt->run_sync_requests().ok());
        compact_fully(*rebuilt, now_base_ms);
        CHECK(read_records(*rebuilt).size() < expected.size() + 80);
    }
}

TEST_CASE("a base offset near INT64_MAX where offsets may jump is damage, not an offset") {
    // Offsets may jump forward in a compacted segment, or anywhere after a follower's gaps,
    // and the base offset is outside the CRC: a damaged one near INT64_MAX must end the log
    // there, not overflow its arithmetic.
    temp_dir dir("compact-offset-overflow");
    const log_config config = compact_config();
    {
        auto log = open_log(dir.path(), config);
        append_updates(*log, 4, 40, now_base_ms);
        REQUIRE(log->run_sync_requests().ok());
        compact_fully(*log, now_base_ms);
        REQUIRE(log->compaction_progress().segments_rewritten > 0);
    }  // not closed: as after kill -9, and without the recovery point everything is scanned
    fs::remove(dir.path() / recovery_point_file_name);
    // Gaps allowed in every segment (as a follower's log may have them), the last one too.
    REQUIRE(write_checkpoint(dir.path() / replicated_gaps_file_name, 0));
    std::vector<fs::path> segments;
    for (const auto& entry : fs::directory_iterator(dir.path()))
        if (entry.path().extension() == ".log") segments.push_back(entry.path());
    std::sort(segments.begin(), segments.end());
    REQUIRE(!segments.empty());
    // The first segment holding a batch gets its last batch's base offset set to
    // INT64_MAX - 1, and its last offset delta to 5 (as if compaction had removed records;
    // the CRC fixed): the last offset is past INT64_MAX, which UBSan would catch.
    std::vector<uint8_t> bytes;
    fs::path damaged;
    size_t last_at = 0;
    int64_t damaged_base = -1;
    for (const fs::path& segment : segments) {
        std::ifstream in(segment, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        size_t at = 0;
        auto split = proto::for_each_batch(
            bytes, [&](std::span<const uint8_t> batch, const proto::batch_header& h) {
                last_at = at;
                damaged_base = h.base_offset;
                at += batch.size();
            });
        REQUIRE(split);
        if (damaged_base >= 0) {
            damaged = segment;
            break;
        }
    }
    REQUIRE(damaged_base >= 0);
    const int64_t huge = std::numeric_limits<int64_t>::max() - 1;
    for (int i = 0; i < 8; ++i)
        bytes[last_at + static_cast<size_t>(i)] = static_cast<uint8_t>(huge >> (56 - 8 * i));
    bytes[last_at + proto::batch_last_offset_delta_offset + 3] = 5;
    proto::update_batch_crc(std::span<uint8_t>(bytes).subspan(last_at));
    {
        std::ofstream out(damaged, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()),
                  static_cast<std::streamsize>(bytes.size()));
    }
    auto log = open_log(dir.path(), config);
    CHECK(log->log_end_offset() >= 0);
    CHECK(log->log_end_offset() <= damaged_base);
    for (const auto& record : read_records(*log)) {
        CHECK(record.offset >= 0);
        CHECK(record.offset < damaged_base);
    }
}

namespace {

// A log compacted once, with a copy of its directory from before the run, to stage
// every crash state of one segment's swap by hand: the directory is put back as it was
// before compaction and the leftovers of the first segment's swap are added.
struct swap_fixture {
    temp_dir dir{"compact-swap"};
    temp_dir saved{"compact-swap-saved"};
    log_config config = compact_config();
    std::vector<read_record> original;
    // The records after the first segment alone was swapped: compacted below the
    // second segment's base offset, original above.
    std::vector<read_record> first_swapped;
    fs::path log_path;  // the first segment, which compaction rewrote
    std::vector<uint8_t> new_log, new_index, new_time;

    static std::vector<uint8_t> slurp(const fs::path& path) {
        std::ifstream in(path, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    static void spill(const fs::path& path, const std::vector<uint8_t>& bytes) {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()),
                  static_cast<std::streamsize>(bytes.size()));
    }
    static fs::path with(const fs::path& p, const char* extension) {
        fs::path out = p;
        out.replace_extension(extension);
        return out;
    }

    swap_fixture() {
        auto log = open_log(dir.path(), config);
        append_updates(*log, 3, 30, now_base_ms);
        REQUIRE(log->run_sync_requests().ok());
        original = read_records(*log);
        REQUIRE(log->close().ok());
        log.reset();
        std::vector<fs::path> logs;
        for (const auto& entry : fs::directory_iterator(dir.path()))
            if (entry.path().extension() == ".log") logs.push_back(entry.path());
        std::sort(logs.begin(), logs.end());
        REQUIRE(logs.size() > 2);
        log_path = logs[0];
        const int64_t second_base = std::stoll(logs[1].stem().string());
        fs::create_directories(saved.path());
        fs::copy(dir.path(), saved.path(), fs::copy_options::recursive);

        log = open_log(dir.path(), config);
        compact_fully(*log, now_base_ms);
        const auto compacted = read_records(*log);
        REQUIRE(log->close().ok());
        log.reset();
        new_log = slurp(log_path);
        new_index = slurp(with(log_path, ".index"));
        new_time = slurp(with(log_path, ".timeindex"));
        for (const auto& r : compacted)
            if (r.offset < second_base) first_swapped.push_back(r);
        for (const auto& r : original)
            if (r.offset >= second_base) first_swapped.push_back(r);
        REQUIRE(first_swapped.size() < original.size());

        // Back to the state before compaction, recovering at the next open.
        fs::remove_all(dir.path());
        fs::create_directories(dir.path());
        fs::copy(saved.path(), dir.path(), fs::copy_options::recursive);
        fs::remove(dir.path() / clean_shutdown_file_name);
    }

    fs::path suffixed(const char* extension, const char* suffix) const {
        fs::path p = with(log_path, extension);
        p += suffix;
        return p;
    }
};

bool same_offsets(const std::vector<read_record>& a, const std::vector<read_record>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].offset != b[i].offset || a[i].value != b[i].value) return false;
    return true;
}

}  // namespace

TEST_CASE("crash leftovers of a swap recover deterministically") {
    SUBCASE("cleaned files before the commit point are deleted: the old segment stays") {
        swap_fixture f;
        swap_fixture::spill(f.suffixed(".log", ".cleaned"), f.new_log);
        swap_fixture::spill(f.suffixed(".index", ".cleaned"), f.new_index);
        auto log = open_log(f.dir.path(), f.config);
        CHECK(same_offsets(read_records(*log), f.original));
        CHECK(count_with_suffix(f.dir.path(), ".cleaned") == 0);
    }
    SUBCASE("index swap files without the log's are rolled back") {
        swap_fixture f;
        swap_fixture::spill(f.suffixed(".index", ".swap"), f.new_index);
        swap_fixture::spill(f.suffixed(".timeindex", ".swap"), f.new_time);
        swap_fixture::spill(f.suffixed(".log", ".cleaned"), f.new_log);
        auto log = open_log(f.dir.path(), f.config);
        CHECK(same_offsets(read_records(*log), f.original));
        CHECK(count_with_suffix(f.dir.path(), ".swap") == 0);
    }
    SUBCASE("a log swap file completes the swap, whichever index files were renamed") {
        for (int renamed_indexes = 0; renamed_indexes <= 2; ++renamed_indexes) {
            CAPTURE(renamed_indexes);
            swap_fixture f;
            swap_fixture::spill(f.suffixed(".log", ".swap"), f.new_log);
            if (renamed_indexes >= 1)
                swap_fixture::spill(swap_fixture::with(f.log_path, ".index"), f.new_index);
            else
                swap_fixture::spill(f.suffixed(".index", ".swap"), f.new_index);
            if (renamed_indexes >= 2)
                swap_fixture::spill(swap_fixture::with(f.log_path, ".timeindex"), f.new_time);
            else
                swap_fixture::spill(f.suffixed(".timeindex", ".swap"), f.new_time);
            auto log = open_log(f.dir.path(), f.config);
            const auto got = read_records(*log);
            CHECK(same_offsets(got, f.first_swapped));
            CHECK(count_with_suffix(f.dir.path(), ".swap") == 0);
            CHECK(swap_fixture::slurp(f.log_path) == f.new_log);
        }
    }
}

TEST_CASE("retention and DeleteRecords during a run abort or skip the rewrite safely") {
    temp_dir dir("compact-race");
    log_config config = compact_config();
    config.compaction_step_bytes = 300;  // many small steps
    auto log = open_log(dir.path(), config);
    append_updates(*log, 4, 60, now_base_ms);
    REQUIRE(log->run_sync_requests().ok());
    // Start a run and stop in the middle of it.
    int steps = 0;
    while (steps < 12) {
        auto stepped = log->compact_step(now_base_ms);
        REQUIRE(stepped.ok());
        REQUIRE(*stepped);
        ++steps;
    }
    // DeleteRecords far into the log deletes the segments being mapped or cleaned.
    const int64_t cut = log->log_end_offset() / 2;
    REQUIRE(log->delete_records_before(cut).ok());
    compact_fully(*log, now_base_ms);
    const auto records = read_records(*log);
    REQUIRE_FALSE(records.empty());
    CHECK(records.front().offset >= cut);
    CHECK(count_with_suffix(dir.path(), ".cleaned") == 0);
    // The log still reopens to the same content.
    REQUIRE(log->close().ok());
    log.reset();
    auto again = open_log(dir.path(), config);
    CHECK(same_offsets(read_records(*again), records));
}

TEST_CASE("a reader holding the old segment file keeps reading it after the swap") {
    temp_dir dir("compact-reader");
    auto log = open_log(dir.path(), compact_config());
    append_updates(*log, 2, 40, now_base_ms);
    REQUIRE(log->run_sync_requests().ok());
    auto held = log->read(0, 1 << 20);
    REQUIRE(held.ok());
    const std::vector<uint8_t> before = slice_bytes(*held);
    compact_fully(*log, now_base_ms);
    REQUIRE(log->compaction_progress().segments_rewritten > 0);
    CHECK(slice_bytes(*held) == before);
}

TEST_CASE("min.compaction.lag.ms keeps young segments as they are, until they age") {
    temp_dir dir("compact-lag");
    log_config config = compact_config();
    config.min_compaction_lag_ms = 5000;
    auto log = open_log(dir.path(), config);
    append_updates(*log, 3, 40, now_base_ms);
    REQUIRE(log->run_sync_requests().ok());
    const size_t all = read_records(*log).size();
    compact_fully(*log, now_base_ms + 4999);
    CHECK(read_records(*log).size() == all);
    compact_fully(*log, now_base_ms + 5000);
    CHECK(read_records(*log).size() < all);
}

TEST_CASE("a full key map compacts the covered prefix only") {
    temp_dir dir("compact-cap");
    log_config config = compact_config();
    config.compaction_map_entries_max = 8;
    auto log = open_log(dir.path(), config);
    // Each round has 8 keys: the map fills up in the second round's new keys.
    for (int round = 0; round < 6; ++round)
        for (int k = 0; k < 8; ++k)
            append(*log, {{named("r", round % 2) + named("k", k), named("v", round)}}, now_base_ms);
    REQUIRE(log->run_sync_requests().ok());
    const auto before = read_records(*log);
    compact_fully(*log, now_base_ms);
    const auto after = read_records(*log);
    // Whatever got removed had a newer record of its key.
    std::map<std::string, int64_t> last;
    for (const auto& r : before) last[r.key] = r.offset;
    for (const auto& [key, offset] : last) {
        CHECK(std::any_of(after.begin(), after.end(), [&](const read_record& r) {
            return r.key == key && r.offset == offset;
        }));
    }
    CHECK(after.size() <= before.size());
}

TEST_CASE("property: random keyed appends, rolls, compaction and reopens match a model") {
    std::mt19937 random(424242);
    for (int trial = 0; trial < 5; ++trial) {
        temp_dir dir("compact-property");
        log_config config = compact_config();
        config.segment_bytes = std::uniform_int_distribution<int64_t>(400, 3000)(random);
        config.index_interval_bytes = std::uniform_int_distribution<int32_t>(0, 600)(random);
        config.compaction_step_bytes = std::uniform_int_distribution<int64_t>(100, 5000)(random);
        config.delete_retention_ms = 50;
        const auto codec = static_cast<proto::compression_codec>(trial % 5);
        auto log = open_log(dir.path(), config);
        // The model: the latest value per key with its offset; every offset ever written.
        std::map<std::string, std::pair<int64_t, std::optional<std::string>>> latest;
        int64_t now_ms = now_base_ms;
        for (int step = 0; step < 250; ++step) {
            now_ms += 3;
            const int action = std::uniform_int_distribution<int>(0, 99)(random);
            if (action < 60) {
                std::vector<keyed> records;
                const int count = std::uniform_int_distribution<int>(1, 4)(random);
                for (int i = 0; i < count; ++i) {
                    const std::string key =
                        named("k", std::uniform_int_distribution<int>(0, 9)(random));
                    std::optional<std::string> value;
                    if (std::uniform_int_distribution<int>(0, 9)(random) > 0)
                        value =
                            key + named("@", step) + named(".", i) +
                            std::string(std::uniform_int_distribution<size_t>(0, 80)(random), 'v');
                    records.push_back({key, value});
                }
                const int64_t base = append(*log, records, now_ms, codec);
                for (int i = 0; i < count; ++i)
                    latest[records[i].key] = {base + i, records[i].value};
            } else if (action < 70) {
                REQUIRE(log->run_sync_requests().ok());
            } else if (action < 85) {
                auto stepped = log->compact_step(now_ms);
                REQUIRE(stepped.ok());
            } else if (action < 90) {
                REQUIRE(log->close().ok());
                log.reset();
                log = open_log(dir.path(), config);
            } else if (action < 94) {
                log.reset();  // as if the process died
                log = open_log(dir.path(), config);
            } else {
                // Every key's latest record is readable at its offset (a tombstone may
                // be gone once its time passed), and offsets strictly increase.
                const auto records = read_records(*log);
                for (const auto& [key, latest_record] : latest) {
                    const auto& [offset, value] = latest_record;
                    const auto it = std::find_if(
                        records.begin(), records.end(),
                        [&, o = offset](const read_record& r) { return r.offset == o; });
                    if (value) {
                        REQUIRE(it != records.end());
                        CHECK(it->key == key);
                        CHECK(it->value == value);
                    } else if (it != records.end()) {
                        CHECK_FALSE(it->value);
                    }
                    // No record of the key newer than its latest exists, and none newer
                    // than a surviving one is missing.
                    for (const auto& r : records)
                        if (r.key == key) CHECK(r.offset <= offset);
                }
            }
        }
        REQUIRE(log->run_sync_requests().ok());
        compact_fully(*log, now_ms);
        const auto records = read_records(*log);
        for (const auto& [key, latest_record] : latest) {
            if (!latest_record.second) continue;
            CHECK(std::any_of(records.begin(), records.end(),
                              [&, o = latest_record.first](const read_record& r) {
                                  return r.offset == o && r.value == latest_record.second;
                              }));
        }
        // After a full run with nothing pending, closed segments hold each key at most
        // once plus whatever the active segment holds.
        CHECK(records.size() <= latest.size() + 200);
    }
}

TEST_CASE("longest blocking step on a 64 MiB log (printed)") {
    temp_dir dir("compact-stall");
    log_config config = compact_config();
    config.segment_bytes = 8 << 20;
    config.index_interval_bytes = 4096;
    auto log = open_log(dir.path(), config);
    // 64 MiB of 1 KiB values over 20000 keys, 16 records per batch.
    const std::string value(1000, 'v');
    int64_t written = 0;
    int serial = 0;
    while (written < (64 << 20)) {
        std::vector<keyed> records;
        for (int i = 0; i < 16; ++i, ++serial)
            records.push_back({named("key-", serial % 20000), value});
        std::vector<uint8_t> batch = keyed_batch(records, now_base_ms);
        written += static_cast<int64_t>(batch.size());
        REQUIRE(log->append(batch, 16).ok());
    }
    REQUIRE(log->run_sync_requests().ok());
    double longest_ms = 0;
    double total_ms = 0;
    int steps = 0;
    while (true) {
        const auto start = std::chrono::steady_clock::now();
        auto stepped = log->compact_step(now_base_ms);
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count();
        REQUIRE(stepped.ok());
        longest_ms = std::max(longest_ms, ms);
        total_ms += ms;
        ++steps;
        if (!*stepped) break;
    }
    std::printf(
        "compaction of %lld MiB: %d steps of %lld KiB, longest %.1f ms, total %.1f ms, "
        "%lld segments rewritten, %lld records removed\n",
        static_cast<long long>(written >> 20), steps,
        static_cast<long long>(config.compaction_step_bytes >> 10), longest_ms, total_ms,
        static_cast<long long>(log->compaction_progress().segments_rewritten),
        static_cast<long long>(log->compaction_progress().records_removed));
    CHECK(log->compaction_progress().records_removed > 0);
}
