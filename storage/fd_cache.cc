#include "storage/fd_cache.h"

#include "proto/assert.h"

namespace spate::storage {

cached_descriptor::~cached_descriptor() {
    if (_cache != nullptr) _cache->forget(*this);
}

fd_cache::fd_cache(size_t budget) : _budget(budget) {
    SPATE_ASSERT(budget > 0, "a descriptor cache holds at least the segment in use");
}

fd_cache::~fd_cache() {
    SPATE_ASSERT(_count == 0, "every cached segment goes before its shard's cache");
    SPATE_ASSERT(_newest == nullptr, "an empty cache has no list");
}

void fd_cache::unlink(cached_descriptor& entry) {
    SPATE_ASSERT(entry._cache == this, "an entry leaves only the cache that lists it");
    SPATE_ASSERT(_count > 0, "a listed entry is counted");
    if (entry._newer != nullptr)
        entry._newer->_older = entry._older;
    else
        _newest = entry._older;
    if (entry._older != nullptr)
        entry._older->_newer = entry._newer;
    else
        _oldest = entry._newer;
    entry._newer = nullptr;
    entry._older = nullptr;
    entry._cache = nullptr;
    --_count;
}

void fd_cache::evict(cached_descriptor& entry) {
    // The entry leaves the list before it drops its descriptor, so the list never names
    // an entry without one.
    unlink(entry);
    entry._drop(entry);
}

void fd_cache::touch(cached_descriptor& entry) {
    SPATE_ASSERT(entry._cache == nullptr || entry._cache == this,
                 "a segment belongs to one shard's cache");
    if (entry._cache == this) {
        if (_newest == &entry) {
            entry._used_tick = _ticks;
            return;
        }
        unlink(entry);
    }
    entry._cache = this;
    entry._used_tick = _ticks;
    entry._newer = nullptr;
    entry._older = _newest;
    if (_newest != nullptr) _newest->_newer = &entry;
    _newest = &entry;
    if (_oldest == nullptr) _oldest = &entry;
    ++_count;
    // The touched entry is the newest, so the oldest is another one while over budget
    // (the budget is at least one).
    while (_count > _budget) {
        SPATE_ASSERT(_oldest != &entry, "the entry in use is never evicted by its own touch");
        evict(*_oldest);
        ++_evictions;
    }
}

void fd_cache::forget(cached_descriptor& entry) {
    if (entry._cache == nullptr) return;
    unlink(entry);
}

bool fd_cache::evict_one_except(const cached_descriptor* keep) {
    cached_descriptor* victim = _oldest;
    if (victim != nullptr && victim == keep) victim = victim->_newer;
    if (victim == nullptr) return false;
    evict(*victim);
    ++_evictions;
    return true;
}

size_t fd_cache::tick_and_close_idle(uint64_t idle_ticks) {
    SPATE_ASSERT(idle_ticks > 0, "a descriptor used during this tick is not idle");
    ++_ticks;
    size_t closed = 0;
    while (_oldest != nullptr && _ticks - _oldest->_used_tick >= idle_ticks) {
        SPATE_ASSERT(_oldest->_used_tick <= _ticks, "entries are stamped with past ticks");
        evict(*_oldest);
        ++closed;
    }
    _idle_closes += closed;
    return closed;
}

}  // namespace spate::storage
