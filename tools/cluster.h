#pragma once
// cluster: what a spatectl command knows about the brokers it talks to. It owns the
// bootstrap connection (for admin requests and metadata) and lazily opens one blocking
// connection per leader that a produce or fetch must reach. Owned by one command on
// spatectl's single thread.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"
#include "tools/args.h"
#include "tools/connection.h"

namespace spate::tools {

struct partition_layout {
    int32_t partition = 0;
    int32_t leader = -1;
    int16_t error_code = 0;
    std::vector<int32_t> replicas;
    std::vector<int32_t> isr;
};

struct topic_layout {
    std::string name;
    proto::uuid topic_id;
    std::vector<partition_layout> partitions;  // sorted by partition
};

class cluster {
public:
    static result<cluster> connect(const global_options& global);

    broker_connection& bootstrap() { return *_bootstrap; }
    int32_t timeout_ms() const { return _timeout_ms; }

    // Metadata for the named topics (all topics when `names` is empty). Refreshes the
    // broker address book. A topic the broker reports with an error is returned with
    // that error rather than failing the whole call.
    result<std::vector<std::pair<int16_t, topic_layout>>> metadata(
        const std::vector<std::string>& names);
    // One topic that must exist: errors name the topic and the Kafka error.
    result<topic_layout> topic(const std::string& name);

    // A connection to the cluster's controller (as the bootstrap broker names it), where
    // admin clients send reassignments.
    result<broker_connection*> controller();
    // A connection to broker `node_id` (the bootstrap one when it is that broker).
    result<broker_connection*> leader(int32_t node_id);
    std::optional<endpoint> address_of(int32_t node_id) const;

private:
    cluster(broker_connection bootstrap, int32_t timeout_ms);

    std::unique_ptr<broker_connection> _bootstrap;
    int32_t _timeout_ms;
    std::map<int32_t, endpoint> _brokers;
    std::map<int32_t, std::unique_ptr<broker_connection>> _leaders;
};

}  // namespace spate::tools
