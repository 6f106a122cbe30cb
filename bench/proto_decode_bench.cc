// Decode cost of the two hot requests: a Produce request (6 partitions, one 16 KiB
// batch each) and a Fetch request (6 partitions), in ns per request and MB/s, next to
// memcpy of the same bytes in the same run (the baseline).
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "proto/messages.h"
#include "proto/record_batch.h"

namespace {

using namespace spate::proto;

constexpr int partitions = 6;

std::vector<uint8_t> produce_bytes(int16_t version) {
    batch_builder builder(compression_codec::none, 1700000000000);
    std::vector<uint8_t> value(1000, 'v');
    for (int i = 0; i < 16; ++i) builder.add(byte_view("key-" + std::to_string(i)), value);
    static std::vector<uint8_t> batch = builder.build();
    produce_request request;
    request.acks = 1;
    request.timeout_ms = 30000;
    produce_request::topic_produce_data topic;
    topic.name = "bench-topic";
    for (int p = 0; p < partitions; ++p) {
        produce_request::partition_produce_data part;
        part.index = p;
        part.records_.bytes = batch;
        topic.partition_data.push_back(part);
    }
    request.topic_data.push_back(topic);
    writer out;
    request.encode(out, version);
    return out.buffer();
}

std::vector<uint8_t> fetch_bytes(int16_t version) {
    fetch_request request;
    request.max_wait_ms = 500;
    request.min_bytes = 1;
    request.max_bytes = 50 << 20;
    fetch_request::fetch_topic topic;
    topic.topic = "bench-topic";
    for (int p = 0; p < partitions; ++p) {
        fetch_request::fetch_partition part;
        part.partition = p;
        part.fetch_offset = 123456789;
        part.partition_max_bytes = 1 << 20;
        topic.partitions.push_back(part);
    }
    request.topics.push_back(topic);
    writer out;
    request.encode(out, version);
    return out.buffer();
}

template <class Message>
void decode_bench(benchmark::State& state, const std::vector<uint8_t>& bytes, int16_t version) {
    for (auto _ : state) {
        Message message;
        reader in(bytes);
        if (!message.decode(in, version)) state.SkipWithError("decode failed");
        benchmark::DoNotOptimize(message);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(bytes.size()));
}

void memcpy_baseline(benchmark::State& state, const std::vector<uint8_t>& bytes) {
    std::vector<uint8_t> target(bytes.size());
    for (auto _ : state) {
        std::memcpy(target.data(), bytes.data(), bytes.size());
        benchmark::DoNotOptimize(target.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(bytes.size()));
}

void produce_v7(benchmark::State& state) {
    decode_bench<produce_request>(state, produce_bytes(7), 7);
}
void produce_v9(benchmark::State& state) {
    decode_bench<produce_request>(state, produce_bytes(9), 9);
}
void produce_memcpy(benchmark::State& state) { memcpy_baseline(state, produce_bytes(7)); }
void fetch_v11(benchmark::State& state) { decode_bench<fetch_request>(state, fetch_bytes(11), 11); }
void fetch_v12(benchmark::State& state) { decode_bench<fetch_request>(state, fetch_bytes(12), 12); }

}  // namespace

BENCHMARK(produce_memcpy);
BENCHMARK(produce_v7);
BENCHMARK(produce_v9);
BENCHMARK(fetch_v11);
BENCHMARK(fetch_v12);
BENCHMARK_MAIN();
