// The records of __consumer_offsets in Kafka's schemas: the exact bytes spate writes
// (written out here by hand in the field order of Kafka's message definitions, so a
// reordered or mis-sized field fails), round trips of every kind, every older and the
// flexible value version Kafka may have written, truncations, and whole batches.
#include "broker/group/group_records.h"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "proto/record_batch.h"

using namespace spate::broker::group;
using spate::proto::batch_builder;
using spate::proto::compression_codec;

namespace {

using bytes = std::vector<uint8_t>;

// Big-endian and Kafka-string pieces for hand-built records.
void put16(bytes& out, int16_t v) {
    out.push_back(static_cast<uint8_t>(static_cast<uint16_t>(v) >> 8));
    out.push_back(static_cast<uint8_t>(v));
}
void put32(bytes& out, int32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<uint8_t>(static_cast<uint32_t>(v) >> shift));
}
void put64(bytes& out, int64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8)
        out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(v) >> shift));
}
void put_raw(bytes& out, std::string_view text) { out.insert(out.end(), text.begin(), text.end()); }
// Classic string: int16 length + bytes.
void put_string(bytes& out, std::string_view text) {
    put16(out, static_cast<int16_t>(text.size()));
    put_raw(out, text);
}
// Compact string (flexible versions): unsigned varint length + 1 (all lengths here < 127).
void put_compact_string(bytes& out, std::string_view text) {
    out.push_back(static_cast<uint8_t>(text.size() + 1));
    put_raw(out, text);
}

offset_record commit_of(const std::string& group, const std::string& topic, int32_t partition,
                        int64_t offset) {
    offset_record r;
    r.kind = record_kind::commit;
    r.group_id = group;
    r.where = {topic, partition};
    r.value.offset = offset;
    r.value.leader_epoch = 7;
    r.value.metadata = std::string("m");
    r.value.commit_timestamp_ms = 1000;
    return r;
}

offset_record group_of(const std::string& group) {
    offset_record r;
    r.kind = record_kind::group_metadata;
    r.group_id = group;
    r.value.commit_timestamp_ms = 1000;
    r.snapshot.protocol_type = "consumer";
    r.snapshot.protocol_name = "range";
    r.snapshot.generation = 2;
    r.snapshot.leader_id = "m1";
    // Designated initializers, not assignments: g++ 12 warns falsely (-Wrestrict) on a
    // short literal assigned to a string member here.
    member_snapshot member{.member_id = "m1",
                           .instance_id = "i",
                           .client_id = "c",
                           .client_host = "/h",
                           .session_timeout_ms = 100,
                           .rebalance_timeout_ms = 300,
                           .metadata = {1, 2},
                           .assignment = {3}};
    r.snapshot.members.push_back(member);
    return r;
}

offset_record tombstone_of(record_kind kind, const std::string& group) {
    offset_record r;
    r.kind = kind;
    r.group_id = group;
    if (kind == record_kind::offset_deleted) r.where = {"t", 1};
    r.value.commit_timestamp_ms = 1000;
    return r;
}

auto member_fields(const member_snapshot& m) {
    return std::tie(m.member_id, m.instance_id, m.client_id, m.client_host, m.session_timeout_ms,
                    m.rebalance_timeout_ms, m.metadata, m.assignment);
}

// Field by field equality (offset_record has no operator==). A snapshot counts only for
// kind group_metadata, where and the offset fields only for the offset kinds.
bool same_record(const offset_record& a, const offset_record& b) {
    if (a.kind != b.kind || a.group_id != b.group_id) return false;
    if (a.value.commit_timestamp_ms != b.value.commit_timestamp_ms) return false;
    switch (a.kind) {
        case record_kind::commit:
            return a.where == b.where && a.value.offset == b.value.offset &&
                   a.value.leader_epoch == b.value.leader_epoch &&
                   a.value.metadata == b.value.metadata;
        case record_kind::offset_deleted:
            return a.where == b.where;
        case record_kind::group_deleted:
            return true;
        case record_kind::group_metadata:
            break;
    }
    const group_snapshot& x = a.snapshot;
    const group_snapshot& y = b.snapshot;
    if (std::tie(x.protocol_type, x.protocol_name, x.generation, x.leader_id) !=
            std::tie(y.protocol_type, y.protocol_name, y.generation, y.leader_id) ||
        x.members.size() != y.members.size())
        return false;
    for (size_t i = 0; i < x.members.size(); ++i)
        if (member_fields(x.members[i]) != member_fields(y.members[i])) return false;
    return true;
}

decoded_kafka_record decode(const bytes& key, const std::optional<bytes>& value,
                            int64_t timestamp_ms = 5) {
    std::optional<std::span<const uint8_t>> value_view;
    if (value) value_view = std::span<const uint8_t>(*value);
    return decode_kafka_record(std::span<const uint8_t>(key), value_view, timestamp_ms);
}

// Every proper prefix of the key, and of the value, must decode as malformed.
void check_truncations(const bytes& key, const std::optional<bytes>& value) {
    for (size_t length = 0; length < key.size(); ++length) {
        const bytes cut(key.begin(), key.begin() + static_cast<ptrdiff_t>(length));
        CHECK_MESSAGE(decode(cut, value).status == decode_status::malformed,
                      "key cut to " << length);
    }
    if (!value) return;
    for (size_t length = 0; length < value->size(); ++length) {
        const bytes cut(value->begin(), value->begin() + static_cast<ptrdiff_t>(length));
        CHECK_MESSAGE(decode(key, cut).status == decode_status::malformed,
                      "value cut to " << length);
    }
}

// The OffsetCommitKey v1 of ("g", "t", 1), by hand.
bytes commit_key_g_t_1() {
    bytes key;
    put16(key, 1);         // key version
    put_string(key, "g");  // group
    put_string(key, "t");  // topic
    put32(key, 1);         // partition
    return key;
}

bytes group_key_g() {
    bytes key;
    put16(key, 2);         // key version
    put_string(key, "g");  // group
    return key;
}

struct walked {
    std::vector<offset_record> records;
    walk_counts counts;
};

walked walk(const bytes& batch) {
    walked out;
    auto counts = for_each_offsets_record(
        batch, 1 << 20, [&](const offset_record& r) { out.records.push_back(r); });
    REQUIRE(counts.ok());
    out.counts = *counts;
    return out;
}

}  // namespace

TEST_CASE("OffsetCommitKey v1 and OffsetCommitValue v3 bytes are Kafka's") {
    const kafka_record encoded = encode_kafka_record(commit_of("g", "t", 1, 5));
    const bytes key{0x00, 0x01,               // key version 1
                    0x00, 0x01, 'g',          // group
                    0x00, 0x01, 't',          // topic
                    0x00, 0x00, 0x00, 0x01};  // partition
    CHECK(encoded.key == key);
    CHECK(encoded.key == commit_key_g_t_1());
    const bytes value{0x00, 0x03,                                       // value version 3
                      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,   // offset
                      0x00, 0x00, 0x00, 0x07,                           // leader_epoch
                      0x00, 0x01, 'm',                                  // metadata
                      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8};  // commit_timestamp
    REQUIRE(encoded.value.has_value());
    CHECK(*encoded.value == value);
}

TEST_CASE("a commit without metadata writes the empty string, which reads back as given") {
    offset_record commit = commit_of("g", "t", 1, 5);
    commit.value.metadata.reset();
    const kafka_record encoded = encode_kafka_record(commit);
    REQUIRE(encoded.value.has_value());
    // offset 8 + leader_epoch 4 after the version: then the metadata's int16 length.
    CHECK((*encoded.value)[14] == 0x00);
    CHECK((*encoded.value)[15] == 0x00);
    const auto decoded = decode(encoded.key, encoded.value);
    REQUIRE(decoded.status == decode_status::record);
    CHECK(decoded.record.value.metadata == std::optional<std::string>(""));
}

TEST_CASE("GroupMetadataKey v2 and GroupMetadataValue v3 bytes are Kafka's") {
    const kafka_record encoded = encode_kafka_record(group_of("g"));
    CHECK(encoded.key == bytes{0x00, 0x02, 0x00, 0x01, 'g'});
    bytes value;
    put16(value, 3);                // value version 3
    put_string(value, "consumer");  // protocol_type
    put32(value, 2);                // generation
    put_string(value, "range");     // protocol
    put_string(value, "m1");        // leader
    put64(value, 1000);             // current_state_timestamp
    put32(value, 1);                // members
    put_string(value, "m1");        //   member_id
    put_string(value, "i");         //   group_instance_id
    put_string(value, "c");         //   client_id
    put_string(value, "/h");        //   client_host
    put32(value, 300);              //   rebalance_timeout: before the session timeout
    put32(value, 100);              //   session_timeout
    put32(value, 2);                //   subscription
    value.push_back(1);
    value.push_back(2);
    put32(value, 1);  //   assignment
    value.push_back(3);
    REQUIRE(encoded.value.has_value());
    CHECK(*encoded.value == value);
}

TEST_CASE("an Empty group writes a null protocol and a null leader") {
    offset_record empty = group_of("g");
    empty.snapshot.protocol_name.reset();
    empty.snapshot.leader_id.clear();
    empty.snapshot.members.clear();
    empty.snapshot.generation = 4;
    const kafka_record encoded = encode_kafka_record(empty);
    bytes value;
    put16(value, 3);
    put_string(value, "consumer");
    put32(value, 4);
    put16(value, -1);  // protocol: null
    put16(value, -1);  // leader: null
    put64(value, 1000);
    put32(value, 0);  // no members
    REQUIRE(encoded.value.has_value());
    CHECK(*encoded.value == value);
    const auto decoded = decode(encoded.key, encoded.value);
    REQUIRE(decoded.status == decode_status::record);
    CHECK(same_record(decoded.record, empty));
}

TEST_CASE("tombstones: an offset key or a group key with a null value") {
    const kafka_record deleted =
        encode_kafka_record(tombstone_of(record_kind::offset_deleted, "g"));
    CHECK(deleted.key == commit_key_g_t_1());
    CHECK(!deleted.value.has_value());
    const kafka_record gone = encode_kafka_record(tombstone_of(record_kind::group_deleted, "g"));
    CHECK(gone.key == group_key_g());
    CHECK(!gone.value.has_value());

    // A tombstone's timestamp is the record's.
    const auto decoded = decode(deleted.key, std::nullopt, 1000);
    REQUIRE(decoded.status == decode_status::record);
    CHECK(decoded.record.kind == record_kind::offset_deleted);
    CHECK(decoded.record.value.commit_timestamp_ms == 1000);
    const auto decoded_group = decode(gone.key, std::nullopt, 1000);
    REQUIRE(decoded_group.status == decode_status::record);
    CHECK(decoded_group.record.kind == record_kind::group_deleted);
    CHECK(decoded_group.record.group_id == "g");
}

TEST_CASE("every kind round-trips") {
    offset_record no_leader_epoch = commit_of("g", "t", 0, 0);
    no_leader_epoch.value.leader_epoch = -1;
    offset_record static_less = group_of("h");
    static_less.snapshot.members[0].instance_id.reset();
    member_snapshot second = static_less.snapshot.members[0];
    second.member_id = "m2";
    second.metadata.clear();
    second.assignment.clear();
    static_less.snapshot.members.push_back(second);
    const std::vector<offset_record> records{commit_of("g", "t", 1, 5),
                                             no_leader_epoch,
                                             tombstone_of(record_kind::offset_deleted, "g"),
                                             group_of("g"),
                                             static_less,
                                             tombstone_of(record_kind::group_deleted, "g")};
    for (const offset_record& record : records) {
        const kafka_record encoded = encode_kafka_record(record);
        const auto decoded = decode(encoded.key, encoded.value, 1000);
        REQUIRE(decoded.status == decode_status::record);
        CHECK(same_record(decoded.record, record));
    }
}

TEST_CASE("OffsetCommitValue v0, v1 and v2 decode with leader epoch -1") {
    for (int16_t version : {0, 1, 2}) {
        CAPTURE(version);
        bytes value;
        put16(value, version);
        put64(value, 42);                     // offset
        put_string(value, "");                // metadata: empty, kept as given
        put64(value, 777);                    // commit_timestamp
        if (version == 1) put64(value, 999);  // expire_timestamp, ignored
        // Key version 0 is the same OffsetCommitKey.
        bytes key{0x00, 0x00};
        put_string(key, "g");
        put_string(key, "t");
        put32(key, 3);
        const auto decoded = decode(key, value);
        REQUIRE(decoded.status == decode_status::record);
        CHECK(decoded.record.kind == record_kind::commit);
        CHECK(decoded.record.group_id == "g");
        CHECK(decoded.record.where == topic_partition{"t", 3});
        CHECK(decoded.record.value.offset == 42);
        CHECK(decoded.record.value.leader_epoch == -1);
        CHECK(decoded.record.value.metadata == std::optional<std::string>(""));
        CHECK(decoded.record.value.commit_timestamp_ms == 777);
        check_truncations(key, value);
    }
}

TEST_CASE("flexible OffsetCommitValue v4 decodes, its tagged fields skipped") {
    bytes value;
    put16(value, 4);
    put64(value, 42);                 // offset
    put32(value, 9);                  // leader_epoch
    put_compact_string(value, "md");  // metadata
    put64(value, 777);                // commit_timestamp
    value.push_back(2);               // two tagged fields
    value.push_back(0);               //   tag 0
    value.push_back(3);               //   size 3
    put_raw(value, "abc");
    value.push_back(0x81);  //   tag 129 (a two-byte varint)
    value.push_back(0x01);
    value.push_back(0);  //   size 0
    const auto decoded = decode(commit_key_g_t_1(), value);
    REQUIRE(decoded.status == decode_status::record);
    CHECK(decoded.record.value.offset == 42);
    CHECK(decoded.record.value.leader_epoch == 9);
    CHECK(decoded.record.value.metadata == std::optional<std::string>("md"));
    CHECK(decoded.record.value.commit_timestamp_ms == 777);
    check_truncations(commit_key_g_t_1(), value);

    // A null compact string is not a metadata.
    bytes null_metadata;
    put16(null_metadata, 4);
    put64(null_metadata, 42);
    put32(null_metadata, 9);
    null_metadata.push_back(0);
    put64(null_metadata, 777);
    null_metadata.push_back(0);
    CHECK(decode(commit_key_g_t_1(), null_metadata).status == decode_status::malformed);
}

TEST_CASE("GroupMetadataValue v0, v1 and v2 decode") {
    for (int16_t version : {0, 1, 2}) {
        CAPTURE(version);
        bytes value;
        put16(value, version);
        put_string(value, "consumer");
        put32(value, 6);  // generation
        put_string(value, "range");
        put_string(value, "m1");
        if (version >= 2) put64(value, 2222);  // current_state_timestamp
        put32(value, 1);
        put_string(value, "m1");
        put_string(value, "c");
        put_string(value, "/h");
        if (version >= 1) put32(value, 300);  // rebalance_timeout
        put32(value, 100);                    // session_timeout
        put32(value, 1);
        value.push_back(7);
        put32(value, 0);
        const auto decoded = decode(group_key_g(), value, 1111);
        REQUIRE(decoded.status == decode_status::record);
        const offset_record& r = decoded.record;
        CHECK(r.kind == record_kind::group_metadata);
        CHECK(r.group_id == "g");
        CHECK(r.snapshot.protocol_type == "consumer");
        CHECK(r.snapshot.protocol_name == std::optional<std::string>("range"));
        CHECK(r.snapshot.generation == 6);
        CHECK(r.snapshot.leader_id == "m1");
        // Before version 2 the record's own timestamp stands in.
        CHECK(r.value.commit_timestamp_ms == (version >= 2 ? 2222 : 1111));
        REQUIRE(r.snapshot.members.size() == 1);
        const member_snapshot& m = r.snapshot.members[0];
        CHECK(m.member_id == "m1");
        CHECK(!m.instance_id.has_value());
        CHECK(m.client_id == "c");
        CHECK(m.client_host == "/h");
        CHECK(m.session_timeout_ms == 100);
        // Version 0 has no rebalance timeout: Kafka takes the session timeout.
        CHECK(m.rebalance_timeout_ms == (version >= 1 ? 300 : 100));
        CHECK(m.metadata == bytes{7});
        CHECK(m.assignment.empty());
        check_truncations(group_key_g(), value);
    }
}

TEST_CASE("a current_state_timestamp of -1 takes the record's timestamp") {
    offset_record group = group_of("g");
    group.value.commit_timestamp_ms = -1;
    const kafka_record encoded = encode_kafka_record(group);
    const auto decoded = decode(encoded.key, encoded.value, 4321);
    REQUIRE(decoded.status == decode_status::record);
    CHECK(decoded.record.value.commit_timestamp_ms == 4321);
}

TEST_CASE("flexible GroupMetadataValue v4 decodes, its tagged fields skipped") {
    bytes value;
    put16(value, 4);
    put_compact_string(value, "consumer");
    put32(value, 6);
    put_compact_string(value, "range");
    value.push_back(0);  // leader: null
    put64(value, 2222);
    value.push_back(2);  // one member (count + 1)
    put_compact_string(value, "m1");
    put_compact_string(value, "i");  // group_instance_id
    put_compact_string(value, "c");
    put_compact_string(value, "/h");
    put32(value, 300);
    put32(value, 100);
    value.push_back(3);  // subscription: 2 bytes
    value.push_back(1);
    value.push_back(2);
    value.push_back(1);  // assignment: empty
    value.push_back(1);  // the member's tagged fields: one
    value.push_back(5);  //   tag 5
    value.push_back(1);  //   size 1
    value.push_back(0xff);
    value.push_back(1);  // the value's tagged fields: one
    value.push_back(0);  //   tag 0
    value.push_back(2);  //   size 2
    value.push_back(0xaa);
    value.push_back(0xbb);
    const auto decoded = decode(group_key_g(), value);
    REQUIRE(decoded.status == decode_status::record);
    const offset_record& r = decoded.record;
    CHECK(r.snapshot.protocol_type == "consumer");
    CHECK(r.snapshot.protocol_name == std::optional<std::string>("range"));
    CHECK(r.snapshot.leader_id.empty());
    CHECK(r.value.commit_timestamp_ms == 2222);
    REQUIRE(r.snapshot.members.size() == 1);
    CHECK(r.snapshot.members[0].instance_id == std::optional<std::string>("i"));
    CHECK(r.snapshot.members[0].rebalance_timeout_ms == 300);
    CHECK(r.snapshot.members[0].session_timeout_ms == 100);
    CHECK(r.snapshot.members[0].metadata == bytes{1, 2});
    CHECK(r.snapshot.members[0].assignment.empty());
    check_truncations(group_key_g(), value);
}

TEST_CASE("every encoding spate writes, cut short anywhere, is malformed") {
    for (const offset_record& record :
         {commit_of("g", "t", 1, 5), group_of("g"), tombstone_of(record_kind::offset_deleted, "g"),
          tombstone_of(record_kind::group_deleted, "g")}) {
        const kafka_record encoded = encode_kafka_record(record);
        check_truncations(encoded.key, encoded.value);
    }
}

TEST_CASE("unknown record types are skipped; broken ones are malformed") {
    // Key version 3 is KIP-848's ConsumerGroupMetadataKey: not read here.
    bytes consumer_group_key{0x00, 0x03};
    put_string(consumer_group_key, "g");
    CHECK(decode(consumer_group_key, bytes{0x00, 0x00, 0x01}).status == decode_status::skipped);
    CHECK(decode(consumer_group_key, std::nullopt).status == decode_status::skipped);
    CHECK(decode(bytes{0x7f, 0xff}, std::nullopt).status == decode_status::skipped);
    CHECK(decode(bytes{0xff, 0xff, 0x12}, std::nullopt).status == decode_status::skipped);

    // No key at all.
    CHECK(decode_kafka_record(std::nullopt, std::nullopt, 0).status == decode_status::malformed);
    // A value version past the flexible one, and a negative one.
    const kafka_record commit = encode_kafka_record(commit_of("g", "t", 1, 5));
    bytes future = *commit.value;
    future[1] = 5;
    CHECK(decode(commit.key, future).status == decode_status::malformed);
    future[0] = 0xff;
    CHECK(decode(commit.key, future).status == decode_status::malformed);
    // A null string where Kafka's schema forbids it (the group).
    CHECK(decode(bytes{0x00, 0x02, 0xff, 0xff}, std::nullopt).status == decode_status::malformed);
    // A member count no value of this size can hold.
    bytes huge;
    put16(huge, 3);
    put_string(huge, "consumer");
    put32(huge, 1);
    put16(huge, -1);
    put16(huge, -1);
    put64(huge, 0);
    put32(huge, 0x7fffffff);
    CHECK(decode(group_key_g(), huge).status == decode_status::malformed);
    // A null members array.
    bytes null_members(huge.begin(), huge.end() - 4);
    put32(null_members, -1);
    CHECK(decode(group_key_g(), null_members).status == decode_status::malformed);
    // A string length past the end.
    bytes long_group{0x00, 0x02, 0x7f, 0xff, 'g'};
    CHECK(decode(long_group, std::nullopt).status == decode_status::malformed);
}

TEST_CASE("bytes after the last field are ignored, as Kafka's readers ignore them") {
    kafka_record commit = encode_kafka_record(commit_of("g", "t", 1, 5));
    commit.key.push_back(0);
    commit.value->push_back(0);
    CHECK(decode(commit.key, commit.value).status == decode_status::record);
}

TEST_CASE("strings longer than a classic string field holds do not fit") {
    offset_record commit = commit_of("g", "t", 1, 5);
    CHECK(fits_kafka_schemas(commit));
    commit.value.metadata = std::string(schema_string_bytes_max, 'x');
    CHECK(fits_kafka_schemas(commit));
    commit.value.metadata->push_back('x');
    CHECK(!fits_kafka_schemas(commit));
    offset_record long_client = group_of("g");
    long_client.snapshot.members[0].client_id = std::string(schema_string_bytes_max + 1, 'x');
    CHECK(!fits_kafka_schemas(long_client));
    offset_record long_protocol = group_of("g");
    long_protocol.snapshot.protocol_name = std::string(schema_string_bytes_max + 1, 'x');
    CHECK(!fits_kafka_schemas(long_protocol));
}

TEST_CASE("a batch of every kind round-trips in order") {
    offset_record later = commit_of("g", "t", 2, 9);
    later.value.commit_timestamp_ms = 2000;
    const std::vector<offset_record> records{commit_of("g", "t", 1, 5), later, group_of("g"),
                                             tombstone_of(record_kind::offset_deleted, "g"),
                                             tombstone_of(record_kind::group_deleted, "g")};
    const bytes batch = build_offsets_batch(records);
    const auto header = spate::proto::read_batch_header(batch);
    REQUIRE(header.ok());
    CHECK(header->base_offset == 0);
    CHECK(header->magic == 2);
    CHECK(header->producer_id == -1);
    CHECK(header->codec() == compression_codec::none);
    CHECK(header->records_count == 5);
    CHECK(header->base_timestamp == 1000);
    CHECK(header->max_timestamp == 2000);
    const walked out = walk(batch);
    CHECK(out.counts.records == 5);
    CHECK(out.counts.skipped == 0);
    CHECK(out.counts.malformed == 0);
    REQUIRE(out.records.size() == records.size());
    for (size_t i = 0; i < records.size(); ++i) CHECK(same_record(out.records[i], records[i]));
}

TEST_CASE("compressed batches decode the same, with skipped and malformed records counted") {
    const std::vector<offset_record> records{commit_of("g", "t", 1, 5), group_of("g"),
                                             tombstone_of(record_kind::offset_deleted, "g")};
    bytes unknown_key{0x00, 0x05};
    put_string(unknown_key, "g");
    const bytes broken_key{0x00, 0x01, 0x00};
    for (compression_codec codec : {compression_codec::gzip, compression_codec::snappy,
                                    compression_codec::lz4, compression_codec::zstd}) {
        CAPTURE(spate::proto::to_string(codec));
        batch_builder builder(codec, 1000);
        for (const offset_record& record : records) {
            const kafka_record encoded = encode_kafka_record(record);
            std::optional<std::span<const uint8_t>> value;
            if (encoded.value) value = *encoded.value;
            builder.add(encoded.key, value, {}, record.value.commit_timestamp_ms);
        }
        builder.add(unknown_key, std::nullopt);
        builder.add(broken_key, std::nullopt);
        const walked out = walk(builder.build(17));
        CHECK(out.counts.records == 3);
        CHECK(out.counts.skipped == 1);
        CHECK(out.counts.malformed == 1);
        REQUIRE(out.records.size() == records.size());
        for (size_t i = 0; i < records.size(); ++i) CHECK(same_record(out.records[i], records[i]));
    }
}

TEST_CASE("control batches are skipped; corrupt batches are refused") {
    batch_builder control(compression_codec::none, 0, 5, 0, 0);
    const bytes marker_key{0x00, 0x00, 0x00, 0x01};
    control.add(marker_key, marker_key);
    control.set_attribute_bits(spate::proto::batch_attribute_control |
                               spate::proto::batch_attribute_transactional);
    const walked out = walk(control.build());
    CHECK(out.records.empty());
    CHECK(out.counts.skipped == 1);

    bytes batch = build_offsets_batch({commit_of("g", "t", 1, 5)});
    batch.back() ^= 1;
    size_t calls = 0;
    auto walked_corrupt =
        for_each_offsets_record(batch, 1 << 20, [&](const offset_record&) { ++calls; });
    CHECK(!walked_corrupt.ok());
    CHECK(calls == 0);
    const bytes truncated(batch.begin(), batch.begin() + 30);
    CHECK(!for_each_offsets_record(truncated, 1 << 20, [](const offset_record&) {}).ok());
}

TEST_CASE("under LogAppendTime a tombstone takes the batch's append time") {
    bytes batch = build_offsets_batch({tombstone_of(record_kind::offset_deleted, "g")});
    spate::proto::set_log_append_time(batch, 9999);
    const walked out = walk(batch);
    REQUIRE(out.records.size() == 1);
    CHECK(out.records[0].value.commit_timestamp_ms == 9999);
}
