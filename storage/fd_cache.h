#pragma once
// fd_cache: a budget of open segment descriptors, shared by every log of one shard.
//
// Without it every partition keeps its active segment open, so the descriptors a broker
// needs grow with its partitions: 100,000 partitions need 100,000 descriptors at once,
// which fails at creation, makes every restart fail with EMFILE, and leaves nothing for
// connections. With it a segment's descriptor is a cache entry: the segment opens its
// file on use (segment::file) and tells the cache (touch); beyond the budget the cache
// asks the least recently used segments to let theirs go (their drop function), and they
// reopen on their next use. Start-up, idle partitions and housekeeping therefore never
// hold more than the budget, whatever the partition count. Descriptors unused for a
// while are closed too (tick_and_close_idle), so that idle partitions hold none even
// below the budget, leaving the descriptors to connections and transfers.
//
// What the budget does not count: a segment that lets its descriptor go only drops its
// reference to the shared segment_file, so holders of other references keep it open
// until they finish — a zero-copy fetch being spliced on some shard, a sync request of a
// closed segment waiting for its fdatasync, an fdatasync of the active segment in flight
// on the ring, a compaction run reading its source. Those are bounded by the work in
// flight rather than by the partition count, and none of them is ever closed under its
// holder. A segment reopened while an old reference lives has two descriptors for a
// while; both name the same file.
//
// Durability: fdatasync flushes a file's dirty pages whichever descriptor wrote them, and
// Linux (errseq, 4.13+) reports a writeback error to an fdatasync through a descriptor
// opened before the error, or after it when nobody has seen it yet, so closing and
// reopening a segment between its writes and their fdatasync loses neither. The one gap:
// the kernel may drop a file's inode, and with it an unseen error, while no descriptor
// holds it (only under memory pressure).
//
// Ownership: one per shard (broker::shard_state), used only on that shard's thread, and
// it outlives every log of the shard (entries leave the list when their segment dies;
// the destructor asserts that none is left). Not thread-safe. Nothing here does I/O.

#include <cstddef>
#include <cstdint>

namespace spate::storage {

class fd_cache;

// Something holding one cached descriptor that it can give up on request (a segment).
// An entry is in its cache's list exactly while it holds a descriptor it told the cache
// about; it leaves the list when it closes the descriptor itself (fd_cache::forget),
// when the cache evicts it, or when it is destroyed.
class cached_descriptor {
public:
    // `drop` is called by the cache, after the entry left the list: it drops the
    // descriptor (the entry's reference to it), and the next use reopens the file. It must
    // not call back into the cache. A function pointer rather than a virtual function
    // keeps segments free of a vtable and of a polymorphic destructor.
    using drop_function = void (*)(cached_descriptor& entry);
    explicit cached_descriptor(drop_function drop) : _drop(drop) {}
    cached_descriptor(const cached_descriptor&) = delete;
    cached_descriptor& operator=(const cached_descriptor&) = delete;

protected:
    ~cached_descriptor();

private:
    friend class fd_cache;
    drop_function _drop;
    fd_cache* _cache = nullptr;  // non-null exactly while listed
    uint64_t _used_tick = 0;     // the cache's clock at the last touch
    cached_descriptor* _newer = nullptr;
    cached_descriptor* _older = nullptr;
};

class fd_cache {
public:
    // `budget` descriptors at most stay cached (at least one: the segment being used).
    explicit fd_cache(size_t budget);
    ~fd_cache();
    fd_cache(const fd_cache&) = delete;
    fd_cache& operator=(const fd_cache&) = delete;

    // `entry` just opened or used its descriptor: it becomes the most recently used and,
    // beyond the budget, the least recently used others drop theirs. The entry itself is
    // never evicted by its own touch, so the descriptor it is about to use stays valid.
    void touch(cached_descriptor& entry);
    // `entry` closed its descriptor itself (or is going away); nothing if it is not listed.
    void forget(cached_descriptor& entry);
    // Evicts the least recently used entry other than `keep` (which may be null), after
    // an open failed with EMFILE or ENFILE: a descriptor this cache gives up may make the
    // retry succeed. Returns false when there was nothing to evict.
    bool evict_one_except(const cached_descriptor* keep);

    // Advances the cache's clock by one tick (the shard's housekeeping second) and closes
    // the descriptors not used for `idle_ticks` ticks or more, oldest first; returns how
    // many. The list is in order of use, so this stops at the first recent entry.
    size_t tick_and_close_idle(uint64_t idle_ticks);

    size_t budget() const { return _budget; }
    // Entries holding a descriptor now (at most the budget).
    size_t open_count() const { return _count; }
    // Descriptors dropped to stay within the budget since construction, for the
    // resource report: a count that grows fast means the budget is too small for the
    // partitions in use (each eviction costs a reopen later).
    uint64_t evictions() const { return _evictions; }
    uint64_t idle_closes() const { return _idle_closes; }

private:
    void unlink(cached_descriptor& entry);
    void evict(cached_descriptor& entry);

    size_t _budget;
    size_t _count = 0;
    uint64_t _evictions = 0;
    uint64_t _idle_closes = 0;
    uint64_t _ticks = 0;
    cached_descriptor* _newest = nullptr;
    cached_descriptor* _oldest = nullptr;
};

}  // namespace spate::storage
