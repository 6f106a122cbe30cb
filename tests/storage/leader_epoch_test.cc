// Tests of leader_epoch_cache: Kafka's leader-epoch-checkpoint text, damaged files, the
// OffsetsForLeaderEpoch lookup (KIP-279) and the truncations from either end.

#include "storage/leader_epoch.h"

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;
using namespace spate::storage::testing;
namespace fs = std::filesystem;

std::string file_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

using entries = std::vector<epoch_entry>;

}  // namespace

TEST_CASE("leader epoch file: Kafka's text round-trips byte for byte") {
    temp_dir dir("epoch-file");
    fs::create_directories(dir.path());
    const fs::path path = dir.path() / leader_epoch_file_name;
    const leader_epoch_cache cache(entries{{0, 0}, {3, 120}});
    CHECK(cache.serialize() == "0\n2\n0 0\n3 120\n");
    REQUIRE(cache.write_file(path).ok());
    CHECK(file_text(path) == "0\n2\n0 0\n3 120\n");
    CHECK_FALSE(fs::exists(dir.path() / (std::string(leader_epoch_file_name) + ".tmp")));

    leader_epoch_cache read;
    REQUIRE(leader_epoch_cache::read_file(path, read) == leader_epoch_cache::read_status::loaded);
    CHECK(read.entries() == cache.entries());
    CHECK(read.latest_epoch() == 3);

    // The empty cache, and large values at the ends of their types.
    CHECK(leader_epoch_cache().serialize() == "0\n0\n");
    auto empty = leader_epoch_cache::parse("0\n0\n");
    REQUIRE(empty.has_value());
    CHECK(empty->entries().empty());
    CHECK(empty->latest_epoch() == -1);
    const leader_epoch_cache large(entries{{2147483647, 9223372036854775807}});
    auto parsed = leader_epoch_cache::parse(large.serialize());
    REQUIRE(parsed.has_value());
    CHECK(parsed->entries() == large.entries());
}

TEST_CASE("leader epoch file: damaged texts are refused, a missing file is told apart") {
    const char* damaged[] = {
        "",                               // nothing
        "0\n",                            // no count
        "1\n0\n",                         // a version Kafka never wrote
        "0\n2\n0 0\n",                    // fewer entries than counted
        "0\n1\n0 0\n3 120\n",             // more lines than counted
        "0\n1\n0 0",                      // the last line cut before its newline
        "0\n2\n3 120\n0 0\n",             // epochs out of order
        "0\n2\n0 0\n0 120\n",             // the same epoch twice
        "0\n2\n0 5\n1 5\n",               // the same start offset twice
        "0\n1\n-1 0\n",                   // a negative epoch
        "0\n1\n0 -4\n",                   // a negative offset
        "0\n1\nx 0\n",                    // not a number
        "0\n1\n0  0\n",                   // two spaces
        "0\n1\n0 0 0\n",                  // three fields
        "0\n1\n2147483648 0\n",           // beyond int32
        "0\n1\n0 9223372036854775808\n",  // beyond int64
        "0\n99999999999999999999\n",      // a count beyond size_t
        "0\n1000000\n0 0\n",              // a count the bytes cannot hold
        "0\r\n1\r\n0 0\r\n",              // not Kafka's line ends
    };
    for (const char* text : damaged) {
        CAPTURE(text);
        CHECK_FALSE(leader_epoch_cache::parse(text).has_value());
    }

    temp_dir dir("epoch-damaged");
    fs::create_directories(dir.path());
    const fs::path path = dir.path() / leader_epoch_file_name;
    leader_epoch_cache read(entries{{1, 1}});
    CHECK(leader_epoch_cache::read_file(path, read) == leader_epoch_cache::read_status::missing);
    CHECK(read.entries().empty());
    write_text(path, "0\n2\n0 0\n");
    read = leader_epoch_cache(entries{{1, 1}});
    CHECK(leader_epoch_cache::read_file(path, read) == leader_epoch_cache::read_status::damaged);
    CHECK(read.entries().empty());
}

TEST_CASE("leader epoch cache: end_offset_for below, between, at and above the known epochs") {
    const int64_t log_end = 400;
    CHECK(leader_epoch_cache().end_offset_for(0, log_end) == std::pair<int32_t, int64_t>{-1, -1});
    const leader_epoch_cache cache(entries{{1, 0}, {3, 100}, {6, 250}});
    using answer = std::pair<int32_t, int64_t>;
    // Below the first known epoch (and the undefined epoch): nothing is known.
    CHECK(cache.end_offset_for(0, log_end) == answer{-1, -1});
    CHECK(cache.end_offset_for(-1, log_end) == answer{-1, -1});
    // A known epoch ends where the next one starts.
    CHECK(cache.end_offset_for(1, log_end) == answer{1, 100});
    CHECK(cache.end_offset_for(3, log_end) == answer{3, 250});
    // Between two known epochs: the largest known one below answers.
    CHECK(cache.end_offset_for(2, log_end) == answer{1, 100});
    CHECK(cache.end_offset_for(5, log_end) == answer{3, 250});
    // The latest epoch, and any above it, end at the log end.
    CHECK(cache.end_offset_for(6, log_end) == answer{6, 400});
    CHECK(cache.end_offset_for(7, log_end) == answer{6, 400});
    CHECK(cache.end_offset_for(2147483647, log_end) == answer{6, 400});
}

TEST_CASE("leader epoch cache: assign takes only newer epochs and keeps both columns increasing") {
    leader_epoch_cache cache;
    CHECK_FALSE(cache.assign(-1, 0));
    CHECK(cache.assign(2, 10));
    CHECK_FALSE(cache.assign(2, 20));  // not newer
    CHECK_FALSE(cache.assign(1, 30));  // older
    CHECK(cache.assign(4, 30));
    CHECK(cache.entries() == entries{{2, 10}, {4, 30}});
    // A newer epoch at the start of the latest one replaces it (a leader that wrote
    // nothing in its epoch), and one further back replaces every entry from there.
    CHECK(cache.assign(5, 30));
    CHECK(cache.entries() == entries{{2, 10}, {5, 30}});
    CHECK(cache.assign(7, 20));
    CHECK(cache.entries() == entries{{2, 10}, {7, 20}});
    CHECK(cache.assign(8, 0));
    CHECK(cache.entries() == entries{{8, 0}});
}

TEST_CASE("leader epoch cache: truncations from the end and from the start") {
    const entries initial{{1, 0}, {3, 100}, {6, 250}};
    SUBCASE("from the end drops the entries starting at or after the new end") {
        leader_epoch_cache cache(initial);
        CHECK_FALSE(cache.truncate_from_end(251));
        CHECK(cache.entries() == initial);
        CHECK(cache.truncate_from_end(250));
        CHECK(cache.entries() == entries{{1, 0}, {3, 100}});
        CHECK(cache.truncate_from_end(50));
        CHECK(cache.entries() == entries{{1, 0}});
        CHECK(cache.truncate_from_end(0));
        CHECK(cache.entries().empty());
        CHECK_FALSE(cache.truncate_from_end(0));
    }
    SUBCASE("from the start drops the entries wholly before it and raises the first kept") {
        leader_epoch_cache cache(initial);
        CHECK_FALSE(cache.truncate_from_start(0));
        CHECK(cache.entries() == initial);
        CHECK(cache.truncate_from_start(40));
        CHECK(cache.entries() == entries{{1, 40}, {3, 100}, {6, 250}});
        // Exactly at an epoch's start: the epochs before it go, nothing is raised.
        CHECK(cache.truncate_from_start(100));
        CHECK(cache.entries() == entries{{3, 100}, {6, 250}});
        CHECK(cache.truncate_from_start(260));
        CHECK(cache.entries() == entries{{6, 260}});
        // The latest epoch always stays, raised to the start.
        CHECK(cache.truncate_from_start(1000));
        CHECK(cache.entries() == entries{{6, 1000}});
    }
    SUBCASE("from the start before every entry changes nothing") {
        leader_epoch_cache cache(entries{{3, 100}});
        CHECK_FALSE(cache.truncate_from_start(50));
        CHECK(cache.entries() == entries{{3, 100}});
    }
    SUBCASE("clear") {
        leader_epoch_cache cache(initial);
        CHECK(cache.clear());
        CHECK_FALSE(cache.clear());
        CHECK(cache.latest_epoch() == -1);
    }
}
