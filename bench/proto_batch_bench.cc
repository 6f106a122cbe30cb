// validate_batch throughput on a 16 KiB batch of 1 KiB records, and the produce
// path's whole per-batch check (validate_batch + validate_records) for every
// codec, next to memcpy of the same batch (the
// baseline, in the same run) and a full record walk for comparison. After the
// runs, each throughput prints as a ratio to memcpy's.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "proto/record_batch.h"

namespace {

using namespace spate::proto;

constexpr size_t record_value_bytes = 1024 - 16;  // about 1 KiB per record with its framing
constexpr int records_per_batch = 16;

std::vector<uint8_t> make_batch(compression_codec codec) {
    std::mt19937_64 random(42);
    batch_builder builder(codec, 1700000000000, 1000, 0, 0);
    std::vector<uint8_t> value(record_value_bytes);
    for (int i = 0; i < records_per_batch; ++i) {
        // Half random, half text: realistic-ish for the compressed variants.
        for (size_t j = 0; j < value.size(); ++j)
            value[j] = j < value.size() / 2 ? static_cast<uint8_t>(random())
                                            : static_cast<uint8_t>('a' + j % 26);
        const std::string key = "key-" + std::to_string(i);
        builder.add(byte_view(key), value);
    }
    return builder.build();
}

void set_throughput(benchmark::State& state, size_t size) {
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
}

void memcpy_bench(benchmark::State& state) {
    const auto batch = make_batch(compression_codec::none);
    std::vector<uint8_t> target(batch.size());
    for (auto _ : state) {
        std::memcpy(target.data(), batch.data(), batch.size());
        benchmark::DoNotOptimize(target.data());
        benchmark::ClobberMemory();
    }
    set_throughput(state, batch.size());
}

void validate_batch_bench(benchmark::State& state) {
    const auto batch = make_batch(compression_codec::none);
    for (auto _ : state) {
        const batch_check check = validate_batch(batch, 1 << 20, batch_source::client);
        if (check.error != batch_error::none) state.SkipWithError("batch did not validate");
        benchmark::DoNotOptimize(check);
    }
    set_throughput(state, batch.size());
    state.counters["batch_bytes"] = static_cast<double>(batch.size());
}

// Walks every record; the codec argument shows what decompression costs on top.
void for_each_record_bench(benchmark::State& state) {
    const auto codec = static_cast<compression_codec>(state.range(0));
    const auto batch = make_batch(codec);
    const size_t uncompressed = make_batch(compression_codec::none).size();
    for (auto _ : state) {
        size_t values = 0;
        auto walked = for_each_record(batch, 1 << 20,
                                      [&](const record_view& r) { values += r.value->size(); });
        if (!walked.ok()) state.SkipWithError("records did not decode");
        benchmark::DoNotOptimize(values);
    }
    set_throughput(state, uncompressed);
}

// The produce path's whole check of a producer's batch: validate_batch (header,
// CRC), then validate_records (every record against the header, decompressing
// into a scratch buffer reused across batches, as each shard does).
void produce_validation_bench(benchmark::State& state) {
    const auto codec = static_cast<compression_codec>(state.range(0));
    const auto batch = make_batch(codec);
    const size_t uncompressed = make_batch(compression_codec::none).size();
    std::vector<uint8_t> scratch;
    for (auto _ : state) {
        const batch_check check = validate_batch(batch, 1 << 20, batch_source::client);
        const records_check records = validate_records(batch, check.header, 1 << 20, scratch);
        if (check.error != batch_error::none || records.error != batch_error::none)
            state.SkipWithError("batch did not validate");
        benchmark::DoNotOptimize(records);
    }
    set_throughput(state, uncompressed);
    state.counters["batch_bytes"] = static_cast<double>(batch.size());
}

BENCHMARK(memcpy_bench);
BENCHMARK(validate_batch_bench);
BENCHMARK(produce_validation_bench)
    ->Arg(static_cast<int>(compression_codec::none))
    ->Arg(static_cast<int>(compression_codec::gzip))
    ->Arg(static_cast<int>(compression_codec::snappy))
    ->Arg(static_cast<int>(compression_codec::lz4))
    ->Arg(static_cast<int>(compression_codec::zstd));
BENCHMARK(for_each_record_bench)
    ->Arg(static_cast<int>(compression_codec::none))
    ->Arg(static_cast<int>(compression_codec::lz4))
    ->Arg(static_cast<int>(compression_codec::zstd));

// Prints the usual console output, then every run's throughput as a ratio to memcpy's.
class ratio_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const Run& run : runs) {
            if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
            const auto found = run.counters.find("bytes_per_second");
            if (found != run.counters.end()) _rates[run.benchmark_name()] = found->second.value;
        }
    }
    void print_ratios() const {
        const auto base = _rates.find("memcpy_bench");
        if (base == _rates.end() || base->second <= 0) return;
        std::printf("\n%-32s %10s %14s\n", "benchmark", "GB/s", "ratio to memcpy");
        for (const auto& [name, rate] : _rates)
            std::printf("%-32s %10.2f %14.3f\n", name.c_str(), rate / 1e9, rate / base->second);
    }

private:
    std::map<std::string, double> _rates;
};

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    ratio_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    reporter.print_ratios();
    benchmark::Shutdown();
    return 0;
}
