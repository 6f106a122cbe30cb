#include "broker/fetch_session.h"

#include <doctest/doctest.h>

using namespace spate::broker;

namespace {

std::vector<session_partition> parts(const std::string& topic, int32_t count) {
    std::vector<session_partition> out;
    for (int32_t i = 0; i < count; ++i) {
        session_partition p;
        p.topic = topic;
        p.partition = i;
        out.push_back(p);
    }
    return out;
}

}  // namespace

TEST_CASE("fetch sessions: ids carry the shard, partitions update, forget and rotate") {
    fetch_session_cache cache(4, 1000, 3, 42);
    auto s = cache.create(false, false, 0, parts("t", 3));
    REQUIRE(s);
    CHECK(s->id > 0);
    CHECK((s->id & 0xFF) == 3);
    CHECK(cache.find(s->id) == s);
    CHECK(s->epoch == 1);
    session_partition moved = s->partitions[1];
    moved.fetch_offset = 10;
    s->upsert(moved);
    CHECK(s->partitions.size() == 3);
    CHECK(s->partitions[1].fetch_offset == 10);
    s->forget("t", {}, 0);
    REQUIRE(s->partitions.size() == 2);
    CHECK(s->find("t", {}, 0) == -1);
    CHECK(s->find("t", {}, 2) == 1);
    s->rotate({0});  // partition 1 returned records: it goes last
    CHECK(s->partitions[0].partition == 2);
    CHECK(s->partitions[1].partition == 1);
    CHECK(s->find("t", {}, 1) == 1);
    cache.remove(s->id);
    CHECK_FALSE(cache.find(s->id));
}

TEST_CASE("fetch sessions: topic ids key a session that uses them") {
    fetch_session_cache cache(1, 1000, 0, 1);
    session_partition p;
    p.topic_id.bytes[0] = 7;
    p.partition = 4;
    auto s = cache.create(false, true, 0, {p});
    REQUIRE(s);
    CHECK(s->find("", p.topic_id, 4) == 0);
    CHECK(s->find("", {}, 4) == -1);
}

TEST_CASE("fetch sessions: epochs wrap past INT32_MAX to 1") {
    CHECK(next_session_epoch(1) == 2);
    CHECK(next_session_epoch(INT32_MAX) == 1);
}

TEST_CASE("fetch session cache: Kafka's eviction rules") {
    fetch_session_cache cache(2, 1000, 0, 7);
    auto small = cache.create(false, false, 0, parts("a", 2));
    auto large = cache.create(false, false, 0, parts("b", 10));
    REQUIRE(small);
    REQUIRE(large);
    // Full, every session young: nothing is evicted, even for a larger one.
    CHECK_FALSE(cache.create(false, false, 500, parts("c", 50)));
    // A follower's (privileged) session may evict a young consumer session.
    auto follower = cache.create(true, false, 600, parts("d", 1));
    REQUIRE(follower);
    CHECK_FALSE(cache.find(small->id));  // the smallest went
    CHECK(cache.find(large->id));
    // Old sessions (past the eviction time since creation) give way to larger ones only.
    cache.touch(*large, 1900);
    cache.touch(*follower, 1900);
    CHECK_FALSE(cache.create(false, false, 2000, parts("e", 5)));  // smaller than both
    auto bigger = cache.create(false, false, 2000, parts("f", 11));
    REQUIRE(bigger);
    CHECK_FALSE(cache.find(large->id));
    CHECK(cache.find(follower->id));  // privileged outranks any consumer session
    // A session unused for the eviction time goes first, whatever its size.
    auto any = cache.create(false, false, 3001, parts("g", 1));
    REQUIRE(any);
    CHECK(cache.size() == 2);
    CHECK(cache.evictions() == 3);
    CHECK(cache.find(bigger->id));  // used at 2000: not stale yet at 3001
}

TEST_CASE("fetch session cache: zero slots turns sessions off") {
    fetch_session_cache cache(0, 1000, 0, 7);
    CHECK_FALSE(cache.create(true, false, 0, parts("a", 1)));
}

TEST_CASE("fetch session cache: the partitions of all sessions together are bounded") {
    fetch_session_cache cache(10, 1000, 0, 7, 10);
    CHECK_FALSE(cache.create(false, false, 0, parts("big", 11)));  // alone past the bound
    auto a = cache.create(false, false, 0, parts("a", 6));
    REQUIRE(a);
    CHECK_FALSE(cache.create(false, false, 0, parts("b", 5)));  // 6 + 5 > 10
    auto b = cache.create(false, false, 0, parts("b", 4));
    REQUIRE(b);
    CHECK(cache.entries() == 10);
    CHECK(cache.within_bounds());
    session_partition more;
    more.topic = "b";
    more.partition = 99;
    b->upsert(more);  // an incremental fetch grows it
    CHECK_FALSE(cache.within_bounds());
}

TEST_CASE("fetch sessions: a position hint is used only when it names the partition") {
    fetch_session_cache cache(1, 1000, 0, 1);
    auto session = cache.create(false, false, 0, parts("a", 3));
    REQUIRE(session);
    CHECK(session->find(1, "a", {}, 1) == 1);
    CHECK(session->find(0, "a", {}, 2) == 2);   // stale hint: looked up
    CHECK(session->find(7, "a", {}, 0) == 0);   // out of range
    CHECK(session->find(1, "b", {}, 1) == -1);  // same index, another topic
    session->rotate({0});
    CHECK(session->find(0, "a", {}, 0) == 2);  // moved by the rotation
    CHECK(session->find(0, "a", {}, 1) == 0);

    spate::proto::uuid id{};
    id.bytes[0] = 9;
    auto by_id = std::make_shared<fetch_session>();
    session_partition p;
    p.topic_id = id;
    p.partition = 4;
    by_id->upsert(p);
    CHECK(by_id->find(0, "", id, 4) == 0);
    CHECK(by_id->find(0, "", {}, 4) == -1);  // a name session's key is not an id's
    CHECK(by_id->find(0, "", id, 5) == -1);
}
