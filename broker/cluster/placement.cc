// Replica placement: Kafka's round robin with a growing shift, rack-aware when every
// broker names its rack.
#include "broker/cluster/placement.h"

#include <algorithm>
#include <set>

#include "proto/error_code.h"

namespace spate::broker::cluster {
namespace {

// The index of replica `k` (0 = the second replica) of a partition whose first replica
// is at `first`: the shift is never 0 mod n, so no replica lands on the first's broker.
size_t replica_index(size_t first, size_t shift, size_t k, size_t n) {
    const size_t step = 1 + (shift + k) % (n - 1);
    return (first + step) % n;
}

// Brokers interleaved rack by rack (racks in name order, brokers by id within a rack),
// so consecutive positions are on different racks while racks last.
std::vector<placement_broker> rack_alternated(const std::vector<placement_broker>& brokers) {
    std::map<std::string, std::vector<placement_broker>> by_rack;
    for (const placement_broker& b : brokers) by_rack[*b.rack].push_back(b);
    std::vector<placement_broker> out;
    for (size_t round = 0; out.size() < brokers.size(); ++round)
        for (auto& [rack, members] : by_rack)
            if (round < members.size()) out.push_back(members[round]);
    return out;
}

}  // namespace

result<std::map<int32_t, std::vector<int32_t>>> place_replicas(
    std::vector<placement_broker> brokers, const placement_request& request) {
    using placement = std::map<int32_t, std::vector<int32_t>>;
    if (request.partitions < 1)
        return error{static_cast<int>(proto::error_code::invalid_partitions),
                     "partition count must be at least 1"};
    if (request.replication_factor < 1 ||
        static_cast<size_t>(request.replication_factor) > brokers.size())
        return error{static_cast<int>(proto::error_code::invalid_replication_factor),
                     "replication factor " + std::to_string(request.replication_factor) + " with " +
                         std::to_string(brokers.size()) + " live brokers"};
    std::sort(brokers.begin(), brokers.end(),
              [](const placement_broker& a, const placement_broker& b) { return a.id < b.id; });
    const bool racks = std::all_of(brokers.begin(), brokers.end(),
                                   [](const placement_broker& b) { return b.rack.has_value(); });
    if (racks) brokers = rack_alternated(brokers);
    std::set<std::string> all_racks;
    if (racks)
        for (const placement_broker& b : brokers) all_racks.insert(*b.rack);
    const size_t n = brokers.size();
    const size_t rack_count = std::max<size_t>(all_racks.size(), 1);
    size_t shift = static_cast<size_t>(std::max(request.shift, 0));
    placement out;
    for (int32_t i = 0; i < request.partitions; ++i) {
        const auto p = static_cast<size_t>(request.first_partition + i);
        if (p > 0 && p % n == 0) ++shift;
        const size_t first = (p + static_cast<size_t>(std::max(request.start_index, 0))) % n;
        std::vector<int32_t> replicas{brokers[first].id};
        std::set<std::string> used_racks;
        if (racks) used_racks.insert(*brokers[first].rack);
        // Rack-aware: the shift moves by whole rounds of racks, and a candidate is skipped
        // while its rack (or itself) is used and an unused one remains.
        const size_t effective_shift = racks ? shift * rack_count : shift;
        for (size_t k = 0; replicas.size() < static_cast<size_t>(request.replication_factor); ++k) {
            const placement_broker& candidate =
                brokers[replica_index(first, effective_shift, k, n)];
            const bool broker_used =
                std::find(replicas.begin(), replicas.end(), candidate.id) != replicas.end();
            const bool rack_used = racks && used_racks.count(*candidate.rack) != 0 &&
                                   used_racks.size() < all_racks.size();
            if (broker_used || rack_used) continue;
            replicas.push_back(candidate.id);
            if (racks) used_racks.insert(*candidate.rack);
        }
        out[static_cast<int32_t>(p)] = std::move(replicas);
    }
    return out;
}

}  // namespace spate::broker::cluster
