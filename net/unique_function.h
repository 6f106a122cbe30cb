#pragma once
// unique_function<R(Args...)>: a move-only callable wrapper. std::function needs copyable
// targets, and g++ 12 has no std::move_only_function, so this is our own small one.
//
// Callables up to `inline_bytes` that can be moved without throwing live inside the object
// (no allocation: most tasks capture a few pointers); bigger ones go to the heap. Not
// thread-safe by itself: whoever holds the object owns it; moving it hands it over.

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include "proto/assert.h"

namespace spate::net {

template <class Signature>
class unique_function;

template <class R, class... Args>
class unique_function<R(Args...)> {
public:
    static constexpr size_t inline_bytes = 48;

    unique_function() noexcept = default;
    unique_function(std::nullptr_t) noexcept {}  // NOLINT: implicit like std::function

    template <class F,
              class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, unique_function> &&
                                       std::is_invocable_r_v<R, std::decay_t<F>&, Args...>>>
    unique_function(F&& callable) {  // NOLINT: implicit like std::function
        using target = std::decay_t<F>;
        if constexpr (fits_inline<target>()) {
            ::new (static_cast<void*>(_storage)) target(std::forward<F>(callable));
            _operations = &inline_operations<target>;
        } else {
            target* allocated = new target(std::forward<F>(callable));
            ::new (static_cast<void*>(_storage)) target*(allocated);
            _operations = &heap_operations<target>;
        }
    }

    unique_function(unique_function&& other) noexcept { take(other); }
    unique_function& operator=(unique_function&& other) noexcept {
        if (this != &other) {
            reset();
            take(other);
        }
        return *this;
    }
    unique_function& operator=(std::nullptr_t) noexcept {
        reset();
        return *this;
    }
    unique_function(const unique_function&) = delete;
    unique_function& operator=(const unique_function&) = delete;
    ~unique_function() { reset(); }

    explicit operator bool() const noexcept { return _operations != nullptr; }

    R operator()(Args... args) {
        SPATE_ASSERT(_operations != nullptr, "calling an empty unique_function");
        return _operations->invoke(_storage, std::forward<Args>(args)...);
    }

private:
    // One table of plain function pointers per target type: no virtual base, no RTTI.
    struct operations {
        R (*invoke)(void* storage, Args&&... args);
        // Move-constructs the target from `from` into `to`, then destroys the one in `from`.
        void (*relocate)(void* to, void* from) noexcept;
        void (*destroy)(void* storage) noexcept;
    };

    template <class T>
    static constexpr bool fits_inline() {
        return sizeof(T) <= inline_bytes && alignof(T) <= alignof(std::max_align_t) &&
               std::is_nothrow_move_constructible_v<T>;
    }

    template <class T>
    static constexpr operations inline_operations = {
        [](void* storage, Args&&... args) -> R {
            return (*std::launder(static_cast<T*>(storage)))(std::forward<Args>(args)...);
        },
        [](void* to, void* from) noexcept {
            T* source = std::launder(static_cast<T*>(from));
            ::new (to) T(std::move(*source));
            source->~T();
        },
        [](void* storage) noexcept { std::launder(static_cast<T*>(storage))->~T(); },
    };

    template <class T>
    static constexpr operations heap_operations = {
        [](void* storage, Args&&... args) -> R {
            return (**std::launder(static_cast<T**>(storage)))(std::forward<Args>(args)...);
        },
        [](void* to, void* from) noexcept { ::new (to) T*(*std::launder(static_cast<T**>(from))); },
        [](void* storage) noexcept { delete *std::launder(static_cast<T**>(storage)); },
    };

    void take(unique_function& other) noexcept {
        if (other._operations == nullptr) return;
        other._operations->relocate(_storage, other._storage);
        _operations = other._operations;
        other._operations = nullptr;
    }

    void reset() noexcept {
        if (_operations == nullptr) return;
        _operations->destroy(_storage);
        _operations = nullptr;
    }

    alignas(std::max_align_t) unsigned char _storage[inline_bytes];
    const operations* _operations = nullptr;
};

}  // namespace spate::net
