// The committed-offsets log: record round trips, torn tails, and start-up recovery
// across restarts and shard count changes.
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
    auto log = offset_log::open(path);
    REQUIRE(log.ok());
    std::vector<uint8_t> bytes;
    for (const auto& r : records) encode_record(r, bytes);
    REQUIRE(log.value().append(bytes).ok());
}

int64_t offset_in(const recovered_offsets& recovered, const std::string& group,
                  const std::string& topic, int32_t partition) {
    for (const auto& shard : recovered.per_shard) {
        const offset_table& table = shard.offsets;
        auto g = table.find(group);
        if (g == table.end()) continue;
        auto p = g->second.find({topic, partition});
        if (p != g->second.end()) return p->second.offset;
    }
    return -1;
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

TEST_CASE("recovery replays the last epoch, compacts, and survives a shard count change") {
    temp_dir dir;
    auto first = recover_offsets(dir.path, 2);
    REQUIRE(first.ok());
    CHECK(first.value().epoch == 1);
    // Each shard appends the commits of its groups, as the coordinators do.
    for (int i = 0; i < 20; ++i) {
        const std::string group = "group-" + std::to_string(i);
        const uint32_t shard = shard_of_group(group, 2);
        append_records(offsets_file_path(dir.path, 1, shard),
                       {commit_of(group, "t", 0, i), commit_of(group, "t", 0, i + 100)});
    }
    // A torn tail on shard 0's file (kill -9 during a write) loses only that record.
    {
        std::ofstream tail(offsets_file_path(dir.path, 1, 0), std::ios::app | std::ios::binary);
        tail.write("\x00\x00\x00\x40garbage", 11);
    }
    auto second = recover_offsets(dir.path, 3);
    REQUIRE(second.ok());
    CHECK(second.value().epoch == 2);
    for (int i = 0; i < 20; ++i) {
        const std::string group = "group-" + std::to_string(i);
        CHECK(offset_in(second.value(), group, "t", 0) == i + 100);
        CHECK(second.value().per_shard[shard_of_group(group, 3)].offsets.count(group) == 1);
    }
    CHECK(!fs::exists(offsets_file_path(dir.path, 1, 0)));
    // A crash before the state file names a new epoch leaves the old one authoritative:
    // simulate it with a stray file of a future epoch.
    append_records(offsets_file_path(dir.path, 3, 0), {commit_of("group-1", "t", 0, -5)});
    auto third = recover_offsets(dir.path, 1);
    REQUIRE(third.ok());
    CHECK(offset_in(third.value(), "group-1", "t", 0) == 101);
    CHECK(third.value().per_shard.size() == 1);
    CHECK(third.value().per_shard[0].offsets.size() == 20);
}

TEST_CASE("shard_of_group is stable and within range") {
    CHECK(shard_of_group("abc", 4) == shard_of_group("abc", 4));
    for (int i = 0; i < 100; ++i) CHECK(shard_of_group(std::to_string(i), 3) < 3);
}

TEST_CASE("group snapshots round-trip and a group deletion drops them") {
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
    CHECK(groups.offsets.empty());
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
