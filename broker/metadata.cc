// metadata_store: the single node's topic table, persisted as TOML.
#include "broker/metadata.h"

#include <fcntl.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "proto/error_code.h"
#include "storage/file.h"

namespace spate::broker {

bool valid_topic_name(const std::string& name) {
    if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

proto::uuid random_uuid() {
    static thread_local std::mt19937_64 generator{std::random_device{}()};
    proto::uuid id;
    do {
        for (size_t i = 0; i < id.bytes.size(); i += 8) {
            uint64_t word = generator();
            std::memcpy(id.bytes.data() + i, &word, 8);
        }
        id.bytes[6] = static_cast<uint8_t>((id.bytes[6] & 0x0f) | 0x40);  // version 4
        id.bytes[8] = static_cast<uint8_t>((id.bytes[8] & 0x3f) | 0x80);  // variant 1
    } while (id.is_zero());
    return id;
}

std::string uuid_to_string(const proto::uuid& id) {
    static const char* digits = "0123456789abcdef";
    std::string text;
    for (uint8_t b : id.bytes) {
        text.push_back(digits[b >> 4]);
        text.push_back(digits[b & 15]);
    }
    return text;
}

std::optional<proto::uuid> uuid_from_string(const std::string& text) {
    if (text.size() != 32) return std::nullopt;
    proto::uuid id;
    for (size_t i = 0; i < 16; ++i) {
        unsigned value = 0;
        for (size_t j = 0; j < 2; ++j) {
            const char c = text[2 * i + j];
            value <<= 4;
            if (c >= '0' && c <= '9')
                value |= static_cast<unsigned>(c - '0');
            else if (c >= 'a' && c <= 'f')
                value |= static_cast<unsigned>(c - 'a' + 10);
            else
                return std::nullopt;
        }
        id.bytes[i] = static_cast<uint8_t>(value);
    }
    return id;
}

int64_t metadata_snapshot::hosted_replica_count() const {
    int64_t count = 0;
    for (const auto& [name, topic] : topics) {
        if (!clustered) {
            count += topic->partition_count();
            continue;
        }
        for (uint32_t shard : topic->hosted_shards) count += shard != not_hosted ? 1 : 0;
    }
    return count;
}

result<void> check_partitions_max(const metadata_snapshot& current, int64_t adding,
                                  int64_t partitions_max) {
    SPATE_ASSERT(adding >= 0, "a request adds partition replicas, never removes them");
    const int64_t hosted = current.hosted_replica_count();
    if (adding <= partitions_max - hosted) return {};
    return error{proto::code(proto::error_code::policy_violation),
                 "the broker hosts " + std::to_string(hosted) + " partition replicas and " +
                     std::to_string(adding) + " more would exceed partitions_max = " +
                     std::to_string(partitions_max) + " (a broker setting)"};
}

metadata_store::metadata_store(std::string data_dir, uint32_t shard_count, int64_t partitions_max)
    : _data_dir(std::move(data_dir)),
      _shard_count(shard_count),
      _partitions_max(partitions_max),
      _current(std::make_shared<metadata_snapshot>()) {}

snapshot_ptr metadata_store::replace(std::shared_ptr<metadata_snapshot> next) {
    next->version = _current->version + 1;
    next->index_ids();
    _current = std::move(next);
    return _current;
}

uint32_t metadata_store::owner_for(const std::string& name, int32_t index) const {
    const size_t start = std::hash<std::string>{}(name);
    return static_cast<uint32_t>((start + static_cast<size_t>(index)) % _shard_count);
}

result<void> metadata_store::load() {
    const std::string path = _data_dir + "/metadata.toml";
    if (::access(path.c_str(), F_OK) != 0) return {};
    toml::table table;
    try {
        table = toml::parse_file(path);
    } catch (const toml::parse_error& failure) {
        return error{EINVAL, path + ": " + std::string(failure.description())};
    }
    auto next = std::make_shared<metadata_snapshot>();
    next->version = table["version"].value_or<int64_t>(0);
    const toml::array* topics = table["topic"].as_array();
    if (topics != nullptr) {
        for (const auto& node : *topics) {
            const toml::table* entry = node.as_table();
            if (entry == nullptr) return error{EINVAL, path + ": [[topic]] is not a table"};
            auto topic = std::make_shared<topic_info>();
            topic->name = (*entry)["name"].value_or<std::string>("");
            auto id = uuid_from_string((*entry)["id"].value_or<std::string>(""));
            if (!valid_topic_name(topic->name) || !id)
                return error{EINVAL, path + ": topic with a bad name or id"};
            topic->id = *id;
            const toml::array* shards = (*entry)["shards"].as_array();
            if (shards == nullptr || shards->empty())
                return error{EINVAL, path + ": topic \"" + topic->name + "\" has no partitions"};
            for (const auto& shard : *shards) {
                const int64_t owner = shard.value_or<int64_t>(-1);
                if (owner < 0)
                    return error{EINVAL, path + ": bad shard in \"" + topic->name + "\""};
                // A restart with fewer shards keeps every partition, on a shard that exists.
                topic->partition_shards.push_back(static_cast<uint32_t>(owner) % _shard_count);
            }
            if (const toml::table* configs = (*entry)["configs"].as_table()) {
                for (const auto& [key, value] : *configs)
                    topic->configs[std::string(key.str())] = value.value_or<std::string>("");
            }
            next->topics[topic->name] = std::move(topic);
        }
    }
    next->index_ids();
    _current = std::move(next);
    return {};
}

result<void> metadata_store::persist(const metadata_snapshot& next) const {
    toml::table root;
    root.insert("version", static_cast<int64_t>(next.version));
    toml::array topics;
    for (const auto& [name, topic] : next.topics) {
        toml::table entry;
        entry.insert("name", name);
        entry.insert("id", uuid_to_string(topic->id));
        toml::array shards;
        for (uint32_t owner : topic->partition_shards)
            shards.push_back(static_cast<int64_t>(owner));
        entry.insert("shards", std::move(shards));
        toml::table configs;
        for (const auto& [key, value] : topic->configs) configs.insert(key, value);
        entry.insert("configs", std::move(configs));
        topics.push_back(std::move(entry));
    }
    root.insert("topic", std::move(topics));
    std::ostringstream text;
    text << "# spate cluster metadata: written by the broker, do not edit while it runs.\n";
    text << root << "\n";
    const std::string bytes = text.str();
    return storage::write_file_atomically(
        std::filesystem::path(_data_dir) / "metadata.toml",
        {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

result<snapshot_ptr> metadata_store::publish(std::shared_ptr<metadata_snapshot> next) {
    next->version = _current->version + 1;
    next->index_ids();
    if (auto persisted = persist(*next); !persisted)
        return error{proto::code(proto::error_code::kafka_storage_error),
                     "cannot save the metadata: " + persisted.failure().message};
    _current = std::move(next);
    return _current;
}

result<snapshot_ptr> metadata_store::create_topic(const std::string& name, int32_t partitions,
                                                  const topic_configs& configs) {
    SPATE_ASSERT(partitions > 0, "create_topic needs at least one partition");
    if (auto fits = check_partitions_max(*_current, partitions, _partitions_max); !fits)
        return fits.failure();
    auto next = std::make_shared<metadata_snapshot>(*_current);
    auto topic = std::make_shared<topic_info>();
    topic->name = name;
    topic->id = random_uuid();
    topic->configs = configs;
    for (int32_t i = 0; i < partitions; ++i) topic->partition_shards.push_back(owner_for(name, i));
    next->topics[name] = std::move(topic);
    return publish(std::move(next));
}

result<snapshot_ptr> metadata_store::delete_topic(const std::string& name) {
    auto next = std::make_shared<metadata_snapshot>(*_current);
    next->topics.erase(name);
    return publish(std::move(next));
}

result<snapshot_ptr> metadata_store::add_partitions(const std::string& name, int32_t total) {
    const topic_info* existing = _current->find(name);
    SPATE_ASSERT(existing != nullptr, "add_partitions of an unknown topic");
    SPATE_ASSERT(total > existing->partition_count(), "add_partitions only grows a topic");
    if (auto fits =
            check_partitions_max(*_current, total - existing->partition_count(), _partitions_max);
        !fits)
        return fits.failure();
    auto next = std::make_shared<metadata_snapshot>(*_current);
    auto topic = std::make_shared<topic_info>(*existing);
    for (int32_t i = topic->partition_count(); i < total; ++i)
        topic->partition_shards.push_back(owner_for(name, i));
    next->topics[name] = std::move(topic);
    return publish(std::move(next));
}

result<snapshot_ptr> metadata_store::set_topic_configs(const std::string& name,
                                                       const topic_configs& configs) {
    const topic_info* existing = _current->find(name);
    SPATE_ASSERT(existing != nullptr, "set_topic_configs of an unknown topic");
    auto next = std::make_shared<metadata_snapshot>(*_current);
    auto topic = std::make_shared<topic_info>(*existing);
    topic->configs = configs;
    next->topics[name] = std::move(topic);
    return publish(std::move(next));
}

}  // namespace spate::broker
