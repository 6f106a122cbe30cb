#pragma once
// Replica placement for new topics and new partitions: Kafka's spread, so leaders (the
// first replica of each partition) are balanced over the brokers and the followers of
// one broker's leaders are spread over the others.
//
// Without racks: partition p's first replica is broker (start + p) mod n; its other
// replicas follow at a shift that grows by one every n partitions. With a rack on every
// broker: the brokers are first interleaved rack by rack, and a replica is placed on a
// broker of a rack (and a broker) the partition does not use yet while one is left.
// Pure functions; the randomness (start index and shift) comes in as arguments.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"

namespace spate::broker::cluster {

struct placement_broker {
    int32_t id = -1;
    std::optional<std::string> rack;
};

struct placement_request {
    int32_t partitions = 1;
    int32_t replication_factor = 1;
    int32_t first_partition = 0;  // CreatePartitions numbers new partitions after the old
    // Kafka draws both at random per topic; tests pin them.
    int32_t start_index = 0;
    int32_t shift = 0;
};

// Partition index -> replicas. Errors: INVALID_REPLICATION_FACTOR (factor < 1 or above
// the live brokers), INVALID_PARTITIONS; both say what was asked and what is available.
result<std::map<int32_t, std::vector<int32_t>>> place_replicas(
    std::vector<placement_broker> brokers, const placement_request& request);

}  // namespace spate::broker::cluster
