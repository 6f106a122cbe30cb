#pragma once
// spsc_queue<T>: a bounded single-producer/single-consumer ring, the cross-shard mailbox.
//
// One queue exists per ordered pair of shards: the sending shard's thread is the only
// producer and the receiving shard's thread the only consumer. Items are stored by value
// and handed over by move. The capacity is fixed at construction (a power of two); a full
// queue refuses the push and the producer keeps the item itself (see shard's overflow
// lists), so nothing is ever dropped and memory stays bounded.
//
// Publication: the producer writes the slot, then stores `_tail` with release; the consumer
// loads `_tail` with acquire before reading the slot (and symmetrically for `_head`). Each
// side caches the other's index so the shared cache lines are touched only when needed.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <utility>

#include "proto/assert.h"

namespace spate::net {

template <class T>
class spsc_queue {
public:
    explicit spsc_queue(size_t capacity)
        : _mask(capacity - 1), _slots(std::make_unique<std::optional<T>[]>(capacity)) {
        SPATE_ASSERT(capacity >= 2, "spsc_queue capacity of at least 2");
        SPATE_ASSERT((capacity & (capacity - 1)) == 0, "spsc_queue capacity is a power of two");
    }
    spsc_queue(const spsc_queue&) = delete;
    spsc_queue& operator=(const spsc_queue&) = delete;

    size_t capacity() const { return _mask + 1; }

    // Producer only. Returns false (leaving `item` untouched) when the queue is full.
    bool try_push(T& item) {
        const uint64_t tail = _producer.tail;
        if (tail - _producer.head_cached > _mask) {
            _producer.head_cached = _head.load(std::memory_order_acquire);
            if (tail - _producer.head_cached > _mask) return false;
        }
        auto& slot = _slots[tail & _mask];
        SPATE_ASSERT(!slot.has_value(), "spsc slot free before a push");
        slot.emplace(std::move(item));
        _producer.tail = tail + 1;
        _tail.store(tail + 1, std::memory_order_release);
        return true;
    }

    // Consumer only. Returns the oldest item, or nothing when the queue is empty.
    std::optional<T> try_pop() {
        const uint64_t head = _consumer.head;
        if (head == _consumer.tail_cached) {
            _consumer.tail_cached = _tail.load(std::memory_order_acquire);
            if (head == _consumer.tail_cached) return std::nullopt;
        }
        auto& slot = _slots[head & _mask];
        SPATE_ASSERT(slot.has_value(), "spsc slot filled before a pop");
        std::optional<T> item(std::move(*slot));
        slot.reset();
        _consumer.head = head + 1;
        _head.store(head + 1, std::memory_order_release);
        return item;
    }

    // Either side, as a hint: whether the consumer would find something now. The consumer's
    // sleep protocol calls it after a sequentially consistent fence.
    bool looks_empty() const {
        return _tail.load(std::memory_order_acquire) == _head.load(std::memory_order_acquire);
    }
    // Either side, as a hint (metrics): the items queued at about this moment.
    size_t approximate_size() const {
        const uint64_t head = _head.load(std::memory_order_acquire);
        const uint64_t tail = _tail.load(std::memory_order_acquire);
        return tail > head ? static_cast<size_t>(tail - head) : 0;
    }

private:
    static constexpr size_t line_bytes = 64;

    const uint64_t _mask;
    std::unique_ptr<std::optional<T>[]> _slots;
    // Each side's private indexes sit on their own cache line, as do the shared ones.
    struct alignas(line_bytes) producer_side {
        uint64_t tail = 0;
        uint64_t head_cached = 0;
    } _producer;
    struct alignas(line_bytes) consumer_side {
        uint64_t head = 0;
        uint64_t tail_cached = 0;
    } _consumer;
    alignas(line_bytes) std::atomic<uint64_t> _head{0};
    alignas(line_bytes) std::atomic<uint64_t> _tail{0};
};

}  // namespace spate::net
