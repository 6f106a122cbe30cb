// The classic group protocol: membership, rebalances, assignments, committed offsets.
#include "broker/group/coordinator.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "net/clock.h"
#include "net/log.h"

namespace spate::broker::group {

using proto::error_code;

namespace {

bool equal_ignoring_case(const std::string& a, const std::string& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

proto::join_group_response join_error(error_code error, const std::string& member_id) {
    proto::join_group_response response;
    response.error_code = proto::code(error);
    response.generation_id = -1;
    response.member_id = member_id;
    return response;
}

proto::sync_group_response sync_error(error_code error) {
    proto::sync_group_response response;
    response.error_code = proto::code(error);
    return response;
}

}  // namespace

const char* state_name(group_state state) {
    switch (state) {
        case group_state::empty:
            return "Empty";
        case group_state::preparing_rebalance:
            return "PreparingRebalance";
        case group_state::completing_rebalance:
            return "CompletingRebalance";
        case group_state::stable:
            return "Stable";
        case group_state::dead:
            return "Dead";
    }
    return "Dead";
}

// ---- group_coordinator: lifetime and lookup -----------------------------------------

group_coordinator::group_coordinator(coordinator_config config,
                                     coordinator_environment& environment)
    : _config(config), _environment(environment) {}

group_coordinator::~group_coordinator() { close(); }

void group_coordinator::cancel_timers(group& g) {
    if (g.rebalance_timer != 0) _environment.cancel_timer(g.rebalance_timer);
    g.rebalance_timer = 0;
    for (auto& [member_id, m] : g.members) {
        if (m.session_timer != 0) _environment.cancel_timer(m.session_timer);
        m.session_timer = 0;
    }
    for (auto& [member_id, timer] : g.pending_members) _environment.cancel_timer(timer);
    g.pending_members.clear();
}

void group_coordinator::abandon(group& g, error_code why) {
    cancel_timers(g);
    for (auto& [member_id, m] : g.members) {
        if (m.awaiting_join) {
            auto call = std::move(m.awaiting_join);
            m.awaiting_join = nullptr;
            call(join_error(why, member_id));
        }
        if (m.awaiting_sync) {
            auto call = std::move(m.awaiting_sync);
            m.awaiting_sync = nullptr;
            call(sync_error(why));
        }
    }
}

void group_coordinator::close() {
    for (auto& [group_id, g] : _groups) cancel_timers(g);
}

group_coordinator::group* group_coordinator::find(const std::string& group_id) {
    auto found = _groups.find(group_id);
    return found == _groups.end() ? nullptr : &found->second;
}

const group_coordinator::group* group_coordinator::find(const std::string& group_id) const {
    auto found = _groups.find(group_id);
    return found == _groups.end() ? nullptr : &found->second;
}

group_coordinator::group& group_coordinator::find_or_create(const std::string& group_id) {
    auto [it, inserted] = _groups.try_emplace(group_id);
    if (inserted) it->second.id = group_id;
    return it->second;
}

void group_coordinator::drop_if_unused(const std::string& group_id) {
    // A group with neither members nor offsets carries no information worth keeping;
    // Kafka would mark it Dead and forget it the same way.
    group* g = find(group_id);
    if (g == nullptr) return;
    if (g->state != group_state::empty || !g->members.empty() || !g->pending_members.empty() ||
        !g->offsets.empty())
        return;
    if (g->rebalance_timer != 0) _environment.cancel_timer(g->rebalance_timer);
    if (g->persisted) {  // its last snapshot would bring it back as an Empty group
        offset_record tombstone;
        tombstone.kind = record_kind::group_deleted;
        tombstone.group_id = group_id;
        tombstone.value.commit_timestamp_ms = _environment.wall_clock_ms();
        persist({tombstone}, [](error_code) {});
    }
    _groups.erase(group_id);
}

std::optional<group_state> group_coordinator::state_of(const std::string& group_id) const {
    const group* g = find(group_id);
    if (g == nullptr) return std::nullopt;
    return g->state;
}

int32_t group_coordinator::generation_of(const std::string& group_id) const {
    const group* g = find(group_id);
    return g == nullptr ? -1 : g->generation;
}

void group_coordinator::visit_groups(const std::function<void(const group_view&)>& visit) const {
    for (const auto& entry : _groups) {
        const group& g = entry.second;
        visit(group_view{g.id, g.state, g.members.size(), g.offsets});
    }
}

size_t group_coordinator::member_count(const std::string& group_id) const {
    const group* g = find(group_id);
    return g == nullptr ? 0 : g->members.size();
}

std::string group_coordinator::leader_of(const std::string& group_id) const {
    const group* g = find(group_id);
    return g == nullptr ? std::string() : g->leader_id;
}

std::string group_coordinator::new_member_id(const std::string& client_id) {
    // Kafka's form, "<client id>-<unique suffix>": unique within the process by the
    // counter and across restarts by the start time mixed in.
    char suffix[48];
    std::snprintf(suffix, sizeof(suffix), "-%012" PRIx64 "-%08" PRIx64,
                  static_cast<uint64_t>(_environment.wall_clock_ms()), ++_member_counter);
    const size_t prefix_max = _config.id_bytes_max / 2;
    return client_id.substr(0, prefix_max) + suffix;
}

// ---- protocol selection --------------------------------------------------------------

bool group_coordinator::protocols_compatible(const group& g, const std::string& protocol_type,
                                             const proto::join_group_request& request) const {
    if (g.members.empty()) return true;
    if (protocol_type != g.protocol_type) return false;
    // The newcomer must share at least one protocol that every member supports.
    for (const auto& offered : request.protocols) {
        bool everyone = true;
        for (const auto& [id, m] : g.members) {
            const bool has = std::any_of(m.protocols.begin(), m.protocols.end(),
                                         [&](const auto& p) { return p.first == offered.name; });
            if (!has) {
                everyone = false;
                break;
            }
        }
        if (everyone) return true;
    }
    return false;
}

std::optional<std::string> group_coordinator::select_protocol(const group& g) const {
    // Candidates: protocols every member supports. Each member votes for the first of
    // its own preferences among them; most votes wins, ties go to the first candidate
    // in the order of the first member's preferences (deterministic).
    if (g.members.empty()) return std::nullopt;
    std::vector<std::string> candidates;
    for (const auto& p : g.members.begin()->second.protocols) {
        bool everyone = true;
        for (const auto& [id, m] : g.members) {
            if (std::none_of(m.protocols.begin(), m.protocols.end(),
                             [&](const auto& q) { return q.first == p.first; })) {
                everyone = false;
                break;
            }
        }
        if (everyone) candidates.push_back(p.first);
    }
    if (candidates.empty()) return std::nullopt;
    std::map<std::string, int> votes;
    for (const auto& [id, m] : g.members) {
        for (const auto& p : m.protocols) {
            if (std::find(candidates.begin(), candidates.end(), p.first) != candidates.end()) {
                ++votes[p.first];
                break;
            }
        }
    }
    std::string best = candidates.front();
    for (const std::string& c : candidates)
        if (votes[c] > votes[best]) best = c;
    return best;
}

const std::vector<uint8_t>* group_coordinator::selected_metadata(const group& g,
                                                                 const member& m) const {
    if (!g.protocol_name) return nullptr;
    for (const auto& p : m.protocols)
        if (p.first == *g.protocol_name) return &p.second;
    return nullptr;
}

// ---- JoinGroup -----------------------------------------------------------------------

void group_coordinator::join(const proto::join_group_request& request,
                             const member_context& context, join_callback done) {
    const int16_t version = context.version;
    if (request.group_id.empty() || request.group_id.size() > _config.id_bytes_max) {
        done(join_error(error_code::invalid_group_id, request.member_id));
        return;
    }
    if (const error_code refusal = availability(request.group_id); refusal != error_code::none) {
        done(join_error(refusal, request.member_id));
        return;
    }
    if (request.member_id.size() > _config.id_bytes_max ||
        (request.group_instance_id && request.group_instance_id->size() > _config.id_bytes_max)) {
        done(join_error(error_code::unknown_member_id, request.member_id));
        return;
    }
    if (request.session_timeout_ms < _config.session_timeout_min_ms ||
        request.session_timeout_ms > _config.session_timeout_max_ms) {
        done(join_error(error_code::invalid_session_timeout, request.member_id));
        return;
    }
    // Protocol names are stored in the group's record, whose strings hold 32767 bytes.
    const auto too_long = [](const std::string& name) { return name.size() > 32767; };
    if (request.protocol_type.empty() || request.protocols.empty() ||
        too_long(request.protocol_type) ||
        std::any_of(request.protocols.begin(), request.protocols.end(),
                    [&](const auto& p) { return too_long(p.name); })) {
        done(join_error(error_code::inconsistent_group_protocol, request.member_id));
        return;
    }
    if (const group* existing = find(request.group_id);
        existing != nullptr && request.member_id.empty() &&
        !(request.group_instance_id &&
          existing->static_members.count(*request.group_instance_id) != 0) &&
        existing->members.size() + existing->pending_members.size() >= _config.group_members_max) {
        done(join_error(error_code::group_max_size_reached, request.member_id));
        return;
    }
    if (find(request.group_id) == nullptr && !request.member_id.empty() &&
        !request.group_instance_id) {
        done(join_error(error_code::unknown_member_id, request.member_id));
        return;
    }
    group& g = find_or_create(request.group_id);
    if (!protocols_compatible(g, request.protocol_type, request)) {
        drop_if_unused(request.group_id);
        done(join_error(error_code::inconsistent_group_protocol, request.member_id));
        return;
    }

    auto make_member = [&](std::string id) {
        member m;
        m.id = std::move(id);
        m.instance_id = request.group_instance_id;
        m.client_id = context.client_id;
        m.client_host = context.client_host;
        m.session_timeout_ms = request.session_timeout_ms;
        // v0 has no rebalance timeout: Kafka uses the session timeout then.
        m.rebalance_timeout_ms = request.rebalance_timeout_ms > 0 ? request.rebalance_timeout_ms
                                                                  : request.session_timeout_ms;
        m.protocol_type = request.protocol_type;
        for (const auto& p : request.protocols) m.protocols.emplace_back(p.name, p.metadata);
        return m;
    };

    if (request.member_id.empty()) {
        if (request.group_instance_id) {
            auto known = g.static_members.find(*request.group_instance_id);
            if (known == g.static_members.end()) {
                // A new static member joins directly: its instance id already names it.
                add_member_and_rebalance(g, make_member(new_member_id(context.client_id)),
                                         std::move(done));
                return;
            }
            // A static member restarted: it takes over its old slot under a new member
            // id, and whoever still holds the old id is fenced.
            const std::string old_id = known->second;
            auto old = g.members.find(old_id);
            SPATE_ASSERT(old != g.members.end(), "static member maps to a member");
            member replacement = std::move(old->second);
            g.members.erase(old);
            if (replacement.awaiting_join) {
                auto callback = std::move(replacement.awaiting_join);
                replacement.awaiting_join = nullptr;
                callback(join_error(error_code::fenced_instance_id, old_id));
            }
            if (replacement.awaiting_sync) {
                auto callback = std::move(replacement.awaiting_sync);
                replacement.awaiting_sync = nullptr;
                callback(sync_error(error_code::fenced_instance_id));
            }
            if (replacement.session_timer != 0)
                _environment.cancel_timer(replacement.session_timer);
            replacement.session_timer = 0;
            const auto previous_protocols = replacement.protocols;
            member fresh = make_member(new_member_id(context.client_id));
            fresh.assignment = std::move(replacement.assignment);
            const std::string new_id = fresh.id;
            known->second = new_id;
            if (g.leader_id == old_id) g.leader_id = new_id;
            if (g.state == group_state::stable && fresh.protocols == previous_protocols) {
                // Same subscription: no rebalance, the member syncs to get its old
                // assignment back (the point of static membership).
                auto [it, inserted] = g.members.emplace(new_id, std::move(fresh));
                schedule_session(g, it->second);
                it->second.awaiting_join = std::move(done);
                answer_join(g, it->second, error_code::none);
                return;
            }
            add_member_and_rebalance(g, std::move(fresh), std::move(done));
            return;
        }
        std::string id = new_member_id(context.client_id);
        if (version >= 4) {
            // KIP-394: the member must come back with this id; until it does (or its
            // session timeout passes) a rebalance in progress waits for it.
            const std::string group_id = g.id;
            const uint64_t timer =
                _environment.add_timer(request.session_timeout_ms, [this, group_id, id] {
                    group* target = find(group_id);
                    if (target == nullptr) return;
                    target->pending_members.erase(id);
                    maybe_complete_join(*target);
                    drop_if_unused(group_id);
                });
            g.pending_members[id] = timer;
            done(join_error(error_code::member_id_required, id));
            return;
        }
        add_member_and_rebalance(g, make_member(std::move(id)), std::move(done));
        return;
    }

    if (auto pending = g.pending_members.find(request.member_id);
        pending != g.pending_members.end()) {
        _environment.cancel_timer(pending->second);
        g.pending_members.erase(pending);
        add_member_and_rebalance(g, make_member(request.member_id), std::move(done));
        return;
    }
    if (request.group_instance_id) {
        auto known = g.static_members.find(*request.group_instance_id);
        if (known != g.static_members.end() && known->second != request.member_id) {
            done(join_error(error_code::fenced_instance_id, request.member_id));
            return;
        }
    }
    auto found = g.members.find(request.member_id);
    if (found == g.members.end()) {
        drop_if_unused(request.group_id);
        done(join_error(error_code::unknown_member_id, request.member_id));
        return;
    }
    member& m = found->second;
    std::vector<std::pair<std::string, std::vector<uint8_t>>> offered;
    for (const auto& p : request.protocols) offered.emplace_back(p.name, p.metadata);
    const bool same_protocols = offered == m.protocols;
    switch (g.state) {
        case group_state::preparing_rebalance:
            update_member_and_rebalance(g, m, request, std::move(done));
            return;
        case group_state::completing_rebalance:
        case group_state::stable:
            // A member that rejoins with what it had (e.g. it missed the join answer)
            // gets the current generation again; the leader or a changed subscription
            // starts a new rebalance.
            if (same_protocols &&
                (g.state == group_state::completing_rebalance || m.id != g.leader_id)) {
                schedule_session(g, m);
                m.awaiting_join = std::move(done);
                answer_join(g, m, error_code::none);
                return;
            }
            update_member_and_rebalance(g, m, request, std::move(done));
            return;
        case group_state::empty:
        case group_state::dead:
            done(join_error(error_code::unknown_member_id, request.member_id));
            return;
    }
}

void group_coordinator::add_member_and_rebalance(group& g, member m, join_callback done) {
    if (g.members.empty()) g.protocol_type = m.protocol_type;
    m.awaiting_join = std::move(done);
    if (m.instance_id) g.static_members[*m.instance_id] = m.id;
    auto [it, inserted] = g.members.emplace(m.id, std::move(m));
    SPATE_ASSERT(inserted, "member ids are unique");
    schedule_session(g, it->second);
    if (g.state == group_state::preparing_rebalance)
        maybe_complete_join(g);
    else
        prepare_rebalance(g);
}

void group_coordinator::update_member_and_rebalance(group& g, member& m,
                                                    const proto::join_group_request& request,
                                                    join_callback done) {
    m.protocols.clear();
    for (const auto& p : request.protocols) m.protocols.emplace_back(p.name, p.metadata);
    m.session_timeout_ms = request.session_timeout_ms;
    if (request.rebalance_timeout_ms > 0) m.rebalance_timeout_ms = request.rebalance_timeout_ms;
    if (m.awaiting_join) {
        // The client gave up on its previous JoinGroup and sent a new one.
        auto previous = std::move(m.awaiting_join);
        m.awaiting_join = nullptr;
        previous(join_error(error_code::rebalance_in_progress, m.id));
    }
    m.awaiting_join = std::move(done);
    schedule_session(g, m);
    if (g.state == group_state::preparing_rebalance)
        maybe_complete_join(g);
    else
        prepare_rebalance(g);
}

void group_coordinator::prepare_rebalance(group& g) {
    if (g.state == group_state::completing_rebalance) {
        // Assignments of the aborted generation are void; members waiting in SyncGroup
        // learn to rejoin.
        for (auto& [id, m] : g.members) {
            m.assignment.clear();
            if (m.awaiting_sync) {
                auto callback = std::move(m.awaiting_sync);
                m.awaiting_sync = nullptr;
                callback(sync_error(error_code::rebalance_in_progress));
            }
        }
    }
    const bool was_empty = g.state == group_state::empty;
    g.state = group_state::preparing_rebalance;
    int64_t rebalance_timeout_ms = 0;
    for (const auto& [id, m] : g.members)
        rebalance_timeout_ms = std::max<int64_t>(rebalance_timeout_ms, m.rebalance_timeout_ms);
    if (was_empty && _config.initial_rebalance_delay_ms > 0) {
        g.initial_delay = true;
        schedule_rebalance_timer(
            g, std::min<int64_t>(_config.initial_rebalance_delay_ms, rebalance_timeout_ms));
        return;
    }
    g.initial_delay = false;
    schedule_rebalance_timer(g, rebalance_timeout_ms);
    maybe_complete_join(g);
}

void group_coordinator::schedule_rebalance_timer(group& g, int64_t delay_ms) {
    if (g.rebalance_timer != 0) _environment.cancel_timer(g.rebalance_timer);
    const uint64_t epoch = ++g.rebalance_epoch;
    const std::string group_id = g.id;
    g.rebalance_timer = _environment.add_timer(
        delay_ms, [this, group_id, epoch] { on_rebalance_timer(group_id, epoch); });
}

void group_coordinator::on_rebalance_timer(const std::string& group_id, uint64_t epoch) {
    group* g = find(group_id);
    if (g == nullptr || g->rebalance_epoch != epoch || g->state != group_state::preparing_rebalance)
        return;
    g->rebalance_timer = 0;
    if (g->initial_delay) {
        g->initial_delay = false;
        int64_t rebalance_timeout_ms = 0;
        for (const auto& [id, m] : g->members)
            rebalance_timeout_ms = std::max<int64_t>(rebalance_timeout_ms, m.rebalance_timeout_ms);
        const int64_t remaining_ms = rebalance_timeout_ms - _config.initial_rebalance_delay_ms;
        bool all_joined = g->pending_members.empty();
        for (const auto& [id, m] : g->members) all_joined = all_joined && m.awaiting_join;
        if (!all_joined && remaining_ms > 0) {
            schedule_rebalance_timer(*g, remaining_ms);
            return;
        }
    }
    complete_join(*g);
    drop_if_unused(group_id);
}

void group_coordinator::maybe_complete_join(group& g) {
    if (g.state != group_state::preparing_rebalance || g.initial_delay) return;
    if (!g.pending_members.empty()) return;
    for (const auto& [id, m] : g.members)
        if (!m.awaiting_join) return;
    complete_join(g);
}

void group_coordinator::complete_join(group& g) {
    SPATE_ASSERT(g.state == group_state::preparing_rebalance, "join completes a rebalance");
    if (g.rebalance_timer != 0) _environment.cancel_timer(g.rebalance_timer);
    g.rebalance_timer = 0;
    ++g.rebalance_epoch;
    g.initial_delay = false;
    // Dynamic members that did not rejoin in time are out; static members keep their
    // slot until their session expires (they may be restarting).
    for (auto it = g.members.begin(); it != g.members.end();) {
        member& m = it->second;
        if (m.awaiting_join || m.instance_id) {
            ++it;
            continue;
        }
        if (m.session_timer != 0) _environment.cancel_timer(m.session_timer);
        it = g.members.erase(it);
    }
    ++g.generation;
    if (g.members.empty()) {
        g.state = group_state::empty;
        g.empty_since_ms = _environment.wall_clock_ms();
        g.protocol_name.reset();
        g.leader_id.clear();
        persist_snapshot(g);
        return;
    }
    g.protocol_name = select_protocol(g);
    auto leader = g.members.find(g.leader_id);
    if (leader == g.members.end() || !leader->second.awaiting_join) {
        g.leader_id.clear();
        for (const auto& [id, m] : g.members) {
            if (m.awaiting_join) {
                g.leader_id = id;
                break;
            }
        }
        if (g.leader_id.empty()) g.leader_id = g.members.begin()->first;
    }
    g.state = group_state::completing_rebalance;
    for (auto& [id, m] : g.members) {
        if (!m.awaiting_join) continue;
        schedule_session(g, m);
        answer_join(g, m, error_code::none);
    }
}

void group_coordinator::answer_join(group& g, member& m, error_code error) {
    SPATE_ASSERT(static_cast<bool>(m.awaiting_join), "answering a waiting join");
    proto::join_group_response response;
    response.error_code = proto::code(error);
    response.generation_id = g.generation;
    response.protocol_type = g.protocol_type;
    response.protocol_name = g.protocol_name;
    response.leader = g.leader_id;
    response.member_id = m.id;
    if (m.id == g.leader_id) {
        for (const auto& [id, other] : g.members) {
            proto::join_group_response::join_group_response_member entry;
            entry.member_id = id;
            entry.group_instance_id = other.instance_id;
            if (const auto* metadata = selected_metadata(g, other)) entry.metadata = *metadata;
            response.members.push_back(std::move(entry));
        }
    }
    auto callback = std::move(m.awaiting_join);
    m.awaiting_join = nullptr;
    callback(std::move(response));
}

// ---- sessions and leaving ------------------------------------------------------------

void group_coordinator::schedule_session(group& g, member& m) {
    if (m.session_timer != 0) _environment.cancel_timer(m.session_timer);
    const uint64_t epoch = ++m.session_epoch;
    const std::string group_id = g.id;
    const std::string member_id = m.id;
    m.session_timer = _environment.add_timer(
        m.session_timeout_ms,
        [this, group_id, member_id, epoch] { on_session_expired(group_id, member_id, epoch); });
}

void group_coordinator::on_session_expired(const std::string& group_id,
                                           const std::string& member_id, uint64_t epoch) {
    group* g = find(group_id);
    if (g == nullptr) return;
    auto found = g->members.find(member_id);
    if (found == g->members.end() || found->second.session_epoch != epoch) return;
    member& m = found->second;
    m.session_timer = 0;
    // A member parked in JoinGroup or SyncGroup is alive: the rebalance timeout, not
    // the session, bounds its wait.
    if (m.awaiting_join || m.awaiting_sync) {
        schedule_session(*g, m);
        return;
    }
    net::log_info("group %s: member %s session expired", group_id.c_str(), member_id.c_str());
    remove_member(*g, member_id, error_code::unknown_member_id);
    drop_if_unused(group_id);
}

void group_coordinator::remove_member(group& g, const std::string& member_id, error_code why) {
    auto found = g.members.find(member_id);
    SPATE_ASSERT(found != g.members.end(), "removing a member that exists");
    member& m = found->second;
    join_callback join_waiting = std::move(m.awaiting_join);
    sync_callback sync_waiting = std::move(m.awaiting_sync);
    if (m.session_timer != 0) _environment.cancel_timer(m.session_timer);
    if (m.instance_id) {
        auto known = g.static_members.find(*m.instance_id);
        if (known != g.static_members.end() && known->second == member_id)
            g.static_members.erase(known);
    }
    g.members.erase(found);
    if (join_waiting) join_waiting(join_error(why, member_id));
    if (sync_waiting) sync_waiting(sync_error(why));
    switch (g.state) {
        case group_state::stable:
        case group_state::completing_rebalance:
            prepare_rebalance(g);
            return;
        case group_state::preparing_rebalance:
            maybe_complete_join(g);
            return;
        case group_state::empty:
        case group_state::dead:
            return;
    }
}

proto::leave_group_response group_coordinator::leave(
    const std::string& group_id,
    const std::vector<proto::leave_group_request::member_identity>& members) {
    proto::leave_group_response response;
    if (const error_code refusal = availability(group_id); refusal != error_code::none) {
        response.error_code = proto::code(refusal);
        return response;
    }
    group* g = find(group_id);
    for (const auto& identity : members) {
        proto::leave_group_response::member_response out;
        out.member_id = identity.member_id;
        out.group_instance_id = identity.group_instance_id;
        if (g == nullptr) {
            out.error_code = proto::code(error_code::unknown_member_id);
            response.members.push_back(std::move(out));
            continue;
        }
        std::string member_id = identity.member_id;
        error_code failure = error_code::none;
        if (identity.group_instance_id) {
            auto known = g->static_members.find(*identity.group_instance_id);
            if (known == g->static_members.end())
                failure = error_code::unknown_member_id;
            else if (!member_id.empty() && known->second != member_id)
                failure = error_code::fenced_instance_id;
            else
                member_id = known->second;
        }
        if (failure == error_code::none) {
            if (auto pending = g->pending_members.find(member_id);
                pending != g->pending_members.end()) {
                _environment.cancel_timer(pending->second);
                g->pending_members.erase(pending);
                maybe_complete_join(*g);
            } else if (g->members.count(member_id) == 0) {
                failure = error_code::unknown_member_id;
            } else {
                remove_member(*g, member_id, error_code::unknown_member_id);
            }
        }
        out.error_code = proto::code(failure);
        response.members.push_back(std::move(out));
    }
    drop_if_unused(group_id);
    return response;
}

// ---- SyncGroup and Heartbeat ---------------------------------------------------------

void group_coordinator::sync(const proto::sync_group_request& request, sync_callback done) {
    if (const error_code refusal = availability(request.group_id); refusal != error_code::none) {
        done(sync_error(refusal));
        return;
    }
    group* g = find(request.group_id);
    if (g == nullptr || g->members.count(request.member_id) == 0) {
        done(sync_error(error_code::unknown_member_id));
        return;
    }
    if (request.group_instance_id) {
        auto known = g->static_members.find(*request.group_instance_id);
        if (known == g->static_members.end() || known->second != request.member_id) {
            done(sync_error(error_code::fenced_instance_id));
            return;
        }
    }
    if (request.generation_id != g->generation) {
        done(sync_error(error_code::illegal_generation));
        return;
    }
    if ((request.protocol_type && *request.protocol_type != g->protocol_type) ||
        (request.protocol_name && *request.protocol_name != g->protocol_name.value_or(""))) {
        done(sync_error(error_code::inconsistent_group_protocol));
        return;
    }
    member& m = g->members.at(request.member_id);
    auto answer = [g](member& target, sync_callback& callback) {
        proto::sync_group_response response;
        response.protocol_type = g->protocol_type;
        response.protocol_name = g->protocol_name;
        response.assignment = target.assignment;
        auto call = std::move(callback);
        callback = nullptr;
        call(std::move(response));
    };
    switch (g->state) {
        case group_state::empty:
        case group_state::dead:
            done(sync_error(error_code::unknown_member_id));
            return;
        case group_state::preparing_rebalance:
            done(sync_error(error_code::rebalance_in_progress));
            return;
        case group_state::stable:
            schedule_session(*g, m);
            answer(m, done);
            return;
        case group_state::completing_rebalance:
            break;
    }
    if (m.awaiting_sync) {
        auto previous = std::move(m.awaiting_sync);
        m.awaiting_sync = nullptr;
        previous(sync_error(error_code::rebalance_in_progress));
    }
    m.awaiting_sync = std::move(done);
    schedule_session(*g, m);
    if (m.id != g->leader_id) return;
    for (auto& [id, other] : g->members) other.assignment.clear();
    for (const auto& given : request.assignments) {
        auto target = g->members.find(given.member_id);
        if (target != g->members.end()) target->second.assignment = given.assignment;
    }
    g->state = group_state::stable;
    persist_snapshot(*g);
    for (auto& [id, other] : g->members)
        if (other.awaiting_sync) answer(other, other.awaiting_sync);
}

error_code group_coordinator::heartbeat(const proto::heartbeat_request& request) {
    if (const error_code refusal = availability(request.group_id); refusal != error_code::none)
        return refusal;
    group* g = find(request.group_id);
    if (g == nullptr) return error_code::unknown_member_id;
    if (request.group_instance_id) {
        auto known = g->static_members.find(*request.group_instance_id);
        if (known != g->static_members.end() && known->second != request.member_id)
            return error_code::fenced_instance_id;
    }
    auto found = g->members.find(request.member_id);
    if (found == g->members.end()) return error_code::unknown_member_id;
    if (request.generation_id != g->generation) return error_code::illegal_generation;
    switch (g->state) {
        case group_state::empty:
        case group_state::dead:
            return error_code::unknown_member_id;
        case group_state::preparing_rebalance:
            schedule_session(*g, found->second);
            return error_code::rebalance_in_progress;
        case group_state::completing_rebalance:
        case group_state::stable:
            schedule_session(*g, found->second);
            return error_code::none;
    }
    return error_code::none;
}

// ---- listing, describing, deleting ---------------------------------------------------

std::vector<proto::list_groups_response::listed_group> group_coordinator::list(
    const std::vector<std::string>& states_filter) const {
    std::vector<proto::list_groups_response::listed_group> listed;
    for (const auto& [group_id, g] : _groups) {
        const std::string state = state_name(g.state);
        if (!states_filter.empty() &&
            std::none_of(states_filter.begin(), states_filter.end(),
                         [&](const std::string& s) { return equal_ignoring_case(s, state); }))
            continue;
        proto::list_groups_response::listed_group entry;
        entry.group_id = group_id;
        entry.protocol_type = g.protocol_type;
        entry.group_state = state;
        listed.push_back(std::move(entry));
    }
    return listed;
}

proto::describe_groups_response::described_group group_coordinator::describe(
    const std::string& group_id) const {
    proto::describe_groups_response::described_group out;
    out.group_id = group_id;
    if (const error_code refusal = availability(group_id); refusal != error_code::none) {
        out.error_code = proto::code(refusal);
        out.group_state = state_name(group_state::dead);
        return out;
    }
    const group* g = find(group_id);
    if (g == nullptr) {
        out.group_state = state_name(group_state::dead);
        return out;
    }
    out.group_state = state_name(g->state);
    out.protocol_type = g->protocol_type;
    // Kafka shows the protocol, member metadata and assignments only once they are
    // settled (Stable); in other states the members are listed without them.
    const bool stable = g->state == group_state::stable;
    if (stable) out.protocol_data = g->protocol_name.value_or("");
    for (const auto& [id, m] : g->members) {
        proto::describe_groups_response::described_group_member entry;
        entry.member_id = id;
        entry.group_instance_id = m.instance_id;
        entry.client_id = m.client_id;
        entry.client_host = m.client_host;
        if (stable) {
            if (const auto* metadata = selected_metadata(*g, m)) entry.member_metadata = *metadata;
            entry.member_assignment = m.assignment;
        }
        out.members.push_back(std::move(entry));
    }
    return out;
}

}  // namespace spate::broker::group
