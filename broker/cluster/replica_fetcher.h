#pragma once
// replica_fetchers: a shard's followers (CLUSTER.md, Replication). For every leader broker
// of partitions this shard follows, one long-poll Fetch at a time (v12, replica_id = this
// broker's id, last_fetched_epoch per partition) on one connection of this shard's own
// ring; no fetcher threads. The answer's batches are appended with the leader's offsets
// and epochs (partition_log::append_replicated) and its idempotent-producer state; a
// diverging_epoch truncates the log to where it agrees with the leader's (KIP-101 with
// KIP-279's fix: the leader answers with the end of the largest epoch it knows not above
// ours); the next fetch goes out as soon as the answer is applied, or, under
// acks_all_policy = "fsync", once the appended data is on disk, so that the offset a
// follower fetches from (which the leader counts as replicated) is always synced.
// Fetches run in a fetch session (KIP-227), as Kafka's followers do: the first names every
// partition and opens it; after that a fetch names only the partitions whose position
// moved and forgets those no longer fetched (paused, or led elsewhere now), and answers
// carry only partitions with news. A lost session (FETCH_SESSION_ID_NOT_FOUND,
// INVALID_FETCH_SESSION_EPOCH, or any failed fetch) starts over with a full fetch.
//
// Threads: one per shard, used only on that shard's thread; owned by its shard_state.
// Lives while the broker runs in a cluster.

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "broker/cluster/broker_links.h"
#include "broker/metadata.h"

namespace spate::broker {
class shard_state;
class partition;
}  // namespace spate::broker

namespace spate::broker::cluster {

class replica_fetchers {
public:
    replica_fetchers(shard_state& shard, int32_t self);
    ~replica_fetchers();
    replica_fetchers(const replica_fetchers&) = delete;
    replica_fetchers& operator=(const replica_fetchers&) = delete;

    // What this shard follows now, from the snapshot just installed: fetching starts for
    // new leaders and stops for partitions it no longer follows.
    void update(const metadata_snapshot& metadata);
    // The broker is stopping: no further fetch, answers in flight are dropped.
    void stop() { _stopped = true; }

    // Fetches sent and partitions truncated since start, for tests and the resource report.
    uint64_t fetches_sent() const { return _fetches; }
    uint64_t truncations() const { return _truncations; }

private:
    using clock = std::chrono::steady_clock;
    struct followed {
        std::string topic;
        int32_t index;
        clock::time_point retry_after{};  // after a partition error, fetched again from then
    };
    // A partition's position as the session last heard it.
    struct session_entry {
        int64_t fetch_offset;
        int64_t log_start_offset;
        int32_t current_leader_epoch;
        int32_t last_fetched_epoch;
        bool operator==(const session_entry&) const = default;
    };
    using partition_key = std::pair<std::string, int32_t>;
    struct source {
        int32_t leader = -1;
        std::string host;
        int32_t port = 0;
        sockaddr_storage address{};
        socklen_t address_length = 0;
        std::vector<followed> partitions;
        bool in_flight = false;
        bool backing_off = false;
        int failures = 0;  // consecutive failed fetches (logged on the first)
        // The fetch session with this leader; id 0: the next fetch is a full one that
        // asks for a new session.
        int32_t session_id = 0;
        int32_t session_epoch = 0;
        std::map<partition_key, session_entry> in_session;
        void reset_session() {
            session_id = 0;
            session_epoch = 0;
            in_session.clear();
        }
    };
    void fetch(int32_t leader);
    void back_off(int32_t leader, std::chrono::milliseconds delay);
    void on_answer(int32_t leader, result<net::frame_bytes> answer);
    // Applies one partition's part of the answer; false when it asks for a pause.
    struct partition_answer;
    bool apply(partition& p, const partition_answer& answer);
    bool truncate(partition& p, int64_t offset, const char* why);
    bool resolve(source& src);
    partition* followed_partition(const source& src, const followed& f);

    shard_state& _shard;
    int32_t _self;
    broker_links _links;
    std::map<int32_t, source> _sources;
    int32_t _correlation = 0;
    uint64_t _fetches = 0;
    uint64_t _truncations = 0;
    bool _stopped = false;
    std::shared_ptr<bool> _alive = std::make_shared<bool>(true);
};

}  // namespace spate::broker::cluster
