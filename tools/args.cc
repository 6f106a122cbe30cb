#include "tools/args.h"

#include <algorithm>
#include <charconv>
#include <fstream>

namespace spate::tools {

namespace {

error usage(std::string message) { return error{usage_error_code, std::move(message)}; }

// The table behind command_specs(). Commands that talk to a broker share the global
// flags, which parse_command_line handles before it looks at this table.
const std::vector<command_spec>& specs() {
    static const std::vector<command_spec> table = {
        {"topics list", {}, false, "list topic names"},
        {"topics describe",
         {{"--topic", true}},
         false,
         "show partitions, leaders, replicas and configs (all topics without --topic)"},
        {"topics create",
         {{"--topic", true},
          {"--partitions", true},
          {"--replication-factor", true},
          {"--config", true},
          {"--if-not-exists", false}},
         false,
         "create a topic"},
        {"topics delete", {{"--topic", true}}, false, "delete a topic"},
        {"topics alter",
         {{"--topic", true}, {"--partitions", true}, {"--config", true}, {"--delete-config", true}},
         false,
         "grow partitions, set or delete topic configs"},
        {"topics reassign",
         {},
         true,
         "move a partition to the listed brokers (KIP-455; done by the controller, the\n"
         "      partition keeps serving while new replicas catch up); a BROKERS of \"cancel\"\n"
         "      cancels a move in progress",
         "TOPIC PARTITION BROKER[,BROKER…]"},
        {"topics reassignments", {}, false, "list the partition reassignments in progress"},
        {"produce",
         {{"--topic", true},
          {"--partition", true},
          {"--key-separator", true},
          {"--headers", true},
          {"--acks", true},
          {"--compression", true},
          {"--batch-size", true},
          {"--linger-ms", true}},
         false,
         "send stdin lines as records (--headers k1:v1,k2:v2 on every record)"},
        {"consume",
         {{"--topic", true},
          {"--partition", true},
          {"--offset", true},
          {"--from-beginning", false},
          {"--max-messages", true},
          {"--format", true},
          {"--timeout-ms", true},
          {"--group", true},
          {"--print-headers", false}},
         false,
         "print records (formats: value, kv, offsets, json)"},
        {"groups list", {}, false, "list consumer groups"},
        {"groups describe", {{"--group", true}}, false, "show a group's offsets and lag"},
        {"groups delete", {{"--group", true}}, false, "delete a consumer group"},
        {"groups reset-offsets",
         {{"--group", true},
          {"--topic", true},
          {"--to-offset", true},
          {"--to-earliest", false},
          {"--to-latest", false}},
         false,
         "move an inactive group's committed offsets"},
        {"perf produce",
         {{"--topic", true},
          {"--num-records", true},
          {"--record-size", true},
          {"--throughput", true},
          {"--acks", true},
          {"--batch-size", true},
          {"--linger-ms", true},
          {"--compression", true},
          {"--max-in-flight", true},
          {"--histogram", true},
          {"--payload-file", true},
          {"--idempotence", false},
          {"--partitions", true},
          {"--stamp", false}},
         false,
         "producer benchmark (kafka-producer-perf-test); --throughput -1 is unthrottled;\n"
         "      --partitions N creates the topic with N partitions (broker's replication\n"
         "      factor) when it does not exist, as the Java producer's auto-creation would;\n"
         "      an existing topic is used as it is. Prints a progress line every 5 s and a\n"
         "      final line in Kafka's format, latencies in ms to the microsecond (publish\n"
         "      latency: record handed to the producer → acknowledged). --stamp writes into\n"
         "      the first 8 bytes of every value the time the record was handed to the\n"
         "      producer (CLOCK_REALTIME ns, little-endian), for perf consume --latency;\n"
         "      it needs --record-size >= 8 and excludes --payload-file"},
        {"perf consume",
         {{"--topic", true},
          {"--messages", true},
          {"--fetch-size", true},
          {"--timeout-ms", true},
          {"--threads", true},
          {"--latency", false},
          {"--histogram", true}},
         false,
         "consumer benchmark (kafka-consumer-perf-test): its CSV header and data line,\n"
         "      then \"N records received, X records/sec (Y MB/sec)\". Reads from the\n"
         "      earliest offset until --messages records arrived or none for --timeout-ms\n"
         "      (default 10000; an empty topic is waited on that long, so it may start\n"
         "      before the producers); --threads N splits the partitions among N threads.\n"
         "      --latency measures the end-to-end latency of records stamped by perf\n"
         "      produce --stamp (handed to the producer → read here; same machine, or\n"
         "      synchronised clocks) and adds \"end-to-end latency: N records, avg X µs,\n"
         "      50th Y µs, 99th Y µs, 99.9th Y µs, max Y µs\", then \"unstamped records: N\"\n"
         "      when some had no stamp (value under 8 bytes, 0, or over 1 s ahead);\n"
         "      --histogram FILE writes that latency distribution (µs) with --latency"},
        {"perf e2e",
         {{"--topic", true},
          {"--num-records", true},
          {"--record-size", true},
          {"--acks", true},
          {"--histogram", true}},
         false,
         "end-to-end latency, produce to consume (like Kafka's EndToEndLatency)"},
        {"dump-log",
         {{"--print-data-log", false}},
         true,
         "decode segment files (like kafka-dump-log)"},
        {"top",
         {{"--metrics", true}, {"--interval-ms", true}, {"--once", false}, {"--rows", true}},
         false,
         "live view of one broker from its Prometheus endpoint (--metrics HOST:PORT, the\n"
         "      broker's metrics_listen): request rates, Produce/Fetch p99 latency, shard load,\n"
         "      busiest topics and partitions, groups by lag (--rows N each, default 10);\n"
         "      refreshes every --interval-ms (default 1000); with --once, or when stdout is not\n"
         "      a terminal, prints the view of one interval and exits"},
    };
    return table;
}

const command_spec* find_command(std::string_view path) {
    for (const auto& spec : specs())
        if (spec.path == path) return &spec;
    return nullptr;
}

const flag_spec* find_flag(const command_spec& spec, std::string_view name) {
    for (const auto& flag : spec.flags)
        if (flag.name == name) return &flag;
    return nullptr;
}

bool is_group_word(std::string_view word) {
    return word == "topics" || word == "groups" || word == "perf";
}

// Leading and trailing blanks, which a properties file may have around keys and values.
std::string_view trimmed(std::string_view text) {
    const size_t first = text.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) return {};
    const size_t last = text.find_last_not_of(" \t\r");
    return text.substr(first, last - first + 1);
}

// Adds one client setting after checking its key, so that a misspelt setting is a usage
// error instead of silently doing nothing. `source` names where it came from.
result<void> add_client_setting(std::pair<std::string, std::string> setting,
                                const std::string& source, global_options& global) {
    const auto known = client_setting_names();
    if (std::find(known.begin(), known.end(), setting.first) == known.end()) {
        std::string names;
        for (const auto name : known) {
            if (!names.empty()) names += ", ";
            names += name;
        }
        return usage("unknown client setting \"" + setting.first + "\" in " + source +
                     " (known: " + names + ")");
    }
    global.client_settings.push_back(std::move(setting));
    return ok_result();
}

// A Kafka client properties file: key=value lines; blank lines and lines starting with
// '#' or '!' are comments, as in Java properties files. A file that cannot be read is an
// operating error (exit 1); a malformed line or unknown key is a usage error (exit 2).
result<void> read_command_config(const std::string& path, global_options& global) {
    // The file is read whole, so it is bounded first; real client configs are a few lines.
    constexpr std::uintmax_t command_config_bytes_max = 1u << 20;
    std::ifstream in(path);
    if (!in) return error{1, "cannot read --command-config file \"" + path + "\""};
    std::string line;
    size_t line_number = 0;
    size_t bytes = 0;
    while (std::getline(in, line)) {
        ++line_number;
        bytes += line.size() + 1;
        if (bytes > command_config_bytes_max)
            return error{1, "--command-config file \"" + path + "\" is larger than " +
                                std::to_string(command_config_bytes_max) + " bytes"};
        const std::string_view text = trimmed(line);
        if (text.empty() || text.front() == '#' || text.front() == '!') continue;
        const std::string source = "--command-config " + path + ":" + std::to_string(line_number);
        auto pair = parse_key_value(text, source);
        if (!pair) return pair.failure();
        pair->first = std::string(trimmed(pair->first));
        pair->second = std::string(trimmed(pair->second));
        auto added = add_client_setting(std::move(pair.value()), source, global);
        if (!added) return added;
    }
    if (in.bad()) return error{1, "reading --command-config file \"" + path + "\" failed"};
    return ok_result();
}

}  // namespace

std::span<const command_spec> command_specs() { return specs(); }

std::span<const std::string_view> client_setting_names() {
    // Kafka's names for what spatectl's commands read (see global_options).
    static constexpr std::string_view names[] = {
        "acks",
        "batch.size",
        "bootstrap.servers",
        "compression.type",
        "enable.idempotence",
        "fetch.max.wait.ms",
        "linger.ms",
        "max.in.flight.requests.per.connection",
        "max.request.size",
    };
    return names;
}

result<endpoint> parse_endpoint(std::string_view text) {
    std::string_view host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        const size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return usage("bad address \"" + std::string(text) + "\" (expected [HOST]:PORT)");
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return usage("bad address \"" + std::string(text) + "\" (expected HOST:PORT)");
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
    }
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (host.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port == 0 || port > 65535)
        return usage("bad address \"" + std::string(text) + "\" (expected HOST:PORT)");
    return endpoint{std::string(host), static_cast<uint16_t>(port)};
}

result<std::vector<endpoint>> parse_bootstrap(std::string_view text) {
    std::vector<endpoint> out;
    while (!text.empty()) {
        const size_t comma = text.find(',');
        auto one = parse_endpoint(text.substr(0, comma));
        if (!one) return one.failure();
        out.push_back(std::move(one.value()));
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    if (out.empty()) return usage("--bootstrap-server needs at least one HOST:PORT");
    return out;
}

result<std::pair<std::string, std::string>> parse_key_value(std::string_view text,
                                                            std::string_view flag) {
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos || equals == 0)
        return usage(std::string(flag) + " expects key=value, got \"" + std::string(text) + "\"");
    return std::pair<std::string, std::string>(std::string(text.substr(0, equals)),
                                               std::string(text.substr(equals + 1)));
}

bool command_line::has(std::string_view flag) const { return _flags.find(flag) != _flags.end(); }

std::optional<std::string> command_line::value(std::string_view flag) const {
    auto [first, last] = _flags.equal_range(flag);
    if (first == last) return std::nullopt;
    return std::prev(last)->second;
}

std::vector<std::string> command_line::values(std::string_view flag) const {
    std::vector<std::string> out;
    auto [first, last] = _flags.equal_range(flag);
    for (auto it = first; it != last; ++it) out.push_back(it->second);
    return out;
}

result<int64_t> command_line::integer(std::string_view flag, int64_t fallback, int64_t min,
                                      int64_t max) const {
    const auto text = value(flag);
    if (!text) return fallback;
    int64_t number = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), number);
    if (text->empty() || ec != std::errc() || end != text->data() + text->size())
        return usage(std::string(flag) + " expects an integer, got \"" + *text + "\"");
    if (number < min || number > max)
        return usage(std::string(flag) + " must be between " + std::to_string(min) + " and " +
                     std::to_string(max) + ", got " + *text);
    return number;
}

result<std::string> command_line::required(std::string_view flag) const {
    auto text = value(flag);
    if (!text || text->empty())
        return usage(std::string(command->path) + " needs " + std::string(flag));
    return std::move(*text);
}

std::optional<std::string> command_line::setting(std::string_view key) const {
    std::optional<std::string> found;
    for (const auto& [name, setting_value] : global.client_settings)
        if (name == key) found = setting_value;
    return found;
}

void command_line::add(std::string_view flag, std::string flag_value) {
    _flags.emplace(std::string(flag), std::move(flag_value));
}

result<command_line> parse_command_line(std::span<const std::string_view> arguments) {
    command_line out;
    std::vector<std::string_view> words;
    bool bootstrap_given = false;
    // First pass: global flags anywhere, and the command words. Command flags are
    // checked in the second pass, once the command (and so its flag table) is known;
    // command flags therefore belong after the command words.
    for (size_t i = 0; i < arguments.size(); ++i) {
        std::string_view argument = arguments[i];
        auto take_value = [&](std::string_view name) -> result<std::string_view> {
            if (i + 1 >= arguments.size()) return usage(std::string(name) + " needs a value");
            return arguments[++i];
        };
        if (argument == "-X") {
            auto text = take_value("-X");
            if (!text) return text.failure();
            auto pair = parse_key_value(text.value(), "-X");
            if (!pair) return pair.failure();
            auto added = add_client_setting(std::move(pair.value()), "-X", out.global);
            if (!added) return added.failure();
            continue;
        }
        if (argument.size() > 2 && argument.substr(0, 2) == "-X") {
            auto pair = parse_key_value(argument.substr(2), "-X");
            if (!pair) return pair.failure();
            auto added = add_client_setting(std::move(pair.value()), "-X", out.global);
            if (!added) return added.failure();
            continue;
        }
        if (argument.size() > 2 && argument.substr(0, 2) == "--") {
            std::optional<std::string_view> inline_value;
            const size_t equals = argument.find('=');
            if (equals != std::string_view::npos) {
                inline_value = argument.substr(equals + 1);
                argument = argument.substr(0, equals);
            }
            if (argument == "--help") return usage(usage_text());
            if (argument == "--json") {
                if (inline_value) return usage("--json takes no value");
                out.global.json = true;
                continue;
            }
            if (argument == "--bootstrap-server" || argument == "--timeout" ||
                argument == "--command-config") {
                std::string_view text;
                if (inline_value) {
                    text = *inline_value;
                } else {
                    auto taken = take_value(argument);
                    if (!taken) return taken.failure();
                    text = taken.value();
                }
                if (argument == "--bootstrap-server") {
                    auto list = parse_bootstrap(text);
                    if (!list) return list.failure();
                    out.global.bootstrap = std::move(list.value());
                    bootstrap_given = true;
                } else if (argument == "--timeout") {
                    int32_t timeout = 0;
                    const auto [end, ec] =
                        std::from_chars(text.data(), text.data() + text.size(), timeout);
                    if (ec != std::errc() || end != text.data() + text.size() || timeout <= 0)
                        return usage("--timeout expects a positive number of milliseconds");
                    out.global.timeout_ms = timeout;
                } else {
                    auto loaded = read_command_config(std::string(text), out.global);
                    if (!loaded) return loaded.failure();
                }
                continue;
            }
            continue;
        }
        words.push_back(argument);
    }

    // bootstrap.servers from -X or a properties file stands in for --bootstrap-server,
    // which wins when both are given (as the flag wins over the file in Kafka's tools).
    if (!bootstrap_given) {
        if (auto servers = out.setting("bootstrap.servers")) {
            auto list = parse_bootstrap(*servers);
            if (!list) return list.failure();
            out.global.bootstrap = std::move(list.value());
        }
    }

    if (words.empty()) return usage("no command given\n" + usage_text());
    std::string path(words[0]);
    size_t used = 1;
    if (is_group_word(words[0])) {
        if (words.size() < 2) return usage("\"" + path + "\" needs a subcommand");
        path += " ";
        path += words[1];
        used = 2;
    }
    out.command = find_command(path);
    if (out.command == nullptr) return usage("unknown command \"" + path + "\"");

    // Re-walk the arguments to pair command flags with their values: a flag that takes a
    // value consumes the next word (even one that was counted as a positional above).
    words.clear();
    for (size_t i = 0; i < arguments.size(); ++i) {
        std::string_view argument = arguments[i];
        if (argument == "-X") {
            ++i;
            continue;
        }
        if (argument.size() > 2 && argument.substr(0, 2) == "-X") continue;
        if (argument.size() > 2 && argument.substr(0, 2) == "--") {
            std::optional<std::string_view> inline_value;
            const size_t equals = argument.find('=');
            if (equals != std::string_view::npos) {
                inline_value = argument.substr(equals + 1);
                argument = argument.substr(0, equals);
            }
            if (argument == "--json") continue;
            if (argument == "--bootstrap-server" || argument == "--timeout" ||
                argument == "--command-config") {
                if (!inline_value) ++i;
                continue;
            }
            const flag_spec* flag = find_flag(*out.command, argument);
            if (flag == nullptr)
                return usage("unknown flag " + std::string(argument) + " for \"" +
                             std::string(out.command->path) + "\"");
            if (!flag->takes_value) {
                if (inline_value) return usage(std::string(argument) + " takes no value");
                out.add(argument, "");
                continue;
            }
            if (inline_value) {
                out.add(argument, std::string(*inline_value));
                continue;
            }
            if (i + 1 >= arguments.size()) return usage(std::string(argument) + " needs a value");
            out.add(argument, std::string(arguments[++i]));
            continue;
        }
        words.push_back(argument);
    }
    for (size_t i = used; i < words.size(); ++i) {
        if (!out.command->takes_positionals)
            return usage("unexpected argument \"" + std::string(words[i]) + "\" for \"" +
                         std::string(out.command->path) + "\"");
        out.positionals.emplace_back(words[i]);
    }
    if (out.command->takes_positionals && out.positionals.empty())
        return usage("\"" + std::string(out.command->path) + "\" needs at least one FILE");
    return out;
}

std::string usage_text() {
    std::string text =
        "usage: spatectl [--bootstrap-server HOST:PORT[,…]] [--command-config FILE] [-X "
        "key=value]\n"
        "                [--timeout MS] [--json] COMMAND [flags]\n"
        "global flags (before or after the command):\n"
        "  --bootstrap-server HOST:PORT[,…]  brokers to ask first (default 127.0.0.1:9092)\n"
        "  --command-config FILE  Kafka client properties: key=value lines, # comments\n"
        "  -X key=value           one client setting; later settings override earlier ones\n"
        "  --timeout MS           bound on every connect and request (default 30000)\n"
        "  --json                 data as JSON (topics list/describe, groups describe, consume)\n"
        "client settings (-X and --command-config, Kafka's names):";
    for (const auto name : client_setting_names()) {
        text += " ";
        text += name;
    }
    text +=
        "\n"
        "exit codes: 0 ok, 1 error (one line on stderr naming what failed), 2 usage\n"
        "commands:\n";
    for (const auto& spec : specs()) {
        text += "  ";
        text += spec.path;
        for (const auto& flag : spec.flags) {
            text += " [";
            text += flag.name;
            if (flag.takes_value) text += " V";
            text += "]";
        }
        if (spec.takes_positionals) {
            text += " ";
            text += spec.positionals_usage;
        }
        text += "\n      ";
        text += spec.summary;
        text += "\n";
    }
    return text;
}

}  // namespace spate::tools
