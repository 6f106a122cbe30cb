#pragma once
// fan_out: the common shape of partition-level requests — group items by owner shard,
// run `on_owner(owner_state, item)` for each item there, bring every list back to the
// request's shard, `merge` each one, and call `done` after the last. Everything but
// `on_owner` runs on the request's shard, so the counters need no atomics.

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "broker/broker.h"

namespace spate::broker {

template <class Item>
void fan_out(shard_state& shard, std::map<net::shard_id, std::vector<Item>> by_owner,
             std::function<void(shard_state&, Item&)> on_owner,
             std::function<void(std::vector<Item>&)> merge, std::function<void()> done) {
    if (by_owner.empty()) {
        done();
        return;
    }
    auto remaining = std::make_shared<size_t>(by_owner.size());
    for (auto& [owner, list] : by_owner) {
        auto shared_list = std::make_shared<std::vector<Item>>(std::move(list));
        shard.call_on<std::vector<Item>>(
            owner,
            [shared_list, on_owner](shard_state& target,
                                    std::function<void(std::vector<Item>)> reply) {
                for (Item& item : *shared_list) on_owner(target, item);
                reply(std::move(*shared_list));
            },
            [remaining, merge, done](std::vector<Item> returned) {
                merge(returned);
                if (--*remaining == 0) done();
            });
    }
}

}  // namespace spate::broker
