// shard_state and broker: request dispatch, partition ownership, metadata propagation.
#include "broker/broker.h"

#include <fcntl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "broker/cluster/znodes.h"
#include "broker/handlers/handlers.h"
#include "net/log.h"
#include "storage/shutdown.h"

namespace spate::broker {

namespace fs = std::filesystem;

shard_state::shard_state(broker& owner, net::shard& shard)
    : _broker(owner),
      _shard(shard),
      _metadata(std::make_shared<metadata_snapshot>()),
      _descriptors(static_cast<size_t>(owner.shard_segment_files())),
      _offsets_topic(*this) {
    group::coordinator_config groups_config;
    groups_config.initial_rebalance_delay_ms = owner.config().group_initial_rebalance_delay_ms;
    groups_config.offsets_retention_ms = owner.config().offsets_retention_minutes * 60 * 1000;
    _groups = std::make_unique<group::group_coordinator>(groups_config, _offsets_topic);
    const int fd = ::open(owner.config().data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        _data_directory = std::make_unique<storage::segment_file>(fd);
    else
        net::log_warn("cannot open data_dir %s (%s): logs will be closed one by one",
                      owner.config().data_dir.c_str(), std::strerror(errno));
}

const broker_config& shard_state::config() const { return _broker.config(); }

void shard_state::on_frame(net::connection_ref conn, uint64_t sequence, net::frame_ptr frame) {
    auto req = std::make_shared<request>();
    req->shard = this;
    req->conn = conn;
    req->sequence = sequence;
    proto::reader in(frame->bytes.data(), frame->bytes.size());
    if (!proto::decode_request_header(in, req->header)) {
        net::log_warn("closing a connection: malformed request header (%s)",
                      proto::to_string(in.error()));
        _shard.close_connection(conn);
        return;
    }
    req->body_offset = in.position();
    req->received_at = _shard.now();
    metrics::local().api(req->header.api_key).bytes_in += frame->bytes.size() + 4;
    req->frame = std::move(frame);
    if (!_broker.serving()) {  // a cluster's broker before its agent: the client retries
        _shard.close_connection(conn);
        return;
    }
    dispatch(std::move(req));
}

void shard_state::on_close(net::connection_ref) {}

void shard_state::dispatch(request_ptr req) {
    const handler_entry* entry = find_handler(req->header.api_key);
    const int16_t version = req->header.api_version;
    // ApiVersions answers an unsupported version itself (v0 body, UNSUPPORTED_VERSION).
    if (entry != nullptr && entry->key == proto::api_key::api_versions) {
        entry->handle(std::move(req));
        return;
    }
    if (entry == nullptr || version < entry->version_min || version > entry->version_max) {
        // Kafka closes the connection here too: the response format of an unknown API or
        // version is undefined. Clients learn the ranges from ApiVersions first.
        net::log_warn("closing a connection: unsupported api %d version %d", req->header.api_key,
                      version);
        _shard.close_connection(req->conn);
        return;
    }
    entry->handle(std::move(req));
}

void shard_state::skip_response(const request& req) {
    count_answer(req, nullptr);
    _shard.skip_response(req.conn, req.sequence);
}

void shard_state::count_answer(const request& req, const net::response* message) {
    metrics::api_figures& api = metrics::local().api(req.header.api_key);
    ++api.requests;
    const auto took = std::chrono::steady_clock::now() - req.received_at;
    api.latency.record(static_cast<uint64_t>(
        std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(took).count())));
    if (message == nullptr) return;
    uint64_t bytes = message->bytes.size();
    for (const net::file_piece& piece : message->pieces)
        bytes += static_cast<uint64_t>(piece.length);
    api.bytes_out += bytes;
}

void shard_state::close_connection(const request& req, const char* why) {
    net::log_warn("closing a connection: %s (api %d v%d)", why, req.header.api_key,
                  req.header.api_version);
    _shard.close_connection(req.conn);
}

fetch_session_cache& shard_state::fetch_sessions() {
    if (!_fetch_sessions) {
        const uint64_t shards = std::max<uint32_t>(_broker.shard_count(), 1);
        const uint64_t slots =
            (config().max_incremental_fetch_session_cache_slots + shards - 1) / shards;
        // Room for a few sessions naming every partition the broker may host, per shard.
        const auto entries_max =
            static_cast<size_t>(4 * std::max<int64_t>(config().partitions_max, 1000));
        _fetch_sessions = std::make_unique<fetch_session_cache>(
            static_cast<size_t>(slots), config().min_incremental_fetch_session_eviction_ms,
            static_cast<uint8_t>(id()), std::random_device{}(), entries_max);
    }
    return *_fetch_sessions;
}

partition* shard_state::find_partition(const std::string& topic, int32_t index) {
    auto found = _partitions.find(topic);
    if (found == _partitions.end() || index < 0 ||
        static_cast<size_t>(index) >= found->second.size())
        return nullptr;
    return found->second[static_cast<size_t>(index)].get();
}

void shard_state::submit_log_syncs(partition& p) {
    if (!p.log().has_sync_requests()) return;
    // A completion after a truncation of the log (a follower's) may name a segment
    // that is gone: dropped (the truncation dropped its request too).
    const uint64_t truncations = p.log().truncation_count();
    for (storage::sync_request& request : p.log().take_sync_requests()) {
        const int fd = request.file->fd;
        _shard.submit_fdatasync(fd, [this, topic = p.topic(), index = p.index(), truncations,
                                     request = std::move(request)](int res) {
            partition* owner = find_partition(topic, index);
            if (owner == nullptr) return;  // deleted meanwhile: nothing left to make durable
            if (owner->log().truncation_count() != truncations) return;
            if (auto done = owner->log().complete_sync(request.durable_offset, res); !done)
                owner->note_storage_failure("segment sync", done.failure());
        });
    }
}

namespace {

// The state of one change_metadata_in_order run, shared by its completion callbacks.
struct metadata_steps_run {
    std::vector<shard_state::metadata_step> steps;
    std::function<void()> finished;
    size_t next = 0;
};

void run_next_step(shard_state& shard, std::shared_ptr<metadata_steps_run> run) {
    if (run->next == run->steps.size()) {
        run->finished();
        return;
    }
    auto& step = run->steps[run->next++];
    shard.change_metadata(std::move(step.change),
                          [&shard, run, done = std::move(step.done)](result<snapshot_ptr> outcome) {
                              done(std::move(outcome));
                              run_next_step(shard, run);
                          });
}

}  // namespace

void shard_state::change_metadata_in_order(std::vector<metadata_step> steps,
                                           std::function<void()> finished) {
    auto run = std::make_shared<metadata_steps_run>();
    run->steps = std::move(steps);
    run->finished = std::move(finished);
    run_next_step(*this, std::move(run));
}

void shard_state::change_metadata(metadata_change change,
                                  std::function<void(result<snapshot_ptr>)> done) {
    broker* process = &_broker;
    call_on<std::shared_ptr<result<snapshot_ptr>>>(
        0,
        [process, change = std::move(change)](
            shard_state& controller,
            std::function<void(std::shared_ptr<result<snapshot_ptr>>)> reply) {
            auto changed = std::make_shared<result<snapshot_ptr>>(change(process->store()));
            if (!changed->ok()) {
                reply(changed);
                return;
            }
            // Install on every shard, then answer: when the caller hears "created", every
            // shard can serve the new partitions.
            controller.install_everywhere(changed->value(), [changed, reply] { reply(changed); });
        },
        [done = std::move(done)](std::shared_ptr<result<snapshot_ptr>> changed) {
            done(std::move(*changed));
        });
}

namespace {

// Kafka's partition.metadata ("version: 0", "topic_id: <base64>"): which topic a
// partition directory belongs to. A broker that was down while its topic was deleted and
// re-created under the same name finds the old id there: the old data is removed before
// the new topic's partition opens, never served as the new topic's.
result<void> claim_partition_dir(const fs::path& dir, const proto::uuid& topic_id) {
    const fs::path file = dir / "partition.metadata";
    const std::string expected =
        "version: 0\ntopic_id: " + cluster::uuid_to_base64(topic_id) + "\n";
    std::error_code failed;
    if (auto found = storage::read_small_file(file, 256); found) {
        if (*found == expected) return {};
        net::log_warn("partition directory %s belonged to another topic (id changed): removing it",
                      dir.c_str());
        fs::remove_all(dir, failed);
        if (failed)
            return error{failed.value(), "cannot remove " + dir.string() + ": " + failed.message()};
    } else if (found.failure().code != ENOENT) {
        return found.failure();
    }
    fs::create_directories(dir, failed);
    if (failed)
        return error{failed.value(), "cannot create " + dir.string() + ": " + failed.message()};
    return storage::write_file_atomically(
        file, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(expected.data()),
                                       expected.size()));
}

}  // namespace

void shard_state::install_everywhere(snapshot_ptr next, std::function<void()> done) {
    auto remaining = std::make_shared<uint32_t>(_broker.shard_count());
    for (net::shard_id s = 0; s < _broker.shard_count(); ++s) {
        call_on<int>(
            s,
            [next](shard_state& target, std::function<void(int)> installed) {
                target.install_snapshot(next);
                installed(0);
            },
            [remaining, done](int) {
                if (--*remaining == 0) done();
            });
    }
}

void shard_state::apply_role(partition& p, const metadata_snapshot& next, const topic_info& topic,
                             size_t index) {
    if (!next.clustered || index >= topic.replicas.size()) return;
    const int32_t leader_before = p.leader_id();
    p.apply_role(topic.replicas[index], config().node_id, std::chrono::steady_clock::now());
    if (p.leader_id() != leader_before) ++metrics::local().leader_changes;
    // A partition whose role changed may have an ISR change to propose (its followers are
    // new), and waits for the next housekeeping round for it.
}

void shard_state::install_snapshot(snapshot_ptr next) {
    const broker_config& cfg = config();
    // Partitions of topics that are gone (or were re-created with a new id) go first.
    for (auto it = _partitions.begin(); it != _partitions.end();) {
        const topic_info* topic = next->find(it->first);
        bool keep = topic != nullptr;
        if (keep) {
            for (const auto& p : it->second)
                if (p && p->topic_id() != topic->id) keep = false;
        }
        if (keep) {
            ++it;
            continue;
        }
        // In a cluster only a deletion removes data (StopReplica with delete): a topic
        // missing from one snapshot (a controller that could not read it) is only closed.
        const bool remove = !next->clustered || topic != nullptr || next->deleting.count(it->first);
        for (auto& p : it->second) {
            if (!p) continue;
            p->wake_waiters();
            (void)p->log().close();
            std::error_code ignored;
            if (remove)
                fs::remove_all(
                    fs::path(cfg.data_dir) / (p->topic() + "-" + std::to_string(p->index())),
                    ignored);
        }
        it = _partitions.erase(it);
    }
    for (const auto& [name, topic] : next->topics) {
        auto& owned = _partitions[name];
        owned.resize(topic->partition_shards.size());
        const effective_topic_config effective = effective_config(cfg, topic->configs);
        // A cluster's broker opens every replica it hosts, led or followed.
        const auto& hosted =
            topic->hosted_shards.empty() ? topic->partition_shards : topic->hosted_shards;
        for (size_t i = 0; i < hosted.size(); ++i) {
            if (hosted[i] != id()) {
                // Led elsewhere now (a cluster's leader moved): the log is closed, not
                // removed, and opened again if leadership comes back.
                if (i < owned.size() && owned[i]) {
                    owned[i]->wake_waiters();
                    (void)owned[i]->log().close();
                    owned[i].reset();
                }
                // Moved off this broker for good (StopReplica with delete): its data goes,
                // removed by its owner shard alone once the log is closed there.
                auto removed = next->deleting_partitions.find({name, static_cast<int32_t>(i)});
                if (removed != next->deleting_partitions.end() && removed->second == id()) {
                    std::error_code ignored;
                    fs::remove_all(fs::path(cfg.data_dir) / (name + "-" + std::to_string(i)),
                                   ignored);
                }
                continue;
            }
            if (owned[i]) {
                owned[i]->set_config(effective);
                apply_role(*owned[i], *next, *topic, i);
                continue;
            }
            const auto dir = fs::path(cfg.data_dir) / (name + "-" + std::to_string(i));
            if (next->clustered)
                if (auto claimed = claim_partition_dir(dir, topic->id); !claimed) {
                    net::log_error("cannot open partition %s-%zu: %s", name.c_str(), i,
                                   claimed.failure().message.c_str());
                    continue;
                }
            auto log = storage::partition_log::open(dir, effective.log, &_descriptors);
            if (!log) {
                net::log_error("cannot open partition %s-%zu: %s", name.c_str(), i,
                               log.failure().message.c_str());
                continue;
            }
            owned[i] = std::make_unique<partition>(name, static_cast<int32_t>(i), topic->id, dir,
                                                   std::move(log.value()), effective);
            owned[i]->restore_producer_state();
            if (next->clustered) owned[i]->restore_high_watermark();
            apply_role(*owned[i], *next, *topic, i);
        }
    }
    if (_metadata && next->clustered && _metadata->controller_id != next->controller_id)
        ++metrics::local().controller_changes;
    _metadata = std::move(next);
    // Connections that moved here from a shard with a newer snapshot may read again.
    _shard.set_routing_epoch(_metadata->version);
    if (_fetchers) _fetchers->update(*_metadata);
    _offsets_topic.update(*_groups);
}

void shard_state::close_all() {
    if (_fetchers) _fetchers->stop();
    _groups->close();
    // Producer snapshots go first, unsynced when the log's close goes through the shared
    // syncfs: they are on disk by the time the markers are written. A log that is still
    // vouched for by its marker is not synced by close_logs, so its snapshot (dirty only
    // when a crash left an older one) is written synced.
    std::vector<storage::partition_log*> logs;
    for (auto& [name, owned] : _partitions) {
        for (auto& p : owned) {
            if (!p) continue;
            if (p->producer_state_dirty()) {
                const bool batched = _data_directory && !p->log().vouched_by_clean_marker();
                const storage::file_durability durability =
                    batched ? storage::file_durability::unsynced : storage::file_durability::synced;
                if (auto saved = p->save_producer_state(durability); !saved)
                    net::log_error("producer state of %s-%d: %s", name.c_str(), p->index(),
                                   saved.failure().message.c_str());
            }
            // Unsynced: the shared syncfs below makes it durable (and a lost one only
            // delays what consumers see after the restart).
            (void)p->save_high_watermark();
            logs.push_back(&p->log());
        }
    }
    auto closed = storage::close_logs(logs, _data_directory ? _data_directory->fd : -1);
    if (!closed) net::log_error("closing the logs: %s", closed.failure().message.c_str());
    const storage::close_report report = closed ? *closed : storage::close_report{};
    net::log_info(
        "shard %u closed %zu logs: %zu unchanged since a clean open, %zu synced together, "
        "%zu on other file systems, %zu failed (ms: stop %lld, syncfs %lld, markers %lld, "
        "syncfs %lld)",
        static_cast<unsigned>(id()), logs.size(), report.untouched, report.synced,
        report.on_their_own, closed ? report.failed : logs.size(),
        static_cast<long long>(report.stop_ms), static_cast<long long>(report.first_sync_ms),
        static_cast<long long>(report.markers_ms), static_cast<long long>(report.second_sync_ms));
    _partitions.clear();
}

void shard_state::schedule_housekeeping() {
    // Retention and the flush policy are checked every second, on every shard.
    _shard.add_timer(std::chrono::milliseconds(1000), [this] {
        housekeeping();
        schedule_housekeeping();
    });
}

void shard_state::housekeeping() {
    _groups->expire_offsets();
    // Housekeeping runs every second, which is the descriptor cache's clock.
    _descriptors.tick_and_close_idle(
        static_cast<uint64_t>(std::max<int64_t>(config().segment_files_idle_ms / 1000, 1)));
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    const bool snapshot_due = ++_snapshot_ticks % producer_snapshot_period_ticks == 0;
    // High watermarks are checkpointed every few seconds, as Kafka's
    // replica.high.watermark.checkpoint.interval.ms does.
    const bool checkpoint_due = ++_housekeeping_ticks % 5 == 0;
    for (auto& [name, owned] : _partitions) {
        for (auto& p : owned) {
            if (!p) continue;
            replication_housekeeping(*p, checkpoint_due);
            submit_log_syncs(*p);
            // Housekeeping runs every second: its storage errors go through the
            // partition's rate-limited storage error log.
            if (auto retained = p->log().apply_retention(now_ms); !retained)
                p->note_storage_failure("retention", retained.failure());
            if (auto compacted = p->log().compact_step(now_ms); !compacted)
                p->note_storage_failure("compaction", compacted.failure());
            if (p->producers().producer_count() > 0 && p->producer_state_dirty() && snapshot_due) {
                if (auto saved = p->save_producer_state(storage::file_durability::unsynced); !saved)
                    net::log_error("producer state of %s-%d: %s", name.c_str(), p->index(),
                                   saved.failure().message.c_str());
            }
            if (p->log().flush_due(std::chrono::steady_clock::now())) {
                if (auto synced = p->log().sync(); !synced)
                    p->note_storage_failure("flush", synced.failure());
            }
        }
    }
}

// ---- broker ----------------------------------------------------------------------

broker::broker(broker_config config) : _config(std::move(config)) {}

broker::~broker() = default;

result<std::shared_ptr<group::legacy_import>> broker::prepare_legacy_import(bool clustered) {
    auto legacy = group::read_legacy_offsets(_config.data_dir);
    if (!legacy) return legacy.failure();
    if (!legacy.value()) return std::shared_ptr<group::legacy_import>();
    if (clustered) {
        net::log_warn(
            "groups: %s/__consumer_offsets holds committed offsets in the old "
            "per-shard files; only a single node imports them, so they are left "
            "as they are",
            _config.data_dir.c_str());
        return std::shared_ptr<group::legacy_import>();
    }
    const std::string& name = group::offsets_topic_name;
    if (_store->snapshot()->find(name) == nullptr)
        if (auto created = _store->create_topic(name, _config.offsets_topic_num_partitions,
                                                group::offsets_topic_configs());
            !created)
            return created.failure();
    const int32_t partitions = _store->snapshot()->find(name)->partition_count();
    std::map<int32_t, group::recovered_groups> by_partition;
    size_t groups = 0;
    for (auto& [group_id, offsets] : legacy.value()->offsets) {
        by_partition[group::offsets_partition_of(group_id, partitions)].offsets[group_id] =
            std::move(offsets);
        ++groups;
    }
    for (auto& [group_id, snapshot] : legacy.value()->snapshots)
        by_partition[group::offsets_partition_of(group_id, partitions)].snapshots[group_id] =
            std::move(snapshot);
    if (by_partition.empty()) {
        if (auto removed = group::remove_legacy_offsets(_config.data_dir); !removed)
            return removed.failure();
        return std::shared_ptr<group::legacy_import>();
    }
    net::log_info(
        "groups: importing the committed offsets of %zu groups from the old offsets "
        "files into %s",
        groups, name.c_str());
    return std::make_shared<group::legacy_import>(_config.data_dir, std::move(by_partition));
}

result<void> broker::start() {
    for (const handler_entry& entry : handler_list()) {
        const proto::api_description* described = proto::find_api(static_cast<int16_t>(entry.key));
        SPATE_ASSERT(described != nullptr, "every handler has a protocol description");
        SPATE_ASSERT(entry.version_min >= described->version_min, "handler range within codec");
        SPATE_ASSERT(entry.version_max <= described->version_max, "handler range within codec");
    }
    std::error_code failed;
    fs::create_directories(_config.data_dir, failed);
    if (failed)
        return error{failed.value(),
                     "cannot create data_dir \"" + _config.data_dir + "\": " + failed.message()};
    uint32_t shards = _config.shards;
    if (shards == 0) shards = std::max(1u, std::thread::hardware_concurrency());
    // The descriptor budget follows the limit main() raised: however many partitions the
    // data directory holds, opening them never needs more descriptors than this.
    rlimit files{};
    const int64_t descriptor_limit =
        getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
            ? static_cast<int64_t>(files.rlim_cur)
            : int64_t{1} << 20;
    _shard_segment_files = segment_files_per_shard(_config, descriptor_limit, shards);
    net::log_info("descriptor limit %lld: up to %lld segment files open per shard",
                  static_cast<long long>(descriptor_limit),
                  static_cast<long long>(_shard_segment_files));
    // A budget above the limit still works (a failed open evicts and retries), but then
    // connections compete with idle segments for the last descriptors.
    if (_shard_segment_files * static_cast<int64_t>(shards) > descriptor_limit)
        net::log_warn("segment_files_max exceeds the descriptor limit %lld",
                      static_cast<long long>(descriptor_limit));
    _store = std::make_unique<metadata_store>(_config.data_dir, shards, _config.partitions_max);
    // In a cluster the metadata comes from the controller; metadata.toml is a single
    // node's and stays untouched.
    const bool clustered = !_config.zookeeper_connect.empty();
    if (!clustered)
        if (auto loaded = _store->load(); !loaded) return loaded;
    // Data accepted under a higher limit is served; only new partitions are refused.
    if (const int64_t hosted = _store->snapshot()->hosted_replica_count();
        hosted > _config.partitions_max)
        net::log_warn("%lld partition replicas exceed partitions_max = %lld: new ones are refused",
                      static_cast<long long>(hosted),
                      static_cast<long long>(_config.partitions_max));
    auto imports = prepare_legacy_import(clustered);
    if (!imports) return imports.failure();

    net::shard_config net_config;
    net_config.listen_host = _config.listen_host;
    net_config.listen_port = _config.listen_port;
    net_config.request_bytes_max = _config.socket_request_max_bytes;
    net_config.connections_max = _config.connections_max;
    net_config.in_flight_requests_max = _config.queued_max_requests;
    net_config.connection_move_votes = _config.connection_move_requests;
    net_config.connections_per_ip_max = _config.max_connections_per_ip;
    net_config.idle_timeout = std::chrono::milliseconds(_config.connections_max_idle_ms);
    net_config.request_receive_timeout =
        std::chrono::milliseconds(_config.request_receive_timeout_ms);
    net_config.incomplete_request_bytes_max = _config.queued_max_request_bytes;
    net_config.pin_to_core = _config.pin_shards;
    net_config.loopback_congestion_control = _config.loopback_congestion_control;
    if (_config.metrics_enabled)
        net_config.http_listen =
            net::shard_config::endpoint{_config.metrics_host, _config.metrics_port};
    _states.resize(shards);
    snapshot_ptr initial = _store->snapshot();
    if (clustered) {  // empty until the controller's first UpdateMetadata, but a cluster's
        auto marked = std::make_shared<metadata_snapshot>(*initial);
        marked->clustered = true;
        initial = std::move(marked);
    } else {
        _serving.store(true, std::memory_order_release);
    }
    _runtime = std::make_unique<net::runtime>(
        shards, net_config,
        [this, imports = imports.value(), initial](net::shard& shard) -> net::connection_handler& {
            _states[shard.id()] = std::make_unique<shard_state>(*this, shard);
            // Partitions are opened here, before any shard thread runs or accepts: a
            // client reconnecting right after a restart finds them all.
            _states[shard.id()]->install_snapshot(initial);
            if (imports) imports->start(*_states[shard.id()]);
            return *_states[shard.id()];
        });
    if (auto started = _runtime->start(); !started) return started;
    for (net::shard_id s = 0; s < shards; ++s)
        _runtime->shard_at(s).post([this, s] { _states[s]->schedule_housekeeping(); });
    if (clustered) return start_cluster(shards);
    return {};
}

result<void> broker::start_cluster(uint32_t shards) {
    cluster::agent_config agent;
    agent.zookeeper_connect = _config.zookeeper_connect;
    agent.session_timeout_ms = _config.zookeeper_session_timeout_ms;
    agent.connect_timeout_ms = _config.zookeeper_connection_timeout_ms > 0
                                   ? _config.zookeeper_connection_timeout_ms
                                   : _config.zookeeper_session_timeout_ms;
    agent.node_id = _config.node_id;
    // Registered after the listeners are bound, so port 0 in tests registers the real one.
    agent.host = advertised_host();
    agent.port = advertised_port();
    if (!_config.rack.empty()) agent.rack = _config.rack;
    agent.shard_count = shards;
    agent.leader_imbalance_check_interval_seconds = _config.leader_imbalance_check_interval_seconds;
    _links = std::make_unique<cluster::broker_links>(_runtime->shard_at(0));
    agent.call_broker = [this](cluster::outgoing_call call) {
        _runtime->shard_at(0).post(
            [this, call = std::move(call)]() mutable { _links->call(std::move(call)); });
    };
    _agent = std::make_unique<cluster::cluster_agent>(
        agent, [this](std::shared_ptr<metadata_snapshot> next, std::function<void()> installed) {
            // From the agent's thread: shard 0 owns the store and spreads the snapshot.
            _runtime->shard_at(0).post(
                [this, next = std::move(next), installed = std::move(installed)]() mutable {
                    snapshot_ptr current = _store->replace(std::move(next));
                    _states[0]->install_everywhere(std::move(current), std::move(installed));
                });
        });
    _serving.store(true, std::memory_order_release);
    // Every shard follows the partitions it hosts and does not lead (replica_fetcher.h).
    for (net::shard_id s = 0; s < shards; ++s)
        _runtime->shard_at(s).post([this, s] { _states[s]->start_fetchers(); });
    if (auto started = _agent->start(); !started) {
        _agent.reset();
        stop();
        wait();
        return started;
    }
    return {};
}

void broker::stop() {
    // Leaderships move to other in-sync replicas first (controlled shutdown), then the
    // registration goes, so the controller moves on while the logs close.
    if (_agent) {
        if (!_agent->controlled_shutdown())
            net::log_warn("cluster: controlled shutdown incomplete; stopping anyway");
        _agent->stop();
    }
    if (!_runtime) return;
    // Each shard closes its logs cleanly on its own thread (storage/shutdown.h: logs
    // unchanged since a clean open write nothing, the others share two syncfs calls per
    // shard, the shards in parallel), then stops its loop once the sends in flight are out.
    for (net::shard_id s = 0; s < shard_count(); ++s) {
        _runtime->shard_at(s).post([this, s] {
            _states[s]->close_all();
            _runtime->shard_at(s).stop();
        });
    }
}

void broker::wait() {
    if (_runtime) _runtime->join();
}

uint16_t broker::bound_port() const { return _runtime ? _runtime->bound_port() : 0; }

std::string broker::advertised_host() const {
    return _config.advertised_host.empty() ? _config.listen_host : _config.advertised_host;
}

int32_t broker::advertised_port() const {
    return _config.advertised_port != 0 ? _config.advertised_port : bound_port();
}

}  // namespace spate::broker
