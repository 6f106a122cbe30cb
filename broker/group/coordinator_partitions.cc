// The group coordinator's partitions of __consumer_offsets: which groups it may answer
// for, the groups it installs when it starts leading a partition and forgets when it
// stops (see "Where groups live" in coordinator.h).
#include "broker/group/coordinator.h"

namespace spate::broker::group {

using proto::error_code;

int32_t group_coordinator::partition_of(const std::string& group_id) const {
    return offsets_partition_of(group_id, _partition_count);
}

void group_coordinator::begin_load(int32_t partition) {
    unload(partition);
    _partitions[partition] = false;
}

void group_coordinator::finish_load(int32_t partition, recovered_groups recovered) {
    auto status = _partitions.find(partition);
    if (status == _partitions.end()) return;  // unloaded meanwhile
    status->second = true;
    for (auto& [group_id, committed] : recovered.offsets)
        find_or_create(group_id).offsets = std::move(committed);
    for (auto& [group_id, snapshot] : recovered.snapshots) {
        group& g = find_or_create(group_id);
        g.protocol_type = snapshot.protocol_type;
        g.generation = snapshot.generation;
        g.persisted = true;
        if (snapshot.members.empty()) continue;
        g.state = group_state::stable;
        g.protocol_name = snapshot.protocol_name;
        g.leader_id = snapshot.leader_id;
        for (member_snapshot& saved : snapshot.members) {
            member m;
            m.id = saved.member_id;
            m.instance_id = saved.instance_id;
            m.client_id = std::move(saved.client_id);
            m.client_host = std::move(saved.client_host);
            m.session_timeout_ms = saved.session_timeout_ms;
            m.rebalance_timeout_ms = saved.rebalance_timeout_ms;
            m.protocol_type = g.protocol_type;
            m.protocols.emplace_back(g.protocol_name.value_or(""), std::move(saved.metadata));
            m.assignment = std::move(saved.assignment);
            if (m.instance_id) g.static_members[*m.instance_id] = m.id;
            g.members.emplace(saved.member_id, std::move(m));
        }
        for (auto& [member_id, m] : g.members) schedule_session(g, m);
    }
}

void group_coordinator::unload(int32_t partition) {
    if (_partitions.erase(partition) == 0) return;
    for (auto it = _groups.begin(); it != _groups.end();) {
        if (partition_of(it->first) != partition) {
            ++it;
            continue;
        }
        abandon(it->second, error_code::not_coordinator);
        it = _groups.erase(it);
    }
}

bool group_coordinator::loaded(int32_t partition) const {
    auto status = _partitions.find(partition);
    return status != _partitions.end() && status->second;
}

error_code group_coordinator::availability(const std::string& group_id) const {
    auto status = _partitions.find(partition_of(group_id));
    if (status == _partitions.end()) return error_code::not_coordinator;
    return status->second ? error_code::none : error_code::coordinator_load_in_progress;
}

}  // namespace spate::broker::group
