// libFuzzer target: a znode's content as any ZooKeeper client could have written it.
// Every decoder of Kafka's znode JSON (broker/cluster/znodes.h) must accept or refuse
// it cleanly: no crash, no sanitizer report, no exception escaping.
#include <cstddef>
#include <cstdint>
#include <string>

#include "broker/cluster/znodes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace spate::broker::cluster;
    const std::string text(reinterpret_cast<const char*>(data), size);
    (void)decode_broker(1, text);
    if (auto topic = decode_topic(text); topic) {
        // What decodes must encode to something that decodes the same.
        auto again = decode_topic(encode_topic(*topic));
        if (!again || again->partitions != topic->partitions) __builtin_trap();
    }
    (void)decode_partition_state(text);
    (void)decode_controller(text);
    (void)decode_cluster_id(text);
    (void)decode_topic_config(text);
    (void)decode_config_change(text);
    (void)decode_producer_id_block(text);
    (void)decode_reassign_partitions(text);
    (void)uuid_from_base64(text);
    return 0;
}
