#pragma once
// broker: the process — configuration, the io_uring runtime with one shard per core,
// and one shard_state per shard. shard_state is the broker's side of a shard: it
// receives request frames from net/, dispatches them to the handlers, owns the
// partitions assigned to its shard and holds this shard's copy of the metadata.
//
// Threads: shard_state N is touched only by shard N's thread. Work for a partition on
// another shard goes there with `call_on` (the SPSC queues of net/) and the answer comes
// back the same way. Shard 0 is also the controller: it alone owns the metadata_store.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/cluster/agent.h"
#include "broker/cluster/broker_links.h"
#include "broker/cluster/replica_fetcher.h"
#include "broker/config.h"
#include "broker/fetch_session.h"
#include "broker/group/coordinator.h"
#include "broker/group/legacy_import.h"
#include "broker/group/offsets_topic.h"
#include "broker/metadata.h"
#include "broker/metrics/counters.h"
#include "broker/partition.h"
#include "net/runtime.h"
#include "proto/header.h"
#include "storage/file.h"

namespace spate::broker {

class broker;
class shard_state;

// One decoded request on its way through a handler. Owns the frame, so record batches
// decoded from it (views into it) stay valid while the request is in flight.
struct request {
    shard_state* shard = nullptr;
    net::connection_ref conn;
    uint64_t sequence = 0;
    proto::request_header header;
    net::frame_ptr frame;
    size_t body_offset = 0;
    // The start of the loop turn that received the frame (request latency metrics).
    std::chrono::steady_clock::time_point received_at;

    int16_t version() const { return header.api_version; }
    proto::reader body() const {
        return proto::reader(frame->bytes.data() + body_offset, frame->bytes.size() - body_offset);
    }
};
using request_ptr = std::shared_ptr<request>;

class shard_state final : public net::connection_handler {
public:
    shard_state(broker& owner, net::shard& shard);

    void on_frame(net::connection_ref conn, uint64_t sequence, net::frame_ptr frame) override;
    void on_close(net::connection_ref conn) override;
    // /metrics and /health (broker/metrics/endpoint.cc).
    bool on_http_request(net::connection_ref conn, uint64_t sequence,
                         const net::http_request_parser& request) override;

    broker& owner() { return _broker; }
    net::shard& net_shard() { return _shard; }
    net::shard_id id() const { return _shard.id(); }
    const broker_config& config() const;
    const snapshot_ptr& metadata() const { return _metadata; }

    // Encodes header + body at the request's version and hands it to net/ for in-order
    // sending. `pieces` are file ranges for external records (Fetch).
    template <class Response>
    void respond(const request& req, const Response& body,
                 std::vector<net::file_piece> pieces = {});
    void skip_response(const request& req);
    // Counts an answer (or a skipped one: `message` null) in this shard's metrics: the
    // request's latency and bytes out (broker/metrics/counters.h). count_errors adds the
    // error codes the response carries.
    void count_answer(const request& req, const net::response* message);
    template <class Response>
    static void count_errors(const request& req, const Response& body);
    void close_connection(const request& req, const char* why);

    // Runs `work(owner_state, reply)` on shard `owner`; `reply(value)` (called there,
    // possibly later) delivers `value` to `done` back on this shard.
    template <class T>
    void call_on(net::shard_id owner,
                 std::function<void(shard_state&, std::function<void(T)>)> work,
                 std::function<void(T)> done);

    // The consumer groups this shard coordinates (broker/group/coordinator.h): those of
    // the partitions of __consumer_offsets it leads (broker/group/offsets_topic.h).
    group::group_coordinator& groups() { return *_groups; }
    group::offsets_topic& offsets_topic() { return _offsets_topic; }

    // The incremental fetch sessions of this shard's connections (broker/fetch_session.h),
    // created on first use with this shard's share of the broker's slots.
    fetch_session_cache& fetch_sessions();

    // Partitions owned by this shard.
    partition* find_partition(const std::string& topic, int32_t index);
    // Every partition owned by this shard, by topic (an index this shard does not own is a
    // null entry).
    using partition_table =
        std::unordered_map<std::string, std::vector<std::unique_ptr<partition>>>;
    const partition_table& partitions() const { return _partitions; }
    // Submits on the ring the fdatasyncs the log queued (segments closed by a roll) and
    // reports their completion to the log, which then advances its recovery point.
    void submit_log_syncs(partition& p);

    // Control plane (runs on any shard; the change itself happens on shard 0, which then
    // installs the new snapshot on every shard before `done` is called here).
    using metadata_change = std::function<result<snapshot_ptr>(metadata_store&)>;
    void change_metadata(metadata_change change, std::function<void(result<snapshot_ptr>)> done);
    // One change of a control-plane request and what its outcome writes into the answer.
    struct metadata_step {
        metadata_change change;
        std::function<void(result<snapshot_ptr>)> done;
    };
    // Applies the steps one after another (a step is submitted only once the previous
    // step's outcome arrived, so each sees the metadata the earlier ones left), then calls
    // `finished` on this shard. A failed step does not stop the later ones: each topic of
    // a request succeeds or fails on its own, as Kafka answers per topic.
    void change_metadata_in_order(std::vector<metadata_step> steps, std::function<void()> finished);

    // On shard 0: installs `next` on every shard, then calls `done` here.
    void install_everywhere(snapshot_ptr next, std::function<void()> done);
    // Installs a new snapshot: opens partitions newly owned here, applies config changes,
    // closes and removes partitions of deleted topics.
    void install_snapshot(snapshot_ptr next);
    // Closes every log cleanly (shutdown): the logs untouched since a clean open write
    // nothing, the others share two syncfs calls (storage/shutdown.h).
    void close_all();
    const storage::fd_cache& descriptors() const { return _descriptors; }
    // Flush policy and retention, run from a periodic timer.
    void housekeeping();
    void schedule_housekeeping();

    // In a cluster: this shard's replica fetchers (broker/cluster/replica_fetcher.h),
    // started with the cluster agent.
    void start_fetchers();
    // What an acknowledged write waits for: its group commit (acks_all_policy = "fsync"),
    // then, for acks=all on a replicated partition, the high watermark.
    struct ack_wait {
        int64_t end;
        int32_t min_insync_replicas;
        bool sync_first;
        bool replicate;
        std::chrono::steady_clock::time_point deadline;
    };
    // Calls done(error) once the write below `wait.end` of partition (topic, index) is
    // acknowledged: none, KAFKA_STORAGE_ERROR (sync failed), NOT_LEADER_OR_FOLLOWER (gone
    // or no longer led) or partition::wait_replicated's errors (broker/replication.cc).
    void wait_acknowledged(const std::string& topic, int32_t index, ack_wait wait,
                           std::function<void(proto::error_code)> done);
    // Leader: a follower fetched `p` from `fetch_offset` (broker/replication.cc).
    void follower_fetched(partition& p, int32_t replica, int64_t fetch_offset);

private:
    void dispatch(request_ptr req);
    void apply_role(partition& p, const metadata_snapshot& next, const topic_info& topic,
                    size_t index);
    // Leader duties of housekeeping: ISR changes to propose, acks=all waits to expire,
    // high watermarks to checkpoint.
    void replication_housekeeping(partition& p, bool checkpoint_due);
    // Sends the ISR change `p` wants, if any, to the controller (AlterPartition).
    void propose_isr_change(partition& p);

    broker& _broker;
    net::shard& _shard;
    snapshot_ptr _metadata;
    // Producer-state snapshots of busy partitions are refreshed every this many
    // housekeeping ticks (seconds), bounding the log a restart must re-read.
    static constexpr uint64_t producer_snapshot_period_ticks = 30;
    uint64_t _snapshot_ticks = 0;
    // The segment descriptors this shard's logs keep open (storage/fd_cache.h); declared
    // before the partitions, so it outlives their segments.
    storage::fd_cache _descriptors;
    // The data directory, opened before any partition: its syncfs at shutdown reports
    // every write-back error of the file system since then (storage/shutdown.h). Null
    // when it could not be opened; the logs are then closed one by one.
    std::unique_ptr<storage::segment_file> _data_directory;
    partition_table _partitions;
    group::offsets_topic _offsets_topic;
    std::unique_ptr<group::group_coordinator> _groups;
    std::unique_ptr<fetch_session_cache> _fetch_sessions;
    std::unique_ptr<cluster::replica_fetchers> _fetchers;
    uint64_t _housekeeping_ticks = 0;
};

class broker {
public:
    explicit broker(broker_config config);
    ~broker();

    // Loads metadata, opens the runtime and the partitions; errors name what failed.
    result<void> start();
    void stop();  // thread-safe
    void wait();

    const broker_config& config() const { return _config; }
    uint32_t shard_count() const { return static_cast<uint32_t>(_states.size()); }
    shard_state& state(net::shard_id id) { return *_states[id]; }
    // Only on shard 0.
    metadata_store& store() { return *_store; }
    // The broker's part in a cluster (broker/cluster/agent.h); null on a single node.
    cluster::cluster_agent* cluster() { return _agent.get(); }
    // Each shard's budget of cached segment descriptors (segment_files_max), fixed at start.
    int64_t shard_segment_files() const { return _shard_segment_files; }
    uint16_t bound_port() const;
    // The metrics listener's port (metrics_listen), 0 without one.
    uint16_t metrics_port() const { return _runtime ? _runtime->http_bound_port() : 0; }
    // Whether requests are served: at once on a single node; in a cluster once the agent
    // exists, so no request meets a broker that would answer as a single node.
    bool serving() const { return _serving.load(std::memory_order_acquire); }
    std::string advertised_host() const;
    int32_t advertised_port() const;

private:
    result<void> start_cluster(uint32_t shards);
    // The groups of the old per-shard offsets files to import into __consumer_offsets
    // (created here if missing), or null when there are none (broker/group/legacy_import.h).
    result<std::shared_ptr<group::legacy_import>> prepare_legacy_import(bool clustered);

    broker_config _config;
    int64_t _shard_segment_files = segment_files_per_shard_min;
    std::unique_ptr<metadata_store> _store;
    std::unique_ptr<net::runtime> _runtime;
    std::vector<std::unique_ptr<shard_state>> _states;
    // Declared before the runtime's users go: the runtime is joined before these die.
    std::unique_ptr<cluster::broker_links> _links;  // shard 0's connections to the others
    std::unique_ptr<cluster::cluster_agent> _agent;
    std::atomic<bool> _serving{false};
};

// ---- templates -------------------------------------------------------------------

template <class Response>
void shard_state::respond(const request& req, const Response& body,
                          std::vector<net::file_piece> pieces) {
    proto::writer out(256);
    out.int32(0);  // frame size, patched below
    proto::encode_response_header(
        out, req.header.correlation_id,
        proto::response_header_version(req.header.api_key, req.header.api_version));
    body.encode(out, req.header.api_version);
    out.patch_int32(0, static_cast<int32_t>(out.size() - 4));
    net::response message;
    message.bytes = std::move(out.buffer());
    message.pieces = std::move(pieces);
    count_answer(req, &message);
    count_errors(req, body);
    _shard.respond(req.conn, req.sequence, std::move(message));
}

template <class Response>
void shard_state::count_errors(const request& req, const Response& body) {
    int16_t api = req.header.api_key;
    body.visit_error_codes(
        [](void* context, int16_t code) {
            if (code != 0) metrics::local().errors.add(*static_cast<int16_t*>(context), code);
        },
        &api);
}

template <class T>
void shard_state::call_on(net::shard_id owner,
                          std::function<void(shard_state&, std::function<void(T)>)> work,
                          std::function<void(T)> done) {
    if (owner == id()) {
        work(*this, std::move(done));
        return;
    }
    broker* process = &_broker;
    const net::shard_id origin = id();
    _shard.submit_to(
        owner, [process, owner, origin, work = std::move(work), done = std::move(done)]() mutable {
            shard_state& target = process->state(owner);
            work(target, [process, owner, origin, done = std::move(done)](T value) mutable {
                process->state(owner).net_shard().submit_to(
                    origin, [done = std::move(done), value = std::move(value)]() mutable {
                        done(std::move(value));
                    });
            });
        });
}

}  // namespace spate::broker
