#pragma once
// result<T>: a value or an error, for operating errors (errno-style) and decode
// errors. g++ 12 has no std::expected, so this is our own small one.
// Header-only and dependency-free so that every folder (net/ included) may use it.

#include <string>
#include <utility>
#include <variant>

#include "proto/assert.h"

namespace spate {

// An error: a numeric code (an errno, or a Kafka error code, as the caller
// documents) and a human-readable message naming what failed.
struct error {
    int code = 0;
    std::string message;
};

template <class T>
class [[nodiscard]] result {
public:
    result(T value) : _state(std::move(value)) {}          // NOLINT: implicit by design
    result(error failure) : _state(std::move(failure)) {}  // NOLINT: implicit by design

    bool ok() const { return _state.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & {
        SPATE_ASSERT(ok(), "value() on an error result");
        return std::get<0>(_state);
    }
    const T& value() const& {
        SPATE_ASSERT(ok(), "value() on an error result");
        return std::get<0>(_state);
    }
    T&& value() && {
        SPATE_ASSERT(ok(), "value() on an error result");
        return std::get<0>(std::move(_state));
    }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const error& failure() const {
        SPATE_ASSERT(!ok(), "failure() on an ok result");
        return std::get<1>(_state);
    }

private:
    std::variant<T, error> _state;
};

// result<void>: success or an error.
template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(error failure) : _failure(std::move(failure)), _ok(false) {}  // NOLINT

    bool ok() const { return _ok; }
    explicit operator bool() const { return _ok; }
    const error& failure() const {
        SPATE_ASSERT(!_ok, "failure() on an ok result");
        return _failure;
    }

private:
    error _failure;
    bool _ok = true;
};

inline result<void> ok_result() { return {}; }

}  // namespace spate
