#pragma once
// Kafka's error codes: the values spate sends or that clients may send back.
// Defined once here; the numbers are the protocol's, the comments say when spate uses them.

#include <cstdint>

namespace spate::proto {

enum class error_code : int16_t {
    unknown_server_error = -1,  // an unexpected failure (e.g. EIO) in the broker
    none = 0,
    offset_out_of_range = 1,         // fetch offset outside [log start, log end]
    corrupt_message = 2,             // record batch CRC mismatch
    unknown_topic_or_partition = 3,  // topic or partition does not exist
    invalid_fetch_size = 4,
    leader_not_available = 5,
    not_leader_or_follower = 6,
    request_timed_out = 7,
    broker_not_available = 8,
    replica_not_available = 9,
    message_too_large = 10,       // batch larger than max.message.bytes
    stale_controller_epoch = 11,  // a controller request from an older controller
    offset_metadata_too_large = 12,
    network_exception = 13,
    coordinator_load_in_progress = 14,
    coordinator_not_available = 15,
    not_coordinator = 16,
    invalid_topic_exception = 17,  // bad topic name
    record_list_too_large = 18,
    not_enough_replicas = 19,
    not_enough_replicas_after_append = 20,
    invalid_required_acks = 21,  // acks not in {-1, 0, 1}
    illegal_generation = 22,
    inconsistent_group_protocol = 23,
    invalid_group_id = 24,
    unknown_member_id = 25,
    invalid_session_timeout = 26,
    rebalance_in_progress = 27,
    invalid_commit_offset_size = 28,
    topic_authorization_failed = 29,
    group_authorization_failed = 30,
    cluster_authorization_failed = 31,
    invalid_timestamp = 32,
    unsupported_sasl_mechanism = 33,
    illegal_sasl_state = 34,
    unsupported_version = 35,  // API version outside the advertised range
    topic_already_exists = 36,
    invalid_partitions = 37,          // partition count < 1 or not an increase
    invalid_replication_factor = 38,  // anything but 1 (or -1 = default) on a single node
    invalid_replica_assignment = 39,
    invalid_config = 40,  // unknown or bad topic config
    not_controller = 41,
    invalid_request = 42,                 // malformed or inconsistent request
    unsupported_for_message_format = 43,  // legacy message sets (magic 0/1)
    policy_violation = 44,
    out_of_order_sequence_number = 45,  // idempotent producer sequence gap
    duplicate_sequence_number = 46,
    invalid_producer_epoch = 47,  // fenced producer epoch
    invalid_txn_state = 48,
    invalid_producer_id_mapping = 49,
    invalid_transaction_timeout = 50,
    concurrent_transactions = 51,
    transaction_coordinator_fenced = 52,
    transactional_id_authorization_failed = 53,
    security_disabled = 54,
    operation_not_attempted = 55,
    kafka_storage_error = 56,  // the log could not be written
    log_dir_not_found = 57,
    sasl_authentication_failed = 58,
    unknown_producer_id = 59,
    reassignment_in_progress = 60,
    delegation_token_auth_disabled = 61,
    invalid_record = 87,  // batch fails validation (count, offsets)
    non_empty_group = 68,
    group_id_not_found = 69,
    fetch_session_id_not_found = 70,
    invalid_fetch_session_epoch = 71,
    fenced_leader_epoch = 74,   // a request's leader epoch is older than the replica's
    unknown_leader_epoch = 75,  // a request's leader epoch is newer than the replica's
    stale_broker_epoch = 77,    // a controller request for an earlier registration
    member_id_required = 79,
    preferred_leader_not_available = 80,  // ElectLeaders: the preferred replica cannot lead
    eligible_leaders_not_available = 83,  // ElectLeaders: no replica may lead
    election_not_needed = 84,             // ElectLeaders: already led as asked
    no_reassignment_in_progress = 85,     // a cancel for a partition that is not moving
    group_max_size_reached = 81,          // a join beyond the group's member limit
    fenced_instance_id = 82,
    group_subscribed_to_topic = 86,
    unstable_offset_commit = 88,
    invalid_update_version = 95,  // AlterPartition based on an older partition state
    unknown_topic_id = 100,
    inconsistent_topic_id = 103,
    fetch_session_topic_id_error = 106,
    ineligible_replica = 107,  // AlterPartition adding a replica that cannot join the ISR
};

// Kafka's upper-case name of a code, e.g. "UNKNOWN_TOPIC_OR_PARTITION" (for messages).
const char* error_name(error_code code);
inline const char* error_name(int16_t code) { return error_name(static_cast<error_code>(code)); }
inline int16_t code(error_code value) { return static_cast<int16_t>(value); }

}  // namespace spate::proto
