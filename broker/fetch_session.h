#pragma once
// Incremental fetch sessions (KIP-227): a consumer or follower that fetches many
// partitions registers them once; each later fetch names only the partitions whose fetch
// position changed (and those to forget), and each answer carries only the partitions
// with something new — records, a moved high watermark or log start offset, or an error.
//
// One cache per shard, owned by that shard's state and used only on its thread: a
// session lives on the shard of the connection that created it, and its id carries that
// shard's number in its low byte. When the broker moves a connection to another shard,
// its session follows on its next fetch (the new shard asks the home shard named by the
// id for it, see adopt); an id presented on a shard that cannot get it (a client that
// reconnected while a fetch of its still runs on the old connection) is not found there
// and the client starts a new session, as Kafka's clients do after
// FETCH_SESSION_ID_NOT_FOUND. The slots
// (max_incremental_fetch_session_cache_slots, Kafka's 1000) are shared out evenly.
//
// Eviction follows Kafka's FetchSessionCache: when the cache is full, a new session may
// take the slot of one unused for min_incremental_fetch_session_eviction_ms (Kafka's
// 120 s); failing that, of the smallest session (fewest partitions) among those older
// than that (any of them, for a follower's session, which is privileged, also a
// non-privileged one of any age), provided the new one is larger, or privileged
// against a non-privileged one. When nothing can be evicted the fetch is answered in full
// with session id 0. The partitions all sessions hold together are bounded too: a new
// session that would pass the bound is not created, and an incremental fetch that grows
// its session past it loses the session (FETCH_SESSION_ID_NOT_FOUND, as after an
// eviction); the client then fetches without one.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/types.h"

namespace spate::broker {

// One partition of a session: what the client last asked for, and what the last answer
// told it (an answer includes the partition again when one of those changes).
struct session_partition {
    std::string topic;  // empty when the id named no topic (UNKNOWN_TOPIC_ID each time)
    proto::uuid topic_id;
    int32_t partition = 0;
    int64_t fetch_offset = 0;
    int32_t max_bytes = 0;
    int32_t current_leader_epoch = -1;
    int32_t last_fetched_epoch = -1;
    // Last answered; -1 so that a new partition is always in the next answer.
    int64_t high_watermark = -1;
    int64_t log_start_offset = -1;
};

struct fetch_session {
    int32_t id = 0;
    int32_t epoch = 1;  // the epoch the next incremental request must carry
    bool privileged = false;
    bool uses_topic_ids = false;
    int64_t created_ms = 0;
    int64_t last_used_ms = 0;
    std::vector<session_partition> partitions;  // in fetch order

    // The position of (topic or id, partition) in `partitions`, or -1.
    int64_t find(const std::string& topic, const proto::uuid& topic_id, int32_t partition) const;
    // The same, looking at position `hint` first (where a fetch found the partition when
    // it began: the session changes only between fetches, so it is nearly always there).
    int64_t find(size_t hint, const std::string& topic, const proto::uuid& topic_id,
                 int32_t partition) const;
    // Adds or updates a partition (an incremental request's entry).
    void upsert(const session_partition& p);
    // Removes a partition (forgotten_topics_data).
    void forget(const std::string& topic, const proto::uuid& topic_id, int32_t partition);
    // Moves the partitions at `answered` (positions that just returned records) to the
    // end, so partitions the byte limits left out come first next time (Kafka's rotation).
    void rotate(const std::vector<size_t>& answered);

private:
    struct key_hash {
        size_t operator()(const std::pair<std::string, int32_t>& k) const {
            return std::hash<std::string>{}(k.first) * 31u + static_cast<size_t>(k.second);
        }
    };
    static std::string key_of(const std::string& topic, const proto::uuid& topic_id);
    void reindex();
    std::unordered_map<std::pair<std::string, int32_t>, size_t, key_hash> _index;
};
using session_ptr = std::shared_ptr<fetch_session>;

// The epoch after `epoch` (wraps from INT32_MAX to 1; 0 and -1 are reserved).
int32_t next_session_epoch(int32_t epoch);

class fetch_session_cache {
public:
    // `entries_max` bounds the partitions all sessions hold together (a session's
    // partitions come from requests of up to 100 MiB: without it 1,000 sessions could
    // hold millions of entries).
    fetch_session_cache(size_t slots, int64_t eviction_ms, uint8_t shard_index, uint64_t seed,
                        size_t entries_max = SIZE_MAX);

    session_ptr find(int32_t id) const;
    // A new session for `partitions` when a slot is free or one may be evicted; nullptr
    // otherwise (the fetch is answered in full, with session id 0).
    session_ptr create(bool privileged, bool uses_topic_ids, int64_t now_ms,
                       std::vector<session_partition> partitions);
    void remove(int32_t id);
    // Takes over a session another shard's cache created, whose client's connection moved
    // here (net/shard.h, move_connection): false when there is no room for it, as create()
    // would refuse, or its id is taken here (the client then starts a new session).
    bool adopt(session_ptr session, int64_t now_ms);
    // The shard whose cache created session `id`: its low byte.
    static uint32_t home_shard(int32_t id) { return static_cast<uint32_t>(id) & 0xFFu; }
    void touch(fetch_session& session, int64_t now_ms) { session.last_used_ms = now_ms; }

    size_t size() const { return _sessions.size(); }
    // Partitions held by every session together, and whether that is within bounds (an
    // incremental fetch that grows its session past them loses the session).
    size_t entries() const;
    bool within_bounds() const { return entries() <= _entries_max; }
    size_t slots() const { return _slots; }
    uint64_t evictions() const { return _evictions; }

private:
    bool evict_for(bool privileged, size_t size, int64_t now_ms);
    int32_t new_id();

    size_t _slots;
    int64_t _eviction_ms;
    uint8_t _shard_index;
    size_t _entries_max;
    std::mt19937_64 _random;
    std::map<int32_t, session_ptr> _sessions;
    uint64_t _evictions = 0;
};

}  // namespace spate::broker
