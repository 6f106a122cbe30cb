// Fetch (1): reads whole batches from each partition's owner shard as file ranges and
// sends them with splice (zero-copy). Long polling: when fewer than min_bytes are
// available the fetch registers a wake-up on every partition it reads and a timer of
// max_wait_ms; the next append to any of them (or the timer) runs another round.
// Sessionless: every requested partition is listed in every answer and session_id is
// always 0 (KIP-227 sessions are optional for clients; a non-zero id is unknown here).
//
// What one answer carries (KIP-74, Fetch v3+): partitions are filled in request order
// while the response's max_bytes (at most fetch_response_bytes_max, 55 MiB) lasts; the
// first partition with data is always answered (at least its first batch), and a later
// partition whose batches do not fit what is left is answered empty, as Kafka answers
// a partition whose first batch does not fit. Unlike Kafka, a partition is never split
// to fill the last bytes: it fits whole (up to its partition_max_bytes) or not at all.
// Each partition with data holds its segment's descriptor until the answer is sent, so
// an answer also carries data from at most fetch_partitions_with_data_max(shard)
// partitions, the first ones in request order; a client fetching more partitions than
// that gets the rest in its next fetches.
//
// Owner shards read in parallel, each in request order over its own partitions with the
// whole byte budget and its share of the partition cap, and do not read a partition
// once its budget is spent (it stays listed, with its watermarks). The shard answering
// then applies the rules above to the merged results in request order and lets go of
// what does not fit at once, so a fetch never holds more than a few descriptors beyond
// what it answers, and none at all while it waits for data.
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {
namespace {

using proto::error_code;

struct partition_read {
    size_t topic_slot;
    size_t partition_slot;
    std::string topic;
    int32_t index;
    int64_t offset;
    int32_t max_bytes;
    // Filled on the owner shard.
    error_code error = error_code::none;
    int64_t high_watermark = -1;
    int64_t log_start_offset = -1;
    std::vector<storage::file_slice> slices;
    int64_t bytes = 0;
    // The partition had data at the fetch offset but its owner did not read it: the
    // budget of this round was spent on the partitions before it.
    bool unread = false;
    // The partition's data was read but does not fit in the answer.
    bool left_out = false;
};
using read_list = std::vector<partition_read>;

// What one owner shard may read in a round: the response's max_bytes (each owner gets
// all of it, as it cannot know what the others read) and its share of the partitions
// with data the answer may carry.
struct read_budget {
    int64_t bytes;
    size_t partitions_with_data;
};

// The partitions with data one answer may carry, each holding its segment's descriptor
// until the answer is sent: as many as one shard's descriptor cache keeps open. The
// cache budgets together take half the descriptor limit, so one such answer per shard
// fits in the half left to connections and transfers, whatever the partition count of
// the fetch (a fetch of 1,000 partitions used to hold 1,000 descriptors).
size_t fetch_partitions_with_data_max(shard_state& shard) {
    const int64_t files = shard.owner().shard_segment_files();
    SPATE_ASSERT(files > 0, "a shard caches at least one segment descriptor");
    return static_cast<size_t>(files);
}

struct fetch_state : std::enable_shared_from_this<fetch_state> {
    request_ptr req;
    proto::fetch_request body;
    std::map<net::shard_id, read_list>
        by_owner;                         // what to read where (results overwritten each round)
    std::vector<partition_read> results;  // last round, in request order
    error_code top_error = error_code::none;
    bool done = false;
    bool round_running = false;
    bool wake_pending = false;
    bool waiting = false;
    bool expired = false;  // max_wait_ms has passed: the next round answers whatever it has
    uint64_t timer_id = 0;
    std::chrono::steady_clock::time_point deadline;
};
using fetch_ptr = std::shared_ptr<fetch_state>;

// The bytes of log one answer carries at most, whatever the client asks for: Kafka's
// broker setting fetch.max.bytes (KIP-541) and its default, 55 MiB. Without it a client
// asking for INT32_MAX could be sent more than a frame's int32 size can describe.
constexpr int64_t fetch_response_bytes_max = 55 << 20;

// The response's max_bytes, within fetch_response_bytes_max: Fetch v0-2 has none of its
// own (each partition is bounded only by its partition_max_bytes). A negative value from
// a client is an empty budget, which still lets the first partition with data through.
int64_t response_bytes_max(const fetch_state& state) {
    if (state.req->version() < 3) return fetch_response_bytes_max;
    return std::clamp<int64_t>(state.body.max_bytes, 0, fetch_response_bytes_max);
}

void run_round(fetch_ptr state);

// Reads `list` (this owner's partitions, in request order) within `budget`. The first
// partition with data here gets at least its first batch even beyond the byte budget,
// since it may be the first of the whole answer; a later one that does not fit is
// dropped at once rather than held until the answering shard drops it.
void read_on_owner(shard_state& owner, read_list& list, const read_budget& budget) {
    int64_t used = 0;
    size_t with_data = 0;
    for (partition_read& read : list) {
        read.slices.clear();
        read.bytes = 0;
        read.unread = false;
        read.left_out = false;
        read.error = error_code::none;
        partition* p = owner.find_partition(read.topic, read.index);
        if (p == nullptr) {
            read.error = error_code::unknown_topic_or_partition;
            continue;
        }
        read.high_watermark = p->high_watermark();
        read.log_start_offset = p->log().log_start_offset();
        if (read.offset < read.log_start_offset || read.offset > read.high_watermark) {
            read.error = error_code::offset_out_of_range;
            continue;
        }
        if (read.offset == read.high_watermark || read.max_bytes <= 0) continue;
        const int64_t left = budget.bytes - used;
        if (with_data == budget.partitions_with_data || (with_data > 0 && left <= 0)) {
            read.unread = true;
            continue;
        }
        // Kafka's limit for this partition; the log returns at least one batch, which
        // is what the first partition with data needs and may be too much for the others.
        const auto limit =
            static_cast<int32_t>(std::min<int64_t>(read.max_bytes, std::max<int64_t>(left, 0)));
        auto got = p->log().read(read.offset, limit);
        if (!got) {
            p->note_storage_failure("read", got.failure());
            read.error = error_code::kafka_storage_error;
            continue;
        }
        p->note_storage_success("read");
        int64_t bytes = 0;
        for (const auto& slice : got->slices) bytes += slice.length;
        if (bytes == 0) continue;
        if (with_data > 0 && bytes > left) {
            read.left_out = true;
            continue;
        }
        read.slices = std::move(got->slices);
        read.bytes = bytes;
        used += bytes;
        ++with_data;
    }
}

// Applies the response's limits to the merged results of a round, in request order (see
// the comment on top), releasing the descriptors of whatever does not go out. Returns
// whether the limits left data out: such an answer is as full as it may be, and waiting
// for min_bytes would only delay it (a fetch of many small partitions could otherwise
// wait max_wait_ms with data at hand).
bool trim_to_response(fetch_state& state) {
    std::sort(state.results.begin(), state.results.end(), [](const auto& a, const auto& b) {
        return std::tie(a.topic_slot, a.partition_slot) < std::tie(b.topic_slot, b.partition_slot);
    });
    const int64_t budget = response_bytes_max(state);
    const size_t with_data_max = fetch_partitions_with_data_max(*state.req->shard);
    int64_t used = 0;
    size_t with_data = 0;
    // Past a partition its owner left unread, nothing goes out: Kafka's order fills
    // that partition before any later one, so a later one may not jump the queue.
    bool past_unread = false;
    bool limited = false;
    for (partition_read& read : state.results) {
        if (read.unread) past_unread = true;
        if (read.unread || read.left_out) limited = true;
        if (read.bytes == 0) continue;
        const bool fits = with_data == 0 || used + read.bytes <= budget;
        if (!past_unread && fits && with_data < with_data_max) {
            used += read.bytes;
            ++with_data;
            continue;
        }
        read.slices.clear();
        read.bytes = 0;
        limited = true;
    }
    return limited;
}

void respond_now(const fetch_ptr& state) {
    state->done = true;
    shard_state& shard = *state->req->shard;
    if (state->timer_id != 0) shard.net_shard().cancel_timer(state->timer_id);
    proto::fetch_response response;
    response.error_code = proto::code(state->top_error);
    response.session_id = 0;
    for (const auto& topic : state->body.topics) {
        proto::fetch_response::fetchable_topic_response out;
        out.topic = topic.topic;
        for (const auto& part : topic.partitions) {
            proto::fetch_response::partition_data p;
            p.partition_index = part.partition;
            p.high_watermark = -1;
            p.last_stable_offset = -1;
            p.log_start_offset = -1;
            p.preferred_read_replica = -1;
            p.aborted_transactions.emplace();
            out.partitions.push_back(std::move(p));
        }
        response.responses.push_back(std::move(out));
    }
    // The results were trimmed to the response's limits (trim_to_response).
    std::vector<std::vector<storage::file_slice>> external;
    for (partition_read& read : state->results) {
        auto& p = response.responses[read.topic_slot].partitions[read.partition_slot];
        p.error_code = proto::code(read.error);
        p.high_watermark = read.high_watermark;
        p.last_stable_offset = read.high_watermark;
        p.log_start_offset = read.log_start_offset;
        if (read.error != error_code::none || read.bytes == 0) continue;
        p.records_.external_length = static_cast<int32_t>(read.bytes);
        p.records_.external_id = static_cast<uint32_t>(external.size());
        external.push_back(std::move(read.slices));
    }
    // Encode through a writer to learn where each partition's records go, then turn
    // every gap into file pieces spliced by net/ at that position.
    proto::writer out(512);
    out.int32(0);
    proto::encode_response_header(
        out, state->req->header.correlation_id,
        proto::response_header_version(state->req->header.api_key, state->req->version()));
    response.encode(out, state->req->version());
    out.patch_int32(0, static_cast<int32_t>(out.size() - 4));
    net::response message;
    for (const proto::external_gap& gap : out.gaps()) {
        for (auto& slice : external[gap.id]) {
            net::file_piece piece;
            piece.position = gap.position;
            piece.fd = slice.file->fd;
            piece.file_position = slice.position;
            piece.length = slice.length;
            piece.keep_alive = slice.file;
            message.pieces.push_back(std::move(piece));
        }
    }
    message.bytes = std::move(out.buffer());
    shard.net_shard().respond(state->req->conn, state->req->sequence, std::move(message));
    state->results.clear();
}

// Registers a wake-up on every partition of this fetch, on their owner shards. The round
// that found too little read each partition on its owner, and this registration arrives
// there later (after a hop back to this shard and another one out): an append in between
// would find no waiter, and the fetch would sleep until max_wait_ms although data is
// there. So each partition carries the high watermark the round saw, and a partition
// whose watermark has moved since wakes the fetch at once instead of registering.
void wait_for_data(const fetch_ptr& state) {
    shard_state& shard = *state->req->shard;
    broker* process = &shard.owner();
    const net::shard_id origin = shard.id();
    std::weak_ptr<fetch_state> weak = state;
    struct watched {
        std::string topic;
        int32_t index;
        int64_t seen_high_watermark;
    };
    for (auto& [owner, list] : state->by_owner) {
        std::vector<watched> keys;
        for (const auto& read : list) keys.push_back({read.topic, read.index, read.high_watermark});
        shard.call_on<int>(
            owner,
            [keys, weak, process, origin](shard_state& target, std::function<void(int)> reply) {
                const net::shard_id owner_id = target.id();
                auto wake = [weak, process, owner_id, origin] {
                    process->state(owner_id).net_shard().submit_to(origin, [weak] {
                        fetch_ptr alive = weak.lock();
                        if (!alive || alive->done) return;
                        if (alive->round_running) {
                            alive->wake_pending = true;
                            return;
                        }
                        run_round(alive);
                    });
                };
                bool moved = false;
                for (const auto& key : keys) {
                    partition* p = target.find_partition(key.topic, key.index);
                    if (p == nullptr) continue;
                    if (p->high_watermark() > key.seen_high_watermark) {
                        moved = true;
                        break;
                    }
                    p->add_waiter(weak, wake);
                }
                if (moved) wake();
                reply(0);
            },
            [](int) {});
    }
}

void finish_round(const fetch_ptr& state) {
    state->round_running = false;
    if (state->done) return;
    const bool limited = trim_to_response(*state);
    int64_t total = 0;
    bool any_error = false;
    for (const auto& read : state->results) {
        total += read.bytes;
        if (read.error != error_code::none) any_error = true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (total >= state->body.min_bytes || limited || any_error || state->body.max_wait_ms <= 0 ||
        state->expired || now >= state->deadline) {
        respond_now(state);
        return;
    }
    // Too little to answer: the next round reads again, so nothing is held while waiting.
    for (auto& read : state->results) {
        read.slices.clear();
        read.bytes = 0;
    }
    if (state->wake_pending) {
        state->wake_pending = false;
        run_round(state);
        return;
    }
    if (!state->waiting) {
        state->waiting = true;
        const auto delay =
            std::chrono::duration_cast<std::chrono::milliseconds>(state->deadline - now);
        // The timer holds the fetch alive while it waits (wake-ups only hold weak
        // references); answering cancels the timer, which releases it.
        state->timer_id = state->req->shard->net_shard().add_timer(delay, [alive = state] {
            if (alive->done) return;
            alive->timer_id = 0;
            // The timer decides the deadline (timers fire by the loop's cached clock, so
            // comparing clocks here could miss it by a hair and wait forever).
            alive->expired = true;
            if (alive->round_running) {
                alive->wake_pending = true;
                return;
            }
            run_round(alive);
        });
    }
    // Waiters are consumed by each append: register again for the next one.
    wait_for_data(state);
}

void run_round(fetch_ptr state) {
    state->round_running = true;
    state->results.clear();
    auto remaining = std::make_shared<size_t>(state->by_owner.size());
    // The partition cap is shared out so that the owners together never read more
    // partitions with data than one answer may carry (give or take the rounding).
    const size_t owners = state->by_owner.size();
    const read_budget budget{
        response_bytes_max(*state),
        (fetch_partitions_with_data_max(*state->req->shard) + owners - 1) / owners};
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
    for (auto& entry : state->by_owner) {
        const net::shard_id owner = entry.first;
        read_list& list = entry.second;
        auto shared_list = std::make_shared<read_list>(list);
        state->req->shard->call_on<read_list>(
            owner,
            [shared_list, budget](shard_state& target, std::function<void(read_list)> reply) {
                read_on_owner(target, *shared_list, budget);
                reply(std::move(*shared_list));
            },
            [state, remaining, &list](read_list done) {
                // The list keeps what each partition's high watermark was, for
                // wait_for_data; `done` holds the same partitions in the same order.
                for (size_t i = 0; i < done.size(); ++i)
                    list[i].high_watermark = done[i].high_watermark;
                for (auto& read : done) state->results.push_back(std::move(read));
                if (--*remaining == 0) finish_round(state);
            });
    }
}

}  // namespace

void handle_fetch(request_ptr req) {
    auto state = std::make_shared<fetch_state>();
    proto::reader in = req->body();
    if (!state->body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed Fetch request");
        return;
    }
    state->req = req;
    shard_state& shard = *req->shard;
    const auto& body = state->body;
    state->deadline = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(std::max<int32_t>(body.max_wait_ms, 0));
    if (req->version() >= 7 && body.session_id != 0) {
        state->top_error = error_code::fetch_session_id_not_found;
        respond_now(state);
        return;
    }
    for (size_t t = 0; t < body.topics.size(); ++t) {
        const auto& topic = body.topics[t];
        const topic_info* info = shard.metadata()->find(topic.topic);
        for (size_t i = 0; i < topic.partitions.size(); ++i) {
            const auto& part = topic.partitions[i];
            partition_read read;
            read.topic_slot = t;
            read.partition_slot = i;
            read.topic = topic.topic;
            read.index = part.partition;
            read.offset = part.fetch_offset;
            read.max_bytes = part.partition_max_bytes;
            const auto owner = owner_of(info, part.partition);
            if (!owner) {
                read.error = error_code::unknown_topic_or_partition;
                state->results.push_back(std::move(read));
                continue;
            }
            state->by_owner[*owner].push_back(std::move(read));
        }
    }
    if (state->by_owner.empty()) {
        respond_now(state);
        return;
    }
    // Partitions that failed before reading stay in `results` of every round.
    auto failed_early = std::make_shared<std::vector<partition_read>>(std::move(state->results));
    state->results.clear();
    if (!failed_early->empty()) {
        for (auto& read : *failed_early) {
            auto& list = state->by_owner.begin()->second;
            list.push_back(std::move(read));
        }
    }
    run_round(state);
}

}  // namespace spate::broker
