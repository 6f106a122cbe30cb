#pragma once
// broker_config: every start-up setting of the broker, from the TOML file and the
// command line (flags win). Parsed once in main(), then read-only and copied to
// every shard: there is no mutable global configuration.
//
// The documented, commented example of every key is broker/spate.example.toml.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"
#include "storage/log.h"

namespace spate::broker {

// Policy for acknowledging acks=all (and acks=1) produce requests on a single node.
enum class ack_policy : uint8_t {
    page_cache,  // acknowledge once the write is in the page cache (Kafka's default)
    fsync,       // group commit: acknowledge after fdatasync of the written batches
};

struct broker_config {
    std::string listen_host = "127.0.0.1";
    uint16_t listen_port = 9092;
    std::string advertised_host;   // empty: same as listen_host
    uint16_t advertised_port = 0;  // 0: same as listen_port
    // The HTTP listener for /metrics and /health (broker/metrics/endpoint.h): host:port,
    // off when empty. Per-partition samples can be left out for brokers with many.
    bool metrics_enabled = false;
    std::string metrics_host;
    uint16_t metrics_port = 0;
    bool metrics_partition_labels = true;
    std::string data_dir = "./data";
    uint32_t shards = 0;     // 0: one per online core
    bool pin_shards = true;  // pin shard i to core i (see spate.example.toml for when not to)
    int32_t node_id = 0;
    std::string cluster_id = "spate-single-node";  // a cluster's comes from ZooKeeper
    // A cluster on ZooKeeper (CLUSTER.md): "host:port[,host:port…][/chroot]"; empty (the
    // default) is a single node that needs nothing but its data directory.
    std::string zookeeper_connect;
    // Kafka's zookeeper.session.timeout.ms (2.8's default): a broker silent this long is
    // gone, its registration removed and its leaderships moved.
    int32_t zookeeper_session_timeout_ms = 18000;
    // How long start-up waits for ZooKeeper; 0: the session timeout.
    int32_t zookeeper_connection_timeout_ms = 0;
    // Kafka's broker.rack: replicas of a partition go to different racks when every broker
    // names one. Empty: none.
    std::string rack;
    // Kafka's replica.lag.time.max.ms: a follower not caught up with its leader for this
    // long leaves the partition's ISR (and joins it again once it catches up).
    int32_t replica_lag_time_max_ms = 30000;
    // Kafka's leader.imbalance.check.interval.seconds: how often the controller gives
    // leadership back to preferred replicas that are live and in sync; 0 never does.
    int32_t leader_imbalance_check_interval_seconds = 300;
    // Kafka's default.replication.factor: topics created without one (auto-creation,
    // CreateTopics with -1) get this many replicas, capped by the live brokers.
    int32_t default_replication_factor = 1;
    // Kafka's min.insync.replicas broker default (a topic's config overrides it): acks=all
    // needs this many in-sync replicas.
    int32_t min_insync_replicas = 1;

    bool auto_create_topics_enable = true;
    int32_t num_partitions = 1;
    // The partition replicas the whole broker may host (broker/metadata.h counts them).
    // CreateTopics, CreatePartitions and auto-creation beyond it are refused with
    // POLICY_VIOLATION. 10,000 because each busy partition wants its active segment's
    // descriptor, and a host with the common 20,000-descriptor limit gets a budget of
    // 10,000 of them (half, see segment_files_max); idle partitions cost about 2.3 KB of
    // memory each, so memory allows far more, and the limit may be raised with the
    // descriptor limit.
    int64_t partitions_max = 10000;
    // Segment descriptors the shards keep open together (storage/fd_cache.h), shared
    // evenly; the least recently used is closed beyond it and reopened on demand. 0: half
    // the descriptor limit (RLIMIT_NOFILE after main raised it), at least
    // segment_files_per_shard_min per shard, leaving the other half to connections,
    // pipes and short-lived files.
    int64_t segment_files_max = 0;
    // A segment file unused for this long is closed (and reopened on its next use), so
    // idle partitions hold no descriptor even below the budget. Checked every second.
    int64_t segment_files_idle_ms = 60000;
    int32_t message_max_bytes = 1048588;  // Kafka's default: 1 MiB + 12
    uint32_t socket_request_max_bytes = 100u << 20;
    // A Fetch answer to a peer on this host's loopback, on a socket paced by bbr, carries at
    // most this many bytes of log (the first batch always goes; 0: only the 55 MiB every
    // answer has). Measured here: answers past ~4 MiB left at bbr's paced rate, halving a
    // consumer's and costing more broker cpu; see the README.
    int32_t loopback_fetch_max_bytes = 3 << 20;
    // The TCP congestion control of connections accepted from this host's loopback
    // (net::shard_config::loopback_congestion_control); empty: the system's. A name this
    // process may not take fails validate(). For hosts whose congestion control paces
    // (bbr) and whose local clients matter: bbr paces loopback flows too, which here cost
    // as much broker cpu as the bytes sent to a local consumer (README, Benchmarks).
    std::string loopback_congestion_control;
    uint32_t connections_max = 10000;    // for the whole broker, all shards together
    uint32_t queued_max_requests = 500;  // per connection, as in-flight limit
    // A connection moves to the shard owning the partitions of this many requests in a row
    // (net/shard.h, note_owner); 0 never moves one. A moved connection reads again only
    // once the new shard has the metadata snapshot the old one answered it with
    // (net::shard::set_routing_epoch): snapshots are installed shard after shard, and an
    // older one could refuse a produce after a newer one accepted a later one.
    uint32_t connection_move_requests = 16;
    // Connection hygiene (net/shard.h's shard_config says how each is enforced). Kafka's
    // max.connections.per.ip, 0 for no limit; Kafka's default is unlimited, ours a tenth of
    // connections_max, so one address cannot take every slot.
    uint32_t max_connections_per_ip = 1000;
    // Kafka's connections.max.idle.ms (and its default): silent connections are closed.
    int64_t connections_max_idle_ms = 600000;
    // A request frame must arrive whole within this long of its first byte.
    int64_t request_receive_timeout_ms = 30000;
    // Kafka's queued.max.request.bytes idea, for frames still being received: bytes all
    // shards together reserve for them before reading pauses. 512 MiB.
    uint64_t queued_max_request_bytes = uint64_t{512} << 20;
    ack_policy acks_all_policy = ack_policy::page_cache;
    // `[log] tail_padding` (storage/segment.h), which the topics' log configs take (see
    // broker_defaults in broker/topic_config.cc; log.tail_padding above is not read). Unset:
    // on, except under acks_all_policy = "fsync", where the sync after a padding append
    // writes its zeros too, which lengthened the tail of acks=all latency.
    std::optional<bool> tail_padding;
    // Kafka's group.initial.rebalance.delay.ms: the first rebalance of an empty group
    // waits this long for more members to arrive.
    int32_t group_initial_rebalance_delay_ms = 3000;
    // Kafka's max.incremental.fetch.session.cache.slots: fetch sessions (KIP-227) the
    // broker keeps, shared out evenly among the shards; 0 turns sessions off.
    uint32_t max_incremental_fetch_session_cache_slots = 1000;
    // Kafka's min.incremental.fetch.session.eviction.ms: a session younger than this is
    // evicted only for a follower's, and one unused for this long goes first.
    int64_t min_incremental_fetch_session_eviction_ms = 120000;
    // Kafka's offsets.retention.minutes: committed offsets of an empty group expire.
    int64_t offsets_retention_minutes = 10080;
    // The internal topic __consumer_offsets, created on first use (Kafka's
    // offsets.topic.num.partitions and offsets.topic.replication.factor; a single node
    // uses replication factor 1).
    int32_t offsets_topic_num_partitions = 50;
    int16_t offsets_topic_replication_factor = 3;
    // Kafka's offsets.commit.timeout.ms: how long a commit waits for its replicas.
    int32_t offsets_commit_timeout_ms = 5000;
    storage::log_config log;  // broker defaults for topic configs
};

// Parses argv (and the TOML file named by --config, if any). Errors name the key or flag.
// `--help` and `--version` are reported through `exit_now` with the text to print.
struct parsed_command_line {
    broker_config config;
    bool exit_now = false;
    std::string exit_text;
};
result<parsed_command_line> parse_command_line(int argc, char** argv);
result<void> apply_toml_file(const std::string& path, broker_config& config);
result<void> apply_toml_text(const std::string& text, const std::string& origin,
                             broker_config& config);
result<void> validate(const broker_config& config);

// A shard never works with fewer cached segment descriptors than this, whatever the
// descriptor limit: below it every fetch of a few partitions would reopen files.
constexpr int64_t segment_files_per_shard_min = 16;
// The per-shard budget of cached segment descriptors that segment_files_max (0: derived
// from `descriptor_limit`) gives each of `shards` shards.
int64_t segment_files_per_shard(const broker_config& config, int64_t descriptor_limit,
                                uint32_t shards);

}  // namespace spate::broker
