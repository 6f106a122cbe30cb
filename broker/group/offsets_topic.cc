// The shard's side of __consumer_offsets: appends for the coordinator, partition loads.
#include "broker/group/offsets_topic.h"

#include "broker/broker.h"
#include "broker/group/group_records.h"
#include "net/clock.h"
#include "net/log.h"

namespace spate::broker::group {

using proto::error_code;

namespace {

// Bytes read per loop turn while loading: a few milliseconds of the shard at a time.
constexpr int32_t load_chunk_bytes = 1 << 20;
// Largest decompressed records section of one batch accepted while loading.
constexpr size_t load_decompressed_bytes_max = 64 << 20;
// A read that made no progress (a storage error) is retried after this long.
constexpr std::chrono::milliseconds load_retry{1000};

// What a coordinator answers for a failed append (Kafka's mapping for commits).
error_code coordinator_error(error_code append_error) {
    switch (append_error) {
        case error_code::unknown_topic_or_partition:
        case error_code::not_enough_replicas:
        case error_code::not_enough_replicas_after_append:
            return error_code::coordinator_not_available;
        case error_code::not_leader_or_follower:
        case error_code::kafka_storage_error:
            return error_code::not_coordinator;
        case error_code::message_too_large:
        case error_code::record_list_too_large:
            return error_code::invalid_commit_offset_size;
        default:
            return append_error;
    }
}

}  // namespace

topic_configs offsets_topic_configs() {
    return {{"cleanup.policy", "compact"},
            {"segment.bytes", "104857600"},
            {"compression.type", "producer"}};
}

int64_t offsets_topic::wall_clock_ms() { return net::wall_clock_ms(); }

uint64_t offsets_topic::add_timer(int64_t delay_ms, std::function<void()> fire) {
    return _shard.net_shard().add_timer(std::chrono::milliseconds(std::max<int64_t>(delay_ms, 0)),
                                        [fire = std::move(fire)] { fire(); });
}

void offsets_topic::cancel_timer(uint64_t id) { _shard.net_shard().cancel_timer(id); }

void offsets_topic::append_records(int32_t index, const std::vector<offset_record>& records,
                                   std::function<void(error_code)> done) {
    partition* p = _shard.find_partition(offsets_topic_name, index);
    if (p == nullptr || !p->is_leader()) {
        done(error_code::not_coordinator);
        return;
    }
    const int32_t min_isr = p->config().min_insync_replicas;
    if (p->replicated() && static_cast<int32_t>(p->isr_size()) < min_isr) {
        done(coordinator_error(error_code::not_enough_replicas));
        return;
    }
    // Client strings were bounded by the coordinator; this is the last line of defence
    // before the encoder's assertion.
    for (const offset_record& record : records)
        if (!fits_kafka_schemas(record)) {
            done(error_code::invalid_commit_offset_size);
            return;
        }
    std::vector<uint8_t> batch = build_offsets_batch(records);
    if (batch.size() > static_cast<size_t>(p->config().message_max_bytes)) {
        done(coordinator_error(error_code::message_too_large));
        return;
    }
    auto appended = p->append_as_leader(batch, static_cast<int32_t>(records.size()));
    if (!appended) {
        done(coordinator_error(error_code::kafka_storage_error));
        return;
    }
    _shard.submit_log_syncs(*p);
    const broker_config& config = _shard.config();
    shard_state::ack_wait wait{
        p->log().log_end_offset(), min_isr, config.acks_all_policy == ack_policy::fsync,
        p->replicated(),
        clock::now() + std::chrono::milliseconds(config.offsets_commit_timeout_ms)};
    _shard.wait_acknowledged(
        offsets_topic_name, index, wait,
        [done = std::move(done)](error_code error) { done(coordinator_error(error)); });
}

void offsets_topic::update(group_coordinator& coordinator) {
    const topic_info* topic = _shard.metadata()->find(offsets_topic_name);
    coordinator.set_partition_count(
        topic != nullptr ? topic->partition_count() : _shard.config().offsets_topic_num_partitions);
    // Partitions no longer led here go first.
    for (auto it = _led.begin(); it != _led.end();) {
        partition* p = _shard.find_partition(offsets_topic_name, it->first);
        if (p != nullptr && p->is_leader()) {
            ++it;
            continue;
        }
        coordinator.unload(it->first);
        net::log_info("groups: %s-%d no longer led here: its groups moved",
                      offsets_topic_name.c_str(), it->first);
        it = _led.erase(it);
    }
    if (topic == nullptr) return;
    for (int32_t index = 0; index < topic->partition_count(); ++index) {
        partition* p = _shard.find_partition(offsets_topic_name, index);
        if (p == nullptr || !p->is_leader()) continue;
        // Led here already: a new leader epoch of the same leader (an ISR change) changes
        // nothing the coordinator holds. Leadership that went elsewhere and came back was
        // seen to go: this replica followed the other leader to stay in the ISR.
        if (_led.count(index) != 0) continue;
        const uint64_t load = ++_loads;
        _led[index] = {load};
        coordinator.begin_load(index);
        auto state = std::make_shared<load_state>();
        state->partition = index;
        state->load = load;
        state->start = p->log().log_start_offset();
        state->next = state->start;
        state->end = p->log().log_end_offset();
        state->started = clock::now();
        // Not in this call: a snapshot may be installed before the shard's thread runs.
        _shard.net_shard().post([this, state] { load_step(state); });
    }
}

void offsets_topic::load_step(std::shared_ptr<load_state> state) {
    auto led = _led.find(state->partition);
    if (led == _led.end() || led->second.load != state->load) return;  // superseded
    partition* p = _shard.find_partition(offsets_topic_name, state->partition);
    if (p == nullptr) return;
    if (state->next >= state->end) {
        loaded(*state);
        return;
    }
    size_t malformed = 0;
    const int64_t next = p->scan_batches(
        state->next, load_chunk_bytes,
        [&](std::span<const uint8_t> batch, const proto::batch_header&) {
            auto walked = for_each_offsets_record(
                batch, load_decompressed_bytes_max,
                [&](const offset_record& record) { apply_record(state->groups, record); });
            if (!walked)
                ++malformed;
            else
                malformed += walked->malformed;
        });
    if (malformed != 0)
        net::log_warn("groups: %s-%d: %zu unreadable records skipped near offset %lld",
                      offsets_topic_name.c_str(), state->partition, malformed,
                      static_cast<long long>(state->next));
    if (next == state->next) {
        if (!state->stalled)
            net::log_warn("groups: %s-%d: loading stalled at offset %lld; retrying",
                          offsets_topic_name.c_str(), state->partition,
                          static_cast<long long>(state->next));
        state->stalled = true;
        _shard.net_shard().add_timer(load_retry, [this, state] { load_step(state); });
        return;
    }
    state->next = next;
    _shard.net_shard().post([this, state] { load_step(state); });
}

void offsets_topic::loaded(load_state& state) {
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - state.started);
    const size_t groups = state.groups.offsets.size() + state.groups.snapshots.size();
    if (groups != 0 || elapsed.count() >= 100)
        net::log_info("groups: loaded %s-%d (offsets %lld..%lld) in %lld ms",
                      offsets_topic_name.c_str(), state.partition,
                      static_cast<long long>(state.start), static_cast<long long>(state.end),
                      static_cast<long long>(elapsed.count()));
    _shard.groups().finish_load(state.partition, std::move(state.groups));
    if (_legacy.count(state.partition) != 0) import_into(state.partition);
}

void offsets_topic::import_legacy(std::map<int32_t, recovered_groups> groups,
                                  std::function<void(int32_t)> imported) {
    _legacy = std::move(groups);
    _imported = std::move(imported);
    std::vector<int32_t> ready;
    for (const auto& [partition, share] : _legacy)
        if (_shard.groups().loaded(partition)) ready.push_back(partition);
    for (int32_t partition : ready) import_into(partition);
}

void offsets_topic::import_into(int32_t partition) {
    auto share = _legacy.extract(partition);
    if (share.empty()) return;
    group_coordinator& coordinator = _shard.groups();
    std::map<std::string, std::vector<offset_record>> by_group;
    for (const auto& [group_id, committed] : share.mapped().offsets) {
        if (coordinator.knows(group_id)) continue;
        for (const auto& [where, value] : committed) {
            offset_record record;
            record.kind = record_kind::commit;
            record.group_id = group_id;
            record.where = where;
            record.value = value;
            by_group[group_id].push_back(std::move(record));
        }
    }
    for (const auto& [group_id, snapshot] : share.mapped().snapshots) {
        if (coordinator.knows(group_id)) continue;
        offset_record record;
        record.kind = record_kind::group_metadata;
        record.group_id = group_id;
        record.value.commit_timestamp_ms = wall_clock_ms();
        record.snapshot = snapshot;
        by_group[group_id].push_back(std::move(record));
    }
    if (by_group.empty()) {
        if (_imported) _imported(partition);
        return;
    }
    auto remaining = std::make_shared<size_t>(by_group.size() + 1);
    auto failures = std::make_shared<size_t>(0);
    auto finished = [this, partition, remaining, failures] {
        if (--*remaining != 0) return;
        if (*failures != 0) {
            net::log_error(
                "groups: importing the old offsets files into %s-%d failed for %zu "
                "groups; they are kept and imported at the next start",
                offsets_topic_name.c_str(), partition, *failures);
            return;
        }
        // The groups are in the log now: load the partition again to serve them.
        _led.erase(partition);
        update(_shard.groups());
        if (_imported) _imported(partition);
    };
    for (const auto& [group_id, group_records] : by_group)
        append_records(partition, group_records, [failures, finished](error_code error) {
            if (error != error_code::none) ++*failures;
            finished();
        });
    finished();
}

}  // namespace spate::broker::group
