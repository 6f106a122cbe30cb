// The old per-shard offsets files: record round trips, torn tails, and the reader that
// imports them into __consumer_offsets; and Kafka's meaning of each record kind.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "broker/group/offset_store.h"
#include "proto/crc32c.h"

using namespace spate::broker::group;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {
        char pattern[] = "/tmp/spate-offsets-test-XXXXXX";
        path = ::mkdtemp(pattern);
    }
    ~temp_dir() { fs::remove_all(path); }
};

offset_record commit_of(const std::string& group, const std::string& topic, int32_t partition,
                        int64_t offset) {
    offset_record r;
    r.kind = record_kind::commit;
    r.group_id = group;
    r.where = {topic, partition};
    r.value.offset = offset;
    r.value.leader_epoch = 3;
    r.value.metadata = std::string("m");
    r.value.commit_timestamp_ms = 1234;
    return r;
}

void append_records(const fs::path& path, const std::vector<offset_record>& records) {
    fs::create_directories(path.parent_path());
    std::vector<uint8_t> bytes;
    for (const auto& r : records) encode_record(r, bytes);
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

int64_t offset_in(const recovered_groups& groups, const std::string& group,
                  const std::string& topic, int32_t partition) {
    auto g = groups.offsets.find(group);
    if (g == groups.offsets.end()) return -1;
    auto p = g->second.find({topic, partition});
    return p == g->second.end() ? -1 : p->second.offset;
}

}  // namespace

TEST_CASE("records round-trip, including tombstones and null metadata") {
    std::vector<uint8_t> bytes;
    offset_record a = commit_of("g", "t", 1, 99);
    offset_record b = commit_of("g", "t", 2, 7);
    b.value.metadata.reset();
    offset_record c;
    c.kind = record_kind::offset_deleted;
    c.group_id = "g";
    c.where = {"t", 1};
    offset_record d;
    d.kind = record_kind::group_deleted;
    d.group_id = "h";
    for (const auto* r : {&a, &b, &c, &d}) encode_record(*r, bytes);
    decoded_records decoded = decode_records(bytes);
    CHECK(decoded.valid_bytes == bytes.size());
    REQUIRE(decoded.records.size() == 4);
    CHECK(decoded.records[0].value.offset == 99);
    CHECK(decoded.records[0].value.metadata == "m");
    CHECK(decoded.records[0].value.leader_epoch == 3);
    CHECK(!decoded.records[1].value.metadata.has_value());
    CHECK(decoded.records[2].kind == record_kind::offset_deleted);
    CHECK(decoded.records[3].kind == record_kind::group_deleted);
    recovered_groups groups;
    for (const auto& r : decoded.records) apply_record(groups, r);
    offset_table& table = groups.offsets;
    REQUIRE(table.count("g") == 1);
    CHECK(table["g"].size() == 1);
    CHECK(table["g"].begin()->second.offset == 7);
}

TEST_CASE("replay stops at a torn or corrupt record") {
    std::vector<uint8_t> bytes;
    encode_record(commit_of("g", "t", 0, 1), bytes);
    const size_t first = bytes.size();
    encode_record(commit_of("g", "t", 0, 2), bytes);
    std::vector<uint8_t> torn(bytes.begin(), bytes.end() - 3);
    CHECK(decode_records(torn).records.size() == 1);
    CHECK(decode_records(torn).valid_bytes == first);
    std::vector<uint8_t> corrupt = bytes;
    corrupt.back() ^= 0x40;
    CHECK(decode_records(corrupt).records.size() == 1);
    // A huge length prefix is refused before anything is allocated.
    std::vector<uint8_t> huge = {0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    CHECK(decode_records(huge).records.empty());
}

TEST_CASE("the old files are read from the epoch their state names, then removed") {
    temp_dir dir;
    auto none = read_legacy_offsets(dir.path);
    REQUIRE(none.ok());
    CHECK(!none.value().has_value());  // nothing to import
    for (int i = 0; i < 20; ++i) {
        const std::string group = "group-" + std::to_string(i);
        append_records(offsets_file_path(dir.path, 4, static_cast<uint32_t>(i % 2)),
                       {commit_of(group, "t", 0, i), commit_of(group, "t", 0, i + 100)});
    }
    // A torn tail (kill -9 during a write) loses only that record.
    {
        std::ofstream tail(offsets_file_path(dir.path, 4, 0), std::ios::app | std::ios::binary);
        tail.write("\x00\x00\x00\x40garbage", 11);
    }
    // A file of another epoch (a crash during the old compaction) is not read.
    append_records(offsets_file_path(dir.path, 5, 0), {commit_of("group-1", "t", 0, -5)});
    // The old files deleted a group's offsets with the group's tombstone alone.
    offset_record gone;
    gone.kind = record_kind::group_deleted;
    gone.group_id = "group-3";
    append_records(offsets_file_path(dir.path, 4, 1), {gone});
    std::ofstream(dir.path / "__consumer_offsets" / "state") << "4 2\n";
    auto read = read_legacy_offsets(dir.path);
    REQUIRE(read.ok());
    REQUIRE(read.value().has_value());
    const recovered_groups& groups = *read.value();
    for (int i = 0; i < 20; ++i)
        CHECK(offset_in(groups, "group-" + std::to_string(i), "t", 0) == (i == 3 ? -1 : i + 100));
    REQUIRE(remove_legacy_offsets(dir.path).ok());
    CHECK(!fs::exists(dir.path / "__consumer_offsets"));
    auto again = read_legacy_offsets(dir.path);
    REQUIRE(again.ok());
    CHECK(!again.value().has_value());
    // A damaged state file is an error, not an empty import.
    fs::create_directories(dir.path / "__consumer_offsets");
    std::ofstream(dir.path / "__consumer_offsets" / "state") << "x";
    CHECK(!read_legacy_offsets(dir.path).ok());
}

TEST_CASE("group snapshots round-trip and a group tombstone drops only the snapshot") {
    offset_record saved;
    saved.kind = record_kind::group_metadata;
    saved.group_id = std::string("g");
    saved.snapshot.protocol_type = std::string("consumer");
    saved.snapshot.protocol_name = std::string("range");
    saved.snapshot.generation = 4;
    saved.snapshot.leader_id = std::string("m1");
    member_snapshot m;
    m.member_id = std::string("m1");
    m.instance_id = std::string("i1");
    m.client_id = std::string("c");
    m.session_timeout_ms = 10000;
    m.rebalance_timeout_ms = 30000;
    m.metadata = {1, 2};
    m.assignment = {3};
    saved.snapshot.members.push_back(m);
    std::vector<uint8_t> bytes;
    encode_record(saved, bytes);
    encode_record(commit_of("g", "t", 0, 5), bytes);
    decoded_records decoded = decode_records(bytes);
    REQUIRE(decoded.records.size() == 2);
    const group_snapshot& back = decoded.records[0].snapshot;
    CHECK(back.generation == 4);
    CHECK(back.protocol_name == "range");
    REQUIRE(back.members.size() == 1);
    CHECK(back.members[0].instance_id == "i1");
    CHECK(back.members[0].assignment == std::vector<uint8_t>{3});
    recovered_groups groups;
    for (const auto& r : decoded.records) apply_record(groups, r);
    CHECK(groups.snapshots.count("g") == 1);
    offset_record deleted;
    deleted.kind = record_kind::group_deleted;
    deleted.group_id = "g";
    apply_record(groups, deleted);
    CHECK(groups.snapshots.empty());
    // Kafka's meaning: the offsets have tombstones of their own.
    CHECK(groups.offsets.count("g") == 1);
    // A member count larger than the bytes left is refused before allocating.
    std::vector<uint8_t> lying;
    offset_record empty_group = saved;
    empty_group.snapshot.members.clear();
    encode_record(empty_group, lying);
    REQUIRE(decode_records(lying).records.size() == 1);
    // The member count is the body's last field: claim INT32_MAX and fix up the CRC.
    const size_t end = lying.size();
    lying[end - 4] = 0x7f;
    lying[end - 3] = lying[end - 2] = lying[end - 1] = 0xff;
    const uint32_t crc = spate::proto::crc32c(std::span<const uint8_t>(lying).subspan(8));
    for (int i = 0; i < 4; ++i) lying[4 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
    CHECK(decode_records(lying).records.empty());
}
