// The consumer embedded protocol and the range assignor spatectl's group member uses.

#include "tools/group_protocol.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace spate::tools;

TEST_CASE("a subscription round-trips and matches the version-0 byte layout") {
    const auto bytes = encode_subscription({"orders"});
    // version 0, one topic "orders", null user data.
    const std::vector<uint8_t> expected = {0,   0,   0,   0,   0,   1,    0,    6,    'o',
                                           'r', 'd', 'e', 'r', 's', 0xff, 0xff, 0xff, 0xff};
    CHECK(bytes == expected);
    auto topics = decode_subscription(bytes);
    REQUIRE(topics);
    CHECK(topics.value() == std::vector<std::string>{"orders"});
}

TEST_CASE("an assignment round-trips; empty bytes mean no partitions") {
    partition_assignment assignment;
    assignment["a"] = {0, 2};
    assignment["b"] = {1};
    auto decoded = decode_assignment(encode_assignment(assignment));
    REQUIRE(decoded);
    CHECK(decoded.value() == assignment);
    auto empty = decode_assignment({});
    REQUIRE(empty);
    CHECK(empty->empty());
}

TEST_CASE("malformed embedded protocol bytes are errors, not allocations") {
    // A topic count of 2^31-1 with two bytes behind it.
    const std::vector<uint8_t> hostile = {0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1};
    CHECK_FALSE(decode_subscription(hostile));
    CHECK_FALSE(decode_assignment(hostile));
    const std::vector<uint8_t> truncated = {0, 0, 0, 0, 0, 1, 0, 9, 'x'};
    CHECK_FALSE(decode_assignment(truncated));
}

TEST_CASE("range assigns consecutive partitions, the first members one extra") {
    std::vector<group_member_subscription> members = {
        {"m-b", {"t"}}, {"m-a", {"t", "u"}}, {"m-c", {"t"}}, {"m-d", {}}};
    auto out = range_assign(members, {{"t", 7}, {"u", 2}});
    CHECK(out.size() == 4);
    CHECK(out["m-a"]["t"] == std::vector<int32_t>{0, 1, 2});
    CHECK(out["m-b"]["t"] == std::vector<int32_t>{3, 4});
    CHECK(out["m-c"]["t"] == std::vector<int32_t>{5, 6});
    CHECK(out["m-a"]["u"] == std::vector<int32_t>{0, 1});
    CHECK(out["m-d"].empty());
    // More members than partitions: the last ones get nothing.
    auto sparse = range_assign({{"x", {"t"}}, {"y", {"t"}}}, {{"t", 1}});
    CHECK(sparse["x"]["t"] == std::vector<int32_t>{0});
    CHECK(sparse["y"].count("t") == 0);
    // An unknown topic is not assigned.
    CHECK(range_assign({{"x", {"gone"}}}, {})["x"].empty());
}

TEST_CASE("group errors name the group and the Kafka error") {
    CHECK(describe_group_error("g", 68) ==
          "group \"g\" is not empty: it has active members (NON_EMPTY_GROUP)");
    CHECK(describe_group_error("g", 69) == "group \"g\" does not exist (GROUP_ID_NOT_FOUND)");
}
