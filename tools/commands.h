#pragma once
// The spatectl commands. Each runs to completion on the calling thread, writes its
// output to stdout and returns an error (code usage_error_code for usage mistakes, 1 for
// anything else) whose message names what failed; run_command maps that to an exit code.

#include "proto/result.h"
#include "tools/args.h"

namespace spate::tools {

result<void> run_topics(const command_line& line);
result<void> run_produce(const command_line& line);
result<void> run_consume(const command_line& line);
result<void> run_groups(const command_line& line);
result<void> run_perf_produce(const command_line& line);
result<void> run_perf_consume(const command_line& line);
result<void> run_perf_e2e(const command_line& line);
result<void> run_dump_log(const command_line& line);
result<void> run_top(const command_line& line);

// Dispatches on line.command, prints a failure as "spatectl: <message>" on stderr and
// returns the process exit code (0 ok, 1 error, 2 usage).
int run_command(const command_line& line);

}  // namespace spate::tools
