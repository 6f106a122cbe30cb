// spate: the broker executable. Parses the configuration, starts one shard per core,
// and waits for SIGTERM/SIGINT to shut down cleanly (stop accepting, finish in-flight
// requests, flush, checkpoints, clean-shutdown marker), exiting 0.
#include <sys/resource.h>

#include <csignal>
#include <cstdio>

#include "broker/broker.h"
#include "net/log.h"

int main(int argc, char** argv) {
    auto parsed = spate::broker::parse_command_line(argc, argv);
    if (!parsed) {
        std::fprintf(stderr, "spate: %s\n", parsed.failure().message.c_str());
        return 2;
    }
    if (parsed->exit_now) {
        std::fputs(parsed->exit_text.c_str(), stdout);
        return 0;
    }
    // Raise the descriptor limit to the hard maximum, as Kafka's packaging does: half of
    // it becomes the shards' budget of cached segment descriptors (segment_files_max), the
    // rest serves connections. Partitions beyond the budget reopen their files on demand,
    // so start-up never depends on this succeeding.
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &files);
    }
    // Block the shutdown signals before any thread starts, so every shard inherits the
    // mask and only this thread receives them, through sigwait.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    spate::broker::broker process(parsed->config);
    if (auto started = process.start(); !started) {
        std::fprintf(stderr, "spate: %s\n", started.failure().message.c_str());
        return 1;
    }
    spate::net::log_info("spate 0.1.0 listening on %s:%u, %u shards, data in %s",
                         parsed->config.listen_host.c_str(), process.bound_port(),
                         process.shard_count(), parsed->config.data_dir.c_str());
    if (parsed->config.metrics_enabled)
        spate::net::log_info(
            "metrics on http://%s:%u/metrics, health on /health/live and "
            "/health/ready",
            parsed->config.metrics_host.c_str(), process.metrics_port());
    int received = 0;
    sigwait(&signals, &received);
    spate::net::log_info("signal %d: shutting down", received);
    process.stop();
    process.wait();
    spate::net::log_info("stopped cleanly");
    return 0;
}
