// Shared by the broker tests that drive a partition directly: a partition of topic "t"
// over a log in `dir`, opened as the broker opens one (producer state restored).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <memory>

#include "broker/partition.h"
#include "storage/log.h"

namespace spate::broker::testing {

inline std::unique_ptr<partition> open_partition(const std::filesystem::path& dir) {
    auto log = storage::partition_log::open(dir, storage::log_config{});
    REQUIRE(log.ok());
    auto p = std::make_unique<partition>("t", 0, proto::uuid{}, dir, std::move(log).value(),
                                         effective_topic_config{});
    p->restore_producer_state();
    return p;
}

}  // namespace spate::broker::testing
