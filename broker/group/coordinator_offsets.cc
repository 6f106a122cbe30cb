// The group coordinator's committed offsets: commits and fetches, their persistence
// in the shard's offsets log, deletion (OffsetDelete, DeleteGroups) and expiry. Split
// from coordinator.cc (membership and rebalances), code unchanged.
#include <algorithm>
#include <utility>

#include "broker/group/coordinator.h"
#include "net/log.h"
#include "proto/reader.h"

namespace spate::broker::group {

using proto::error_code;

namespace {

// The topics of a "consumer" protocol subscription: int16 version, then an array of
// int16-length strings. Malformed metadata yields what decoded before the error.
std::vector<std::string> subscribed_topics(const std::vector<uint8_t>& metadata) {
    std::vector<std::string> topics;
    proto::reader in(metadata);
    (void)in.int16();
    const int32_t count = in.array_count(false, 2);
    for (int32_t i = 0; i < count && in.ok(); ++i) {
        std::string topic = in.string(false);
        if (in.ok()) topics.push_back(std::move(topic));
    }
    return topics;
}

}  // namespace

// ---- offsets -------------------------------------------------------------------------

void group_coordinator::persist_snapshot(group& g) {
    g.persisted = true;
    offset_record record;
    record.kind = record_kind::group_metadata;
    record.group_id = g.id;
    record.value.commit_timestamp_ms = _environment.wall_clock_ms();
    group_snapshot& s = record.snapshot;
    s.protocol_type = g.protocol_type;
    s.protocol_name = g.protocol_name;
    s.generation = g.generation;
    s.leader_id = g.leader_id;
    for (const auto& [id, m] : g.members) {
        member_snapshot saved;
        saved.member_id = id;
        saved.instance_id = m.instance_id;
        saved.client_id = m.client_id;
        saved.client_host = m.client_host;
        saved.session_timeout_ms = m.session_timeout_ms;
        saved.rebalance_timeout_ms = m.rebalance_timeout_ms;
        if (const auto* metadata = selected_metadata(g, m)) saved.metadata = *metadata;
        saved.assignment = m.assignment;
        s.members.push_back(std::move(saved));
    }
    // Losing a snapshot costs only a rebalance after a restart, so nobody waits for it.
    persist({record}, [](error_code) {});
}

void group_coordinator::persist(std::vector<offset_record> records, error_callback done) {
    if (records.empty()) {
        done(error_code::none);
        return;
    }
    const int32_t partition = partition_of(records.front().group_id);
    auto written = std::make_shared<std::vector<offset_record>>(std::move(records));
    _environment.append_records(
        partition, *written, [this, partition, written, done = std::move(done)](error_code error) {
            // A partition unloaded meanwhile has forgotten its groups; one loaded again
            // read these records back from the log.
            if (error == error_code::none && loaded(partition)) {
                for (const offset_record& record : *written) {
                    group* g = find(record.group_id);
                    if (g == nullptr) continue;
                    if (record.kind == record_kind::commit)
                        g->offsets[record.where] = record.value;
                    else if (record.kind == record_kind::offset_deleted)
                        g->offsets.erase(record.where);
                }
            }
            done(error);
        });
}

void group_coordinator::commit(const proto::offset_commit_request& request, commit_callback done) {
    auto response = std::make_shared<proto::offset_commit_response>();
    for (const auto& topic : request.topics) {
        proto::offset_commit_response::offset_commit_response_topic topic_out;
        topic_out.name = topic.name;
        for (const auto& part : topic.partitions) {
            proto::offset_commit_response::offset_commit_response_partition out;
            out.partition_index = part.partition_index;
            topic_out.partitions.push_back(out);
        }
        response->topics.push_back(std::move(topic_out));
    }
    auto fail_all = [&](error_code error) {
        for (auto& topic : response->topics)
            for (auto& part : topic.partitions) part.error_code = proto::code(error);
        done(std::move(*response));
    };
    if (request.group_id.empty() || request.group_id.size() > _config.id_bytes_max) {
        fail_all(error_code::invalid_group_id);
        return;
    }
    if (const error_code refusal = availability(request.group_id); refusal != error_code::none) {
        fail_all(refusal);
        return;
    }
    group* g = find(request.group_id);
    if (g == nullptr) {
        // Without a group, only a consumer that manages its own partitions (generation
        // -1) may commit; it creates the group in state Empty.
        if (request.generation_id >= 0) {
            fail_all(error_code::illegal_generation);
            return;
        }
        g = &find_or_create(request.group_id);
    } else {
        error_code refusal = error_code::none;
        if (request.group_instance_id) {
            auto known = g->static_members.find(*request.group_instance_id);
            if (known != g->static_members.end() && known->second != request.member_id)
                refusal = error_code::fenced_instance_id;
        }
        const bool simple = request.generation_id < 0 && g->state == group_state::empty;
        if (refusal == error_code::none && !simple) {
            if (g->state == group_state::completing_rebalance)
                refusal = error_code::rebalance_in_progress;
            else if (g->members.count(request.member_id) == 0)
                refusal = error_code::unknown_member_id;
            else if (request.generation_id != g->generation)
                refusal = error_code::illegal_generation;
        }
        if (refusal != error_code::none) {
            fail_all(refusal);
            return;
        }
        if (auto m = g->members.find(request.member_id); m != g->members.end())
            schedule_session(*g, m->second);
    }
    std::vector<offset_record> records;
    const int64_t now_ms = _environment.wall_clock_ms();
    for (size_t t = 0; t < request.topics.size(); ++t) {
        const auto& topic = request.topics[t];
        for (size_t p = 0; p < topic.partitions.size(); ++p) {
            const auto& part = topic.partitions[p];
            // Kafka's longest topic name: a longer one names no topic, and would not fit
            // the record's key either.
            if (topic.name.size() > topic_name_bytes_max) {
                response->topics[t].partitions[p].error_code =
                    proto::code(error_code::unknown_topic_or_partition);
                continue;
            }
            if (part.committed_metadata &&
                part.committed_metadata->size() >
                    static_cast<size_t>(_config.offset_metadata_bytes_max)) {
                response->topics[t].partitions[p].error_code =
                    proto::code(error_code::offset_metadata_too_large);
                continue;
            }
            offset_record record;
            record.kind = record_kind::commit;
            record.group_id = request.group_id;
            record.where = {topic.name, part.partition_index};
            record.value.offset = part.committed_offset;
            record.value.leader_epoch = part.committed_leader_epoch;
            record.value.metadata = part.committed_metadata;
            record.value.commit_timestamp_ms = now_ms;
            records.push_back(std::move(record));
        }
    }
    if (records.empty()) {
        drop_if_unused(request.group_id);
        done(std::move(*response));
        return;
    }
    const std::string group_id = request.group_id;
    persist(std::move(records),
            [this, response, group_id, done = std::move(done)](error_code error) {
                if (error != error_code::none) {
                    for (auto& topic : response->topics)
                        for (auto& part : topic.partitions)
                            if (part.error_code == 0) part.error_code = proto::code(error);
                    drop_if_unused(group_id);
                }
                done(std::move(*response));
            });
}

proto::offset_fetch_response::offset_fetch_response_group group_coordinator::fetch(
    const std::string& group_id, const std::optional<std::vector<fetch_topic>>& topics) const {
    using response_group = proto::offset_fetch_response::offset_fetch_response_group;
    response_group out;
    out.group_id = group_id;
    if (const error_code refusal = availability(group_id); refusal != error_code::none) {
        out.error_code = proto::code(refusal);
        if (topics) {  // v0-1 have no group error: each requested partition carries it
            for (const fetch_topic& topic : *topics) {
                proto::offset_fetch_response::offset_fetch_response_topics topic_out;
                topic_out.name = topic.name;
                for (int32_t index : topic.partitions) {
                    proto::offset_fetch_response::offset_fetch_response_partitions entry;
                    entry.partition_index = index;
                    entry.committed_offset = -1;
                    entry.committed_leader_epoch = -1;
                    entry.metadata = std::string();
                    entry.error_code = out.error_code;
                    topic_out.partitions.push_back(std::move(entry));
                }
                out.topics.push_back(std::move(topic_out));
            }
        }
        return out;
    }
    const group* g = find(group_id);
    auto partition_entry = [&](const std::string& topic, int32_t index) {
        proto::offset_fetch_response::offset_fetch_response_partitions entry;
        entry.partition_index = index;
        entry.committed_offset = -1;
        entry.committed_leader_epoch = -1;
        entry.metadata = std::string();
        if (g != nullptr) {
            auto found = g->offsets.find({topic, index});
            if (found != g->offsets.end()) {
                entry.committed_offset = found->second.offset;
                entry.committed_leader_epoch = found->second.leader_epoch;
                entry.metadata = found->second.metadata.value_or(std::string());
            }
        }
        return entry;
    };
    if (topics) {
        for (const fetch_topic& topic : *topics) {
            proto::offset_fetch_response::offset_fetch_response_topics topic_out;
            topic_out.name = topic.name;
            for (int32_t index : topic.partitions)
                topic_out.partitions.push_back(partition_entry(topic.name, index));
            out.topics.push_back(std::move(topic_out));
        }
        return out;
    }
    if (g == nullptr) return out;
    for (const auto& [where, value] : g->offsets) {
        if (out.topics.empty() || out.topics.back().name != where.topic) {
            proto::offset_fetch_response::offset_fetch_response_topics topic_out;
            topic_out.name = where.topic;
            out.topics.push_back(std::move(topic_out));
        }
        out.topics.back().partitions.push_back(partition_entry(where.topic, where.partition));
    }
    return out;
}

void group_coordinator::delete_group(const std::string& group_id, error_callback done) {
    if (group_id.empty()) {
        done(error_code::invalid_group_id);
        return;
    }
    if (const error_code refusal = availability(group_id); refusal != error_code::none) {
        done(refusal);
        return;
    }
    group* g = find(group_id);
    if (g == nullptr) {
        done(error_code::group_id_not_found);
        return;
    }
    if (g->state != group_state::empty || !g->members.empty()) {
        done(error_code::non_empty_group);
        return;
    }
    if (g->offsets.empty() && !g->persisted) {
        for (auto& [id, timer] : g->pending_members) _environment.cancel_timer(timer);
        _groups.erase(group_id);
        done(error_code::none);
        return;
    }
    // Kafka's deletion: a tombstone for every committed offset, then one for the group,
    // so compaction removes them all.
    std::vector<offset_record> tombstones;
    const int64_t now_ms = _environment.wall_clock_ms();
    for (const auto& [where, value] : g->offsets) {
        offset_record record;
        record.kind = record_kind::offset_deleted;
        record.group_id = group_id;
        record.where = where;
        record.value.commit_timestamp_ms = now_ms;
        tombstones.push_back(std::move(record));
    }
    offset_record tombstone;
    tombstone.kind = record_kind::group_deleted;
    tombstone.group_id = group_id;
    tombstone.value.commit_timestamp_ms = now_ms;
    tombstones.push_back(std::move(tombstone));
    persist(std::move(tombstones), [this, group_id, done = std::move(done)](error_code error) {
        if (error == error_code::none) {
            group* target = find(group_id);
            if (target != nullptr && target->members.empty() && target->offsets.empty() &&
                target->state == group_state::empty) {
                for (auto& [id, timer] : target->pending_members) _environment.cancel_timer(timer);
                _groups.erase(group_id);
            }
        }
        done(error);
    });
}

void group_coordinator::delete_offsets(const proto::offset_delete_request& request,
                                       offset_delete_callback done) {
    auto response = std::make_shared<proto::offset_delete_response>();
    if (request.group_id.empty()) {
        response->error_code = proto::code(error_code::invalid_group_id);
        done(std::move(*response));
        return;
    }
    if (const error_code refusal = availability(request.group_id); refusal != error_code::none) {
        response->error_code = proto::code(refusal);
        done(std::move(*response));
        return;
    }
    group* g = find(request.group_id);
    if (g == nullptr) {
        response->error_code = proto::code(error_code::group_id_not_found);
        done(std::move(*response));
        return;
    }
    // Offsets of topics the live group still consumes may not go away under it.
    std::vector<std::string> subscribed;
    if (g->state != group_state::empty) {
        if (g->protocol_type != "consumer") {
            response->error_code = proto::code(error_code::non_empty_group);
            done(std::move(*response));
            return;
        }
        for (const auto& [id, m] : g->members) {
            if (const auto* metadata = selected_metadata(*g, m)) {
                for (std::string& topic : subscribed_topics(*metadata))
                    subscribed.push_back(std::move(topic));
            }
        }
    }
    std::vector<offset_record> records;
    const int64_t now_ms = _environment.wall_clock_ms();
    for (const auto& topic : request.topics) {
        proto::offset_delete_response::offset_delete_response_topic topic_out;
        topic_out.name = topic.name;
        const bool in_use =
            std::find(subscribed.begin(), subscribed.end(), topic.name) != subscribed.end();
        for (const auto& part : topic.partitions) {
            proto::offset_delete_response::offset_delete_response_partition out;
            out.partition_index = part.partition_index;
            if (in_use) {
                out.error_code = proto::code(error_code::group_subscribed_to_topic);
            } else if (g->offsets.count({topic.name, part.partition_index}) != 0) {
                offset_record record;
                record.kind = record_kind::offset_deleted;
                record.group_id = request.group_id;
                record.where = {topic.name, part.partition_index};
                record.value.commit_timestamp_ms = now_ms;
                records.push_back(std::move(record));
            }
            topic_out.partitions.push_back(out);
        }
        response->topics.push_back(std::move(topic_out));
    }
    if (records.empty()) {
        done(std::move(*response));
        return;
    }
    const std::string group_id = request.group_id;
    persist(std::move(records),
            [this, response, group_id, done = std::move(done)](error_code error) {
                if (error != error_code::none) response->error_code = proto::code(error);
                drop_if_unused(group_id);
                done(std::move(*response));
            });
}

void group_coordinator::expire_offsets() {
    const int64_t now_ms = _environment.wall_clock_ms();
    if (now_ms - _last_expiry_check_ms < _config.offsets_retention_check_interval_ms) return;
    _last_expiry_check_ms = now_ms;
    std::map<std::string, std::vector<offset_record>> tombstones;  // per group
    size_t expired = 0;
    for (const auto& [group_id, g] : _groups) {
        // Offsets of a group with members stay: the members may still need them.
        if (g.state != group_state::empty || g.offsets.empty()) continue;
        for (const auto& [where, value] : g.offsets) {
            const int64_t since_ms = std::max(value.commit_timestamp_ms, g.empty_since_ms);
            if (now_ms - since_ms < _config.offsets_retention_ms) continue;
            offset_record record;
            record.kind = record_kind::offset_deleted;
            record.group_id = group_id;
            record.where = where;
            record.value.commit_timestamp_ms = now_ms;
            tombstones[group_id].push_back(std::move(record));
            ++expired;
        }
    }
    if (tombstones.empty()) return;
    net::log_info("offsets: %zu committed offsets expired", expired);
    for (auto& [id, records] : tombstones) {
        const std::string group_id = id;  // a copy: clang 14 cannot capture a binding
        persist(std::move(records), [this, group_id](error_code) { drop_if_unused(group_id); });
    }
}

}  // namespace spate::broker::group
