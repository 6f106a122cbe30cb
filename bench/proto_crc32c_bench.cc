// CRC-32C throughput, hardware and portable, next to memcpy of the same buffer
// sizes in the same run: memcpy is the baseline, since checking a batch's CRC
// should cost about as much as touching its bytes once. After the runs, a table
// prints each CRC's throughput as a ratio to memcpy's at the same size.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "proto/crc32c.h"

namespace {

std::vector<uint8_t> random_bytes(size_t size) {
    std::mt19937_64 random(size);
    std::vector<uint8_t> out(size);
    for (auto& b : out) b = static_cast<uint8_t>(random());
    return out;
}

void set_throughput(benchmark::State& state, size_t size) {
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
}

// One accelerated implementation over state.range(0) bytes, skipped where the CPU lacks it.
template <class Checksum>
void accelerated_bench(benchmark::State& state, bool available, const char* missing,
                       Checksum checksum) {
    if (!available) {
        state.SkipWithError(missing);
        return;
    }
    const auto size = static_cast<size_t>(state.range(0));
    const auto buffer = random_bytes(size);
    uint32_t crc = 0;
    for (auto _ : state) {
        crc = checksum(buffer, crc);
        benchmark::DoNotOptimize(crc);
    }
    set_throughput(state, size);
}

void crc32c_hardware_bench(benchmark::State& state) {
    accelerated_bench(
        state, spate::proto::crc32c_hardware_available(), "no SSE4.2 on this CPU",
        [](const auto& bytes, uint32_t crc) { return spate::proto::crc32c_hardware(bytes, crc); });
}

void crc32c_wide_bench(benchmark::State& state) {
    accelerated_bench(
        state, spate::proto::crc32c_wide_available(), "no AVX-512 VPCLMULQDQ on this CPU",
        [](const auto& bytes, uint32_t crc) { return spate::proto::crc32c_wide(bytes, crc); });
}

void crc32c_portable_bench(benchmark::State& state) {
    const auto size = static_cast<size_t>(state.range(0));
    const auto buffer = random_bytes(size);
    uint32_t crc = 0;
    for (auto _ : state) {
        crc = spate::proto::crc32c_portable(buffer, crc);
        benchmark::DoNotOptimize(crc);
    }
    set_throughput(state, size);
}

void memcpy_bench(benchmark::State& state) {
    const auto size = static_cast<size_t>(state.range(0));
    const auto source = random_bytes(size);
    std::vector<uint8_t> target(size);
    for (auto _ : state) {
        std::memcpy(target.data(), source.data(), size);
        benchmark::DoNotOptimize(target.data());
        benchmark::ClobberMemory();
    }
    set_throughput(state, size);
}

BENCHMARK(memcpy_bench)->Arg(1 << 10)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);
BENCHMARK(crc32c_hardware_bench)->Arg(1 << 10)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);
BENCHMARK(crc32c_wide_bench)->Arg(1 << 10)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);
BENCHMARK(crc32c_portable_bench)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);

// Prints the usual console output and remembers bytes_per_second per run, keyed
// by benchmark family and argument, for the ratio table.
class ratio_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        ConsoleReporter::ReportRuns(runs);
        for (const Run& run : runs) {
            if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
            const auto found = run.counters.find("bytes_per_second");
            if (found == run.counters.end()) continue;
            const std::string name = run.benchmark_name();
            const auto slash = name.find('/');
            _rates[std::stoul(name.substr(slash + 1))][name.substr(0, slash)] = found->second.value;
        }
    }
    void print_ratios() const {
        std::printf("\n%-10s %12s %14s %8s %10s %8s %14s %8s\n", "size", "memcpy GB/s",
                    "hardware GB/s", "ratio", "wide GB/s", "ratio", "portable GB/s", "ratio");
        for (const auto& [size, by_name] : _rates) {
            const double base = rate(by_name, "memcpy_bench");
            const double hardware = rate(by_name, "crc32c_hardware_bench");
            const double wide = rate(by_name, "crc32c_wide_bench");
            const double portable = rate(by_name, "crc32c_portable_bench");
            std::printf("%-10lu %12.2f %14.2f %8.2f %10.2f %8.2f %14.2f %8.2f\n", size, base / 1e9,
                        hardware / 1e9, base > 0 ? hardware / base : 0.0, wide / 1e9,
                        base > 0 ? wide / base : 0.0, portable / 1e9,
                        base > 0 ? portable / base : 0.0);
        }
    }

private:
    static double rate(const std::map<std::string, double>& by_name, const char* name) {
        const auto found = by_name.find(name);
        return found == by_name.end() ? 0.0 : found->second;
    }
    std::map<unsigned long, std::map<std::string, double>> _rates;
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
