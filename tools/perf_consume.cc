// `perf consume` (consumer benchmark, like kafka-consumer-perf-test) and `perf e2e`
// (end-to-end latency, like Kafka's EndToEndLatency), on topic_reader. Split from
// consume.cc. `perf consume --latency` also measures the end-to-end latency of records
// stamped by `perf produce --stamp` (see latency_stamp.h), as the OpenMessaging
// Benchmark does: producers at a fixed rate in other processes, this one reading.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "proto/assert.h"
#include "proto/error_code.h"
#include "proto/record_batch.h"
#include "tools/client_options.h"
#include "tools/cluster.h"
#include "tools/commands.h"
#include "tools/latency_stamp.h"
#include "tools/topic_reader.h"

namespace spate::tools {

namespace {

// What the threads of `perf consume` share: the records counted so far (all threads
// stop once it reaches the goal) and the first failure. Owned by run_perf_consume,
// which joins every thread before it reads the totals.
struct perf_consume_shared {
    std::atomic<int64_t> consumed{0};
    std::atomic<uint64_t> bytes{0};
    std::mutex failure_mutex;
    std::optional<error> failure;

    void fail(error why) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::move(why);
    }
};

struct perf_consume_job {
    global_options global;
    std::string topic;
    std::vector<int32_t> partitions;  // this thread's share
    int64_t messages = 0;
    int32_t fetch_size = 0;
    int32_t max_wait_ms = 0;
    int64_t idle_timeout_ms = 0;
};

// One thread of `perf consume`: its own connections, reading its partitions from the
// earliest offset until the shared count reaches the goal or nothing arrives for the
// idle timeout (counted from the start, so an empty topic is waited on that long).
// With `latency` it records the end-to-end latency of every record it counts there.
void perf_consume_worker(const perf_consume_job& job, perf_consume_shared& shared,
                         end_to_end_latency* latency) {
    auto brokers = cluster::connect(job.global);
    if (!brokers) return shared.fail(brokers.failure());
    auto layout = brokers->topic(job.topic);
    if (!layout) return shared.fail(layout.failure());
    topic_reader reader(brokers.value(), std::move(layout.value()), job.fetch_size,
                        job.max_wait_ms);
    std::map<int32_t, int64_t> offsets;
    for (int32_t partition : job.partitions) offsets[partition] = -1;
    auto started = reader.start_at(offsets, /*from_beginning=*/true);
    if (!started) return shared.fail(started.failure());
    auto last_record = clock_type::now();
    uint64_t bytes = 0;
    while (shared.consumed.load(std::memory_order_relaxed) < job.messages) {
        bool got = false;
        auto stopped = reader.poll(
            [&](int32_t, const proto::batch_header&, const proto::record_view& record) {
                got = true;
                const int64_t counted = shared.consumed.fetch_add(1, std::memory_order_relaxed);
                // Threads may overshoot the goal together; only the records within it
                // are measured, so the latency count equals the records received.
                if (latency != nullptr && counted < job.messages)
                    latency->record(record.value, realtime_ns());
                return counted + 1 < job.messages;
            },
            bytes);
        if (!stopped) return shared.fail(stopped.failure());
        if (stopped.value()) break;
        if (got)
            last_record = clock_type::now();
        else
            pause_if_not_long_polling(job.max_wait_ms);
        if (clock_type::now() - last_record >= std::chrono::milliseconds(job.idle_timeout_ms))
            break;
    }
    shared.bytes.fetch_add(bytes, std::memory_order_relaxed);
}

// Whether every partition of the topic has a leader.
bool all_led(const topic_layout& layout) {
    return std::all_of(layout.partitions.begin(), layout.partitions.end(),
                       [](const auto& partition) { return partition.leader >= 0; });
}

}  // namespace

result<void> run_perf_consume(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto messages = line.integer("--messages", -1, 1, INT64_MAX / 2);
    if (!messages) return messages.failure();
    if (messages.value() < 0) return error{usage_error_code, "perf consume needs --messages"};
    auto fetch_size = line.integer("--fetch-size", 1 << 20, 1024, 64 << 20);
    if (!fetch_size) return fetch_size.failure();
    auto idle_timeout = line.integer("--timeout-ms", 10000, 1, INT32_MAX);
    if (!idle_timeout) return idle_timeout.failure();
    auto threads = line.integer("--threads", 1, 1, 256);
    if (!threads) return threads.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();
    const bool measure_latency = line.has("--latency");
    const auto histogram_path = line.value("--histogram");
    if (histogram_path && !measure_latency)
        return error{usage_error_code, "perf consume --histogram needs --latency"};

    // The layout is read once here to split the partitions; each thread reads it again
    // on its own connections. A topic created just before may not have its leaders yet
    // (a benchmark starts the consumer first, on a fresh topic): they are waited for,
    // within the idle timeout.
    std::vector<int32_t> partitions;
    {
        auto brokers = cluster::connect(line.global);
        if (!brokers) return brokers.failure();
        const auto deadline = clock_type::now() + std::chrono::milliseconds(idle_timeout.value());
        auto layout = brokers->topic(topic_name.value());
        while (layout && !all_led(layout.value()) && clock_type::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            layout = brokers->topic(topic_name.value());
        }
        if (!layout) return layout.failure();
        for (const auto& partition : layout->partitions) partitions.push_back(partition.partition);
    }
    if (partitions.empty())
        return error{1, "topic \"" + topic_name.value() + "\" has no partitions"};
    // More threads than partitions would leave some idle: one partition per thread at most.
    const size_t thread_count = std::min(static_cast<size_t>(threads.value()), partitions.size());
    std::vector<perf_consume_job> jobs(thread_count);
    for (size_t i = 0; i < partitions.size(); ++i)
        jobs[i % thread_count].partitions.push_back(partitions[i]);
    for (auto& job : jobs) {
        job.global = line.global;
        job.topic = topic_name.value();
        job.messages = messages.value();
        job.fetch_size = static_cast<int32_t>(fetch_size.value());
        job.max_wait_ms = max_wait_ms.value();
        job.idle_timeout_ms = idle_timeout.value();
    }

    const int64_t start_wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
    const auto start = clock_type::now();
    perf_consume_shared shared;
    // One per thread, allocated before they start; none without --latency.
    std::vector<end_to_end_latency> latencies(measure_latency ? jobs.size() : 0);
    auto latency_of = [&latencies](size_t i) {
        return latencies.empty() ? nullptr : &latencies[i];
    };
    {
        std::vector<std::jthread> workers;
        for (size_t i = 1; i < jobs.size(); ++i)
            workers.emplace_back([&jobs, &shared, latency = latency_of(i), i] {
                perf_consume_worker(jobs[i], shared, latency);
            });
        // The calling thread takes the first share itself.
        perf_consume_worker(jobs[0], shared, latency_of(0));
    }
    const auto end = clock_type::now();
    if (shared.failure) return *shared.failure;
    const int64_t consumed = std::min(shared.consumed.load(), messages.value());
    const uint64_t bytes = shared.bytes.load();
    consume_summary summary;
    summary.records = static_cast<uint64_t>(consumed);
    summary.bytes = bytes;
    summary.start_ms = start_wall;
    summary.seconds = std::chrono::duration<double>(end - start).count();
    summary.end_ms = start_wall + static_cast<int64_t>(summary.seconds * 1000.0);
    std::string out = format_consume_summary(summary);
    const double seconds = summary.seconds > 0 ? summary.seconds : 1e-9;
    char line_text[160];
    std::snprintf(
        line_text, sizeof line_text, "%llu records received, %.1f records/sec (%.2f MB/sec)\n",
        static_cast<unsigned long long>(consumed), static_cast<double>(consumed) / seconds,
        static_cast<double>(bytes) / seconds / (1024.0 * 1024.0));
    out += line_text;
    if (measure_latency) {
        for (size_t i = 1; i < latencies.size(); ++i) latencies[0].merge(latencies[i]);
        out += format_end_to_end_latency(latencies[0]);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    if (histogram_path)
        if (auto written = latencies[0].micros.write_distribution(*histogram_path); !written)
            return written;
    if (consumed < messages.value())
        return error{1, "only " + std::to_string(consumed) + " of " +
                            std::to_string(messages.value()) + " records arrived within " +
                            std::to_string(idle_timeout.value()) + " ms"};
    return ok_result();
}

result<void> run_perf_e2e(const command_line& line) {
    auto topic_name = line.required("--topic");
    if (!topic_name) return topic_name.failure();
    auto records_total = line.integer("--num-records", -1, 1, 100000000);
    if (!records_total) return records_total.failure();
    if (records_total.value() < 0) return error{usage_error_code, "perf e2e needs --num-records"};
    auto record_size = line.integer("--record-size", 100, 1, 1 << 20);
    if (!record_size) return record_size.failure();
    auto acks = parse_acks(line.value("--acks").value_or("1"));
    if (!acks) return acks.failure();
    auto max_wait_ms = fetch_max_wait_ms(line);
    if (!max_wait_ms) return max_wait_ms.failure();

    // Producer and consumer have connections of their own, as two clients would.
    auto producing = cluster::connect(line.global);
    if (!producing) return producing.failure();
    auto layout = producing->topic(topic_name.value());
    if (!layout) return layout.failure();
    // Like Kafka's EndToEndLatency, one partition carries every record.
    const auto target = layout->partitions.front();
    if (target.leader < 0)
        return error{1, "topic \"" + layout->name + "\" has no leader for partition " +
                            std::to_string(target.partition)};
    auto leader = producing->leader(target.leader);
    if (!leader) return leader.failure();
    auto produce_version = leader.value()->version_for<proto::produce_request>();
    if (!produce_version) return produce_version.failure();
    if (produce_version.value() < 3)
        return error{1, "the broker's Produce versions predate record batch v2"};

    auto consuming = cluster::connect(line.global);
    if (!consuming) return consuming.failure();
    // Its own Metadata call also fills its address book for the leader connection.
    auto consumed_layout = consuming->topic(topic_name.value());
    if (!consumed_layout) return consumed_layout.failure();
    topic_reader reader(consuming.value(), std::move(consumed_layout.value()), 1 << 20,
                        max_wait_ms.value());
    // From the end: only the records this run produces are read.
    auto started = reader.start(target.partition, -1, /*from_beginning=*/false);
    if (!started) return started;

    std::mt19937 random(std::random_device{}());
    std::string payload(static_cast<size_t>(record_size.value()), 'A');
    latency_histogram latency;
    std::vector<uint8_t> frame;
    uint64_t bytes = 0;
    const auto timeout = std::chrono::milliseconds(line.global.timeout_ms);
    for (int64_t i = 0; i < records_total.value(); ++i) {
        // A fresh payload each time, so a record read back is surely this one.
        for (auto& byte : payload) byte = static_cast<char>('A' + random() % 26);
        proto::batch_builder builder(proto::compression_codec::none,
                                     std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
        builder.add(std::nullopt, proto::byte_view(payload));
        const auto batch = builder.build();
        proto::produce_request request;
        request.acks = acks.value();
        request.timeout_ms = line.global.timeout_ms;
        request.topic_data.push_back({layout->name, {}});
        proto::produce_request::partition_produce_data data;
        data.index = target.partition;
        data.records_.bytes = batch;
        request.topic_data[0].partition_data.push_back(data);

        const auto sent_at = clock_type::now();
        if (acks.value() == 0) {
            auto sent = leader.value()->send_only(request, produce_version.value());
            if (!sent) return sent;
        } else {
            proto::produce_response response;
            auto called = leader.value()->call(request, produce_version.value(), response, frame);
            if (!called) return called;
            for (const auto& topic : response.responses)
                for (const auto& partition : topic.partition_responses)
                    if (partition.error_code != 0)
                        return error{1, "producing to topic \"" + layout->name + "\" partition " +
                                            std::to_string(partition.index) + " failed (" +
                                            proto::error_name(partition.error_code) + ")"};
        }
        bool matched = false;
        bool mismatched = false;
        while (!matched) {
            auto stopped = reader.poll(
                [&](int32_t, const proto::batch_header&, const proto::record_view& record) {
                    matched =
                        record.value && payload.size() == record.value->size() &&
                        std::equal(record.value->begin(), record.value->end(), payload.begin(),
                                   [](uint8_t a, char b) { return a == static_cast<uint8_t>(b); });
                    mismatched = !matched;
                    return false;
                },
                bytes);
            if (!stopped) return stopped.failure();
            if (mismatched)
                return error{
                    1, "record " + std::to_string(i) + " read back from topic \"" + layout->name +
                           "\" is not the one produced (is another producer writing to it?)"};
            if (!matched) {
                if (clock_type::now() - sent_at >= timeout)
                    return error{1, "record " + std::to_string(i) + " was not consumed within " +
                                        std::to_string(line.global.timeout_ms) + " ms"};
                pause_if_not_long_polling(max_wait_ms.value());
            }
        }
        const auto elapsed =
            std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - sent_at);
        latency.record(static_cast<uint64_t>(elapsed.count()));
    }

    // Kafka's EndToEndLatency lines, in microseconds rather than milliseconds.
    char text[320];
    std::snprintf(text, sizeof text,
                  "%lld records, avg latency: %.1f µs, max latency: %llu µs\n"
                  "Percentiles: 50th = %llu µs, 99th = %llu µs, 99.9th = %llu µs\n",
                  static_cast<long long>(latency.count()), latency.mean(),
                  static_cast<unsigned long long>(latency.max()),
                  static_cast<unsigned long long>(latency.percentile(50)),
                  static_cast<unsigned long long>(latency.percentile(99)),
                  static_cast<unsigned long long>(latency.percentile(99.9)));
    std::fputs(text, stdout);
    if (auto path = line.value("--histogram"))
        if (auto written = latency.write_distribution(*path); !written) return written;
    return ok_result();
}

}  // namespace spate::tools
