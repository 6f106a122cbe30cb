// Incremental fetch sessions and their per-shard cache (see fetch_session.h).
#include "broker/fetch_session.h"

#include <algorithm>
#include <tuple>

#include "proto/assert.h"

namespace spate::broker {

std::string fetch_session::key_of(const std::string& topic, const proto::uuid& topic_id) {
    if (!topic_id.is_zero())
        return std::string(reinterpret_cast<const char*>(topic_id.bytes.data()), 16);
    return topic;
}

int64_t fetch_session::find(const std::string& topic, const proto::uuid& topic_id,
                            int32_t partition) const {
    auto found = _index.find({key_of(topic, topic_id), partition});
    return found == _index.end() ? -1 : static_cast<int64_t>(found->second);
}

int64_t fetch_session::find(size_t hint, const std::string& topic, const proto::uuid& topic_id,
                            int32_t partition) const {
    if (hint < partitions.size()) {
        const session_partition& at = partitions[hint];
        const bool same_topic = topic_id.is_zero() ? at.topic_id.is_zero() && at.topic == topic
                                                   : at.topic_id == topic_id;
        if (at.partition == partition && same_topic) return static_cast<int64_t>(hint);
    }
    return find(topic, topic_id, partition);
}

void fetch_session::upsert(const session_partition& p) {
    const int64_t at = find(p.topic, p.topic_id, p.partition);
    if (at < 0) {
        _index[{key_of(p.topic, p.topic_id), p.partition}] = partitions.size();
        partitions.push_back(p);
        return;
    }
    session_partition& kept = partitions[static_cast<size_t>(at)];
    kept.fetch_offset = p.fetch_offset;
    kept.max_bytes = p.max_bytes;
    kept.current_leader_epoch = p.current_leader_epoch;
    kept.last_fetched_epoch = p.last_fetched_epoch;
    kept.topic = p.topic;
}

void fetch_session::forget(const std::string& topic, const proto::uuid& topic_id,
                           int32_t partition) {
    const int64_t at = find(topic, topic_id, partition);
    if (at < 0) return;
    partitions.erase(partitions.begin() + at);
    reindex();
}

void fetch_session::rotate(const std::vector<size_t>& answered) {
    if (answered.empty()) return;
    std::vector<bool> moved(partitions.size(), false);
    for (size_t at : answered)
        if (at < moved.size()) moved[at] = true;
    std::vector<session_partition> order;
    order.reserve(partitions.size());
    for (size_t i = 0; i < partitions.size(); ++i)
        if (!moved[i]) order.push_back(std::move(partitions[i]));
    for (size_t i = 0; i < partitions.size(); ++i)
        if (moved[i]) order.push_back(std::move(partitions[i]));
    partitions = std::move(order);
    reindex();
}

void fetch_session::reindex() {
    _index.clear();
    for (size_t i = 0; i < partitions.size(); ++i)
        _index[{key_of(partitions[i].topic, partitions[i].topic_id), partitions[i].partition}] = i;
}

int32_t next_session_epoch(int32_t epoch) { return epoch == INT32_MAX ? 1 : epoch + 1; }

fetch_session_cache::fetch_session_cache(size_t slots, int64_t eviction_ms, uint8_t shard_index,
                                         uint64_t seed, size_t entries_max)
    : _slots(slots),
      _eviction_ms(eviction_ms),
      _shard_index(shard_index),
      _entries_max(entries_max),
      _random(seed) {}

size_t fetch_session_cache::entries() const {
    size_t total = 0;
    for (const auto& [id, session] : _sessions) total += session->partitions.size();
    return total;
}

session_ptr fetch_session_cache::find(int32_t id) const {
    auto found = _sessions.find(id);
    return found == _sessions.end() ? nullptr : found->second;
}

void fetch_session_cache::remove(int32_t id) { _sessions.erase(id); }

bool fetch_session_cache::adopt(session_ptr session, int64_t now_ms) {
    const size_t size = session->partitions.size();
    if (_slots == 0 || size > _entries_max || _sessions.count(session->id) != 0) return false;
    if (_sessions.size() >= _slots && !evict_for(session->privileged, size, now_ms)) return false;
    if (entries() + size > _entries_max) return false;
    _sessions.emplace(session->id, std::move(session));
    return true;
}

int32_t fetch_session_cache::new_id() {
    // Positive, never 0, the shard's number in the low byte, and not in use here.
    for (;;) {
        const auto high = static_cast<uint32_t>(_random() & 0x7FFFFF);
        const auto id = static_cast<int32_t>((high << 8) | _shard_index);
        if (id > 0 && _sessions.count(id) == 0) return id;
    }
}

bool fetch_session_cache::evict_for(bool privileged, size_t size, int64_t now_ms) {
    // First a stale session: the one unused for longest, if past the eviction time.
    auto stale = _sessions.end();
    for (auto it = _sessions.begin(); it != _sessions.end(); ++it)
        if (stale == _sessions.end() || it->second->last_used_ms < stale->second->last_used_ms)
            stale = it;
    if (stale != _sessions.end() && stale->second->last_used_ms + _eviction_ms < now_ms) {
        _sessions.erase(stale);
        ++_evictions;
        return true;
    }
    // Then the least valuable evictable one, if the new session is worth more: ordered by
    // (privileged, partition count, id), as Kafka's EvictableKey.
    auto weakest = _sessions.end();
    for (auto it = _sessions.begin(); it != _sessions.end(); ++it) {
        const fetch_session& s = *it->second;
        const bool old = now_ms - s.created_ms > _eviction_ms;
        if (!(old || (privileged && !s.privileged))) continue;
        if (weakest == _sessions.end() ||
            std::make_tuple(s.privileged, s.partitions.size(), s.id) <
                std::make_tuple(weakest->second->privileged, weakest->second->partitions.size(),
                                weakest->second->id))
            weakest = it;
    }
    if (weakest == _sessions.end()) return false;
    const fetch_session& w = *weakest->second;
    if (std::make_tuple(privileged, size) <= std::make_tuple(w.privileged, w.partitions.size()))
        return false;
    _sessions.erase(weakest);
    ++_evictions;
    return true;
}

session_ptr fetch_session_cache::create(bool privileged, bool uses_topic_ids, int64_t now_ms,
                                        std::vector<session_partition> partitions) {
    if (_slots == 0 || partitions.size() > _entries_max) return nullptr;
    if (_sessions.size() >= _slots && !evict_for(privileged, partitions.size(), now_ms))
        return nullptr;
    if (entries() + partitions.size() > _entries_max) return nullptr;
    auto session = std::make_shared<fetch_session>();
    session->id = new_id();
    session->privileged = privileged;
    session->uses_topic_ids = uses_topic_ids;
    session->created_ms = now_ms;
    session->last_used_ms = now_ms;
    for (auto& p : partitions) session->upsert(p);
    _sessions.emplace(session->id, session);
    SPATE_ASSERT(_sessions.size() <= _slots, "the session cache stays within its slots");
    return session;
}

}  // namespace spate::broker
