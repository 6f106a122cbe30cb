// Tests of broker/partition.h pieces that need no shard: the storage error log.

#include "broker/partition.h"

#include <doctest/doctest.h>

#include <cerrno>

namespace {

using spate::error;
using spate::broker::storage_error_log;
using clock_type = storage_error_log::clock;

}  // namespace

// Issue 10, defect 8. A failed append, read or fdatasync became KAFKA_STORAGE_ERROR for
// the client and left nothing in the broker log, so a full disk or an exhausted
// descriptor limit was invisible to the operator. The partition now logs each cause
// (operation and errno) once, repeats it at most once per interval with the number of
// failures it stands for, and says when the operation works again.
TEST_CASE("storage errors are logged once per cause, rate-limited, and their end is logged") {
    storage_error_log log;
    const clock_type::time_point start{};
    const error full{ENOSPC, "pwritev /data/t-0/00000000000000000000.log: No space left on device"};
    const error descriptors{EMFILE, "create segment /data/t-0/x.log: Too many open files"};

    auto first = log.failed("append", full, start);
    REQUIRE(first.has_value());
    CHECK(first->find("append failed") != std::string::npos);
    CHECK(first->find("No space left on device") != std::string::npos);
    // The same cause again, within the interval: nothing, however often.
    for (int i = 0; i < 1000; ++i)
        CHECK(!log.failed("append", full, start + std::chrono::seconds(1)).has_value());
    // Another errno, or another operation, is another cause and is logged at once.
    auto other = log.failed("append", descriptors, start + std::chrono::seconds(2));
    REQUIRE(other.has_value());
    CHECK(other->find("Too many open files") != std::string::npos);
    CHECK(log.failed("read", full, start + std::chrono::seconds(2)).has_value());
    // After the interval the cause is logged again, counting what was not.
    auto repeat = log.failed("append", full, start + storage_error_log::interval);
    REQUIRE(repeat.has_value());
    CHECK(repeat->find("1001 failures since the last line") != std::string::npos);
    // A success ends the causes of its operation only.
    auto recovered = log.succeeded("append");
    REQUIRE(recovered.has_value());
    CHECK(recovered->find("works again after 1003 failures") != std::string::npos);
    CHECK(!log.succeeded("append").has_value());
    CHECK(!log.quiet());
    CHECK(log.succeeded("read").has_value());
    CHECK(log.quiet());
    // A new failure after the recovery is news again.
    CHECK(log.failed("append", full, start + storage_error_log::interval).has_value());
}
