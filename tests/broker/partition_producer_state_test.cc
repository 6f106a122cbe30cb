// Tests of a partition's idempotent-producer state as replication feeds it
// (broker/partition.cc, broker/cluster/replica_fetcher.cc): batches copied from the
// leader, truncations, restarts, and what a new leader then answers to a retried batch.

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "broker/partition.h"
#include "proto/record_batch.h"
#include "tests/broker/partition_support.h"
#include "tests/storage/test_support.h"

namespace {

using spate::broker::partition;
using spate::broker::sequence_verdict;

using spate::broker::testing::open_partition;

// What a follower does with a batch of `records` records that idempotent producer
// `producer_id` (epoch 0) sent from `base_sequence` and its leader wrote at `base_offset`
// in `leader_epoch` (replica_fetchers::apply): append it at the leader's offsets, then
// record it in the producer state.
void replicate(partition& p, int64_t producer_id, int32_t base_sequence, int32_t records,
               int64_t base_offset, int32_t leader_epoch) {
    spate::proto::batch_builder builder(spate::proto::compression_codec::none, 1000, producer_id, 0,
                                        base_sequence);
    const std::vector<uint8_t> value(8, 1);
    for (int32_t i = 0; i < records; ++i)
        builder.add(std::nullopt, std::span<const uint8_t>(value));
    std::vector<uint8_t> batch = builder.build(base_offset);
    spate::proto::set_partition_leader_epoch(batch, leader_epoch);
    auto header = spate::proto::read_batch_header(batch);
    REQUIRE(header.ok());
    REQUIRE(p.log().append_replicated(batch).ok());
    p.producers().observe(*header);
}

// A follower's truncation (replica_fetchers::truncate): the log is cut, then the
// producer state is restored from what the log now holds.
void truncate(partition& p, int64_t offset) {
    REQUIRE(p.log().truncate_to(offset).ok());
    p.restore_producer_state();
}

}  // namespace

// A follower had copied producer 7's batches [0..1] [2..3] [4..5] (offsets 0-5) from a
// leader that then died; the periodic snapshot was taken at offset 6. The new leader
// never had [4..5], so the follower truncated to 4 and rebuilt its producer state from
// the log, correctly; but the snapshot at offset 6 stayed on disk. The follower then
// copied producer 8's batches to offset 10, and either restarted (kill -9, before the
// next periodic snapshot) or truncated again at or above 6: the restore took the old
// snapshot for valid (its offset was no longer beyond the log end) and brought [4..5]
// back at offset 4, where producer 8's records are now. Once this replica led, producer
// 7's retry of [4..5] was answered as a duplicate at offset 4: acknowledged, never
// written. (With other batch boundaries, or an epoch bump in the lost part, the same
// stale state answered OUT_OF_ORDER_SEQUENCE_NUMBER, fatal for the client.) A snapshot
// found beyond the log end is now replaced by the rebuilt state at once, as Kafka's
// truncateAndReload deletes the snapshots past the truncation point.
TEST_CASE("a producer snapshot beyond a truncation does not come back when the log regrows") {
    spate::storage::testing::temp_dir dir("producer-truncated-snapshot");
    auto p = open_partition(dir.path());
    replicate(*p, 7, 0, 2, 0, 1);
    replicate(*p, 7, 2, 2, 2, 1);
    replicate(*p, 7, 4, 2, 4, 1);
    REQUIRE(p->save_producer_state(spate::storage::file_durability::synced).ok());

    truncate(*p, 4);
    REQUIRE(p->log().log_end_offset() == 4);
    CHECK(p->producers().check(7, 0, 4, 5).verdict == sequence_verdict::append);
    replicate(*p, 8, 0, 2, 4, 2);
    replicate(*p, 8, 2, 2, 6, 2);
    replicate(*p, 8, 4, 2, 8, 2);

    SUBCASE("the follower restarts") {
        REQUIRE(p->log().close().ok());
        p = open_partition(dir.path());
    }
    SUBCASE("the follower truncates again, above the snapshot's offset") {
        truncate(*p, 8);
        REQUIRE(p->log().log_end_offset() == 8);
    }
    // Producer 7's batch [4..5] is not in the log: its retry is appended, not answered
    // with producer 8's offset.
    CHECK(p->producers().check(7, 0, 4, 5).verdict == sequence_verdict::append);
    const auto kept = p->producers().check(7, 0, 2, 3);
    CHECK(kept.verdict == sequence_verdict::duplicate);
    CHECK(kept.original.base_offset == 2);
    const auto moved = p->producers().check(8, 0, 2, 3);
    CHECK(moved.verdict == sequence_verdict::duplicate);
    CHECK(moved.original.base_offset == 6);
    REQUIRE(p->log().close().ok());
}

// A follower whose leader's log starts past its own end empties its log and restarts at
// the leader's log start: it kept the producers of the log it dropped in the snapshot,
// which a restart loaded again (its offset was below the new log end).
TEST_CASE("a log emptied to restart at its leader's start forgets the old producers on disk too") {
    spate::storage::testing::temp_dir dir("producer-emptied-log");
    auto p = open_partition(dir.path());
    replicate(*p, 7, 0, 2, 0, 1);
    replicate(*p, 7, 2, 2, 2, 1);
    REQUIRE(p->save_producer_state(spate::storage::file_durability::synced).ok());
    REQUIRE(p->log().truncate_fully_and_start_at(100).ok());
    p->discard_producer_state();
    CHECK(p->producers().producer_count() == 0);
    CHECK_FALSE(p->producer_state_dirty());
    REQUIRE(p->log().close().ok());

    p = open_partition(dir.path());
    CHECK(p->producers().producer_count() == 0);
    CHECK_FALSE(p->producer_state_dirty());
    REQUIRE(p->log().close().ok());
}

// What a follower that becomes leader answers to a producer's retries after a failover
// (the old leader wrote and replicated the batches, its answers were lost): each of the
// producer's last five batches is a duplicate answered with the offset the old leader
// gave it, from the state built from replicated batches, from a snapshot, or from the log
// alone after a restart. An older batch is out of order, as in Kafka (2.8), whose
// clients keep at most five batches in flight and so never retry one.
TEST_CASE("a new leader answers a retry of a replicated batch with its original offset") {
    spate::storage::testing::temp_dir dir("producer-failover-retry");
    auto p = open_partition(dir.path());
    for (int32_t i = 0; i < 6; ++i) replicate(*p, 7, i * 3, 3, i * 3, 1);

    SUBCASE("state built from the replicated batches") {}
    SUBCASE("state rebuilt from the log after a restart") {
        REQUIRE(p->log().close().ok());
        p = open_partition(dir.path());
    }
    SUBCASE("state from a snapshot after a restart") {
        REQUIRE(p->save_producer_state(spate::storage::file_durability::synced).ok());
        REQUIRE(p->log().close().ok());
        p = open_partition(dir.path());
    }
    SUBCASE("state from an older snapshot and the log after a truncation") {
        REQUIRE(p->save_producer_state(spate::storage::file_durability::synced).ok());
        replicate(*p, 7, 18, 3, 18, 1);
        truncate(*p, 18);
    }
    spate::broker::partition_replicas role;
    role.leader = 2;
    role.leader_epoch = 2;
    role.replicas = {1, 2, 3};
    role.isr = {2, 3};
    p->apply_role(role, 2, std::chrono::steady_clock::now());
    REQUIRE(p->is_leader());
    for (int32_t i = 1; i < 6; ++i) {
        const auto retried = p->producers().check(7, 0, i * 3, i * 3 + 2);
        CHECK(retried.verdict == sequence_verdict::duplicate);
        CHECK(retried.original.base_offset == i * 3);
    }
    CHECK(p->producers().check(7, 0, 0, 2).verdict == sequence_verdict::out_of_order);
    CHECK(p->producers().check(7, 0, 18, 18).verdict == sequence_verdict::append);
    CHECK(p->producers().check(7, 0, 19, 19).verdict == sequence_verdict::out_of_order);
    REQUIRE(p->log().close().ok());
}
