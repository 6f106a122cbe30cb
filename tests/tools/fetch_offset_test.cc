// next_fetch_offset: where spatectl's consumers fetch next, from batch headers alone.

#include "tools/fetch_offset.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using spate::tools::next_fetch_offset;

namespace {

// A batch of `count` records at `base_offset`, as a log holds it.
std::vector<uint8_t> batch_at(int64_t base_offset, int count) {
    spate::proto::batch_builder builder(spate::proto::compression_codec::none);
    for (int i = 0; i < count; ++i) {
        const std::string value = "record " + std::to_string(i);
        builder.add(std::nullopt, spate::proto::byte_view(value));
    }
    return builder.build(base_offset);
}

std::vector<uint8_t> joined(std::initializer_list<std::vector<uint8_t>> batches) {
    std::vector<uint8_t> out;
    for (const auto& batch : batches) out.insert(out.end(), batch.begin(), batch.end());
    return out;
}

}  // namespace

TEST_CASE("no records: the fetch starts where it did") {
    auto next = next_fetch_offset({}, 42);
    REQUIRE(next);
    CHECK(next.value() == 42);
}

TEST_CASE("whole batches: one past the last offset of the last batch") {
    const auto records = joined({batch_at(10, 3), batch_at(13, 5)});
    auto next = next_fetch_offset(records, 10);
    REQUIRE(next);
    CHECK(next.value() == 18);
}

TEST_CASE("a first batch that begins below the fetch offset counts from its end") {
    // A fetch at 12 gets the batch 10..14 that holds offset 12.
    const auto records = batch_at(10, 5);
    auto next = next_fetch_offset(records, 12);
    REQUIRE(next);
    CHECK(next.value() == 15);
}

TEST_CASE("a batch wholly below the fetch offset never moves it back") {
    const auto records = batch_at(10, 5);
    auto next = next_fetch_offset(records, 20);
    REQUIRE(next);
    CHECK(next.value() == 20);
}

TEST_CASE("a partial last batch is fetched again from its base offset") {
    // max_bytes cut the second batch: the next fetch starts with it. After a gap (as
    // compaction leaves) its base offset is beyond the first batch's end.
    const auto first = batch_at(0, 4);
    const auto second = batch_at(7, 6);
    auto records = joined({first, second});
    records.resize(first.size() + spate::proto::batch_header_size + 3);
    auto next = next_fetch_offset(records, 0);
    REQUIRE(next);
    CHECK(next.value() == 7);

    // A tail too short for a header adds nothing.
    records.resize(first.size() + 20);
    next = next_fetch_offset(records, 0);
    REQUIRE(next);
    CHECK(next.value() == 4);

    // Only a cut first batch: nothing whole arrived, the fetch starts where it did.
    auto cut = second;
    cut.resize(cut.size() - 1);
    next = next_fetch_offset(cut, 9);
    REQUIRE(next);
    CHECK(next.value() == 9);
}

TEST_CASE("headers that are no v2 batch, or offsets that overflow, are errors") {
    auto records = batch_at(0, 2);
    records[spate::proto::batch_magic_offset] = 1;
    CHECK_FALSE(next_fetch_offset(records, 0));

    records = batch_at(0, 2);
    // base_offset = INT64_MAX, so base + last_offset_delta + 1 would overflow.
    records[0] = 0x7f;
    for (size_t i = 1; i < 8; ++i) records[i] = 0xff;
    CHECK_FALSE(next_fetch_offset(records, 0));
}
