#pragma once
// Command-line parsing for spatectl.
//
// The grammar: `spatectl [global flags] COMMAND [SUBCOMMAND] [flags] [positional…]`, where
// global flags may also appear after the command. Every command declares the flags it
// accepts in one table (command_specs()), so an unknown or misspelt flag is a usage error
// (exit code 2) instead of being silently ignored. Flags are `--name VALUE`,
// `--name=VALUE` or switches without a value.
//
// Stateless free functions and plain values; any thread may call them.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/result.h"

namespace spate::tools {

// Usage errors carry this code so that main() can exit with 2.
constexpr int usage_error_code = 2;

struct endpoint {
    std::string host;
    uint16_t port = 0;
    bool operator==(const endpoint&) const = default;
};

// "HOST:PORT" (HOST may be a bracketed IPv6 literal).
result<endpoint> parse_endpoint(std::string_view text);
// "HOST:PORT[,HOST:PORT…]".
result<std::vector<endpoint>> parse_bootstrap(std::string_view text);

struct flag_spec {
    std::string_view name;  // including the leading dashes, e.g. "--topic"
    bool takes_value;
};

struct command_spec {
    std::string_view path;  // the command words, e.g. "topics create"
    std::vector<flag_spec> flags;
    bool takes_positionals;  // dump-log takes FILE…
    std::string_view summary;
    std::string_view positionals_usage = "FILE…";  // how --help names the positionals
};

// Every command spatectl knows, in the order `--help` lists them.
std::span<const command_spec> command_specs();

// The client settings (-X key=value, --command-config FILE) spatectl understands, by
// their Kafka names; any other key is a usage error naming it.
std::span<const std::string_view> client_setting_names();

struct global_options {
    std::vector<endpoint> bootstrap = {{"127.0.0.1", 9092}};
    // Client settings from -X key=value and --command-config, in order, so that a later
    // setting overrides an earlier one. Only client_setting_names() are accepted: unlike
    // Kafka's clients, which log and ignore unknown configs, spatectl refuses them, since a
    // misspelt setting would otherwise silently skew a benchmark.
    std::vector<std::pair<std::string, std::string>> client_settings;
    int32_t timeout_ms = 30000;
    bool json = false;
};

// The parsed command line: which command, its flag values and positionals.
class command_line {
public:
    global_options global;
    const command_spec* command = nullptr;
    std::vector<std::string> positionals;

    bool has(std::string_view flag) const;
    // The last value given for `flag`, if any.
    std::optional<std::string> value(std::string_view flag) const;
    // Every value given for a repeatable flag such as --config, in order.
    std::vector<std::string> values(std::string_view flag) const;
    // An integer flag, bounded to [min, max]; `fallback` when the flag is absent.
    // A malformed or out-of-range value is a usage error naming the flag.
    result<int64_t> integer(std::string_view flag, int64_t fallback, int64_t min,
                            int64_t max) const;
    // A required string flag (usage error naming it when absent).
    result<std::string> required(std::string_view flag) const;
    // The -X setting `key`, if given.
    std::optional<std::string> setting(std::string_view key) const;

    void add(std::string_view flag, std::string value);

private:
    std::multimap<std::string, std::string, std::less<>> _flags;
};

// Parses argv[1..]. A usage error (unknown command or flag, missing value, bad global
// value) is an error with code usage_error_code and a message naming what is wrong.
result<command_line> parse_command_line(std::span<const std::string_view> arguments);

// "k=v" into its halves; a usage error naming `flag` if there is no '='.
result<std::pair<std::string, std::string>> parse_key_value(std::string_view text,
                                                            std::string_view flag);

// The text `spatectl --help` prints.
std::string usage_text();

}  // namespace spate::tools
