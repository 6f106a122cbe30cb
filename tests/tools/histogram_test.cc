// The log-linear latency histogram: exact below 128, bounded relative error above.

#include "tools/histogram.h"

#include <doctest/doctest.h>

using spate::tools::latency_histogram;

TEST_CASE("bucket bounds contain their values and tile the range") {
    const uint64_t values[] = {0,   1,   127,  128,       129,
                               255, 256, 1000, 123456789, latency_histogram::value_max};
    for (uint64_t value : values) {
        const size_t index = latency_histogram::index_of(value);
        CHECK(latency_histogram::lowest_value(index) <= value);
        CHECK(value <= latency_histogram::highest_value(index));
        // Relative width below 1/128: the HDR precision promise.
        const uint64_t width =
            latency_histogram::highest_value(index) - latency_histogram::lowest_value(index);
        CHECK(width * 128 <= value + 1);
    }
    for (size_t index = 0; index < 2000; ++index)
        CHECK(latency_histogram::highest_value(index) + 1 ==
              latency_histogram::lowest_value(index + 1));
}

TEST_CASE("count, min, max, mean and percentiles") {
    latency_histogram h;
    CHECK(h.percentile(99) == 0);
    for (uint64_t v = 1; v <= 1000; ++v) h.record(v);
    CHECK(h.count() == 1000);
    CHECK(h.min() == 1);
    CHECK(h.max() == 1000);
    CHECK(h.mean() == doctest::Approx(500.5));
    CHECK(h.percentile(50) >= 500);
    CHECK(h.percentile(50) <= 504);
    CHECK(h.percentile(99) >= 990);
    CHECK(h.percentile(99) <= 998);
    CHECK(h.percentile(100) == 1000);
    CHECK(h.percentile(0) == 1);
}

TEST_CASE("merge, reset, clamping and the distribution text") {
    latency_histogram a;
    latency_histogram b;
    a.record(10);
    b.record(20);
    b.record(latency_histogram::value_max + 5);
    a.merge(b);
    CHECK(a.count() == 3);
    CHECK(a.max() == latency_histogram::value_max);
    const auto text = a.distribution_text();
    CHECK(text.find("10\t10\t1\t") != std::string::npos);
    a.reset();
    CHECK(a.count() == 0);
    CHECK(a.max() == 0);
}
