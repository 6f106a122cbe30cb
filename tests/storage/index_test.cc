// Tests of the sparse offset and time indexes: lookups, truncation, file round trip
// and the sanity checks that make a damaged file get rebuilt.

#include "storage/index.h"

#include <doctest/doctest.h>

using namespace spate::storage;

TEST_CASE("offset index lookups find the last entry at or below the target") {
    offset_index index;
    CHECK(index.position_floor(5) == 0);
    index.append(9, 100);
    index.append(19, 250);
    index.append(30, 400);
    CHECK(index.position_floor(0) == 0);
    CHECK(index.position_floor(8) == 0);
    CHECK(index.position_floor(9) == 100);
    CHECK(index.position_floor(25) == 250);
    CHECK(index.position_floor(1000) == 400);
    CHECK(index.position_at_or_below(99) == 0);
    CHECK(index.position_at_or_below(250) == 250);
    CHECK(index.position_at_or_below(399) == 250);
    index.truncate_to_position(250);
    CHECK(index.entry_count() == 1);
}

TEST_CASE("offset index files round-trip and insane files are rejected") {
    offset_index index;
    index.append(3, 61);
    index.append(10, 500);
    const std::vector<uint8_t> bytes = index.serialize();
    CHECK(bytes.size() == 2 * offset_index_entry_size);
    // Kafka's layout: big-endian relative offset, then position.
    CHECK(bytes[3] == 3);
    CHECK(bytes[7] == 61);
    offset_index loaded;
    CHECK(loaded.parse(bytes, 1000));
    CHECK(loaded.position_floor(10) == 500);
    CHECK(!loaded.parse(bytes, 500));  // a position beyond the segment
    std::vector<uint8_t> odd = bytes;
    odd.pop_back();
    CHECK(!loaded.parse(odd, 1000));
    std::vector<uint8_t> backwards = bytes;
    std::swap_ranges(backwards.begin(), backwards.begin() + 8, backwards.begin() + 8);
    CHECK(!loaded.parse(backwards, 1000));
}

TEST_CASE("time index keeps growing timestamps only") {
    time_index index;
    CHECK(index.offset_before(10) == -1);
    index.maybe_append(100, 4);
    index.maybe_append(100, 6);  // not larger: ignored
    index.maybe_append(90, 7);   // smaller: ignored
    index.maybe_append(200, 9);
    CHECK(index.entry_count() == 2);
    CHECK(index.offset_before(100) == -1);
    CHECK(index.offset_before(101) == 4);
    CHECK(index.offset_before(1000) == 9);
    CHECK(index.last()->timestamp == 200);
    time_index loaded;
    CHECK(loaded.parse(index.serialize()));
    CHECK(loaded.offset_before(1000) == 9);
    index.truncate_to_offset(9);
    CHECK(index.entry_count() == 1);
}
