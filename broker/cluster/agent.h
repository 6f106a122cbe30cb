#pragma once
// cluster_agent: a broker's part in a cluster on ZooKeeper (CLUSTER.md).
//
// Every broker has one when zookeeper_connect is set. It holds the ZooKeeper session,
// registers the broker (/brokers/ids/<id>, ephemeral), creates or reads /cluster/id,
// runs for controller (/controller), applies what the controller sends (UpdateMetadata,
// LeaderAndIsr, StopReplica) by publishing a new metadata snapshot to the shards, and
// writes the znodes of admin requests (CreateTopics, DeleteTopics, CreatePartitions,
// IncrementalAlterConfigs) as Kafka's AdminZkClient does. The broker elected controller
// also runs the controller (controller.cc): replica placement, leader election, partition
// state nodes, and the controller's requests to every broker.
//
// Threads: one thread of its own runs everything above, one task at a time, so none of
// it needs a lock; ZooKeeper's callbacks and the shards reach it only through submit().
// Results reach shards as tasks posted to them. Lives from broker::start to broker::stop.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "broker/cluster/broker_client.h"
#include "broker/cluster/zk_session.h"
#include "broker/cluster/znodes.h"
#include "broker/metadata.h"
#include "proto/messages.h"

namespace spate::broker::cluster {

struct agent_config {
    std::string zookeeper_connect;
    int32_t session_timeout_ms = 18000;
    int32_t connect_timeout_ms = 18000;
    int32_t node_id = 0;
    std::string host;  // advertised
    int32_t port = 0;
    std::optional<std::string> rack;
    uint32_t shard_count = 1;
    // How long a controller request to a broker may take before the controller gives up
    // on it for now (and resends everything to that broker a second later).
    int32_t request_timeout_ms = 5000;
    // Kafka's leader.imbalance.check.interval.seconds: how often the controller moves
    // leadership back to preferred replicas (auto.leader.rebalance.enable); 0: never.
    int32_t leader_imbalance_check_interval_seconds = 300;
    // Hands a controller request to shard 0's ring (broker_links.h); any thread.
    std::function<void(outgoing_call)> call_broker;
};

// A leader's proposal to change a partition's ISR (AlterPartition), fenced by the leader
// epoch and partition epoch it is based on.
struct isr_change {
    std::string topic;
    int32_t index = 0;
    int32_t leader_epoch = 0;
    int32_t partition_epoch = 0;
    std::vector<int32_t> isr;
};

// Publishes a snapshot to every shard and calls `installed` (on some shard) once each
// shard has it. Given by the broker; callable from the agent's thread.
using snapshot_publisher =
    std::function<void(std::shared_ptr<metadata_snapshot>, std::function<void()> installed)>;

// An admin request's outcome: a Kafka error code and its message (none = success).
struct admin_outcome {
    proto::error_code code = proto::error_code::none;
    std::string message;
};

// The registered brokers, by id, with their epochs (czxid), read from ZooKeeper; `watch`
// re-arms the watch on /brokers/ids. A registration that cannot be decoded is skipped
// with a warning, one that vanished meanwhile silently.
result<std::map<int32_t, broker_registration>> read_registrations(zk_session& session, bool watch);

class cluster_agent {
public:
    cluster_agent(agent_config config, snapshot_publisher publish);
    ~cluster_agent();

    // Connects to ZooKeeper, reads or creates the cluster id and registers this broker,
    // then starts the agent's thread (which runs for controller). Errors name the
    // ZooKeeper address or the broker id already registered by another live broker.
    result<void> start();
    // Closes the session (the registration vanishes at once) and joins the thread.
    void stop();

    // Any thread: runs `work` on the agent's thread, in submission order.
    void submit(std::function<void()> work);

    // ---- on the agent's thread ----------------------------------------------------
    // The controller's requests, as a broker receives them; `done` gets the answer once
    // the resulting snapshot is installed on every shard (called on some shard's thread).
    void apply_update_metadata(const proto::update_metadata_request& request,
                               std::function<void(proto::update_metadata_response)> done);
    void apply_leader_and_isr(const proto::leader_and_isr_request& request,
                              std::function<void(proto::leader_and_isr_response)> done);
    void apply_stop_replica(const proto::stop_replica_request& request,
                            std::function<void(proto::stop_replica_response)> done);
    // The controller's side of AlterPartition (isr_changes.cc): validates each change
    // against the partition's state, writes it, answers, then tells every broker.
    void apply_alter_partition(const proto::alter_partition_request& request,
                               std::function<void(proto::alter_partition_response)> done);
    // A leader's side: sends `change` to the controller without waiting for it (the
    // controller may be waiting for this agent); `done` runs once the answer is applied
    // (the new ISR published to the shards) or the change failed, on some thread.
    void alter_partition(const isr_change& change, std::function<void()> done);
    // ControlledShutdown (controlled_shutdown.cc): the controller's side, and the stopping
    // broker's (any thread; waits for the agent, bounded; true once nothing is led here).
    void apply_controlled_shutdown(const proto::controlled_shutdown_request& request,
                                   std::function<void(proto::controlled_shutdown_response)> done);
    bool controlled_shutdown();
    // ElectLeaders (elections.cc), on the controller.
    void apply_elect_leaders(const proto::elect_leaders_request& request,
                             std::function<void(proto::elect_leaders_response)> done);

    // AlterPartitionReassignments and ListPartitionReassignments (reassignment.cc), on
    // the controller.
    void apply_alter_partition_reassignments(
        const proto::alter_partition_reassignments_request& request,
        std::function<void(proto::alter_partition_reassignments_response)> done);
    void apply_list_partition_reassignments(
        const proto::list_partition_reassignments_request& request,
        std::function<void(proto::list_partition_reassignments_response)> done);

    // Admin requests: the znodes are written here, the controller does the rest.
    // `replicas` empty: placed over the live brokers with `replication_factor`.
    admin_outcome create_topic(const std::string& name, int32_t partitions,
                               int32_t replication_factor,
                               const std::map<int32_t, std::vector<int32_t>>& replicas,
                               const topic_configs& configs, bool validate_only);
    admin_outcome delete_topic(const std::string& name);
    // `assignments` empty: the new partitions are placed like the topic's first ones.
    admin_outcome add_partitions(const std::string& name, int32_t total_partitions,
                                 const std::vector<std::vector<int32_t>>& assignments,
                                 bool validate_only);
    // Applies SET (a value) and DELETE (nullopt) to the topic's config node, notifies
    // every broker (/config/changes), and stores the resulting overrides in `result`.
    using config_changes = std::vector<std::pair<std::string, std::optional<std::string>>>;
    admin_outcome alter_topic_configs(const std::string& name, const config_changes& changes,
                                      topic_configs& result);

    // A producer id unique in the cluster: from this broker's block of 1000, a new block
    // taken from /latest_producer_id_block by conditional write when it runs out.
    result<int64_t> next_producer_id();

    const std::string& cluster_id() const { return _cluster_id; }
    int32_t node_id() const { return _config.node_id; }

private:
    // Thread and events.
    void run();
    void on_zk_event(const zk_event& event);
    void handle_event(const zk_event& event);
    // Session: registration and the election (every broker).
    result<void> open_session();
    result<void> register_broker();
    void renew_session();
    void elect();
    // Re-reads the configs of the topics named by config change notifications newer than
    // the last seen (all topics the first time), re-arming the watch.
    void refresh_topic_configs();
    bool read_topic_config(const std::string& name);
    // What this broker knows, published to the shards as one snapshot.
    void publish(std::function<void()> installed = {});
    bool stale(int32_t controller_epoch, int64_t broker_epoch, proto::error_code& code);
    // Answers a controller request from an older controller or for an older registration
    // with its error (STALE_CONTROLLER_EPOCH, STALE_BROKER_EPOCH); true when it did.
    template <class Response, class Request>
    bool refuse_stale(const Request& request, const std::function<void(Response)>& done) {
        proto::error_code code = proto::error_code::none;
        if (!stale(request.controller_epoch, request.broker_epoch, code)) return false;
        Response response;
        response.error_code = proto::code(code);
        done(response);
        return true;
    }

    // ---- controller (controller.cc) ----------------------------------------------
    struct controlled_topic {
        topic_assignment assignment;
        int32_t zk_version = 0;
        std::map<int32_t, partition_state> states;
    };
    void become_controller(int32_t epoch, int32_t epoch_zk_version);
    void resign();
    bool is_controller() const { return _controller_epoch_zk_version >= 0; }
    // Fenced writes: every controller write begins with a version check of
    // /controller_epoch, so a controller that lost its session cannot write.
    result<void> fenced(std::vector<zk_op> ops);
    void read_brokers();
    void read_topics();
    bool read_topic(const std::string& name);
    void on_brokers_changed();
    void on_topics_changed();
    void on_topic_changed(const std::string& name);
    void on_delete_topics();
    // Elects leaders where the assignment has no state or the leader is gone, and drops
    // dead followers from ISRs; returns the partitions whose state changed.
    std::vector<std::pair<std::string, int32_t>> reconcile(const std::string& name);
    std::vector<std::pair<std::string, int32_t>> reconcile_all();
    bool unclean_election_enabled(const std::string& name) const;
    // Moves leadership back to each partition's preferred (first) replica where it is
    // live and in the ISR (`only`: just these partitions); returns what changed.
    std::vector<std::pair<std::string, int32_t>> elect_preferred_leaders(
        const std::set<std::pair<std::string, int32_t>>* only = nullptr);
    std::chrono::steady_clock::time_point _next_preferred_election{};
    // Elects any live replica of the partitions in `only` that have no leader.
    std::vector<std::pair<std::string, int32_t>> elect_unclean_leaders(
        const std::set<std::pair<std::string, int32_t>>& only);
    // Partition reassignment (reassignment.cc, KIP-455). The state lives in the topic
    // znodes (adding/removing replicas), so a new controller carries on from there.
    // Starts moving a partition to `target` (nullopt: cancels, back to the original).
    admin_outcome reassign(const std::string& name, int32_t index,
                           const std::optional<std::vector<int32_t>>& target);
    // Finishes the partition's reassignment once every target replica is in the ISR.
    void finish_reassignment_when_in_sync(const std::string& name, int32_t index);
    // /admin/reassign_partitions (Kafka's ZooKeeper tool): started, then deleted.
    void on_reassign_partitions();
    // A new controller: reassignments found in the znodes go on.
    void resume_reassignments();
    admin_outcome write_replicas(const std::string& name, int32_t index,
                                 const std::vector<int32_t>& replicas,
                                 const std::vector<int32_t>& adding,
                                 const std::vector<int32_t>& removing);
    void send_stop_replica_delete(const std::string& name, int32_t index,
                                  const std::vector<int32_t>& brokers);
    // Requests to brokers: to itself they are applied directly, to others sent.
    // False when nothing was sent (no partitions, or the broker is not live); `answered`
    // runs on the agent's thread once the broker answered or the request failed.
    bool send_leader_and_isr(int32_t broker_id,
                             const std::vector<std::pair<std::string, int32_t>>& partitions,
                             std::function<void()> answered = nullptr);
    // Held back while new leaders have not answered the LeaderAndIsr of what they lead
    // (tell_leaders_first): send_held_requests sends it with the replicas' LeaderAndIsr once
    // they have, release_held_update_metadata after update_metadata_hold_max regardless.
    // send_full_state holds its broker's state meanwhile too.
    void send_update_metadata_to_all();
    void tell_leaders_first(const std::vector<std::pair<std::string, int32_t>>& changed);
    void send_held_requests();
    void release_held_update_metadata();
    std::vector<std::pair<std::string, int32_t>> hosted_by(int32_t broker_id) const;
    void send_partition_changes(const std::vector<std::pair<std::string, int32_t>>& changed,
                                bool leaders_first = true);
    void send_full_state(int32_t broker_id);
    proto::update_metadata_request build_update_metadata() const;
    // Sends a controller request to `broker_id` (applied directly when it is this broker);
    // a broker that did not take it is sent everything again a second later.
    template <class Response, class Request>
    void deliver(int32_t broker_id, const Request& request, int16_t version, const char* name,
                 void (cluster_agent::*apply)(const Request&, std::function<void(Response)>),
                 std::function<void()> answered = nullptr);
    broker_client& client_of(int32_t broker_id);
    void retry_failed_brokers();
    void rebalance_leaders_when_due();

    agent_config _config;
    snapshot_publisher _publish;
    std::unique_ptr<zk_session> _session;
    std::string _cluster_id;
    int64_t _broker_epoch = -1;  // czxid of our registration

    std::thread _thread;
    std::mutex _mutex;
    std::condition_variable _wake;
    std::deque<std::function<void()>> _tasks;
    bool _stopping = false;
    std::chrono::steady_clock::time_point _next_tick{};

    int64_t _producer_id_next = 0;
    int64_t _producer_id_end = -1;  // inclusive; next > end: no block held

    // What the controller last told this broker.
    int32_t _latest_controller_epoch = 0;
    int32_t _controller_id = -1;
    std::vector<cluster_broker> _brokers;
    struct known_topic {
        proto::uuid id{};
        std::vector<partition_replicas> partitions;
        std::set<int32_t> led;       // partitions this broker leads (LeaderAndIsr)
        std::set<int32_t> followed;  // partitions this broker follows (LeaderAndIsr)
    };
    std::map<std::string, known_topic> _topics;
    std::map<std::string, topic_configs> _topic_configs;
    std::string _last_config_change;  // the newest notification read ("" before the first)
    // Topics deleted (StopReplica with delete) since the last publish: their data goes.
    std::set<std::string> _deleting;
    // Partitions moved off this broker (StopReplica with delete) since the last publish.
    std::set<std::pair<std::string, int32_t>> _deleting_partitions;

    // The controller's state, when this broker is the controller.
    int32_t _controller_epoch = 0;
    int32_t _controller_epoch_zk_version = -1;  // -1: not the controller
    std::map<int32_t, broker_registration> _live;
    std::map<std::string, controlled_topic> _controlled;
    std::map<int32_t, std::unique_ptr<broker_client>> _clients;
    // This broker's client of the controller (AlterPartition), re-made when it moves.
    std::unique_ptr<broker_client> _controller_client;
    void applied_alter_partition(const proto::alter_partition_response& response,
                                 std::function<void()> done);
    std::set<int32_t> _needs_full_state;
    std::map<int32_t, int> _requests_in_flight;  // controller requests sent, not yet answered
    // The replicas' LeaderAndIsr and everyone's UpdateMetadata wait for the answers of new
    // leaders (tell_leaders_first): how many are awaited, in which round (a round given up on
    // ignores late answers), the partitions held per broker, the brokers whose whole state is
    // held, and whether (since when) requests are held back for them.
    static constexpr std::chrono::milliseconds update_metadata_hold_max{1000};
    int _leader_answers_awaited = 0;
    uint64_t _leader_answers_generation = 0;
    std::map<int32_t, std::vector<std::pair<std::string, int32_t>>> _held_leader_and_isr;
    std::set<int32_t> _held_full_state;
    bool _update_metadata_held = false;
    std::chrono::steady_clock::time_point _update_metadata_held_since{};
    // Brokers in controlled shutdown: never elected until they register again.
    std::set<int32_t> _shutting_down;
};

}  // namespace spate::broker::cluster
