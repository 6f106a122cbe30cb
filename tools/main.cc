// spatectl: the command-line Kafka client of spate. See tools/args.cc for the commands.

#include <cstdio>
#include <string_view>
#include <vector>

#include "tools/args.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
    std::vector<std::string_view> arguments(argv + 1, argv + argc);
    // Asking for help is not a mistake: the usage goes to stdout with exit code 0.
    for (const auto argument : arguments)
        if (argument == "--help") {
            std::fputs(spate::tools::usage_text().c_str(), stdout);
            return 0;
        }
    auto line = spate::tools::parse_command_line(arguments);
    if (!line) {
        std::fprintf(stderr, "spatectl: %s\n", line.failure().message.c_str());
        return line.failure().code == spate::tools::usage_error_code ? 2 : 1;
    }
    return spate::tools::run_command(line.value());
}
