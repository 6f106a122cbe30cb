// unique_function and spsc_queue: the building blocks of tasks and cross-shard mailboxes.
#include <doctest/doctest.h>

#include <memory>
#include <thread>
#include <vector>

#include "net/spsc_queue.h"
#include "net/unique_function.h"

using spate::net::spsc_queue;
using spate::net::unique_function;

TEST_CASE("unique_function holds move-only callables, small and large") {
    auto owned = std::make_unique<int>(41);
    unique_function<int(int)> small = [p = std::move(owned)](int add) { return *p + add; };
    CHECK(small(1) == 42);

    struct big_state {
        char padding[200] = {};
        std::unique_ptr<int> value = std::make_unique<int>(7);
    };
    unique_function<int()> big = [s = big_state{}] { return *s.value; };
    CHECK(big() == 7);

    unique_function<int()> moved = std::move(big);
    CHECK_FALSE(static_cast<bool>(big));  // NOLINT: checking the moved-from state on purpose
    CHECK(moved() == 7);

    unique_function<int(int)> assigned;
    CHECK_FALSE(static_cast<bool>(assigned));
    assigned = std::move(small);
    CHECK(assigned(2) == 43);
}

TEST_CASE("unique_function destroys its target exactly once") {
    auto counter = std::make_shared<int>(0);
    {
        unique_function<void()> f = [counter] { ++*counter; };
        unique_function<void()> g = std::move(f);
        g();
        CHECK(counter.use_count() == 2);
    }
    CHECK(counter.use_count() == 1);
    CHECK(*counter == 1);
}

TEST_CASE("spsc_queue refuses pushes when full and keeps order") {
    spsc_queue<int> queue(4);
    for (int i = 0; i < 4; ++i) {
        int item = i;
        CHECK(queue.try_push(item));
    }
    int extra = 99;
    CHECK_FALSE(queue.try_push(extra));
    CHECK(extra == 99);
    for (int i = 0; i < 4; ++i) {
        auto popped = queue.try_pop();
        REQUIRE(popped.has_value());
        CHECK(*popped == i);
    }
    CHECK_FALSE(queue.try_pop().has_value());
    CHECK(queue.looks_empty());
}

TEST_CASE("spsc_queue hands items across threads in order") {
    spsc_queue<std::unique_ptr<int>> queue(64);
    constexpr int count = 200000;
    std::thread producer([&] {
        for (int i = 0; i < count; ++i) {
            auto item = std::make_unique<int>(i);
            while (!queue.try_push(item)) std::this_thread::yield();
        }
    });
    int expected = 0;
    bool in_order = true;
    while (expected < count) {
        auto popped = queue.try_pop();
        if (!popped) {
            std::this_thread::yield();
            continue;
        }
        if (**popped != expected) in_order = false;
        ++expected;
    }
    producer.join();
    CHECK(in_order);
}
