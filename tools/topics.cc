// topics create|list|describe|delete|alter|reassign|reassignments, and the command
// dispatcher.

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "proto/error_code.h"
#include "tools/cluster.h"
#include "tools/commands.h"
#include "tools/format.h"

namespace spate::tools {

namespace {

constexpr int8_t resource_type_topic = 2;
constexpr int8_t config_source_dynamic_topic = 1;
constexpr int8_t config_operation_set = 0;
constexpr int8_t config_operation_delete = 1;

void print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

result<std::vector<std::pair<std::string, std::string>>> parse_configs(const command_line& line) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& text : line.values("--config")) {
        auto pair = parse_key_value(text, "--config");
        if (!pair) return pair.failure();
        out.push_back(std::move(pair.value()));
    }
    return out;
}

result<void> topics_create(cluster& brokers, const command_line& line) {
    auto name = line.required("--topic");
    if (!name) return name.failure();
    auto partitions = line.integer("--partitions", -1, 1, 1 << 20);
    if (!partitions) return partitions.failure();
    auto replication = line.integer("--replication-factor", -1, 1, 32767);
    if (!replication) return replication.failure();
    auto configs = parse_configs(line);
    if (!configs) return configs.failure();

    auto& connection = brokers.bootstrap();
    auto version = connection.version_for<proto::create_topics_request>();
    if (!version) return version.failure();
    proto::create_topics_request request;
    request.timeout_ms = brokers.timeout_ms();
    proto::create_topics_request::creatable_topic topic;
    topic.name = name.value();
    // Before v4 the broker cannot fill in its defaults, so spatectl picks Kafka's (1, 1).
    const bool defaults_allowed = version.value() >= 4;
    topic.num_partitions = static_cast<int32_t>(partitions.value() > 0 ? partitions.value()
                                                : defaults_allowed     ? -1
                                                                       : 1);
    topic.replication_factor = static_cast<int16_t>(replication.value() > 0 ? replication.value()
                                                    : defaults_allowed      ? -1
                                                                            : 1);
    for (auto& [key, value] : configs.value()) topic.configs.push_back({key, value});
    request.topics.push_back(std::move(topic));

    proto::create_topics_response response;
    std::vector<uint8_t> frame;
    auto called = connection.call(request, version.value(), response, frame);
    if (!called) return called;
    for (const auto& result_topic : response.topics) {
        if (result_topic.error_code == proto::code(proto::error_code::topic_already_exists) &&
            line.has("--if-not-exists"))
            return ok_result();
        if (result_topic.error_code != 0)
            return error{1, describe_topic_error(result_topic.name, result_topic.error_code,
                                                 result_topic.error_message)};
    }
    print("Created topic " + name.value() + ".\n");
    return ok_result();
}

result<void> topics_list(cluster& brokers, const command_line& line) {
    auto topics = brokers.metadata({});
    if (!topics) return topics.failure();
    std::vector<std::string> names;
    for (const auto& entry : topics.value()) names.push_back(entry.second.name);
    std::sort(names.begin(), names.end());
    std::string out;
    if (line.global.json) {
        out = "[";
        for (size_t i = 0; i < names.size(); ++i) {
            if (i > 0) out += ",";
            out += json_string(names[i]);
        }
        out += "]\n";
    } else {
        for (const auto& name : names) out += name + "\n";
    }
    print(out);
    return ok_result();
}

// The topic configs that differ from the defaults, as kafka-topics --describe shows them.
result<std::vector<std::pair<std::string, std::string>>> non_default_configs(
    broker_connection& connection, const std::string& topic) {
    std::vector<std::pair<std::string, std::string>> out;
    auto version = connection.version_for<proto::describe_configs_request>();
    // A broker without DescribeConfigs simply has no configs to show.
    if (!version) return out;
    proto::describe_configs_request request;
    request.resources.push_back({resource_type_topic, topic, std::nullopt});
    proto::describe_configs_response response;
    std::vector<uint8_t> frame;
    auto called = connection.call(request, version.value(), response, frame);
    if (!called) return called.failure();
    for (const auto& resource : response.results) {
        if (resource.error_code != 0)
            return error{1,
                         describe_topic_error(topic, resource.error_code, resource.error_message)};
        for (const auto& config : resource.configs) {
            const bool is_override = version.value() == 0
                                         ? !config.is_default
                                         : config.config_source == config_source_dynamic_topic;
            if (is_override) out.emplace_back(config.name, config.value.value_or(""));
        }
    }
    return out;
}

result<void> topics_describe(cluster& brokers, const command_line& line) {
    std::vector<std::string> names;
    if (auto name = line.value("--topic")) names.push_back(*name);
    auto topics = brokers.metadata(names);
    if (!topics) return topics.failure();
    std::sort(topics->begin(), topics->end(),
              [](const auto& a, const auto& b) { return a.second.name < b.second.name; });
    std::string out;
    for (auto& [code, layout] : topics.value()) {
        if (code != 0) return error{1, describe_topic_error(layout.name, code, std::nullopt)};
        topic_row row;
        row.name = layout.name;
        row.topic_id = layout.topic_id;
        for (auto& partition : layout.partitions)
            row.partitions.push_back({partition.partition, partition.leader, partition.replicas,
                                      partition.isr, partition.error_code});
        auto configs = non_default_configs(brokers.bootstrap(), layout.name);
        if (!configs) return configs.failure();
        row.configs = std::move(configs.value());
        out += line.global.json ? format_topic_describe_json(row) : format_topic_describe(row);
    }
    if (!names.empty() && topics->empty())
        return error{1, describe_topic_error(
                            names[0], proto::code(proto::error_code::unknown_topic_or_partition),
                            std::nullopt)};
    print(out);
    return ok_result();
}

result<void> topics_delete(cluster& brokers, const command_line& line) {
    auto name = line.required("--topic");
    if (!name) return name.failure();
    auto& connection = brokers.bootstrap();
    auto version = connection.version_for<proto::delete_topics_request>();
    if (!version) return version.failure();
    proto::delete_topics_request request;
    request.timeout_ms = brokers.timeout_ms();
    if (version.value() >= 6)
        request.topics.push_back({name.value(), proto::uuid{}});
    else
        request.topic_names.push_back(name.value());
    proto::delete_topics_response response;
    std::vector<uint8_t> frame;
    auto called = connection.call(request, version.value(), response, frame);
    if (!called) return called;
    for (const auto& deleted : response.responses)
        if (deleted.error_code != 0)
            return error{
                1, describe_topic_error(name.value(), deleted.error_code, deleted.error_message)};
    print("Deleted topic " + name.value() + ".\n");
    return ok_result();
}

result<void> topics_alter(cluster& brokers, const command_line& line) {
    auto name = line.required("--topic");
    if (!name) return name.failure();
    auto partitions = line.integer("--partitions", -1, 1, 1 << 20);
    if (!partitions) return partitions.failure();
    auto configs = parse_configs(line);
    if (!configs) return configs.failure();
    const auto deletes = line.values("--delete-config");
    if (partitions.value() < 0 && configs->empty() && deletes.empty())
        return error{usage_error_code,
                     "topics alter needs --partitions, --config or --delete-config"};
    auto& connection = brokers.bootstrap();

    if (partitions.value() > 0) {
        auto version = connection.version_for<proto::create_partitions_request>();
        if (!version) return version.failure();
        proto::create_partitions_request request;
        request.timeout_ms = brokers.timeout_ms();
        request.topics.push_back(
            {name.value(), static_cast<int32_t>(partitions.value()), std::nullopt});
        proto::create_partitions_response response;
        std::vector<uint8_t> frame;
        auto called = connection.call(request, version.value(), response, frame);
        if (!called) return called;
        for (const auto& grown : response.results)
            if (grown.error_code != 0)
                return error{
                    1, describe_topic_error(name.value(), grown.error_code, grown.error_message)};
    }
    if (!configs->empty() || !deletes.empty()) {
        auto version = connection.version_for<proto::incremental_alter_configs_request>();
        if (!version) return version.failure();
        proto::incremental_alter_configs_request request;
        proto::incremental_alter_configs_request::alter_configs_resource resource;
        resource.resource_type = resource_type_topic;
        resource.resource_name = name.value();
        for (auto& [key, value] : configs.value())
            resource.configs.push_back({key, config_operation_set, value});
        for (const auto& key : deletes)
            resource.configs.push_back({key, config_operation_delete, std::nullopt});
        request.resources.push_back(std::move(resource));
        proto::incremental_alter_configs_response response;
        std::vector<uint8_t> frame;
        auto called = connection.call(request, version.value(), response, frame);
        if (!called) return called;
        for (const auto& altered : response.responses)
            if (altered.error_code != 0)
                return error{1, describe_topic_error(name.value(), altered.error_code,
                                                     altered.error_message)};
    }
    print("Altered topic " + name.value() + ".\n");
    return ok_result();
}

// "1,2,3" into broker ids; a usage error naming the text otherwise.
result<std::vector<int32_t>> parse_brokers(const std::string& text) {
    std::vector<int32_t> out;
    size_t start = 0;
    while (start <= text.size()) {
        const size_t comma = std::min(text.find(',', start), text.size());
        const std::string item = text.substr(start, comma - start);
        char* end = nullptr;
        const long id = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || id < 0 || id > INT32_MAX)
            return error{usage_error_code, "not a list of broker ids: \"" + text + "\""};
        out.push_back(static_cast<int32_t>(id));
        start = comma + 1;
    }
    return out;
}

std::string id_list(const std::vector<int32_t>& ids) {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out += ',';
        out += std::to_string(ids[i]);
    }
    return out;
}

// topics reassign TOPIC PARTITION BROKERS|cancel: AlterPartitionReassignments to the
// controller, which answers once the move has started.
result<void> topics_reassign(cluster& brokers, const command_line& line) {
    if (line.positionals.size() != 3)
        return error{usage_error_code,
                     "topics reassign takes TOPIC PARTITION BROKER[,BROKER…] (or cancel)"};
    const std::string& name = line.positionals[0];
    char* end = nullptr;
    const long partition = std::strtol(line.positionals[1].c_str(), &end, 10);
    if (line.positionals[1].empty() || *end != '\0' || partition < 0 || partition > INT32_MAX)
        return error{usage_error_code, "not a partition: \"" + line.positionals[1] + "\""};
    std::optional<std::vector<int32_t>> target;
    if (line.positionals[2] != "cancel") {
        auto parsed = parse_brokers(line.positionals[2]);
        if (!parsed) return parsed.failure();
        target = std::move(parsed.value());
    }
    auto controller = brokers.controller();
    if (!controller) return controller.failure();
    auto version = (*controller)->version_for<proto::alter_partition_reassignments_request>();
    if (!version) return version.failure();
    proto::alter_partition_reassignments_request request;
    request.timeout_ms = brokers.timeout_ms();
    request.topics.emplace_back();
    request.topics.back().name = name;
    request.topics.back().partitions.push_back({static_cast<int32_t>(partition), target});
    proto::alter_partition_reassignments_response response;
    std::vector<uint8_t> frame;
    auto called = (*controller)->call(request, version.value(), response, frame);
    if (!called) return called;
    if (response.error_code != 0)
        return error{1, std::string("reassignment refused: ") +
                            proto::error_name(response.error_code) +
                            (response.error_message ? ": " + *response.error_message : "")};
    for (const auto& topic : response.responses)
        for (const auto& p : topic.partitions)
            if (p.error_code != 0)
                return error{1, "reassignment of " + name + "-" + std::to_string(partition) +
                                    " refused: " + proto::error_name(p.error_code) +
                                    (p.error_message ? ": " + *p.error_message : "")};
    print(target ? "Reassignment of " + name + "-" + std::to_string(partition) + " to [" +
                       id_list(*target) + "] started.\n"
                 : "Reassignment of " + name + "-" + std::to_string(partition) + " cancelled.\n");
    return ok_result();
}

// topics reassignments: ListPartitionReassignments from the controller, one line each.
result<void> topics_reassignments(cluster& brokers, const command_line& line) {
    auto controller = brokers.controller();
    if (!controller) return controller.failure();
    auto version = (*controller)->version_for<proto::list_partition_reassignments_request>();
    if (!version) return version.failure();
    proto::list_partition_reassignments_request request;
    request.timeout_ms = brokers.timeout_ms();
    proto::list_partition_reassignments_response response;
    std::vector<uint8_t> frame;
    auto called = (*controller)->call(request, version.value(), response, frame);
    if (!called) return called;
    if (response.error_code != 0)
        return error{1, std::string("listing reassignments refused: ") +
                            proto::error_name(response.error_code) +
                            (response.error_message ? ": " + *response.error_message : "")};
    std::string out = line.global.json ? "[" : "";
    bool first = true;
    for (const auto& topic : response.topics) {
        for (const auto& p : topic.partitions) {
            if (line.global.json) {
                out += std::string(first ? "" : ",") + "{\"topic\":" + json_string(topic.name) +
                       ",\"partition\":" + std::to_string(p.partition_index) + ",\"replicas\":[" +
                       id_list(p.replicas) + "],\"adding\":[" + id_list(p.adding_replicas) +
                       "],\"removing\":[" + id_list(p.removing_replicas) + "]}";
            } else {
                out += topic.name + "-" + std::to_string(p.partition_index) + "\treplicas [" +
                       id_list(p.replicas) + "]\tadding [" + id_list(p.adding_replicas) +
                       "]\tremoving [" + id_list(p.removing_replicas) + "]\n";
            }
            first = false;
        }
    }
    if (line.global.json) out += "]\n";
    print(out);
    return ok_result();
}

}  // namespace

result<void> run_topics(const command_line& line) {
    auto brokers = cluster::connect(line.global);
    if (!brokers) return brokers.failure();
    const std::string_view path = line.command->path;
    if (path == "topics create") return topics_create(brokers.value(), line);
    if (path == "topics list") return topics_list(brokers.value(), line);
    if (path == "topics describe") return topics_describe(brokers.value(), line);
    if (path == "topics delete") return topics_delete(brokers.value(), line);
    if (path == "topics reassign") return topics_reassign(brokers.value(), line);
    if (path == "topics reassignments") return topics_reassignments(brokers.value(), line);
    return topics_alter(brokers.value(), line);
}

int run_command(const command_line& line) {
    const std::string_view path = line.command->path;
    result<void> outcome = ok_result();
    if (path.substr(0, 7) == "topics ")
        outcome = run_topics(line);
    else if (path == "produce")
        outcome = run_produce(line);
    else if (path == "consume")
        outcome = run_consume(line);
    else if (path.substr(0, 7) == "groups ")
        outcome = run_groups(line);
    else if (path == "perf produce")
        outcome = run_perf_produce(line);
    else if (path == "perf consume")
        outcome = run_perf_consume(line);
    else if (path == "perf e2e")
        outcome = run_perf_e2e(line);
    else if (path == "top")
        outcome = run_top(line);
    else
        outcome = run_dump_log(line);
    std::fflush(stdout);
    if (outcome) return 0;
    std::fprintf(stderr, "spatectl: %s\n", outcome.failure().message.c_str());
    return outcome.failure().code == usage_error_code ? 2 : 1;
}

}  // namespace spate::tools
