// Produce (0): validate each partition's record batch here (CRC, size, magic, counts,
// and every record: see check_records), then append it on the partition's owner shard:
// idempotent-producer check, offsets assigned by rewriting baseOffset, LogAppendTime stamped if the
// topic says so. acks=0 gets no response at all; acks=1/all are answered when every partition is
// written (and fdatasync'ed first under acks_all_policy = "fsync").
#include <chrono>
#include <optional>
#include <string>

#include "broker/group/offsets_topic.h"
#include "broker/handlers/handlers.h"
#include "net/clock.h"
#include "proto/error_code.h"
#include "proto/legacy_records.h"
#include "proto/messages.h"
#include "proto/record_batch.h"

namespace spate::broker {
namespace {

using proto::error_code;

// One partition's part of the request, as it travels to the owner and back.
struct partition_work {
    size_t topic_slot;      // index into the response's topics
    size_t partition_slot;  // index into that topic's partitions
    std::string topic;
    int32_t index;
    std::span<uint8_t> batch;
    // Owns `batch` when the broker rewrote it: converted from message format v0/v1, or
    // recompressed to the topic's codec.
    std::vector<uint8_t> owned;
    proto::batch_header header;
    int16_t acks = 1;
    int32_t min_insync_replicas = 1;
    // Results, filled in on the owner shard.
    error_code error = error_code::none;
    std::optional<std::string> message;
    int64_t base_offset = -1;
    int64_t log_append_time_ms = -1;
    int64_t log_start_offset = -1;
};
using work_list = std::vector<partition_work>;

error_code batch_error_code(proto::batch_error failure) {
    switch (failure) {
        case proto::batch_error::none:
            return error_code::none;
        case proto::batch_error::bad_crc:
            return error_code::corrupt_message;
        case proto::batch_error::legacy_magic:
            return error_code::unsupported_for_message_format;
        case proto::batch_error::too_large:
            return error_code::message_too_large;
        default:
            return error_code::invalid_record;
    }
}

// The buffer this shard decompresses producers' batches into to validate them,
// reused for every batch so that validation allocates only when a batch needs
// more room than any before it. Each shard is one thread, so thread_local makes
// it the shard's own. Never larger than the largest max.message.bytes seen;
// beyond scratch_retained_bytes_max it is released after the batch, so one big
// batch does not pin its memory for the shard's lifetime.
thread_local std::vector<uint8_t> decompression_scratch;
constexpr size_t scratch_retained_bytes_max = 4 << 20;

// Checks the records of a batch that passed validate_batch, before anything is
// appended: exactly records_count records with offset deltas 0..n-1, framing that
// consumes the records section exactly, and (compressed) a decompressed size
// within max.message.bytes. A batch whose header lies about its count would
// otherwise take offsets for records that do not exist (one zstd batch claiming
// 2^31 records moved the log end by 2^31), and a small batch that decompresses to
// gigabytes would be stored for consumers to choke on. Count and framing errors
// are INVALID_RECORD, as in Kafka. A decompressed size past max.message.bytes is
// MESSAGE_TOO_LARGE: that is what the limit says (the batch, uncompressed, is
// larger than the topic accepts), and a Java producer that meets it splits the
// batch and resets its compression estimate instead of failing the records,
// whereas a bomb's sender gets a refusal either way. Compacted topics also need
// a key on every record, which the same pass reports.
error_code check_records(std::span<const uint8_t> batch, const proto::batch_header& header,
                         size_t batch_bytes_max, bool keys_required,
                         std::optional<std::string>& message, proto::records_check& checked) {
    checked = proto::validate_records(batch, header, batch_bytes_max, decompression_scratch);
    if (decompression_scratch.capacity() > scratch_retained_bytes_max)
        std::vector<uint8_t>().swap(decompression_scratch);
    if (checked.error != proto::batch_error::none) {
        message = checked.why;
        return checked.error == proto::batch_error::too_large ? error_code::message_too_large
                                                              : error_code::invalid_record;
    }
    if (keys_required && !checked.every_record_keyed) {
        // Compaction keeps the latest record per key, so a record without a key has
        // no meaning in a compacted topic; Kafka refuses such a batch too.
        message = "compacted topic cannot accept a record without a key";
        return error_code::invalid_record;
    }
    return error_code::none;
}

// Produce v0-v2 may carry message format v0/v1 (magic 0 or 1 where a batch has its
// magic): converted to one record batch v2, as Kafka 3.x converts it on append.
bool is_legacy_set(std::span<const uint8_t> bytes) {
    return bytes.size() > proto::batch_magic_offset &&
           (bytes[proto::batch_magic_offset] == 0 || bytes[proto::batch_magic_offset] == 1);
}

error_code upconvert(std::span<const uint8_t> bytes, size_t bytes_max,
                     std::vector<uint8_t>& converted, std::optional<std::string>& message) {
    auto batch = proto::upconvert_message_set(bytes, bytes_max);
    if (batch) {
        converted = std::move(*batch);
        return error_code::none;
    }
    message = batch.failure().message;
    // CORRUPT_MESSAGE rather than INVALID_RECORD: clients this old know only that code.
    return batch.failure().code == EFBIG ? error_code::message_too_large
                                         : error_code::corrupt_message;
}

using net::wall_clock_ms;

// message.timestamp.before.max.ms / after.max.ms (or difference.max.ms) of a CreateTime
// topic: every record's timestamp within [now - before, now + after], else
// INVALID_TIMESTAMP, as Kafka's LogValidator checks them.
error_code check_timestamps(const effective_topic_config& config, const proto::batch_header& h,
                            const proto::records_check& records,
                            std::optional<std::string>& message) {
    if (config.timestamps != timestamp_type::create_time) return error_code::none;
    const int64_t before = config.timestamp_before_limit_ms();
    const int64_t after = config.timestamp_after_limit_ms();
    if (before == INT64_MAX && after == INT64_MAX) return error_code::none;
    const int64_t now = wall_clock_ms();
    const int64_t earliest = proto::record_timestamp(h.base_timestamp, records.timestamp_delta_min);
    const int64_t latest = proto::record_timestamp(h.base_timestamp, records.timestamp_delta_max);
    if (before != INT64_MAX && earliest < now - before) {
        message = "record timestamp " + std::to_string(earliest) + " is more than " +
                  std::to_string(before) + " ms before the broker's time " + std::to_string(now);
        return error_code::invalid_timestamp;
    }
    if (after != INT64_MAX && latest > now && latest - now > after) {
        message = "record timestamp " + std::to_string(latest) + " is more than " +
                  std::to_string(after) + " ms after the broker's time " + std::to_string(now);
        return error_code::invalid_timestamp;
    }
    return error_code::none;
}

// compression.type other than "producer": the batch in the topic's codec, when it differs.
error_code apply_topic_codec(const effective_topic_config& config, partition_work& work,
                             std::optional<std::string>& message) {
    if (config.compression == topic_compression::producer) return error_code::none;
    const auto codec = static_cast<proto::compression_codec>(config.compression);
    if (codec == work.header.codec()) return error_code::none;
    auto converted = proto::recompress_batch(
        work.batch, codec, static_cast<size_t>(config.message_max_bytes), decompression_scratch);
    if (decompression_scratch.capacity() > scratch_retained_bytes_max)
        std::vector<uint8_t>().swap(decompression_scratch);
    if (!converted) {
        message =
            "recompressing to the topic's compression.type failed: " + converted.failure().message;
        return error_code::corrupt_message;
    }
    if (converted->size() > static_cast<size_t>(config.message_max_bytes)) {
        message =
            "the batch recompressed to the topic's compression.type exceeds max.message.bytes";
        return error_code::message_too_large;
    }
    work.owned = std::move(*converted);
    work.batch = work.owned;
    work.header.attributes =
        static_cast<int16_t>((work.header.attributes & ~proto::batch_attribute_codec_mask) |
                             static_cast<int16_t>(codec));
    work.header.batch_length = static_cast<int32_t>(work.batch.size() - proto::batch_log_overhead);
    return error_code::none;
}

// Runs on the owner shard: appends one partition's batch.
void append_one(shard_state& owner, partition_work& work) {
    partition* target = owner.find_partition(work.topic, work.index);
    if (target == nullptr) {
        work.error = error_code::unknown_topic_or_partition;
        return;
    }
    if (!target->is_leader()) {  // led elsewhere since the request was routed
        work.error = error_code::not_leader_or_follower;
        return;
    }
    // acks=all needs min.insync.replicas in sync before anything is written (Kafka's
    // NOT_ENOUGH_REPLICAS); once written, fewer by the time the high watermark gets there
    // is NOT_ENOUGH_REPLICAS_AFTER_APPEND (partition::wait_replicated).
    if (work.acks == -1 && static_cast<int32_t>(target->isr_size()) < work.min_insync_replicas) {
        work.message = "min.insync.replicas is " + std::to_string(work.min_insync_replicas) +
                       " but the partition has " + std::to_string(target->isr_size()) +
                       " in-sync replica" + (target->isr_size() == 1 ? "" : "s");
        work.error = error_code::not_enough_replicas;
        return;
    }
    const proto::batch_header& h = work.header;
    const int32_t last_sequence =
        h.base_sequence < 0
            ? -1
            : static_cast<int32_t>((static_cast<int64_t>(h.base_sequence) + h.last_offset_delta) %
                                   (int64_t{INT32_MAX} + 1));
    const sequence_check check =
        target->producers().check(h.producer_id, h.producer_epoch, h.base_sequence, last_sequence);
    switch (check.verdict) {
        case sequence_verdict::duplicate:
            work.base_offset = check.original.base_offset;
            work.log_append_time_ms = check.original.log_append_time_ms;
            work.log_start_offset = target->log().log_start_offset();
            return;
        case sequence_verdict::out_of_order:
            work.error = error_code::out_of_order_sequence_number;
            return;
        case sequence_verdict::invalid_epoch:
            work.error = error_code::invalid_producer_epoch;
            return;
        case sequence_verdict::append:
            break;
    }
    if (target->config().timestamps == timestamp_type::log_append_time) {
        work.log_append_time_ms = wall_clock_ms();
        proto::set_log_append_time(work.batch, work.log_append_time_ms);
    }
    auto appended = target->append_as_leader(work.batch, h.records_count);
    if (!appended) {
        work.error = error_code::kafka_storage_error;
        return;
    }
    work.base_offset = appended->base_offset;
    work.log_start_offset = target->log().log_start_offset();
    target->producers().record(
        h.producer_id, h.producer_epoch,
        {h.base_sequence, last_sequence, work.base_offset, work.log_append_time_ms});
}

// Fails the works of partition (topic, index) that had succeeded with `code`.
void fail_partition(work_list& list, const std::string& topic, int32_t index, error_code code) {
    if (code == error_code::none) return;
    for (partition_work& work : list)
        if (work.topic == topic && work.index == index && work.error == error_code::none)
            work.error = code;
}

// What a partition of the request waits for before the answer: its group commit (under
// acks_all_policy = "fsync"), then, for acks=all in a cluster, the high watermark.
struct partition_wait {
    std::string topic;
    int32_t index;
    int64_t end;
    int32_t min_insync_replicas;
    bool sync_first;
    bool replicate;
};

// Runs on the owner shard: appends every partition of `list`, then replies once each
// partition's waits are over (partition::wait_durable, partition::wait_replicated).
void append_all(shard_state& owner, work_list list, bool sync_first, int16_t acks,
                std::chrono::milliseconds timeout, std::function<void(work_list)> reply) {
    std::vector<partition_wait> waits;
    for (partition_work& work : list) {
        append_one(owner, work);
        partition* p = owner.find_partition(work.topic, work.index);
        if (p == nullptr) continue;
        owner.submit_log_syncs(*p);
        const bool replicate = acks == -1 && p->replicated();
        if (work.error != error_code::none || (!sync_first && !replicate)) continue;
        const int64_t end = p->log().log_end_offset();
        auto seen = std::find_if(waits.begin(), waits.end(), [&](const partition_wait& w) {
            return w.topic == work.topic && w.index == work.index;
        });
        if (seen == waits.end())
            waits.push_back(
                {work.topic, work.index, end, work.min_insync_replicas, sync_first, replicate});
        else
            seen->end = end;
    }
    if (waits.empty()) {
        reply(std::move(list));
        return;
    }
    auto shared = std::make_shared<work_list>(std::move(list));
    auto remaining = std::make_shared<size_t>(waits.size());
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (const partition_wait& w : waits) {
        owner.wait_acknowledged(w.topic, w.index,
                                {w.end, w.min_insync_replicas, w.sync_first, w.replicate, deadline},
                                [shared, remaining, reply, w](error_code code) {
                                    fail_partition(*shared, w.topic, w.index, code);
                                    if (--*remaining == 0) reply(std::move(*shared));
                                });
    }
}

// Validates one partition's records and fills `work.batch` / `work.header` with the
// batch to append: the request's own bytes (the frame lives as long as the request, so
// offsets are rewritten in place), or a v2 batch converted from message format v0/v1.
error_code check_partition(const proto::produce_request& body, int16_t version,
                           const effective_topic_config& config, const proto::records& records,
                           partition_work& work, std::optional<std::string>& message) {
    if (records.is_null || records.bytes.empty()) return error_code::invalid_record;
    const auto bytes_max = static_cast<size_t>(config.message_max_bytes);
    work.batch = {const_cast<uint8_t*>(records.bytes.data()), records.bytes.size()};
    if (version <= 2 && is_legacy_set(records.bytes)) {
        if (auto failure = upconvert(records.bytes, bytes_max, work.owned, message);
            failure != error_code::none)
            return failure;
        work.batch = work.owned;
    }
    const proto::batch_check checked = proto::validate_batch(work.batch, bytes_max, true);
    if (error_code failure = batch_error_code(checked.error); failure != error_code::none)
        return failure;
    // Produce v3+ carries exactly one batch per partition.
    if (checked.header.total_size() != static_cast<int64_t>(work.batch.size()))
        return error_code::invalid_record;
    if (checked.header.is_transactional() || checked.header.is_control())
        return error_code::invalid_record;
    proto::records_check records_checked{};
    if (error_code failure = check_records(work.batch, checked.header, bytes_max,
                                           config.log.cleanup_compact, message, records_checked);
        failure != error_code::none)
        return failure;
    if (error_code failure = check_timestamps(config, checked.header, records_checked, message);
        failure != error_code::none)
        return failure;
    work.header = checked.header;
    work.acks = body.acks;
    work.min_insync_replicas = config.min_insync_replicas;
    return error_code::none;
}

// A connection producing to one shard's partitions moves to that shard (net/shard.h):
// once its answer is complete, a request all of whose partitions were accepted votes for
// `only_owner` (the one shard that took them all; none when several did), and a refused one
// (by any shard, or before any saw it) starts the count again. A move during a leader change
// would put its hand-over's pause between two requests that straddle the change, the first
// refused (not leader) and the next answered OUT_OF_ORDER_SEQUENCE_NUMBER behind it, which
// librdkafka 2.0.2's idempotent producer can take as fatal after a lost connection (its
// issue 4438).
void vote_for_owner(const request& req, const proto::produce_response& response,
                    std::optional<net::shard_id> only_owner) {
    net::shard& conn_shard = req.shard->net_shard();
    for (const auto& topic : response.responses)
        for (const auto& partition : topic.partition_responses)
            if (partition.error_code != 0) {
                conn_shard.note_owner(req.conn, conn_shard.id());
                return;
            }
    if (only_owner) conn_shard.note_owner(req.conn, *only_owner);
}

}  // namespace

void handle_produce(request_ptr req) {
    auto body = std::make_shared<proto::produce_request>();
    proto::reader in = req->body();
    if (!body->decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed Produce request");
        return;
    }
    shard_state& shard = *req->shard;
    const bool acks_valid = body->acks == 0 || body->acks == 1 || body->acks == -1;
    const bool transactional = body->transactional_id.has_value();
    auto response = std::make_shared<proto::produce_response>();
    std::map<net::shard_id, work_list> by_owner;
    for (auto& topic : body->topic_data) {
        proto::produce_response::topic_produce_response topic_out;
        topic_out.name = topic.name;
        const topic_info* info = shard.metadata()->find(topic.name);
        const effective_topic_config config =
            info ? effective_config(shard.config(), info->configs) : effective_topic_config{};
        for (auto& part : topic.partition_data) {
            proto::produce_response::partition_produce_response out;
            out.index = part.index;
            out.base_offset = -1;
            out.log_start_offset = -1;
            out.log_append_time_ms = -1;
            const auto owner = owner_of(info, part.index);
            error_code failure = error_code::none;
            partition_work work;
            if (!acks_valid)
                failure = error_code::invalid_required_acks;
            else if (!owner)
                failure = route_error(info, part.index);
            else if (transactional)
                failure = error_code::transactional_id_authorization_failed;
            else if (topic.name == group::offsets_topic_name)  // the coordinators' alone
                failure = error_code::invalid_topic_exception;
            else
                failure = check_partition(*body, req->version(), config, part.records_, work,
                                          out.error_message);
            if (failure == error_code::none) {
                work.topic_slot = response->responses.size();
                work.partition_slot = topic_out.partition_responses.size();
                work.topic = topic.name;
                work.index = part.index;
                failure = apply_topic_codec(config, work, out.error_message);
            }
            out.error_code = proto::code(failure);
            if (failure == error_code::none) by_owner[*owner].push_back(std::move(work));
            topic_out.partition_responses.push_back(std::move(out));
        }
        response->responses.push_back(std::move(topic_out));
    }
    const bool no_response = body->acks == 0;
    if (no_response) shard.skip_response(*req);
    if (by_owner.empty()) {
        vote_for_owner(*req, *response, std::nullopt);
        if (!no_response) shard.respond(*req, *response);
        return;
    }
    const std::optional<net::shard_id> only_owner =
        by_owner.size() == 1 ? std::optional<net::shard_id>(by_owner.begin()->first) : std::nullopt;
    const bool sync_first = body->acks != 0 && shard.config().acks_all_policy == ack_policy::fsync;
    auto remaining = std::make_shared<size_t>(by_owner.size());
    for (auto& [owner, list] : by_owner) {
        auto shared_list = std::make_shared<work_list>(std::move(list));
        shard.call_on<work_list>(
            owner,
            [shared_list, sync_first, acks = body->acks,
             timeout = std::chrono::milliseconds(std::max<int32_t>(body->timeout_ms, 0))](
                shard_state& target, std::function<void(work_list)> reply) {
                append_all(target, std::move(*shared_list), sync_first, acks, timeout,
                           std::move(reply));
            },
            [req, body, response, remaining, no_response, only_owner](work_list done) {
                for (const partition_work& work : done) {
                    auto& out = response->responses[work.topic_slot]
                                    .partition_responses[work.partition_slot];
                    out.error_code = proto::code(work.error);
                    if (work.message) out.error_message = work.message;
                    out.base_offset = work.base_offset;
                    out.log_append_time_ms = work.log_append_time_ms;
                    out.log_start_offset = work.log_start_offset;
                }
                if (--*remaining != 0) return;
                vote_for_owner(*req, *response, only_owner);
                if (!no_response) req->shard->respond(*req, *response);
            });
    }
}

}  // namespace spate::broker
