// Fetch (1): reads whole batches from each partition's owner shard as file ranges and
// sends them with splice (zero-copy). Long polling: when fewer than min_bytes are
// available the fetch waits on a timer of max_wait_ms and on a wake-up that each owner
// shard registered on its partitions while reading them (in the same turn, so no append
// slips between); the next append to any of them (or the timer) runs another round.
// Sessions (KIP-227, v7+, broker/fetch_session.h): a full fetch with epoch 0 opens a
// session and lists every partition; an incremental fetch names only what changed and
// its answer lists only partitions with records, a moved high watermark or log start
// offset, or an error. v13+ names topics by id (UNKNOWN_TOPIC_ID for an id that names
// no topic, INCONSISTENT_TOPIC_ID when the partition found belongs to another topic of
// the same name, e.g. one deleted and created again under a session).
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
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "broker/fetch_session.h"
#include "broker/handlers/handlers.h"
#include "broker/topic_config.h"
#include "net/clock.h"
#include "proto/error_code.h"
#include "proto/legacy_records.h"
#include "proto/messages.h"
#include "storage/file.h"

namespace spate::broker {
namespace {

using proto::error_code;

struct partition_read {
    // Position in the fetch's targets (the answer's order), which is the partition's
    // position in the fetch's session, if any, when the fetch began.
    size_t slot;
    std::string topic;
    proto::uuid topic_id;  // checked against the partition's when not zero
    int32_t index;
    int64_t offset;
    int32_t max_bytes;
    int32_t replica_id = -1;  // a follower's broker id; -1 for consumers
    int32_t current_leader_epoch = -1;
    int32_t last_fetched_epoch = -1;
    // Filled on the owner shard.
    error_code error = error_code::none;
    int64_t high_watermark = -1;
    // Where this fetch may read up to: the high watermark for consumers, the log end for
    // followers.
    int64_t visible_end = -1;
    bool as_follower = false;  // read to the log end, as one of the partition's followers
    // A follower whose log diverges from the leader's (KIP-101/279): the largest epoch the
    // leader knows not above its last fetched epoch, and that epoch's end offset here.
    int32_t diverging_epoch = -1;
    int64_t diverging_end_offset = -1;
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

// A partition the answer is about, in answer order.
struct fetch_target {
    std::string topic;
    proto::uuid topic_id;
    int32_t partition;
};

struct fetch_state : std::enable_shared_from_this<fetch_state> {
    request_ptr req;
    proto::fetch_request body;
    std::vector<fetch_target> targets;
    // Partitions answered with an error before any read (unknown topic, id or partition).
    std::vector<partition_read> failed_early;
    // Fetch v0-v3: the records converted to message format v0/v1, owned until sent.
    std::vector<std::vector<uint8_t>> converted;
    session_ptr session;       // the session this fetch opened or continues, if any
    bool incremental = false;  // list only what changed (an incremental session fetch)
    bool limited = false;      // the last round's answer left data out (trim_to_response)
    int32_t response_session_id = 0;
    int64_t bytes_max = 0;  // the log bytes the answer may carry (response_bytes_max)
    // What to read where. Each round, the owner reads and fills its list in place (the
    // fetch touches it only once every owner has answered), so a round copies nothing.
    std::map<net::shard_id, read_list> by_owner;
    // Every partition of failed_early and by_owner, in request order (fixed at the start).
    std::vector<partition_read*> results;
    size_t owners_pending = 0;  // owners still reading in the running round
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
// On loopback with bbr, answers of more than loopback_fetch_max_bytes leave paced (README):
// they are cut there. Fixed when the fetch starts.
int64_t response_bytes_max(const request& req, const proto::fetch_request& body) {
    const int64_t asked = req.version() < 3
                              ? fetch_response_bytes_max
                              : std::clamp<int64_t>(body.max_bytes, 0, fetch_response_bytes_max);
    const int64_t loopback_max = req.shard->config().loopback_fetch_max_bytes;
    if (loopback_max <= 0 || asked <= loopback_max) return asked;
    return req.shard->net_shard().paced_loopback(req.conn) ? loopback_max : asked;
}

void run_round(fetch_ptr state);

// How an owner wakes a fetch that may wait for data (long polling): when the partitions it
// read gave it fewer than `min_bytes`, it registers a wake-up on them in the same turn as
// the read, so no append can fall between the two (wake_on).
struct read_watch {
    std::weak_ptr<fetch_state> fetch;
    broker* process;
    net::shard_id origin;  // the fetch's own shard
    int64_t min_bytes;
};

// The wake-up owner shard `owner_id` registers on its partitions for `watch`'s fetch, one
// shared by all of them (a reference each): it runs on the owner (at an append) and has
// the fetch's own shard run another round, or run one more after the round under way.
std::shared_ptr<const std::function<void()>> wake_on(const read_watch& watch,
                                                     net::shard_id owner_id) {
    return std::make_shared<const std::function<void()>>(
        [weak = watch.fetch, process = watch.process, owner_id, origin = watch.origin] {
            process->state(owner_id).net_shard().submit_to(origin, [weak] {
                fetch_ptr alive = weak.lock();
                if (!alive || alive->done) return;
                if (alive->round_running) {
                    alive->wake_pending = true;
                    return;
                }
                run_round(alive);
            });
        });
}

// A follower's log diverges when the leader does not have its last fetched epoch, or has
// it ending before the follower's fetch offset: the answer then carries where the epoch
// ends here, and the follower truncates (KIP-279) instead of fetching.
bool diverges(const partition& p, partition_read& read) {
    if (read.last_fetched_epoch < 0) return false;
    const auto [epoch, end] = p.log().end_offset_for_epoch(read.last_fetched_epoch);
    if (epoch == read.last_fetched_epoch && end >= read.offset) return false;
    read.diverging_epoch = epoch;
    read.diverging_end_offset = end;
    read.high_watermark = p.high_watermark();
    return true;
}

// Reads `list` (this owner's partitions, in request order) within `budget`. The first
// partition with data here gets at least its first batch even beyond the byte budget,
// since it may be the first of the whole answer; a later one that does not fit is
// dropped at once rather than held until the answering shard drops it.
void read_on_owner(shard_state& owner, read_list& list, const read_budget& budget,
                   const read_watch* watch) {
    int64_t used = 0;
    size_t with_data = 0;
    std::vector<partition*> readable;  // the partitions read without an error
    if (watch != nullptr) readable.reserve(list.size());
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
        if (!read.topic_id.is_zero() && p->topic_id() != read.topic_id) {
            read.error = error_code::inconsistent_topic_id;
            continue;
        }
        read.error = fenced(*p, read.current_leader_epoch);
        if (read.error != error_code::none) continue;
        read.log_start_offset = p->log().log_start_offset();
        // Only the partition's own replicas read past the high watermark, as followers.
        const bool follower = read.replica_id >= 0 && p->has_follower(read.replica_id);
        read.as_follower = follower;
        if (follower && diverges(*p, read)) continue;
        read.visible_end = follower ? p->log().log_end_offset() : p->high_watermark();
        // Out of range is outside the log, as in Kafka: a consumer between the high
        // watermark and the log end (a new leader whose watermark has not caught up yet)
        // gets nothing until the watermark passes it, not a reset to the log start.
        if (read.offset < read.log_start_offset || read.offset > p->log().log_end_offset()) {
            read.high_watermark = p->high_watermark();
            read.error = error_code::offset_out_of_range;
            continue;
        }
        // A follower's fetch offset is its log end: what it has, which may move the high
        // watermark (and release acks=all produces) before anything is read.
        if (follower) owner.follower_fetched(*p, read.replica_id, read.offset);
        read.high_watermark = p->high_watermark();
        if (watch != nullptr) readable.push_back(p);
        if (read.offset >= read.visible_end || read.max_bytes <= 0) continue;
        const int64_t left = budget.bytes - used;
        if (with_data == budget.partitions_with_data || (with_data > 0 && left <= 0)) {
            read.unread = true;
            continue;
        }
        // Kafka's limit for this partition; the log returns at least one batch, which
        // is what the first partition with data needs and may be too much for the others.
        const auto limit =
            static_cast<int32_t>(std::min<int64_t>(read.max_bytes, std::max<int64_t>(left, 0)));
        auto got = p->log().read(read.offset, limit, read.visible_end);
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
    // Enough here answers the fetch whatever the other owners read; too little, and the
    // next append to any of these partitions runs another round (a partition keeps one
    // waiter per fetch, however many rounds register it).
    if (watch == nullptr || used >= watch->min_bytes || readable.empty()) return;
    const auto wake = wake_on(*watch, owner.id());
    for (partition* p : readable) p->add_waiter(watch->fetch, wake);
}

// Applies the response's limits to the merged results of a round, in request order (see
// the comment on top), releasing the descriptors of whatever does not go out. Returns
// whether the limits left data out: such an answer is as full as it may be, and waiting
// for min_bytes would only delay it (a fetch of many small partitions could otherwise
// wait max_wait_ms with data at hand).
bool trim_to_response(fetch_state& state) {
    const int64_t budget = state.bytes_max;
    const size_t with_data_max = fetch_partitions_with_data_max(*state.req->shard);
    int64_t used = 0;
    size_t with_data = 0;
    // Past a partition its owner left unread, nothing goes out: Kafka's order fills
    // that partition before any later one, so a later one may not jump the queue.
    bool past_unread = false;
    bool limited = false;
    for (partition_read* entry : state.results) {
        partition_read& read = *entry;
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

// Whether an incremental answer lists this partition, updating what the session last
// told the client about it (Kafka's CachedPartition.maybeUpdateResponseData).
bool changed_for_session(fetch_session& session, const partition_read& read) {
    const int64_t at = session.find(read.slot, read.topic, read.topic_id, read.index);
    if (at < 0) return true;  // forgotten by a later request meanwhile: list it anyway
    session_partition& known = session.partitions[static_cast<size_t>(at)];
    bool include = read.bytes > 0 || read.error != error_code::none;
    if (known.high_watermark != read.high_watermark ||
        known.log_start_offset != read.log_start_offset)
        include = true;
    // An error leaves the watermark unknown, so the partition is listed again once it clears.
    known.high_watermark = read.error != error_code::none ? -1 : read.high_watermark;
    known.log_start_offset = read.log_start_offset;
    return include;
}

// Fetch v0-v3 predate record batch v2: the batches read are converted to message format
// v0 (Fetch v0-v1) or v1 (v2-v3), a copy instead of a splice, as Kafka 3.x does, unless
// the topic's message.downconversion.enable is false (UNSUPPORTED_VERSION then).
error_code downconvert(fetch_state& state, partition_read& read,
                       proto::fetch_response::partition_data& out) {
    const topic_info* topic = state.req->shard->metadata()->find(read.topic);
    if (topic == nullptr) return error_code::unknown_topic_or_partition;
    if (!effective_config(state.req->shard->config(), topic->configs).downconversion_enable)
        return error_code::unsupported_version;
    std::vector<uint8_t> bytes(static_cast<size_t>(read.bytes));
    size_t at = 0;
    for (const storage::file_slice& slice : read.slices) {
        const ssize_t got = ::pread(slice.file->fd, bytes.data() + at,
                                    static_cast<size_t>(slice.length), slice.position);
        if (got != slice.length) return error_code::kafka_storage_error;
        at += static_cast<size_t>(slice.length);
    }
    read.slices.clear();
    const int8_t magic = state.req->version() >= 2 ? 1 : 0;
    auto converted = proto::downconvert_batches(
        bytes, magic, static_cast<size_t>(std::max<int32_t>(read.max_bytes, 1)));
    if (!converted) return error_code::corrupt_message;
    state.converted.push_back(std::move(*converted));
    out.records_.bytes = state.converted.back();
    return error_code::none;
}

// The answer: every target in order (a full fetch) or only what changed (incremental),
// consecutive partitions of one topic under one topic entry.
proto::fetch_response build_response(fetch_state& state,
                                     std::vector<std::vector<storage::file_slice>>& external) {
    proto::fetch_response response;
    response.error_code = proto::code(state.top_error);
    response.session_id = state.response_session_id;
    std::vector<size_t> rotated;  // session positions that returned records
    for (partition_read* read : state.results) {
        const size_t slot = read->slot;
        const bool listed = state.session ? changed_for_session(*state.session, *read) : true;
        if (state.incremental && !listed) {
            read->slices.clear();
            continue;
        }
        const fetch_target& target = state.targets[slot];
        if (response.responses.empty() || response.responses.back().topic != target.topic ||
            response.responses.back().topic_id != target.topic_id) {
            proto::fetch_response::fetchable_topic_response topic;
            topic.topic = target.topic;
            topic.topic_id = target.topic_id;
            response.responses.push_back(std::move(topic));
        }
        proto::fetch_response::partition_data p;
        p.partition_index = target.partition;
        p.error_code = proto::code(read->error);
        p.high_watermark = read->high_watermark;
        p.last_stable_offset = read->high_watermark;
        p.diverging_epoch.epoch = read->diverging_epoch;
        p.diverging_epoch.end_offset = read->diverging_end_offset;
        p.log_start_offset = read->log_start_offset;
        p.preferred_read_replica = -1;
        p.aborted_transactions.emplace();
        if (read->error == error_code::none && read->bytes > 0 && state.req->version() < 4) {
            p.error_code = proto::code(downconvert(state, *read, p));
        } else if (read->error == error_code::none && read->bytes > 0) {
            p.records_.external_length = static_cast<int32_t>(read->bytes);
            p.records_.external_id = static_cast<uint32_t>(external.size());
            external.push_back(std::move(read->slices));
            if (state.incremental && state.limited) {
                const int64_t at =
                    state.session->find(read->slot, read->topic, read->topic_id, read->index);
                if (at >= 0) rotated.push_back(static_cast<size_t>(at));
            }
        }
        // Kafka's BytesOut per topic counts consumers only (followers are replication).
        if (read->error == error_code::none && read->bytes > 0 && !read->as_follower)
            metrics::local().topic_bytes_out[read->topic] += static_cast<uint64_t>(read->bytes);
        response.responses.back().partitions.push_back(std::move(p));
    }
    // Kafka's fairness: partitions that returned records go last, so those the limits
    // left out come first next time (nothing to do when nothing was left out).
    if (state.incremental && state.limited) state.session->rotate(rotated);
    return response;
}

// An answer carrying little data goes out as one copied buffer when the page cache holds
// all of it. A splice runs on an io-wq worker: a thread wake-up and two switches per
// answer, which cost far more than copying a few KiB, most of all on a machine whose
// cores are shared. A long-polling follower or consumer at the log's end reads what was
// just written, so it is cached; anything else (or any error) keeps its file pieces.
constexpr size_t copied_answer_bytes_max = 64 * 1024;

// Folds `message`'s file pieces into its bytes; false (message untouched) when they are
// too many bytes or not all cached.
bool copy_small_pieces(net::response& message) {
    size_t piece_bytes = 0;
    for (const net::file_piece& piece : message.pieces)
        piece_bytes += static_cast<size_t>(piece.length);
    if (piece_bytes == 0 || piece_bytes > copied_answer_bytes_max) return false;
    const std::vector<uint8_t>& encoded = message.bytes;
    std::vector<uint8_t> joined(encoded.size() + piece_bytes);
    size_t from = 0;
    size_t at = 0;
    for (const net::file_piece& piece : message.pieces) {
        std::memcpy(joined.data() + at, encoded.data() + from, piece.position - from);
        at += piece.position - from;
        from = piece.position;
        const auto length = static_cast<size_t>(piece.length);
        if (!storage::pread_cached(piece.fd, {joined.data() + at, length}, piece.file_position))
            return false;
        at += length;
    }
    std::memcpy(joined.data() + at, encoded.data() + from, encoded.size() - from);
    SPATE_ASSERT(at + encoded.size() - from == joined.size(), "pieces at ascending positions");
    message.bytes = std::move(joined);
    message.pieces.clear();
    return true;
}

void respond_now(const fetch_ptr& state) {
    state->done = true;
    shard_state& shard = *state->req->shard;
    if (state->timer_id != 0) shard.net_shard().cancel_timer(state->timer_id);
    // The results were trimmed to the response's limits (trim_to_response).
    std::vector<std::vector<storage::file_slice>> external;
    const proto::fetch_response response = build_response(*state, external);
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
    if (copy_small_pieces(message))
        ++metrics::local().fetch_answers_copied;
    else if (!message.pieces.empty())
        ++metrics::local().fetch_answers_spliced;
    shard.count_answer(*state->req, &message);
    shard_state::count_errors(*state->req, response);
    shard.net_shard().respond(state->req->conn, state->req->sequence, std::move(message));
    for (partition_read* read : state->results) read->slices.clear();
}

void finish_round(const fetch_ptr& state) {
    state->round_running = false;
    if (state->done) return;
    const bool limited = trim_to_response(*state);
    state->limited = limited;
    int64_t total = 0;
    bool any_error = false;
    for (const partition_read* read : state->results) {
        total += read->bytes;
        if (read->error != error_code::none || read->diverging_end_offset >= 0 ||
            read->diverging_epoch >= 0)
            any_error = true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (total >= state->body.min_bytes || limited || any_error || state->body.max_wait_ms <= 0 ||
        state->expired || now >= state->deadline) {
        respond_now(state);
        return;
    }
    // Too little to answer: the next round reads again, so nothing is held while waiting.
    for (partition_read* read : state->results) {
        read->slices.clear();
        read->bytes = 0;
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
    // The owners registered this fetch's wake-ups in the round itself (read_on_owner).
}

void run_round(fetch_ptr state) {
    state->round_running = true;
    state->owners_pending = state->by_owner.size();
    // The partition cap is shared out so that the owners together never read more
    // partitions with data than one answer may carry (give or take the rounding).
    const size_t owners = state->by_owner.size();
    const read_budget budget{
        state->bytes_max,
        (fetch_partitions_with_data_max(*state->req->shard) + owners - 1) / owners};
    // A fetch that may still wait has the owners watch what they read (read_watch).
    const bool may_wait =
        state->body.max_wait_ms > 0 && state->body.min_bytes > 0 && !state->expired;
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
    for (auto& entry : state->by_owner) {
        // The owner works on the list itself: until its reply nothing else touches it,
        // and the reply's closure, which travels with the work, keeps the fetch alive.
        read_list* list = &entry.second;
        std::optional<read_watch> watch;
        if (may_wait)
            watch = read_watch{state, &state->req->shard->owner(), state->req->shard->id(),
                               state->body.min_bytes};
        state->req->shard->call_on<int>(
            entry.first,
            [list, budget, watch = std::move(watch)](shard_state& target,
                                                     std::function<void(int)> reply) {
                read_on_owner(target, *list, budget, watch ? &*watch : nullptr);
                reply(0);
            },
            [state](int) {
                if (--state->owners_pending == 0) finish_round(state);
            });
    }
}

using net::wall_clock_ms;

// A requested topic as (name, id): v13+ names it by id, and the name comes from the
// metadata (empty when the id names no topic); older versions name it, with no id.
fetch_target resolve(const metadata_snapshot& metadata, bool by_id, const std::string& name,
                     const proto::uuid& id, int32_t partition) {
    if (by_id) {
        const topic_info* topic = metadata.find(id);
        return {topic ? topic->name : std::string(), id, partition};
    }
    return {name, proto::uuid{}, partition};  // names only: the session keys on them
}

session_partition session_entry(const fetch_target& target,
                                const proto::fetch_request::fetch_partition& part) {
    session_partition p;
    p.topic = target.topic;
    p.topic_id = target.topic_id;
    p.partition = target.partition;
    p.fetch_offset = part.fetch_offset;
    p.max_bytes = part.partition_max_bytes;
    p.current_leader_epoch = part.current_leader_epoch;
    p.last_fetched_epoch = part.last_fetched_epoch;
    return p;
}

// The partitions of the request itself, in request order (a full fetch).
std::vector<session_partition> requested(const fetch_state& state, const metadata_snapshot& md) {
    const bool by_id = state.req->version() >= 13;
    std::vector<session_partition> out;
    for (const auto& topic : state.body.topics)
        for (const auto& part : topic.partitions)
            out.push_back(session_entry(
                resolve(md, by_id, topic.topic, topic.topic_id, part.partition), part));
    return out;
}

// Applies an incremental request to its session: partitions added or updated, then the
// forgotten ones removed.
void update_session(fetch_session& session, const fetch_state& state, const metadata_snapshot& md) {
    const bool by_id = state.req->version() >= 13;
    for (const auto& topic : state.body.topics)
        for (const auto& part : topic.partitions)
            session.upsert(session_entry(
                resolve(md, by_id, topic.topic, topic.topic_id, part.partition), part));
    for (const auto& forgotten : state.body.forgotten_topics_data)
        for (int32_t index : forgotten.partitions)
            session.forget(by_id ? std::string() : forgotten.topic, forgotten.topic_id, index);
}

// Chooses what this fetch reads and how it answers (Kafka's FetchManager.newContext):
// returns the partitions to read, or sets top_error for a session it cannot use. They are
// built in `storage` (empty on entry), or are the session's own (read at once: the
// session may change once this fetch waits).
const std::vector<session_partition>& fetch_context(fetch_state& state,
                                                    std::vector<session_partition>& storage) {
    shard_state& shard = *state.req->shard;
    const metadata_snapshot& md = *shard.metadata();
    const auto& body = state.body;
    if (state.req->version() < 7) return storage = requested(state, md);
    fetch_session_cache& cache = shard.fetch_sessions();
    const bool full = body.session_epoch == 0 || body.session_epoch == -1;
    if (full) {
        // A full fetch closes the session it names; epoch 0 opens a new one.
        if (body.session_id != 0) cache.remove(body.session_id);
        std::vector<session_partition>& partitions = storage = requested(state, md);
        if (body.session_epoch == 0 && !partitions.empty()) {
            const bool follower = body.replica_id >= 0 || body.replica_state_.replica_id >= 0;
            state.session =
                cache.create(follower, state.req->version() >= 13, wall_clock_ms(), partitions);
            if (state.session) state.response_session_id = state.session->id;
        }
        return partitions;
    }
    session_ptr session = cache.find(body.session_id);
    if (!session) {
        state.top_error = error_code::fetch_session_id_not_found;
        return storage;
    }
    if (session->epoch != body.session_epoch) {
        state.top_error = error_code::invalid_fetch_session_epoch;
        return storage;
    }
    if (session->uses_topic_ids != (state.req->version() >= 13)) {
        state.top_error = error_code::fetch_session_topic_id_error;
        return storage;
    }
    const size_t size_before = session->partitions.size();
    update_session(*session, state, md);
    if (session->partitions.size() > size_before && !cache.within_bounds()) {
        // grown past what the sessions may hold together
        cache.remove(session->id);
        state.top_error = error_code::fetch_session_id_not_found;
        return storage;
    }
    if (session->partitions.empty()) {
        cache.remove(session->id);
        return storage;
    }
    cache.touch(*session, wall_clock_ms());
    session->epoch = next_session_epoch(session->epoch);
    state.session = session;
    state.incremental = true;
    state.response_session_id = session->id;
    // A session fetch names each topic as the session does (by id, or by name); the
    // name of an id is looked up again, as the topic may have gone since.
    if (!session->uses_topic_ids) return session->partitions;
    std::vector<session_partition>& partitions = storage = session->partitions;
    const proto::uuid* named = nullptr;  // consecutive partitions of one topic: one lookup
    for (size_t i = 0; i < partitions.size(); ++i) {
        if (named != nullptr && *named == partitions[i].topic_id)
            partitions[i].topic = partitions[i - 1].topic;
        else
            partitions[i].topic = resolve(md, true, "", partitions[i].topic_id, 0).topic;
        named = &partitions[i].topic_id;
    }
    return partitions;
}

// The shard whose cache holds the session this incremental fetch continues, when it is
// not this one: the connection moved here (net/shard.h) since the session began.
std::optional<net::shard_id> session_elsewhere(const fetch_state& state) {
    const auto& body = state.body;
    shard_state& shard = *state.req->shard;
    if (state.req->version() < 7 || body.session_id == 0 || body.session_epoch == 0 ||
        body.session_epoch == -1 || shard.fetch_sessions().find(body.session_id))
        return std::nullopt;
    const uint32_t home = fetch_session_cache::home_shard(body.session_id);
    if (home == shard.id() || home >= shard.owner().shard_count()) return std::nullopt;
    return home;
}

void start_fetch(fetch_ptr state);

// Brings the session from its home shard, then goes on with the fetch (which finds the
// session here, or answers FETCH_SESSION_ID_NOT_FOUND when it could not come).
void fetch_session_then_start(fetch_ptr state, net::shard_id home) {
    shard_state& shard = *state->req->shard;
    shard.call_on<session_ptr>(
        home,
        [id = state->body.session_id](shard_state& owner, std::function<void(session_ptr)> reply) {
            fetch_session_cache& cache = owner.fetch_sessions();
            session_ptr session = cache.find(id);
            // Only a session no fetch holds (the cache's reference and this one) changes
            // threads; one still in use stays, and the client starts anew.
            if (!session || session.use_count() != 2) {
                reply(nullptr);
                return;
            }
            cache.remove(id);
            reply(std::move(session));
        },
        [state](session_ptr session) {
            if (session)
                (void)state->req->shard->fetch_sessions().adopt(std::move(session),
                                                                wall_clock_ms());
            start_fetch(std::move(state));
        });
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
    state->bytes_max = response_bytes_max(*req, state->body);
    state->deadline = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(std::max<int32_t>(state->body.max_wait_ms, 0));
    if (const auto home = session_elsewhere(*state)) {
        fetch_session_then_start(std::move(state), *home);
        return;
    }
    start_fetch(std::move(state));
}

namespace {

void start_fetch(fetch_ptr state) {
    const request_ptr& req = state->req;
    shard_state& shard = *req->shard;
    const auto& body = state->body;
    std::vector<session_partition> storage;
    const std::vector<session_partition>& partitions = fetch_context(*state, storage);
    const bool by_id = req->version() >= 13;
    const int32_t replica_id =
        req->version() >= 15 ? body.replica_state_.replica_id : body.replica_id;
    // Partitions of one topic come together: its metadata is looked up once per run.
    const topic_info* info = nullptr;
    const std::string* info_of = nullptr;
    for (const session_partition& part : partitions) {
        const size_t slot = state->targets.size();
        state->targets.push_back({part.topic, part.topic_id, part.partition});
        partition_read read;
        read.slot = slot;
        read.topic = part.topic;
        read.topic_id = by_id ? part.topic_id : proto::uuid{};
        read.index = part.partition;
        read.offset = part.fetch_offset;
        read.max_bytes = part.max_bytes;
        read.replica_id = replica_id;
        read.current_leader_epoch = part.current_leader_epoch;
        read.last_fetched_epoch = part.last_fetched_epoch;
        if (info_of == nullptr || *info_of != part.topic) {
            info = part.topic.empty() ? nullptr : shard.metadata()->find(part.topic);
            info_of = &part.topic;
        }
        if (by_id && (info == nullptr || info->id != part.topic_id)) {
            read.error = error_code::unknown_topic_id;
            state->failed_early.push_back(std::move(read));
            continue;
        }
        const auto owner = owner_of(info, part.partition);
        if (!owner) {
            read.error = route_error(info, part.partition);
            state->failed_early.push_back(std::move(read));
            continue;
        }
        state->by_owner[*owner].push_back(std::move(read));
    }
    for (partition_read& read : state->failed_early) state->results.push_back(&read);
    for (auto& entry : state->by_owner)
        for (partition_read& read : entry.second) state->results.push_back(&read);
    std::sort(state->results.begin(), state->results.end(),
              [](const partition_read* a, const partition_read* b) { return a->slot < b->slot; });
    if (state->by_owner.empty()) {
        respond_now(state);
        return;
    }
    // A connection fetching from one shard's partitions moves to that shard (net/shard.h);
    // its session follows (fetch_session_then_start).
    if (state->by_owner.size() == 1)
        shard.net_shard().note_owner(req->conn, state->by_owner.begin()->first);
    run_round(state);
}

}  // namespace
}  // namespace spate::broker
