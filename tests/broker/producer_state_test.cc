#include "broker/producer_state.h"

#include <doctest/doctest.h>

using namespace spate::broker;

TEST_CASE("a non-idempotent producer always appends") {
    producer_state state;
    CHECK(state.check(-1, -1, -1, -1).verdict == sequence_verdict::append);
    state.record(-1, -1, {-1, -1, 0, -1});
    CHECK(state.producer_count() == 0);
}

TEST_CASE("sequences must follow one another within an epoch") {
    producer_state state;
    CHECK(state.check(7, 0, 0, 4).verdict == sequence_verdict::append);
    state.record(7, 0, {0, 4, 100, -1});
    CHECK(state.check(7, 0, 5, 9).verdict == sequence_verdict::append);
    CHECK(state.check(7, 0, 6, 9).verdict == sequence_verdict::out_of_order);
    CHECK(state.check(7, 0, 10, 12).verdict == sequence_verdict::out_of_order);
}

TEST_CASE("a retried batch among the last five is a duplicate with its original offset") {
    producer_state state;
    for (int i = 0; i < 6; ++i) state.record(9, 2, {i * 10, i * 10 + 9, 1000 + i * 10, -1});
    auto dup = state.check(9, 2, 30, 39);
    CHECK(dup.verdict == sequence_verdict::duplicate);
    CHECK(dup.original.base_offset == 1030);
    // The first batch fell out of the window of five: it is now simply out of order.
    CHECK(state.check(9, 2, 0, 9).verdict == sequence_verdict::out_of_order);
}

TEST_CASE("epochs fence older producers and a new epoch restarts at zero") {
    producer_state state;
    state.record(5, 3, {0, 0, 0, -1});
    CHECK(state.check(5, 2, 1, 1).verdict == sequence_verdict::invalid_epoch);
    CHECK(state.check(5, 4, 1, 1).verdict == sequence_verdict::out_of_order);
    CHECK(state.check(5, 4, 0, 3).verdict == sequence_verdict::append);
    state.record(5, 4, {0, 3, 1, -1});
    CHECK(state.check(5, 3, 4, 4).verdict == sequence_verdict::invalid_epoch);
}

TEST_CASE("an unknown producer id may start at any sequence") {
    producer_state state;
    CHECK(state.check(11, 0, 42, 50).verdict == sequence_verdict::append);
}

TEST_CASE("sequence numbers wrap from INT32_MAX to zero") {
    producer_state state;
    state.record(1, 0, {INT32_MAX - 1, INT32_MAX, 0, -1});
    CHECK(state.check(1, 0, 0, 5).verdict == sequence_verdict::append);
}

TEST_CASE("a snapshot round-trips and a damaged one is refused") {
    producer_state state;
    for (int i = 0; i < 7; ++i) state.record(21, 1, {i * 2, i * 2 + 1, 500 + i, -1});
    state.record(22, 0, {0, 0, 900, 1234});
    const auto bytes = state.encode_snapshot(1000);
    producer_state loaded;
    auto offset = loaded.load_snapshot(bytes);
    REQUIRE(offset);
    CHECK(*offset == 1000);
    CHECK(loaded.producer_count() == 2);
    auto dup = loaded.check(21, 1, 12, 13);
    CHECK(dup.verdict == sequence_verdict::duplicate);
    CHECK(dup.original.base_offset == 506);
    CHECK(loaded.check(21, 1, 14, 14).verdict == sequence_verdict::append);
    CHECK(loaded.check(22, 0, 0, 0).original.log_append_time_ms == 1234);

    for (size_t i = 0; i < bytes.size(); i += 7) {
        auto damaged = bytes;
        damaged[i] ^= 0x40;
        producer_state victim;
        CHECK_FALSE(victim.load_snapshot(damaged));
    }
    producer_state victim;
    CHECK_FALSE(victim.load_snapshot(std::span<const uint8_t>(bytes).first(bytes.size() - 1)));
}

TEST_CASE("rebuilding from batch headers restores sequences") {
    producer_state state;
    spate::proto::batch_header header{};
    header.producer_id = 77;
    header.producer_epoch = 3;
    header.base_sequence = 10;
    header.last_offset_delta = 4;
    header.base_offset = 40;
    state.observe(header);
    CHECK(state.check(77, 3, 15, 15).verdict == sequence_verdict::append);
    auto dup = state.check(77, 3, 10, 14);
    CHECK(dup.verdict == sequence_verdict::duplicate);
    CHECK(dup.original.base_offset == 40);
    header.producer_id = -1;
    state.observe(header);
    CHECK(state.producer_count() == 1);
}

TEST_CASE("summaries report each producer's epoch and newest batch, by producer id") {
    producer_state state;
    state.record(42, 1, {0, 9, 0, -1});
    state.record(42, 1, {10, 14, 10, 1700000000000});
    state.record(7, 3, {0, 0, 15, -1});
    const auto all = state.summaries();
    REQUIRE(all.size() == 2);
    CHECK(all[0].producer_id == 7);
    CHECK(all[0].epoch == 3);
    CHECK(all[0].last_sequence == 0);
    CHECK(all[0].last_timestamp_ms == -1);
    CHECK(all[1].producer_id == 42);
    CHECK(all[1].last_sequence == 14);
    CHECK(all[1].last_timestamp_ms == 1700000000000);
}
