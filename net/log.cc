// The stderr logger: one formatted line, one write(2).
#include "net/log.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace spate::net {

namespace {

thread_local int64_t current_shard = -1;

// Long messages are cut rather than allocated for: a log line is a diagnostic, and the
// logger must work when memory is the problem being logged.
constexpr size_t line_bytes_max = 2048;

void write_line(const char* level, const char* format, va_list arguments) {
    char line[line_bytes_max];
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm calendar{};
    gmtime_r(&now.tv_sec, &calendar);
    char shard[24] = "-";
    if (current_shard >= 0)
        std::snprintf(shard, sizeof shard, "%lld", static_cast<long long>(current_shard));
    int used = std::snprintf(
        line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [shard %s] ",
        calendar.tm_year + 1900, calendar.tm_mon + 1, calendar.tm_mday, calendar.tm_hour,
        calendar.tm_min, calendar.tm_sec, now.tv_nsec / 1000000, level, shard);
    if (used < 0) return;
    size_t length = static_cast<size_t>(used);
    if (length < sizeof line - 1) {
        int body = std::vsnprintf(line + length, sizeof line - 1 - length, format, arguments);
        if (body > 0) length += static_cast<size_t>(body);
    }
    if (length > sizeof line - 2) length = sizeof line - 2;
    line[length++] = '\n';
    // A failed diagnostic write has nowhere better to be reported.
    ssize_t written = ::write(STDERR_FILENO, line, length);
    (void)written;
}

}  // namespace

void set_log_shard(int64_t shard) { current_shard = shard; }

void log_info(const char* format, ...) {
    va_list arguments;
    va_start(arguments, format);
    write_line("INFO", format, arguments);
    va_end(arguments);
}

void log_warn(const char* format, ...) {
    va_list arguments;
    va_start(arguments, format);
    write_line("WARN", format, arguments);
    va_end(arguments);
}

void log_error(const char* format, ...) {
    va_list arguments;
    va_start(arguments, format);
    write_line("ERROR", format, arguments);
    va_end(arguments);
}

}  // namespace spate::net
