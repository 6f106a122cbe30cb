// broker_client: a request handed to shard 0's ring, its answer awaited here.
#include "broker/cluster/broker_client.h"

#include <chrono>
#include <cstring>
#include <future>
#include <memory>

namespace spate::broker::cluster {

error broker_client::fail(const std::string& what) const {
    return error{-1, "broker " + std::to_string(_broker_id) + " at " + _host + ":" +
                         std::to_string(_port) + ": " + what};
}

bool broker_client::resolve() {
    return _address_length != 0 || resolve_address(_host, _port, _address, _address_length);
}

void broker_client::exchange_async(std::vector<uint8_t> frame, int32_t correlation_id,
                                   std::function<void(result<net::frame_bytes>)> done) {
    if (!resolve()) {
        done(fail("cannot resolve the host"));
        return;
    }
    outgoing_call call;
    call.broker_id = _broker_id;
    call.address = _address;
    call.address_length = _address_length;
    call.frame = std::move(frame);
    call.correlation_id = correlation_id;
    call.timeout_ms = _timeout_ms;
    call.done = std::move(done);
    _send(std::move(call));
}

result<net::frame_bytes> broker_client::exchange(std::vector<uint8_t> frame,
                                                 int32_t correlation_id) {
    auto answer = std::make_shared<std::promise<result<net::frame_bytes>>>();
    auto arrived = answer->get_future();
    exchange_async(std::move(frame), correlation_id, [answer](result<net::frame_bytes> outcome) {
        answer->set_value(std::move(outcome));
    });
    // Shard 0 answers within the timeout (its timer fails the call); the extra second only
    // guards against a shard that stopped meanwhile.
    if (arrived.wait_for(std::chrono::milliseconds(_timeout_ms + 1000)) !=
        std::future_status::ready)
        return fail("no answer in time");
    auto outcome = arrived.get();
    if (!outcome) return fail(outcome.failure().message);
    return std::move(outcome.value());
}

}  // namespace spate::broker::cluster
