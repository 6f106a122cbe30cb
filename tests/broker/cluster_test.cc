// broker/cluster/: Kafka's znode JSON, replica placement, and the group placement hash.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "broker/cluster/placement.h"
#include "broker/cluster/znodes.h"
#include "broker/group/offset_store.h"
#include "proto/error_code.h"

using namespace spate::broker::cluster;
using spate::broker::group::java_string_hash;
using spate::broker::group::offsets_partition_of;

TEST_CASE("topic ids print as Kafka's 22-character URL-safe base64 and parse back") {
    spate::proto::uuid id;
    for (size_t i = 0; i < 16; ++i) id.bytes[i] = static_cast<uint8_t>(0xF0 + i);
    const std::string text = uuid_to_base64(id);
    CHECK(text.size() == 22);
    CHECK(text.find_first_of("+/=") == std::string::npos);
    auto back = uuid_from_base64(text);
    REQUIRE(back);
    CHECK(*back == id);
    CHECK_FALSE(uuid_from_base64("short"));
    CHECK_FALSE(uuid_from_base64("!!!!!!!!!!!!!!!!!!!!!!"));
}

TEST_CASE("a broker registration is Kafka's version 4 JSON and reads back") {
    broker_registration b;
    b.id = 3;
    b.host = "10.0.0.3";
    b.port = 9092;
    b.rack = "r1";
    b.timestamp_ms = 1700000000123;
    const std::string json = encode_broker(b);
    CHECK(json.find("\"version\":4") != std::string::npos);
    CHECK(json.find("\"jmx_port\":-1") != std::string::npos);
    CHECK(json.find("\"timestamp\":\"1700000000123\"") != std::string::npos);
    CHECK(json.find("\"endpoints\":[\"PLAINTEXT://10.0.0.3:9092\"]") != std::string::npos);
    CHECK(json.find("\"listener_security_protocol_map\":{\"PLAINTEXT\":\"PLAINTEXT\"}") !=
          std::string::npos);
    auto back = decode_broker(3, json);
    REQUIRE(back);
    CHECK(back->host == "10.0.0.3");
    CHECK(back->port == 9092);
    CHECK(back->rack == "r1");
    CHECK(back->timestamp_ms == 1700000000123);
}

TEST_CASE("a registration without host and port takes its address from the endpoints") {
    auto back = decode_broker(
        1, R"({"version":4,"host":null,"port":-1,"endpoints":["SSL://h1:9093"],"jmx_port":-1})");
    REQUIRE(back);
    CHECK(back->host == "h1");
    CHECK(back->port == 9093);
    CHECK_FALSE(decode_broker(1, R"({"version":4})"));
    CHECK_FALSE(decode_broker(1, "not json"));
    CHECK_FALSE(decode_broker(1, R"({"host":7,"port":"x"})"));
}

TEST_CASE("a topic node written by Kafka 1.0's tool (version 1, no id) is accepted") {
    auto topic = decode_topic(R"({"version":1,"partitions":{"1":[2,3],"0":[1,2]}})");
    REQUIRE(topic);
    CHECK_FALSE(topic->has_id());
    CHECK(topic->partitions.at(0) == std::vector<int32_t>{1, 2});
    CHECK(topic->partitions.at(1) == std::vector<int32_t>{2, 3});
    CHECK_FALSE(decode_topic(R"({"version":1,"partitions":{"0":[1],"2":[1]}})"));  // a hole
    CHECK_FALSE(decode_topic(R"({"version":1,"partitions":{}})"));
    CHECK_FALSE(decode_topic(R"({"version":1,"partitions":{"x":[1]}})"));
    CHECK_FALSE(decode_topic(R"({"version":1,"partitions":{"0":"1"}})"));
}

TEST_CASE("a topic node round-trips as version 3 with its id") {
    topic_assignment topic;
    topic.id.bytes[0] = 1;
    topic.partitions[0] = {1, 2, 3};
    topic.partitions[1] = {2, 3, 1};
    const std::string json = encode_topic(topic);
    CHECK(json.find("\"version\":3") != std::string::npos);
    CHECK(json.find("\"adding_replicas\":{}") != std::string::npos);
    auto back = decode_topic(json);
    REQUIRE(back);
    CHECK(back->id == topic.id);
    CHECK(back->partitions == topic.partitions);
}

TEST_CASE("a reassignment in progress keeps Kafka's adding/removing replicas in the topic node") {
    // What Kafka 2.8's controller writes while moving partition 0 from [1,2] to [3,4].
    auto topic = decode_topic(
        R"({"version":2,"partitions":{"0":[3,4,1,2],"1":[1,2]},"adding_replicas":{"0":[3,4]},)"
        R"("removing_replicas":{"0":[1,2]}})");
    REQUIRE(topic);
    CHECK(topic->adding.at(0) == std::vector<int32_t>{3, 4});
    CHECK(topic->removing.at(0) == std::vector<int32_t>{1, 2});
    CHECK(topic->adding.count(1) == 0);
    auto back = decode_topic(encode_topic(*topic));
    REQUIRE(back);
    CHECK(back->adding == topic->adding);
    CHECK(back->removing == topic->removing);
    CHECK(encode_topic(*topic).find(R"("adding_replicas":{"0":[3,4]})") != std::string::npos);
    // A partition the node does not have cannot be moving.
    CHECK_FALSE(
        decode_topic(R"({"version":2,"partitions":{"0":[1]},"adding_replicas":{"1":[2]}})"));

    auto moves = decode_reassign_partitions(
        R"({"version":1,"partitions":[{"topic":"t","partition":1,"replicas":[2,3]}]})");
    REQUIRE(moves);
    REQUIRE(moves->size() == 1);
    CHECK(moves->front().topic == "t");
    CHECK(moves->front().partition == 1);
    CHECK(moves->front().replicas == std::vector<int32_t>{2, 3});
    CHECK(decode_reassign_partitions(encode_reassign_partitions(*moves))->front().replicas ==
          moves->front().replicas);
    CHECK_FALSE(decode_reassign_partitions(R"({"version":1,"partitions":[{"topic":"t"}]})"));
    CHECK_FALSE(decode_reassign_partitions(R"({"version":1,"partitions":{}})"));
}

TEST_CASE("partition state, controller, cluster id, configs and producer id blocks") {
    partition_state state;
    state.leader = 2;
    state.leader_epoch = 7;
    state.isr = {2, 3};
    state.controller_epoch = 4;
    auto back = decode_partition_state(encode_partition_state(state));
    REQUIRE(back);
    CHECK(back->leader == 2);
    CHECK(back->leader_epoch == 7);
    CHECK(back->isr == std::vector<int32_t>{2, 3});
    CHECK(back->controller_epoch == 4);
    CHECK(encode_partition_state(state).find("\"version\":1") != std::string::npos);

    CHECK(*decode_controller(encode_controller(5, 1)) == 5);
    CHECK(*decode_controller("3") == 3);  // Kafka 0.8's bare number
    CHECK(*decode_cluster_id(encode_cluster_id("abc")) == "abc");
    CHECK(encode_cluster_id("abc").find("\"version\":\"1\"") != std::string::npos);

    auto configs = decode_topic_config(encode_topic_config({{"retention.ms", "1000"}}));
    REQUIRE(configs);
    CHECK(configs->at("retention.ms") == "1000");
    CHECK(*decode_config_change(encode_config_change("t1")) == "t1");
    CHECK(*decode_config_change(R"({"version":1,"entity_type":"topics","entity_name":"t2"})") ==
          "t2");
    CHECK_FALSE(decode_config_change(R"({"version":2,"entity_path":"brokers/1"})"));

    auto block = decode_producer_id_block(encode_producer_id_block({2, 1000, 1999}));
    REQUIRE(block);
    CHECK(block->broker == 2);
    CHECK(block->start == 1000);
    CHECK(block->end == 1999);
    CHECK(encode_producer_id_block({2, 1000, 1999}).find("\"block_start\":\"1000\"") !=
          std::string::npos);
}

namespace {

std::vector<placement_broker> brokers(std::initializer_list<int32_t> ids) {
    std::vector<placement_broker> out;
    for (int32_t id : ids) out.push_back({id, std::nullopt});
    return out;
}

}  // namespace

TEST_CASE("placement without racks is Kafka's round robin with a shift every n partitions") {
    placement_request request;
    request.partitions = 10;
    request.replication_factor = 3;
    auto placed = place_replicas(brokers({4, 2, 0, 3, 1}), request);
    REQUIRE(placed);
    // Kafka's documented example (5 brokers, 10 partitions, factor 3, start 0, shift 0).
    CHECK(placed->at(0) == std::vector<int32_t>{0, 1, 2});
    CHECK(placed->at(4) == std::vector<int32_t>{4, 0, 1});
    CHECK(placed->at(5) == std::vector<int32_t>{0, 2, 3});
    CHECK(placed->at(9) == std::vector<int32_t>{4, 1, 2});
    std::map<int32_t, int> leaders;
    for (const auto& [p, replicas] : *placed) {
        ++leaders[replicas.front()];
        CHECK(std::set<int32_t>(replicas.begin(), replicas.end()).size() == 3);
    }
    for (const auto& [broker, count] : leaders) CHECK(count == 2);
}

TEST_CASE("placement continues the spread for new partitions and refuses bad factors") {
    placement_request request;
    request.partitions = 3;
    request.first_partition = 3;
    request.replication_factor = 1;
    request.start_index = 1;
    auto placed = place_replicas(brokers({1, 2, 3}), request);
    REQUIRE(placed);
    CHECK(placed->size() == 3);
    CHECK(placed->at(3) == std::vector<int32_t>{2});
    CHECK(placed->at(5) == std::vector<int32_t>{1});
    request.replication_factor = 4;
    auto refused = place_replicas(brokers({1, 2, 3}), request);
    REQUIRE_FALSE(refused);
    CHECK(refused.failure().code ==
          static_cast<int>(spate::proto::error_code::invalid_replication_factor));
    request.replication_factor = 1;
    request.partitions = 0;
    CHECK_FALSE(place_replicas(brokers({1}), request));
}

TEST_CASE("rack-aware placement puts every replica of a partition on another rack") {
    std::vector<placement_broker> racked = {{1, "a"}, {2, "a"}, {3, "b"},
                                            {4, "b"}, {5, "c"}, {6, "c"}};
    placement_request request;
    request.partitions = 12;
    request.replication_factor = 3;
    request.start_index = 2;
    request.shift = 1;
    auto placed = place_replicas(racked, request);
    REQUIRE(placed);
    std::map<int32_t, std::string> rack_of;
    for (const auto& b : racked) rack_of[b.id] = *b.rack;
    std::map<int32_t, int> leaders;
    for (const auto& [p, replicas] : *placed) {
        std::set<std::string> racks;
        for (int32_t r : replicas) racks.insert(rack_of[r]);
        CHECK(racks.size() == 3);
        ++leaders[replicas.front()];
    }
    for (const auto& [broker, count] : leaders) CHECK(count == 2);
}

TEST_CASE("Java's String.hashCode over UTF-16 code units places groups as Kafka does") {
    CHECK(java_string_hash("") == 0);
    CHECK(java_string_hash("a") == 97);
    CHECK(java_string_hash("hello") == 99162322);
    CHECK(java_string_hash("my-group") == -1906497762);
    CHECK(java_string_hash("gr\xC3\xBC\xC3\x9F"
                           "e") == 98768023);                                     // grüße
    CHECK(java_string_hash("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E") == 25921943);  // 日本語
    CHECK(java_string_hash("\xF0\x9F\x98\x80x") == 54959989);  // U+1F600, a surrogate pair
    CHECK(java_string_hash("polygenelubricants") == INT32_MIN);
    CHECK(offsets_partition_of("polygenelubricants", 50) == 0);  // Kafka's abs(MIN) = 0
    CHECK(offsets_partition_of("my-group", 50) == 12);
    CHECK(offsets_partition_of("hello", 50) == 22);
}
