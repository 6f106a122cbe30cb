// Tests of a partition's replication state (broker/partition_replication.cc): the high
// watermark as the ISR's minimum log end, acks=all waits and their outcomes, ISR
// proposals by lag and catch-up, leader epochs recorded at leadership.

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>

#include "broker/partition.h"
#include "tests/broker/partition_support.h"
#include "tests/storage/test_support.h"

namespace {

using spate::broker::partition;
using spate::broker::partition_replicas;
using spate::proto::error_code;
using namespace std::chrono_literals;

using spate::broker::testing::open_partition;

void append(partition& p, int32_t records) {
    std::vector<uint8_t> batch = spate::storage::testing::make_batch(records, 1000, 10, 1);
    REQUIRE(p.log().append(batch, records).ok());
    p.advance_high_watermark();
}

partition_replicas role(int32_t leader, int32_t epoch, std::vector<int32_t> isr,
                        int32_t partition_epoch = 0) {
    partition_replicas r;
    r.leader = leader;
    r.leader_epoch = epoch;
    r.partition_epoch = partition_epoch;
    r.replicas = {1, 2, 3};
    r.isr = std::move(isr);
    return r;
}

}  // namespace

TEST_CASE("a single node's partition leads alone: its high watermark is its log end") {
    spate::storage::testing::temp_dir dir("replication-single");
    auto p = open_partition(dir.path());
    CHECK_FALSE(p->replicated());
    CHECK(p->is_leader());
    CHECK(p->isr_size() == 1);
    append(*p, 3);
    CHECK(p->high_watermark() == 3);
    error_code got = error_code::unknown_server_error;
    p->wait_replicated(3, 1, std::chrono::steady_clock::now() + 1s,
                       [&](error_code code) { got = code; });
    CHECK(got == error_code::none);
    REQUIRE(p->log().close().ok());
}

TEST_CASE("the high watermark is the ISR's minimum log end and releases acks=all") {
    spate::storage::testing::temp_dir dir("replication-hw");
    auto p = open_partition(dir.path());
    const auto t0 = std::chrono::steady_clock::now();
    p->apply_role(role(1, 5, {1, 2, 3}), 1, t0);
    REQUIRE(p->is_leader());
    // The new leadership's epoch starts at the log end, recorded at once.
    CHECK(p->log().leader_epochs().latest_epoch() == 5);
    append(*p, 10);
    // No follower fetched in this leadership: the watermark holds.
    CHECK(p->high_watermark() == 0);
    std::vector<error_code> outcomes;
    p->wait_replicated(10, 2, t0 + 30s, [&](error_code code) { outcomes.push_back(code); });
    p->follower_fetched(2, 10, t0 + 1ms);
    CHECK(p->high_watermark() == 0);  // replica 3 still unknown
    p->follower_fetched(3, 4, t0 + 1ms);
    CHECK(p->high_watermark() == 4);
    CHECK(outcomes.empty());
    p->follower_fetched(3, 10, t0 + 2ms);
    CHECK(p->high_watermark() == 10);
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0] == error_code::none);
    // A fetch offset never moves the watermark back.
    p->follower_fetched(3, 7, t0 + 3ms);
    CHECK(p->high_watermark() == 10);
    REQUIRE(p->log().close().ok());
}

TEST_CASE("acks=all: ISR shrunk below min.insync.replicas, leadership lost, timeout") {
    spate::storage::testing::temp_dir dir("replication-acks");
    auto p = open_partition(dir.path());
    const auto t0 = std::chrono::steady_clock::now();
    p->apply_role(role(1, 1, {1, 2}), 1, t0);
    append(*p, 5);
    std::vector<error_code> outcomes;
    auto record = [&](error_code code) { outcomes.push_back(code); };
    p->wait_replicated(5, 2, t0 + 30s, record);
    // The controller drops 2 from the ISR: the watermark reaches the batch, but with one
    // in-sync replica left min.insync.replicas = 2 is not met.
    p->apply_role(role(1, 2, {1}, 1), 1, t0 + 1ms);
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0] == error_code::not_enough_replicas_after_append);

    p->apply_role(role(1, 3, {1, 2}, 2), 1, t0 + 2ms);
    append(*p, 5);
    p->wait_replicated(10, 2, t0 + 30s, record);
    p->wait_replicated(10, 2, t0 + 10ms, record);
    p->expire_replication_waits(t0 + 20ms);
    REQUIRE(outcomes.size() == 2);
    CHECK(outcomes[1] == error_code::request_timed_out);
    // Another broker leads now: the produce still waiting fails, retriably.
    p->apply_role(role(2, 4, {1, 2}, 3), 1, t0 + 30ms);
    REQUIRE(outcomes.size() == 3);
    CHECK(outcomes[2] == error_code::not_leader_or_follower);
    CHECK_FALSE(p->is_leader());
    REQUIRE(p->log().close().ok());
}

TEST_CASE("ISR proposals: a lagging follower leaves, a caught-up one joins") {
    spate::storage::testing::temp_dir dir("replication-isr");
    auto p = open_partition(dir.path());
    const auto t0 = std::chrono::steady_clock::now();
    const auto lag = std::chrono::milliseconds(1000);
    p->apply_role(role(1, 1, {1, 2, 3}), 1, t0);
    append(*p, 4);
    p->follower_fetched(2, 4, t0 + 100ms);
    p->follower_fetched(3, 0, t0 + 100ms);
    CHECK_FALSE(p->isr_proposal(t0 + 500ms, lag).has_value());
    // Replica 3 has not been caught up since the leadership began, 2 fetches to the end.
    p->follower_fetched(2, 4, t0 + 1200ms);
    auto shrink = p->isr_proposal(t0 + 1200ms, lag);
    REQUIRE(shrink.has_value());
    CHECK(*shrink == std::vector<int32_t>{1, 2});
    p->isr_proposed(*shrink);
    CHECK(p->isr_change_in_flight());
    CHECK_FALSE(p->isr_proposal(t0 + 1300ms, lag).has_value());  // one at a time
    // The controller's answer arrives as a new partition epoch.
    p->apply_role(role(1, 1, {1, 2}, 1), 1, t0 + 1300ms);
    CHECK_FALSE(p->isr_change_in_flight());
    CHECK(p->isr_size() == 2);
    // Replica 3 catches up with the high watermark: it joins.
    p->follower_fetched(3, 4, t0 + 1400ms);
    auto grow = p->isr_proposal(t0 + 1400ms, lag);
    REQUIRE(grow.has_value());
    CHECK(*grow == std::vector<int32_t>{1, 2, 3});
    REQUIRE(p->log().close().ok());
}

TEST_CASE("a follower's high watermark follows the leader's, never past its log end") {
    spate::storage::testing::temp_dir dir("replication-follower");
    auto p = open_partition(dir.path());
    p->apply_role(role(2, 1, {1, 2}), 1, std::chrono::steady_clock::now());
    CHECK_FALSE(p->is_leader());
    std::vector<uint8_t> batch = spate::storage::testing::make_batch(3, 1000, 10, 1);
    REQUIRE(p->log().append(batch, 3).ok());
    p->follower_high_watermark(10);
    CHECK(p->high_watermark() == 3);
    REQUIRE(p->save_high_watermark().ok());
    REQUIRE(p->log().close().ok());
    auto again = open_partition(dir.path());
    again->apply_role(role(2, 1, {1, 2}), 1, std::chrono::steady_clock::now());
    again->restore_high_watermark();
    CHECK(again->high_watermark() == 3);
    REQUIRE(again->log().close().ok());
}
