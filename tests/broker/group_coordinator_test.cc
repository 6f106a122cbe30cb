// The classic group state machine, driven by a fake clock: every transition and the
// error codes each state answers.
#include <doctest/doctest.h>

#include <map>
#include <optional>

#include "broker/group/coordinator.h"

using namespace spate::broker::group;
using spate::proto::error_code;
namespace proto = spate::proto;

namespace {

// Timers fire only when the test advances the clock. Appends land in `log` and are
// acknowledged at once, unless `hold` keeps the acknowledgements for release().
class fake_environment final : public coordinator_environment {
public:
    int64_t wall_clock_ms() override { return 1'700'000'000'000 + _now_ms; }
    uint64_t add_timer(int64_t delay_ms, std::function<void()> fire) override {
        const uint64_t id = ++_next_id;
        _timers.emplace(std::make_pair(_now_ms + delay_ms, id), std::move(fire));
        return id;
    }
    void cancel_timer(uint64_t id) override {
        for (auto it = _timers.begin(); it != _timers.end(); ++it) {
            if (it->first.second == id) {
                _timers.erase(it);
                return;
            }
        }
    }
    void append_records(int32_t partition, const std::vector<offset_record>& records,
                        std::function<void(error_code)> done) override {
        ++appends;
        last_partition = partition;
        log.insert(log.end(), records.begin(), records.end());
        if (hold)
            held.push_back(std::move(done));
        else
            done(fail_with);
    }
    // Acknowledges the held appends with `error`.
    void release(error_code error = error_code::none) {
        auto waiting = std::move(held);
        held.clear();
        for (auto& done : waiting) done(error);
    }
    // The groups a coordinator would load from `log`.
    recovered_groups replay() const {
        recovered_groups groups;
        for (const auto& r : log) apply_record(groups, r);
        return groups;
    }
    // Moves the clock forward, firing every timer that comes due, in deadline order.
    void advance(int64_t ms) {
        const int64_t until = _now_ms + ms;
        while (!_timers.empty() && _timers.begin()->first.first <= until) {
            auto first = _timers.begin();
            _now_ms = first->first.first;
            auto fire = std::move(first->second);
            _timers.erase(first);
            fire();
        }
        _now_ms = until;
    }
    int appends = 0;
    int32_t last_partition = -1;
    std::vector<offset_record> log;
    bool hold = false;
    error_code fail_with = error_code::none;
    std::vector<std::function<void(error_code)>> held;

private:
    int64_t _now_ms = 0;
    uint64_t _next_id = 0;
    std::map<std::pair<int64_t, uint64_t>, std::function<void()>> _timers;
};

constexpr int32_t session_ms = 10000;
constexpr int32_t rebalance_ms = 30000;
constexpr int32_t initial_delay_ms = 3000;

struct fixture {
    fake_environment env;
    group_coordinator groups;

    fixture() : fixture(make_config()) {}
    // One partition of __consumer_offsets, loaded and empty: every group is this one's.
    explicit fixture(coordinator_config config) : groups(config, env) {
        groups.set_partition_count(1);
        groups.begin_load(0);
        groups.finish_load(0, {});
    }
    static coordinator_config make_config(bool = false) {
        coordinator_config config;
        config.initial_rebalance_delay_ms = initial_delay_ms;
        return config;
    }
};

proto::join_group_request join_request(const std::string& member_id,
                                       std::vector<std::string> protocols = {"range"},
                                       std::optional<std::string> instance = std::nullopt) {
    proto::join_group_request r;
    r.group_id = std::string("g");
    r.session_timeout_ms = session_ms;
    r.rebalance_timeout_ms = rebalance_ms;
    r.member_id = member_id;
    r.group_instance_id = std::move(instance);
    r.protocol_type = "consumer";
    for (const auto& name : protocols) {
        proto::join_group_request::join_group_request_protocol p;
        p.name = name;
        p.metadata = {1, 2, static_cast<uint8_t>(name.size())};
        r.protocols.push_back(p);
    }
    return r;
}

member_context context(int16_t version = 9) {
    member_context c;
    c.client_id = "client";
    c.version = version;
    return c;
}

// A join whose answer may come later.
struct pending_join {
    std::shared_ptr<std::optional<proto::join_group_response>> answer =
        std::make_shared<std::optional<proto::join_group_response>>();
    group_coordinator::join_callback callback() {
        auto slot = answer;
        return [slot](proto::join_group_response r) { *slot = std::move(r); };
    }
    bool done() const { return answer->has_value(); }
    const proto::join_group_response& get() const { return **answer; }
};

struct pending_sync {
    std::shared_ptr<std::optional<proto::sync_group_response>> answer =
        std::make_shared<std::optional<proto::sync_group_response>>();
    group_coordinator::sync_callback callback() {
        auto slot = answer;
        return [slot](proto::sync_group_response r) { *slot = std::move(r); };
    }
    bool done() const { return answer->has_value(); }
    const proto::sync_group_response& get() const { return **answer; }
};

// The KIP-394 round trip: an empty member id gets MEMBER_ID_REQUIRED and an id.
std::string member_id_for(fixture& f) {
    pending_join first;
    f.groups.join(join_request(""), context(), first.callback());
    REQUIRE(first.done());
    CHECK(first.get().error_code == proto::code(error_code::member_id_required));
    CHECK(!first.get().member_id.empty());
    return first.get().member_id;
}

proto::sync_group_request sync_request(
    const std::string& member_id, int32_t generation,
    std::vector<std::pair<std::string, uint8_t>> assignments = {}) {
    proto::sync_group_request r;
    r.group_id = std::string("g");
    r.member_id = member_id;
    r.generation_id = generation;
    for (const auto& [id, byte] : assignments) {
        proto::sync_group_request::sync_group_request_assignment a;
        a.member_id = id;
        a.assignment = {byte};
        r.assignments.push_back(a);
    }
    return r;
}

error_code heartbeat(fixture& f, const std::string& member_id, int32_t generation) {
    proto::heartbeat_request r;
    r.group_id = std::string("g");
    r.member_id = member_id;
    r.generation_id = generation;
    return f.groups.heartbeat(r);
}

// One member joins an empty group and the group becomes Stable at generation 1.
std::string stable_single_member(fixture& f) {
    const std::string id = member_id_for(f);
    pending_join join;
    f.groups.join(join_request(id), context(), join.callback());
    CHECK(!join.done());  // held by the initial rebalance delay
    CHECK(f.groups.state_of("g") == group_state::preparing_rebalance);
    f.env.advance(initial_delay_ms);
    REQUIRE(join.done());
    CHECK(join.get().error_code == 0);
    CHECK(join.get().generation_id == 1);
    CHECK(join.get().leader == id);
    CHECK(join.get().protocol_name == "range");
    CHECK(join.get().members.size() == 1);
    CHECK(f.groups.state_of("g") == group_state::completing_rebalance);
    pending_sync sync;
    f.groups.sync(sync_request(id, 1, {{id, 7}}), sync.callback());
    REQUIRE(sync.done());
    CHECK(sync.get().error_code == 0);
    CHECK(sync.get().assignment == std::vector<uint8_t>{7});
    CHECK(f.groups.state_of("g") == group_state::stable);
    return id;
}

proto::offset_commit_request commit_request(const std::string& member_id, int32_t generation,
                                            int64_t offset) {
    proto::offset_commit_request r;
    r.group_id = std::string("g");
    r.member_id = member_id;
    r.generation_id = generation;
    proto::offset_commit_request::offset_commit_request_topic t;
    t.name = "t";
    proto::offset_commit_request::offset_commit_request_partition p;
    p.partition_index = 0;
    p.committed_offset = offset;
    p.committed_metadata = "meta";
    t.partitions.push_back(p);
    r.topics.push_back(t);
    return r;
}

int16_t commit(fixture& f, const proto::offset_commit_request& r) {
    std::optional<proto::offset_commit_response> answer;
    f.groups.commit(r, [&](proto::offset_commit_response a) { answer = std::move(a); });
    REQUIRE(answer.has_value());
    return answer->topics.at(0).partitions.at(0).error_code;
}

int64_t fetched_offset(fixture& f, const std::string& group_id = "g") {
    auto answer = f.groups.fetch(group_id, std::vector<fetch_topic>{{"t", {0}}});
    return answer.topics.at(0).partitions.at(0).committed_offset;
}

}  // namespace

TEST_CASE("join v4+: MEMBER_ID_REQUIRED, initial delay, leader gets the members, sync -> Stable") {
    fixture f;
    stable_single_member(f);
    CHECK(f.groups.generation_of("g") == 1);
}

TEST_CASE("join before v4 gets a member id without the extra round trip") {
    fixture f;
    pending_join join;
    f.groups.join(join_request(""), context(3), join.callback());
    CHECK(!join.done());
    f.env.advance(initial_delay_ms);
    REQUIRE(join.done());
    CHECK(join.get().error_code == 0);
    CHECK(!join.get().member_id.empty());
}

TEST_CASE("join validation: group id, session timeout, protocols, unknown member") {
    fixture f;
    pending_join bad_group;
    auto r = join_request("");
    r.group_id = "";
    f.groups.join(r, context(), bad_group.callback());
    CHECK(bad_group.get().error_code == proto::code(error_code::invalid_group_id));

    pending_join bad_session;
    r = join_request("");
    r.session_timeout_ms = 100;
    f.groups.join(r, context(), bad_session.callback());
    CHECK(bad_session.get().error_code == proto::code(error_code::invalid_session_timeout));

    pending_join no_protocols;
    r = join_request("", {});
    f.groups.join(r, context(), no_protocols.callback());
    CHECK(no_protocols.get().error_code == proto::code(error_code::inconsistent_group_protocol));

    pending_join unknown;
    f.groups.join(join_request("nobody"), context(), unknown.callback());
    CHECK(unknown.get().error_code == proto::code(error_code::unknown_member_id));
    CHECK(!f.groups.state_of("g").has_value());
}

TEST_CASE("a second member triggers a rebalance; the join is held until everyone rejoins") {
    fixture f;
    const std::string a = stable_single_member(f);
    const std::string b = member_id_for(f);
    // The pending id alone does not disturb the Stable group.
    CHECK(f.groups.state_of("g") == group_state::stable);
    pending_join join_b;
    f.groups.join(join_request(b), context(), join_b.callback());
    CHECK(f.groups.state_of("g") == group_state::preparing_rebalance);
    CHECK(!join_b.done());
    // The old member learns about it through its heartbeat.
    CHECK(heartbeat(f, a, 1) == error_code::rebalance_in_progress);
    // Commits of the current generation are still accepted while preparing.
    CHECK(commit(f, commit_request(a, 1, 5)) == 0);
    pending_join join_a;
    f.groups.join(join_request(a), context(), join_a.callback());
    REQUIRE(join_a.done());
    REQUIRE(join_b.done());
    CHECK(join_a.get().generation_id == 2);
    CHECK(join_b.get().generation_id == 2);
    CHECK(join_a.get().leader == a);  // the leader keeps its role
    CHECK(join_a.get().members.size() == 2);
    CHECK(join_b.get().members.empty());
    CHECK(f.groups.state_of("g") == group_state::completing_rebalance);

    // CompletingRebalance: heartbeats of the new generation are fine, commits are not.
    CHECK(heartbeat(f, b, 2) == error_code::none);
    CHECK(heartbeat(f, b, 1) == error_code::illegal_generation);
    CHECK(commit(f, commit_request(b, 2, 6)) == proto::code(error_code::rebalance_in_progress));

    // A follower's sync waits for the leader's.
    pending_sync sync_b;
    f.groups.sync(sync_request(b, 2), sync_b.callback());
    CHECK(!sync_b.done());
    pending_sync sync_a;
    f.groups.sync(sync_request(a, 2, {{a, 1}, {b, 2}}), sync_a.callback());
    REQUIRE(sync_a.done());
    REQUIRE(sync_b.done());
    CHECK(sync_a.get().assignment == std::vector<uint8_t>{1});
    CHECK(sync_b.get().assignment == std::vector<uint8_t>{2});
    CHECK(sync_b.get().protocol_name == "range");
    CHECK(f.groups.state_of("g") == group_state::stable);
    CHECK(commit(f, commit_request(b, 2, 6)) == 0);
    CHECK(fetched_offset(f) == 6);
}

TEST_CASE("the rebalance timeout removes members that did not rejoin") {
    fixture f;
    const std::string a = stable_single_member(f);
    const std::string b = member_id_for(f);
    pending_join join_b;
    f.groups.join(join_request(b), context(), join_b.callback());
    // Keep a's session alive without rejoining: only the rebalance timeout ends this.
    for (int i = 0; i < 5; ++i) {
        f.env.advance(rebalance_ms / 6);
        CHECK(heartbeat(f, a, 1) == error_code::rebalance_in_progress);
    }
    CHECK(!join_b.done());
    f.env.advance(rebalance_ms / 6 + 1);
    REQUIRE(join_b.done());
    CHECK(join_b.get().generation_id == 2);
    CHECK(join_b.get().leader == b);
    CHECK(f.groups.member_count("g") == 1);
    CHECK(heartbeat(f, a, 2) == error_code::unknown_member_id);
}

TEST_CASE("session expiry removes a silent member and rebalances; the last one leaves Empty") {
    fixture f;
    const std::string a = stable_single_member(f);
    CHECK(heartbeat(f, a, 1) == error_code::none);
    f.env.advance(session_ms - 1);
    CHECK(heartbeat(f, a, 1) == error_code::none);  // resets the session
    f.env.advance(session_ms - 1);
    CHECK(f.groups.member_count("g") == 1);
    f.env.advance(2);
    CHECK(f.groups.member_count("g") == 0);
    // No members, no offsets: the group is forgotten.
    CHECK(!f.groups.state_of("g").has_value());
    CHECK(heartbeat(f, a, 1) == error_code::unknown_member_id);
}

TEST_CASE("heartbeat and sync fencing: unknown member, illegal generation, empty group") {
    fixture f;
    const std::string a = stable_single_member(f);
    CHECK(heartbeat(f, "stranger", 1) == error_code::unknown_member_id);
    CHECK(heartbeat(f, a, 7) == error_code::illegal_generation);
    pending_sync wrong_generation;
    f.groups.sync(sync_request(a, 3), wrong_generation.callback());
    CHECK(wrong_generation.get().error_code == proto::code(error_code::illegal_generation));
    pending_sync stranger;
    f.groups.sync(sync_request("stranger", 1), stranger.callback());
    CHECK(stranger.get().error_code == proto::code(error_code::unknown_member_id));
    // A Stable group answers a repeated sync with the stored assignment.
    pending_sync again;
    f.groups.sync(sync_request(a, 1), again.callback());
    CHECK(again.get().error_code == 0);
    CHECK(again.get().assignment == std::vector<uint8_t>{7});
    // A sync naming the wrong protocol is refused.
    pending_sync wrong_protocol;
    auto r = sync_request(a, 1);
    r.protocol_name = "roundrobin";
    f.groups.sync(r, wrong_protocol.callback());
    CHECK(wrong_protocol.get().error_code == proto::code(error_code::inconsistent_group_protocol));
}

TEST_CASE("sync during PreparingRebalance answers REBALANCE_IN_PROGRESS") {
    fixture f;
    const std::string a = stable_single_member(f);
    const std::string b = member_id_for(f);
    pending_join join_b;
    f.groups.join(join_request(b), context(), join_b.callback());
    pending_sync sync;
    f.groups.sync(sync_request(a, 1), sync.callback());
    CHECK(sync.get().error_code == proto::code(error_code::rebalance_in_progress));
}

TEST_CASE("a rebalance during CompletingRebalance fails the waiting syncs") {
    fixture f;
    const std::string a = stable_single_member(f);
    const std::string b = member_id_for(f);
    pending_join join_b;
    f.groups.join(join_request(b), context(), join_b.callback());
    pending_join join_a;
    f.groups.join(join_request(a), context(), join_a.callback());
    REQUIRE(join_b.done());
    pending_sync sync_b;
    f.groups.sync(sync_request(b, 2), sync_b.callback());
    CHECK(!sync_b.done());
    // The leader leaves before assigning.
    auto left = f.groups.leave("g", {{a, std::nullopt, std::nullopt}});
    CHECK(left.members.at(0).error_code == 0);
    REQUIRE(sync_b.done());
    CHECK(sync_b.get().error_code == proto::code(error_code::rebalance_in_progress));
    CHECK(f.groups.state_of("g") == group_state::preparing_rebalance);
    pending_join rejoin_b;
    f.groups.join(join_request(b), context(), rejoin_b.callback());
    REQUIRE(rejoin_b.done());
    CHECK(rejoin_b.get().generation_id == 3);
    CHECK(rejoin_b.get().leader == b);
}

TEST_CASE("leave: batch with unknown members, and the last member leaving empties the group") {
    fixture f;
    const std::string a = stable_single_member(f);
    CHECK(commit(f, commit_request(a, 1, 42)) == 0);
    auto left = f.groups.leave(
        "g", {{a, std::nullopt, std::nullopt}, {"stranger", std::nullopt, std::nullopt}});
    REQUIRE(left.members.size() == 2);
    CHECK(left.members[0].error_code == 0);
    CHECK(left.members[1].error_code == proto::code(error_code::unknown_member_id));
    // Offsets keep the group alive, Empty, at the next generation.
    CHECK(f.groups.state_of("g") == group_state::empty);
    CHECK(f.groups.generation_of("g") == 2);
    CHECK(fetched_offset(f) == 42);
    auto unknown_group = f.groups.leave("other", {{a, std::nullopt, std::nullopt}});
    CHECK(unknown_group.members.at(0).error_code == proto::code(error_code::unknown_member_id));
}

TEST_CASE("protocol selection: a protocol every member supports, by preference votes") {
    fixture f;
    const std::string a = member_id_for(f);
    pending_join join_a;
    f.groups.join(join_request(a, {"roundrobin", "range"}), context(), join_a.callback());
    const std::string b = member_id_for(f);
    pending_join join_b;
    f.groups.join(join_request(b, {"range", "sticky"}), context(), join_b.callback());
    const std::string c = member_id_for(f);
    pending_join join_c;
    f.groups.join(join_request(c, {"range", "roundrobin"}), context(), join_c.callback());
    f.env.advance(initial_delay_ms);
    REQUIRE(join_a.done());
    CHECK(join_a.get().protocol_name == "range");
    CHECK(join_b.get().protocol_name == "range");
    // A member sharing no protocol with the group is refused.
    pending_join incompatible;
    f.groups.join(join_request("", {"cooperative"}), context(), incompatible.callback());
    CHECK(incompatible.get().error_code == proto::code(error_code::inconsistent_group_protocol));
    // As is one of another protocol type.
    pending_join other_type;
    auto r = join_request("");
    r.protocol_type = "connect";
    f.groups.join(r, context(), other_type.callback());
    CHECK(other_type.get().error_code == proto::code(error_code::inconsistent_group_protocol));
}

TEST_CASE("a follower rejoining unchanged in Stable gets the current generation back") {
    fixture f;
    const std::string a = stable_single_member(f);
    const std::string b = member_id_for(f);
    pending_join join_b;
    f.groups.join(join_request(b), context(), join_b.callback());
    pending_join join_a;
    f.groups.join(join_request(a), context(), join_a.callback());
    pending_sync sync_a, sync_b;
    f.groups.sync(sync_request(a, 2, {{a, 1}, {b, 2}}), sync_a.callback());
    f.groups.sync(sync_request(b, 2), sync_b.callback());
    REQUIRE(f.groups.state_of("g") == group_state::stable);
    pending_join again;
    f.groups.join(join_request(b), context(), again.callback());
    REQUIRE(again.done());
    CHECK(again.get().generation_id == 2);
    CHECK(f.groups.state_of("g") == group_state::stable);
    // With a new subscription it starts a rebalance instead.
    pending_join changed;
    f.groups.join(join_request(b, {"range", "roundrobin"}), context(), changed.callback());
    CHECK(!changed.done());
    CHECK(f.groups.state_of("g") == group_state::preparing_rebalance);
}

TEST_CASE("static membership: a restarted instance keeps its assignment; the old id is fenced") {
    fixture f;
    pending_join join;
    f.groups.join(join_request("", {"range"}, "instance-1"), context(), join.callback());
    CHECK(!join.done());  // static members skip MEMBER_ID_REQUIRED
    f.env.advance(initial_delay_ms);
    REQUIRE(join.done());
    const std::string first_id = join.get().member_id;
    pending_sync sync;
    auto s = sync_request(first_id, 1, {{first_id, 9}});
    s.group_instance_id = "instance-1";
    f.groups.sync(s, sync.callback());
    REQUIRE(f.groups.state_of("g") == group_state::stable);

    pending_join restart;
    f.groups.join(join_request("", {"range"}, "instance-1"), context(), restart.callback());
    REQUIRE(restart.done());
    const std::string second_id = restart.get().member_id;
    CHECK(second_id != first_id);
    CHECK(restart.get().generation_id == 1);  // no rebalance
    CHECK(f.groups.state_of("g") == group_state::stable);
    pending_sync resync;
    auto s2 = sync_request(second_id, 1);
    s2.group_instance_id = "instance-1";
    f.groups.sync(s2, resync.callback());
    CHECK(resync.get().assignment == std::vector<uint8_t>{9});

    proto::heartbeat_request old;
    old.group_id = "g";
    old.member_id = first_id;
    old.generation_id = 1;
    old.group_instance_id = "instance-1";
    CHECK(f.groups.heartbeat(old) == error_code::fenced_instance_id);
    auto fenced_commit = commit_request(first_id, 1, 3);
    fenced_commit.group_instance_id = "instance-1";
    CHECK(commit(f, fenced_commit) == proto::code(error_code::fenced_instance_id));
    auto left = f.groups.leave("g", {{first_id, std::string("instance-1"), std::nullopt}});
    CHECK(left.members.at(0).error_code == proto::code(error_code::fenced_instance_id));
    auto left_by_instance = f.groups.leave("g", {{"", std::string("instance-1"), std::nullopt}});
    CHECK(left_by_instance.members.at(0).error_code == 0);
    CHECK(f.groups.member_count("g") == 0);
}

TEST_CASE("commit rules: simple consumers, unknown members, generations, metadata size") {
    fixture f;
    // No group: generation -1 commits create it (Empty); a generation does not.
    CHECK(commit(f, commit_request("", -1, 10)) == 0);
    CHECK(f.groups.state_of("g") == group_state::empty);
    CHECK(fetched_offset(f) == 10);
    proto::offset_commit_request other = commit_request("", 3, 1);
    other.group_id = "other";
    CHECK(commit(f, other) == proto::code(error_code::illegal_generation));
    CHECK(!f.groups.state_of("other").has_value());

    const std::string a = stable_single_member(f);
    CHECK(commit(f, commit_request("", -1, 11)) == proto::code(error_code::unknown_member_id));
    CHECK(commit(f, commit_request("stranger", 1, 11)) ==
          proto::code(error_code::unknown_member_id));
    CHECK(commit(f, commit_request(a, 5, 11)) == proto::code(error_code::illegal_generation));
    auto too_big = commit_request(a, 1, 11);
    too_big.topics[0].partitions[0].committed_metadata = std::string(5000, 'x');
    CHECK(commit(f, too_big) == proto::code(error_code::offset_metadata_too_large));
    CHECK(fetched_offset(f) == 10);
    CHECK(commit(f, commit_request(a, 1, 12)) == 0);
    CHECK(fetched_offset(f) == 12);
    auto all = f.groups.fetch("g", std::nullopt);
    REQUIRE(all.topics.size() == 1);
    CHECK(all.topics[0].partitions.at(0).metadata == "meta");
    // Unknown groups and partitions answer -1 without an error.
    CHECK(fetched_offset(f, "nobody") == -1);
}

TEST_CASE("a commit counts once its append is acknowledged, and fails with it") {
    fixture f;
    f.env.hold = true;
    std::optional<proto::offset_commit_response> answered;
    f.groups.commit(commit_request("", -1, 10),
                    [&](proto::offset_commit_response r) { answered = std::move(r); });
    CHECK(!answered.has_value());
    CHECK(fetched_offset(f) == -1);  // not acknowledged: not visible
    f.env.release();
    REQUIRE(answered.has_value());
    CHECK(answered->topics[0].partitions[0].error_code == 0);
    CHECK(fetched_offset(f) == 10);
    CHECK(f.env.last_partition == 0);
    // Too few in-sync replicas: the commit fails with the coordinator's error and the
    // committed offset stays where it was.
    answered.reset();
    f.groups.commit(commit_request("", -1, 11),
                    [&](proto::offset_commit_response r) { answered = std::move(r); });
    f.env.release(error_code::coordinator_not_available);
    REQUIRE(answered.has_value());
    CHECK(answered->topics[0].partitions[0].error_code == 15);
    CHECK(fetched_offset(f) == 10);
}

TEST_CASE("groups of partitions not led here, or still loading, are refused") {
    fake_environment env;
    group_coordinator groups(fixture::make_config(), env);
    groups.set_partition_count(1);
    proto::heartbeat_request beat;
    beat.group_id = std::string("g");
    beat.member_id = std::string("m");
    CHECK(groups.heartbeat(beat) == error_code::not_coordinator);
    std::optional<proto::join_group_response> joined;
    groups.join(join_request(""), context(),
                [&](proto::join_group_response r) { joined = std::move(r); });
    REQUIRE(joined.has_value());
    CHECK(joined->error_code == 16);  // NOT_COORDINATOR
    groups.begin_load(0);
    CHECK(groups.heartbeat(beat) == error_code::coordinator_load_in_progress);
    CHECK(groups.fetch("g", std::nullopt).error_code == 14);
    CHECK(groups.describe("g").error_code == 14);
    groups.finish_load(0, {});
    CHECK(groups.heartbeat(beat) == error_code::unknown_member_id);
}

TEST_CASE("unloading a partition answers its waiting members and forgets its groups") {
    fixture f;
    const std::string a = member_id_for(f);
    std::optional<proto::join_group_response> joined;
    f.groups.join(join_request(a), context(),
                  [&](proto::join_group_response r) { joined = std::move(r); });
    CHECK(!joined.has_value());  // waits for the initial rebalance delay
    f.groups.unload(0);
    REQUIRE(joined.has_value());
    CHECK(joined->error_code == 16);  // NOT_COORDINATOR: find the new coordinator
    CHECK(!f.groups.state_of("g").has_value());
    f.env.advance(rebalance_ms * 2);  // no timer of the forgotten group fires
    CHECK(f.groups.availability("g") == error_code::not_coordinator);
}

TEST_CASE("deleting a group writes a tombstone for each offset and one for the group") {
    fixture f;
    CHECK(commit(f, commit_request("", -1, 10)) == 0);
    std::optional<error_code> deleted;
    f.groups.delete_group("g", [&](error_code e) { deleted = e; });
    REQUIRE(deleted == error_code::none);
    recovered_groups replayed = f.env.replay();
    CHECK(replayed.offsets.count("g") == 0);
    CHECK(replayed.snapshots.count("g") == 0);
    REQUIRE(f.env.log.size() >= 3);
    CHECK(f.env.log[f.env.log.size() - 2].kind == record_kind::offset_deleted);
    CHECK(f.env.log.back().kind == record_kind::group_deleted);
}

TEST_CASE("list and describe report Kafka's state names, members and assignments") {
    fixture f;
    const std::string a = stable_single_member(f);
    auto listed = f.groups.list({});
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].group_id == "g");
    CHECK(listed[0].protocol_type == "consumer");
    CHECK(listed[0].group_state == "Stable");
    CHECK(f.groups.list({"empty"}).empty());
    CHECK(f.groups.list({"stable"}).size() == 1);
    auto described = f.groups.describe("g");
    CHECK(described.group_state == "Stable");
    CHECK(described.protocol_data == "range");
    REQUIRE(described.members.size() == 1);
    CHECK(described.members[0].member_id == a);
    CHECK(described.members[0].client_id == "client");
    CHECK(described.members[0].member_assignment == std::vector<uint8_t>{7});
    CHECK(described.members[0].member_metadata == std::vector<uint8_t>{1, 2, 5});
    CHECK(f.groups.describe("missing").group_state == "Dead");
}

TEST_CASE("delete groups: NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND after") {
    fixture f;
    const std::string a = stable_single_member(f);
    CHECK(commit(f, commit_request(a, 1, 3)) == 0);
    std::optional<error_code> result;
    f.groups.delete_group("g", [&](error_code e) { result = e; });
    CHECK(result == error_code::non_empty_group);
    (void)f.groups.leave("g", {{a, std::nullopt, std::nullopt}});
    f.groups.delete_group("g", [&](error_code e) { result = e; });
    CHECK(result == error_code::none);
    CHECK(fetched_offset(f) == -1);
    f.groups.delete_group("g", [&](error_code e) { result = e; });
    CHECK(result == error_code::group_id_not_found);
}

TEST_CASE("offset delete: refused for subscribed topics of a live group") {
    fixture f;
    // Consumer protocol subscription: version 0, topics ["t"], no user data.
    const std::vector<uint8_t> subscription = {0, 0, 0, 0, 0, 1, 0, 1, 't', 0xff, 0xff, 0xff, 0xff};
    const std::string a = member_id_for(f);
    auto r = join_request(a);
    r.protocols[0].metadata = subscription;
    pending_join join;
    f.groups.join(r, context(), join.callback());
    f.env.advance(initial_delay_ms);
    REQUIRE(join.done());
    pending_sync sync;
    f.groups.sync(sync_request(a, 1, {{a, 1}}), sync.callback());
    REQUIRE(f.groups.state_of("g") == group_state::stable);
    CHECK(commit(f, commit_request(a, 1, 3)) == 0);
    proto::offset_delete_request del;
    del.group_id = "g";
    proto::offset_delete_request::offset_delete_request_topic t;
    t.name = "t";
    t.partitions.push_back({0});
    del.topics.push_back(t);
    std::optional<proto::offset_delete_response> answer;
    f.groups.delete_offsets(del, [&](proto::offset_delete_response x) { answer = std::move(x); });
    REQUIRE(answer.has_value());
    CHECK(answer->topics.at(0).partitions.at(0).error_code ==
          proto::code(error_code::group_subscribed_to_topic));
    (void)f.groups.leave("g", {{a, std::nullopt, std::nullopt}});
    answer.reset();
    f.groups.delete_offsets(del, [&](proto::offset_delete_response x) { answer = std::move(x); });
    REQUIRE(answer.has_value());
    CHECK(answer->error_code == 0);
    CHECK(answer->topics.at(0).partitions.at(0).error_code == 0);
    CHECK(fetched_offset(f) == -1);
    del.group_id = "missing";
    answer.reset();
    f.groups.delete_offsets(del, [&](proto::offset_delete_response x) { answer = std::move(x); });
    CHECK(answer->error_code == proto::code(error_code::group_id_not_found));
}

TEST_CASE("a pending member id that never comes back stops holding the rebalance") {
    fixture f;
    const std::string a = stable_single_member(f);
    (void)member_id_for(f);  // pending, never rejoins
    const std::string c = member_id_for(f);
    pending_join join_c;
    f.groups.join(join_request(c), context(), join_c.callback());
    pending_join join_a;
    f.groups.join(join_request(a), context(), join_a.callback());
    CHECK(!join_a.done());  // waits for the pending id
    f.env.advance(session_ms);
    REQUIRE(join_a.done());
    CHECK(join_a.get().generation_id == 2);
    CHECK(f.groups.member_count("g") == 2);
}

TEST_CASE("offsets of an empty group expire after the retention; live groups keep theirs") {
    coordinator_config config = fixture::make_config(false);
    config.offsets_retention_ms = 100000;
    config.offsets_retention_check_interval_ms = 1000;
    fixture f(config);
    CHECK(commit(f, commit_request("", -1, 10)) == 0);  // simple consumer, group Empty
    f.groups.expire_offsets();
    CHECK(fetched_offset(f) == 10);
    f.env.advance(99000);
    f.groups.expire_offsets();
    CHECK(fetched_offset(f) == 10);
    f.env.advance(1000);
    f.groups.expire_offsets();
    CHECK(fetched_offset(f) == -1);
    CHECK(!f.groups.state_of("g").has_value());

    const std::string a = stable_single_member(f);
    CHECK(commit(f, commit_request(a, 1, 20)) == 0);
    for (int i = 0; i < 40; ++i) {
        f.env.advance(5000);
        CHECK(heartbeat(f, a, 1) == error_code::none);
        f.groups.expire_offsets();
    }
    CHECK(fetched_offset(f) == 20);  // the group has a member
    (void)f.groups.leave("g", {{a, std::nullopt, std::nullopt}});
    f.env.advance(99000);
    f.groups.expire_offsets();
    CHECK(fetched_offset(f) == 20);  // counted from when the group became empty
    f.env.advance(1000);
    f.groups.expire_offsets();
    CHECK(fetched_offset(f) == -1);
}

TEST_CASE("a group refuses new members beyond its maximum size") {
    coordinator_config config = fixture::make_config(false);
    config.group_members_max = 2;
    fixture f(config);
    (void)member_id_for(f);
    (void)member_id_for(f);
    pending_join third;
    f.groups.join(join_request(""), context(), third.callback());
    CHECK(third.get().error_code == 81);  // GROUP_MAX_SIZE_REACHED
}

TEST_CASE("a Stable group comes back Stable on a new coordinator: same members, no rebalance") {
    std::string a;
    recovered_groups recovered;
    {
        fixture f;
        a = stable_single_member(f);
        CHECK(commit(f, commit_request(a, 1, 33)) == 0);
        f.groups.close();
        recovered = f.env.replay();  // what the next leader of the partition reads
    }
    CHECK(recovered.offsets.count("g") == 1);
    REQUIRE(recovered.snapshots.count("g") == 1);
    fake_environment env;
    group_coordinator groups(fixture::make_config(false), env);
    groups.set_partition_count(1);
    groups.begin_load(0);
    groups.finish_load(0, std::move(recovered));
    CHECK(groups.state_of("g") == group_state::stable);
    CHECK(groups.generation_of("g") == 1);
    CHECK(groups.leader_of("g") == a);
    proto::heartbeat_request beat;
    beat.group_id = std::string("g");
    beat.member_id = a;
    beat.generation_id = 1;
    CHECK(groups.heartbeat(beat) == error_code::none);
    std::optional<proto::sync_group_response> synced;
    groups.sync(sync_request(a, 1), [&](proto::sync_group_response r) { synced = std::move(r); });
    REQUIRE(synced.has_value());
    CHECK(synced->assignment == std::vector<uint8_t>{7});
    auto described = groups.describe("g");
    REQUIRE(described.members.size() == 1);
    CHECK(described.members[0].member_metadata == std::vector<uint8_t>{1, 2, 5});
    // The restored member's session runs: silence removes it.
    env.advance(session_ms + 1);
    CHECK(groups.member_count("g") == 0);
    CHECK(groups.state_of("g") == group_state::empty);
}

TEST_CASE("names too long for the records of __consumer_offsets are refused, not written") {
    fixture f;
    auto long_topic = commit_request("", -1, 5);
    long_topic.topics[0].name = std::string(250, 't');
    CHECK(commit(f, long_topic) == 3);  // UNKNOWN_TOPIC_OR_PARTITION
    auto join = join_request("", {std::string(40000, 'p')});
    std::optional<proto::join_group_response> joined;
    f.groups.join(join, context(), [&](proto::join_group_response r) { joined = std::move(r); });
    REQUIRE(joined.has_value());
    CHECK(joined->error_code == 23);  // INCONSISTENT_GROUP_PROTOCOL
    CHECK(f.env.appends == 0);
}
