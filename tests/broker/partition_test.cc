// Tests of broker/partition.h pieces that need no shard: the storage error log and
// when the producer state needs saving.

#include "broker/partition.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <filesystem>

#include "tests/storage/test_support.h"

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

namespace {

std::unique_ptr<spate::broker::partition> open_partition(const std::filesystem::path& dir) {
    auto log = spate::storage::partition_log::open(dir, spate::storage::log_config{});
    REQUIRE(log.ok());
    auto p = std::make_unique<spate::broker::partition>("t", 0, spate::proto::uuid{}, dir,
                                                        std::move(log).value(),
                                                        spate::broker::effective_topic_config{});
    p->restore_producer_state();
    return p;
}

}  // namespace

// Every partition's producer state counted as unsaved after a restart, so a shutdown
// wrote (and fsynced) one snapshot per partition even when nothing had happened. The
// state is now clean after a restore that the files alone give back: no snapshot and an
// empty log, or a snapshot at the log end. Only an append makes it dirty again.
TEST_CASE("an idle partition's producer state needs no snapshot at shutdown") {
    spate::storage::testing::temp_dir dir("producer-idle");
    {
        auto p = open_partition(dir.path());
        CHECK_FALSE(p->producer_state_dirty());
        std::vector<uint8_t> batch = spate::storage::testing::make_batch(2, 1000, 10, 1);
        REQUIRE(p->log().append(batch, 2).ok());
        CHECK(p->producer_state_dirty());
        REQUIRE(p->save_producer_state(spate::storage::file_durability::synced).ok());
        CHECK_FALSE(p->producer_state_dirty());
        REQUIRE(p->log().append(batch, 2).ok());
        CHECK(p->producer_state_dirty());
        REQUIRE(p->log().close().ok());
    }
    {
        // The snapshot is behind the log end: the restore read batches, so it is dirty.
        auto p = open_partition(dir.path());
        CHECK(p->producer_state_dirty());
        REQUIRE(p->save_producer_state(spate::storage::file_durability::unsynced).ok());
        REQUIRE(p->log().close().ok());
    }
    auto p = open_partition(dir.path());
    CHECK_FALSE(p->producer_state_dirty());
}

// Fetch long polling registered the fetch as a waiter on every partition it reads at the
// end of every round that found too little, and a waiter leaves a partition only when an
// append there consumes it. A fetch waiting for fetch.min.bytes over a quiet and a busy
// partition was woken by each small append to the busy one, ran a round that fell short
// again and registered once more on the quiet one: the quiet partition held one waiter per
// round (and would have called the fetch that many times) until max_wait_ms answered it.
// A partition now keeps at most one waiter per fetch, and that waiter still wakes it.
TEST_CASE("a fetch re-registering each round keeps one waiter per partition") {
    spate::storage::testing::temp_dir quiet_dir("waiters-quiet");
    spate::storage::testing::temp_dir busy_dir("waiters-busy");
    auto quiet = open_partition(quiet_dir.path());
    auto busy = open_partition(busy_dir.path());
    auto fetch = std::make_shared<int>(0);
    int wakes = 0;
    // What fetch.cc does when a round falls short: register on every partition it reads.
    const auto wake = std::make_shared<const std::function<void()>>([&wakes] { ++wakes; });
    auto register_round = [&] {
        for (auto* p : {quiet.get(), busy.get()}) p->add_waiter(fetch, wake);
    };
    register_round();
    for (int append = 0; append < 100; ++append) {
        // A small append to the busy partition wakes the fetch, whose new round is still
        // short of min_bytes and registers again.
        busy->wake_waiters();
        register_round();
        CHECK(quiet->waiter_count() == 1);
        CHECK(busy->waiter_count() == 1);
    }
    CHECK(wakes == 100);
    // Enough data arrives on the quiet partition: the fetch is woken, once.
    quiet->wake_waiters();
    CHECK(wakes == 101);
    CHECK(quiet->waiter_count() == 0);
    // Another fetch on the same partition has a waiter of its own.
    auto other = std::make_shared<int>(0);
    quiet->add_waiter(fetch, wake);
    quiet->add_waiter(other, wake);
    CHECK(quiet->waiter_count() == 2);
    REQUIRE(quiet->log().close().ok());
    REQUIRE(busy->log().close().ok());
}
