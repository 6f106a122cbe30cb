// replica_fetchers: followers fetching from their leaders on the shard's ring.
#include "broker/cluster/replica_fetcher.h"

#include <cstring>

#include "broker/broker.h"
#include "broker/fetch_session.h"
#include "broker/metrics/counters.h"
#include "net/log.h"
#include "proto/error_code.h"
#include "proto/header.h"
#include "proto/messages.h"
#include "proto/record_batch.h"

namespace spate::broker::cluster {
namespace {

using proto::error_code;
using std::chrono::milliseconds;

constexpr int16_t fetch_version = 12;
// Kafka's replica.fetch.wait.max.ms, replica.fetch.max.bytes,
// replica.fetch.response.max.bytes and replica.fetch.backoff.ms.
constexpr int32_t fetch_wait_ms = 500;
constexpr int32_t partition_bytes_max = 1 << 20;
constexpr int32_t response_bytes_max = 10 << 20;
constexpr milliseconds backoff{1000};
// A partition the leader refused (not its leader yet, or an epoch one of the two has not
// heard of): the controller's requests reach both within milliseconds, so it is asked
// again soon.
constexpr milliseconds partition_backoff{200};
// How long a fetch may take beyond its long poll before the connection is given up.
constexpr int32_t fetch_timeout_ms = fetch_wait_ms + 10000;

}  // namespace

struct replica_fetchers::partition_answer {
    int16_t error_code;
    int64_t high_watermark;
    int64_t log_start_offset;
    int32_t diverging_epoch;
    int64_t diverging_end_offset;
    std::span<const uint8_t> records;
    int64_t fetch_offset;  // what this fetch asked from
};

replica_fetchers::replica_fetchers(shard_state& shard, int32_t self)
    : _shard(shard), _self(self), _links(shard.net_shard()) {}

replica_fetchers::~replica_fetchers() { *_alive = false; }

void replica_fetchers::update(const metadata_snapshot& metadata) {
    std::map<int32_t, std::vector<followed>> next;
    for (const auto& [name, topic] : metadata.topics) {
        const auto& hosted = topic->hosted_shards;
        for (size_t i = 0; i < hosted.size() && i < topic->replicas.size(); ++i) {
            if (hosted[i] != _shard.id()) continue;
            const partition_replicas& r = topic->replicas[i];
            if (r.leader < 0 || r.leader == _self) continue;
            next[r.leader].push_back({name, static_cast<int32_t>(i), {}});
        }
    }
    for (auto& [leader, src] : _sources)
        if (next.count(leader) == 0) src.partitions.clear();
    for (auto& [leader, partitions] : next) {
        source& src = _sources[leader];
        src.leader = leader;
        // Keep each partition's pause across updates.
        for (followed& f : partitions)
            for (const followed& old : src.partitions)
                if (old.topic == f.topic && old.index == f.index) f.retry_after = old.retry_after;
        src.partitions = std::move(partitions);
        for (const cluster_broker& b : metadata.brokers) {
            if (b.id != leader) continue;
            if (b.host != src.host || b.port != src.port) {
                src.host = b.host;
                src.port = b.port;
                src.address_length = 0;
            }
        }
        fetch(leader);
    }
}

bool replica_fetchers::resolve(source& src) {
    // Brokers advertise addresses, which resolve without a lookup; a name blocks this
    // shard once per leader (and again only when its registration changes).
    if (src.address_length != 0) return true;
    return !src.host.empty() &&
           resolve_address(src.host, src.port, src.address, src.address_length);
}

partition* replica_fetchers::followed_partition(const source& src, const followed& f) {
    partition* p = _shard.find_partition(f.topic, f.index);
    if (p == nullptr || !p->replicated() || p->is_leader() || p->leader_id() != src.leader)
        return nullptr;
    return p;
}

void replica_fetchers::fetch(int32_t leader) {
    auto found = _sources.find(leader);
    if (found == _sources.end()) return;
    source& src = found->second;
    if (_stopped || src.in_flight || src.backing_off || src.partitions.empty()) return;
    if (!resolve(src)) {
        back_off(leader, backoff);
        return;
    }
    proto::fetch_request request;
    request.replica_id = _self;
    request.max_wait_ms = fetch_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = response_bytes_max;
    const bool incremental = src.session_id != 0;
    request.session_id = src.session_id;
    request.session_epoch = incremental ? src.session_epoch : 0;  // 0 opens a session
    const auto now = clock::now();
    auto earliest_retry = clock::time_point::max();
    std::map<partition_key, session_entry> fetched;  // what the session holds after this
    for (const followed& f : src.partitions) {
        partition* p = followed_partition(src, f);
        if (p == nullptr) continue;
        if (f.retry_after > now) {
            earliest_retry = std::min(earliest_retry, f.retry_after);
            continue;
        }
        const session_entry entry{p->log().log_end_offset(), p->log().log_start_offset(),
                                  p->leader_epoch(), p->log().leader_epochs().latest_epoch()};
        partition_key key{f.topic, f.index};
        const auto known = src.in_session.find(key);
        const bool unmoved = incremental && known != src.in_session.end() && known->second == entry;
        fetched.emplace(std::move(key), entry);
        if (unmoved) continue;  // the session fetches it from where it was
        if (request.topics.empty() || request.topics.back().topic != f.topic) {
            request.topics.emplace_back();
            request.topics.back().topic = f.topic;
        }
        proto::fetch_request::fetch_partition part;
        part.partition = f.index;
        part.current_leader_epoch = entry.current_leader_epoch;
        part.fetch_offset = entry.fetch_offset;
        part.last_fetched_epoch = entry.last_fetched_epoch;
        part.log_start_offset = entry.log_start_offset;
        part.partition_max_bytes = partition_bytes_max;
        request.topics.back().partitions.push_back(part);
    }
    if (fetched.empty()) {
        // Nothing to fetch now: the session (if any) is left to expire on the leader.
        src.reset_session();
        if (earliest_retry != clock::time_point::max())
            back_off(leader, std::chrono::duration_cast<milliseconds>(earliest_retry - now) +
                                 milliseconds(1));
        return;
    }
    if (incremental) {
        for (const auto& [key, entry] : src.in_session) {
            if (fetched.count(key) != 0) continue;
            auto& forgotten = request.forgotten_topics_data;
            if (forgotten.empty() || forgotten.back().topic != key.first) {
                forgotten.emplace_back();
                forgotten.back().topic = key.first;
            }
            forgotten.back().partitions.push_back(key.second);
        }
    }
    src.in_session = std::move(fetched);
    proto::writer out(256);
    out.int32(0);
    proto::request_header header;
    header.api_key = static_cast<int16_t>(proto::api_key::fetch);
    header.api_version = fetch_version;
    header.correlation_id = ++_correlation;
    header.client_id = "spate-replica-" + std::to_string(_self);
    proto::encode_request_header(out, header);
    request.encode(out, fetch_version);
    out.patch_int32(0, static_cast<int32_t>(out.size() - 4));

    outgoing_call call;
    call.broker_id = leader;
    call.address = src.address;
    call.address_length = src.address_length;
    call.frame = std::move(out.buffer());
    call.correlation_id = header.correlation_id;
    call.timeout_ms = fetch_timeout_ms;
    std::weak_ptr<bool> alive = _alive;
    call.done = [this, alive, leader](result<net::frame_bytes> answer) {
        if (alive.expired()) return;
        on_answer(leader, std::move(answer));
    };
    src.in_flight = true;
    ++_fetches;
    _links.call(std::move(call));
}

void replica_fetchers::back_off(int32_t leader, milliseconds delay) {
    source& src = _sources[leader];
    if (src.backing_off) return;
    src.backing_off = true;
    std::weak_ptr<bool> alive = _alive;
    _shard.net_shard().add_timer(delay, [this, alive, leader] {
        if (alive.expired()) return;
        _sources[leader].backing_off = false;
        fetch(leader);
    });
}

void replica_fetchers::on_answer(int32_t leader, result<net::frame_bytes> answer) {
    source& src = _sources[leader];
    src.in_flight = false;
    if (_stopped) return;
    const bool incremental = src.session_id != 0;
    proto::fetch_response response;
    bool decoded = false;
    if (answer) {
        proto::reader in(answer->data(), answer->size());
        int32_t correlation = 0;
        decoded = proto::decode_response_header(
                      in,
                      proto::response_header_version(static_cast<int16_t>(proto::api_key::fetch),
                                                     fetch_version),
                      correlation) &&
                  response.decode(in, fetch_version);
    }
    if (!decoded || response.error_code != 0) {
        // Whatever the leader's session now holds is unknown: the next fetch is a full one.
        src.reset_session();
        const auto code = static_cast<error_code>(decoded ? response.error_code : 0);
        if (code == error_code::fetch_session_id_not_found ||
            code == error_code::invalid_fetch_session_epoch) {
            // The leader restarted, evicted the session, or this connection is new.
            fetch(leader);
            return;
        }
        if (src.failures++ == 0)
            net::log_warn("replication: fetch from broker %d (%s:%d) failed: %s", leader,
                          src.host.c_str(), src.port,
                          !answer ? answer.failure().message.c_str()
                          : !decoded
                              ? "a malformed answer"
                              : proto::error_name(static_cast<error_code>(response.error_code)));
        back_off(leader, backoff);
        return;
    }
    if (src.failures > 0)
        net::log_info("replication: fetching from broker %d again after %d failures", leader,
                      src.failures);
    src.failures = 0;
    if (!incremental) {
        src.session_id = response.session_id;  // 0: the leader keeps no session for us
        src.session_epoch = 1;
    } else {
        src.session_epoch = next_session_epoch(src.session_epoch);
    }
    const bool sync_first = _shard.config().acks_all_policy == ack_policy::fsync;
    auto syncs = std::make_shared<size_t>(1);  // one held until every partition is applied
    std::weak_ptr<bool> alive = _alive;
    auto synced = [this, alive, leader, syncs] {
        if (alive.expired() || --*syncs != 0) return;
        fetch(leader);
    };
    const auto now = clock::now();
    for (const auto& topic : response.responses) {
        for (const auto& part : topic.partitions) {
            auto f =
                std::find_if(src.partitions.begin(), src.partitions.end(), [&](const followed& x) {
                    return x.topic == topic.topic && x.index == part.partition_index;
                });
            if (f == src.partitions.end()) continue;
            partition* p = followed_partition(src, *f);
            if (p == nullptr) continue;
            partition_answer a{part.error_code,
                               part.high_watermark,
                               part.log_start_offset,
                               part.diverging_epoch.epoch,
                               part.diverging_epoch.end_offset,
                               part.records_.bytes,
                               p->log().log_end_offset()};
            if (!apply(*p, a)) {
                f->retry_after = now + partition_backoff;
                continue;
            }
            _shard.submit_log_syncs(*p);
            if (sync_first && p->log().durable_offset() < p->log().log_end_offset()) {
                ++*syncs;
                p->wait_durable(_shard.net_shard(), p->log().log_end_offset(),
                                [synced](bool) { synced(); });
            }
        }
    }
    synced();
}

bool replica_fetchers::apply(partition& p, const partition_answer& a) {
    const auto code = static_cast<error_code>(a.error_code);
    if (code == error_code::offset_out_of_range) {
        // The leader's log does not hold our end: it starts later (retention), or ends
        // before it (it lost an unclean tail). Either way our log follows the leader's.
        if (a.fetch_offset < a.log_start_offset) {
            if (auto restarted = p.log().truncate_fully_and_start_at(a.log_start_offset);
                !restarted) {
                p.note_storage_failure("truncate", restarted.failure());
                return false;
            }
            ++_truncations;
            p.discard_producer_state();
            p.clamp_high_watermark();
            return true;
        }
        return truncate(p, std::max(a.high_watermark, p.log().log_start_offset()),
                        "the leader's log ends before ours");
    }
    if (code != error_code::none) return false;  // not (yet) the leader, fenced, ...: retry
    if (a.diverging_epoch >= 0 || a.diverging_end_offset >= 0) {
        // KIP-279: where both logs agree is the smaller of the leader's end of that epoch
        // and ours (our end of the largest epoch we have not above it).
        int64_t end = a.diverging_end_offset < 0
                          ? p.log().log_start_offset()
                          : std::min(a.diverging_end_offset, p.log().log_end_offset());
        if (a.diverging_epoch >= 0) {
            const auto [own_epoch, own_end] = p.log().end_offset_for_epoch(a.diverging_epoch);
            if (own_epoch >= 0 && own_end >= 0) end = std::min(end, own_end);
        }
        return truncate(p, std::max(end, p.log().log_start_offset()), "diverging epoch");
    }
    const size_t batch_bytes_max = static_cast<size_t>(p.config().message_max_bytes) + (1 << 20);
    // Whole batches only: a partial one at the end comes again with the next fetch.
    bool applied = true;
    auto walked = proto::for_each_batch(
        a.records, [&](std::span<const uint8_t> bytes, const proto::batch_header& header) {
            std::span<uint8_t> batch(const_cast<uint8_t*>(bytes.data()), bytes.size());
            const proto::batch_check checked =
                proto::validate_batch(batch, std::max(batch_bytes_max, bytes.size()), false);
            if (checked.error != proto::batch_error::none) {
                net::log_warn("replication: %s-%d: a corrupt batch from the leader at offset %lld",
                              p.topic().c_str(), p.index(),
                              static_cast<long long>(p.log().log_end_offset()));
                return applied = false;
            }
            auto appended = p.log().append_replicated(batch);
            if (!appended) {
                p.note_storage_failure("append", appended.failure());
                return applied = false;
            }
            p.note_storage_success("append");
            ++metrics::local().appends;
            p.producers().observe(header);
            return true;
        });
    if (!walked || !applied) return false;
    p.follower_high_watermark(a.high_watermark);
    return true;
}

bool replica_fetchers::truncate(partition& p, int64_t offset, const char* why) {
    const int64_t before = p.log().log_end_offset();
    auto cut = p.log().truncate_to(offset);
    if (!cut) {
        p.note_storage_failure("truncate", cut.failure());
        return false;
    }
    if (*cut < before) {
        ++_truncations;
        net::log_info("replication: %s-%d truncated from %lld to %lld (%s)", p.topic().c_str(),
                      p.index(), static_cast<long long>(before), static_cast<long long>(*cut), why);
        // The producer state is rebuilt from the log as it now is (a snapshot of the
        // batches just cut is replaced, see partition::restore_producer_state).
        p.restore_producer_state();
    }
    p.clamp_high_watermark();
    return true;
}

}  // namespace spate::broker::cluster
