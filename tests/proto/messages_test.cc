// Round trips of every generated message at every version spate serves, plus the
// decoder's behaviour on truncated and hostile input.
#include "proto/messages.h"

#include <doctest/doctest.h>

#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "proto/reader.h"
#include "proto/writer.h"

using namespace spate::proto;

namespace {

// Encodes a sample at every version and checks size, decode and equality; then cuts
// the encoding at a few points and checks that every prefix is rejected cleanly.
template <class M>
void check_every_version(const std::string& what) {
    for (int16_t version = M::version_min; version <= M::version_max; ++version) {
        CAPTURE(what);
        CAPTURE(version);
        M sample;
        sample.fill_sample(version);
        writer out;
        sample.encode(out, version);
        CHECK(out.size() == sample.encoded_size(version));
        CHECK(out.gaps().empty());

        M decoded;
        reader in(out.buffer());
        REQUIRE(decoded.decode(in, version));
        CHECK(in.remaining() == 0);
        CHECK(decoded.same_at(sample, version));
        writer again;
        decoded.encode(again, version);
        CHECK(again.buffer() == out.buffer());

        // A default-constructed message round-trips too (tagged defaults are omitted).
        M empty;
        writer empty_out;
        empty.encode(empty_out, version);
        CHECK(empty_out.size() == empty.encoded_size(version));
        M empty_decoded;
        reader empty_in(empty_out.buffer());
        CHECK(empty_decoded.decode(empty_in, version));
        // Compared on the wire: a null where the version cannot carry null reads back empty.
        writer empty_again;
        empty_decoded.encode(empty_again, version);
        CHECK(empty_again.buffer() == empty_out.buffer());

        // Every field present at this version got a non-default sample value, so a
        // message with any body differs from the default one.
        if (empty_out.size() > (M::is_flexible(version) ? 1u : 0u))
            CHECK_FALSE(empty.same_at(sample, version));

        const std::vector<uint8_t>& bytes = out.buffer();
        const size_t cuts[] = {0, 1, bytes.size() / 3, bytes.size() / 2, bytes.size() - 1};
        for (size_t cut : cuts) {
            if (cut >= bytes.size()) continue;
            CAPTURE(cut);
            M truncated;
            reader cut_in(bytes.data(), cut);
            CHECK_FALSE(truncated.decode(cut_in, version));
            CHECK_FALSE(cut_in.ok());
        }
    }
}

}  // namespace

TEST_CASE("every request and response round-trips at every served version") {
    size_t apis = 0;
    for (const api_description& api : all_apis()) {
        const std::string name = api.name;
        CAPTURE(name);
        const int16_t key = static_cast<int16_t>(api.key);
        CHECK(visit_request_type(key, [&](auto type) {
            using request = typename decltype(type)::type;
            CHECK(request::version_min == api.version_min);
            CHECK(request::version_max == api.version_max);
            CHECK(request::flexible_min == api.flexible_min);
            check_every_version<request>(name + " request");
        }));
        CHECK(visit_response_type(key, [&](auto type) {
            using response = typename decltype(type)::type;
            check_every_version<response>(name + " response");
        }));
        ++apis;
    }
    CHECK(apis == all_apis().size());
    CHECK(apis >= 6);
}

TEST_CASE("the api table is sorted by key and find_api finds each entry") {
    int previous = -1;
    for (const api_description& api : all_apis()) {
        CHECK(static_cast<int>(api.key) > previous);
        previous = static_cast<int>(api.key);
        CHECK(find_api(static_cast<int16_t>(api.key)) == &api);
        CHECK(api.version_min <= api.version_max);
    }
    CHECK(find_api(-1) == nullptr);
    CHECK(find_api(9999) == nullptr);
    REQUIRE(find_api(18) != nullptr);
    CHECK(std::string(find_api(18)->name) == "api_versions");
    CHECK(find_api(18)->flexible_min == 3);
}

TEST_CASE("decode rejects versions outside the served range") {
    const std::vector<uint8_t> bytes(64, 0);
    metadata_request request;
    reader in(bytes);
    CHECK_FALSE(request.decode(in, 13));
    reader negative(bytes);
    CHECK_FALSE(request.decode(negative, -1));
}

TEST_CASE("a hostile array count fails before allocating") {
    // Metadata v1 request: topics array with count INT32_MAX and two bytes of body.
    const std::vector<uint8_t> bytes{0x7f, 0xff, 0xff, 0xff, 0x00, 0x01};
    metadata_request request;
    reader in(bytes);
    CHECK_FALSE(request.decode(in, 1));
    CHECK(in.error() == decode_error::too_large);
    // Same in a compact array (v9): unsigned varint 0xffffffff.
    const std::vector<uint8_t> compact{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00};
    reader compact_in(compact);
    CHECK_FALSE(request.decode(compact_in, 9));
}

TEST_CASE("null arrays and strings follow the nullable versions") {
    // Metadata v1: a null topics array (-1) means all topics.
    const std::vector<uint8_t> null_topics{0xff, 0xff, 0xff, 0xff};
    metadata_request request;
    reader in(null_topics);
    REQUIRE(request.decode(in, 1));
    CHECK_FALSE(request.topics.has_value());
    // v0 does not allow null: the same bytes are malformed.
    reader v0(null_topics);
    CHECK_FALSE(request.decode(v0, 0));
    CHECK(v0.error() == decode_error::negative_length);

    // Produce v3: null transactional id encodes as int16 -1.
    produce_request produce;
    produce.acks = -1;
    writer out;
    produce.encode(out, 3);
    CHECK(out.buffer()[0] == 0xff);
    CHECK(out.buffer()[1] == 0xff);
}

TEST_CASE("tagged fields: defaults are omitted, set ones are written, unknown ones skipped") {
    api_versions_response response;
    writer plain;
    response.encode(plain, 3);
    // error_code(2) + compact empty array(1) + throttle(4) + empty tag section(1).
    CHECK(plain.buffer() == std::vector<uint8_t>{0, 0, 1, 0, 0, 0, 0, 0});

    response.finalized_features_epoch = 5;
    writer tagged;
    response.encode(tagged, 3);
    // Tag section: count 1, tag 1, size 8, int64 5.
    const std::vector<uint8_t> expected{0, 0, 1, 0, 0, 0, 0, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 5};
    CHECK(tagged.buffer() == expected);
    api_versions_response decoded;
    reader in(tagged.buffer());
    REQUIRE(decoded.decode(in, 3));
    CHECK(decoded.finalized_features_epoch == 5);

    // An unknown tag (9) with three bytes of payload is skipped.
    const std::vector<uint8_t> unknown{0, 0, 1, 0, 0, 0, 0, 1, 9, 3, 0xaa, 0xbb, 0xcc};
    api_versions_response skipped;
    reader unknown_in(unknown);
    REQUIRE(skipped.decode(unknown_in, 3));
    CHECK(unknown_in.remaining() == 0);
    CHECK(skipped.finalized_features_epoch == -1);

    // A tagged field whose size runs past the input is an error.
    const std::vector<uint8_t> overrun{0, 0, 1, 0, 0, 0, 0, 1, 1, 8, 0, 0};
    api_versions_response broken;
    reader overrun_in(overrun);
    CHECK_FALSE(broken.decode(overrun_in, 3));
}

TEST_CASE("external records leave a gap and count in the size") {
    fetch_response response;
    fetch_response::fetchable_topic_response topic;
    // push_back, not = "t": g++ 12 reports a false -Wrestrict on short literal assignment.
    topic.topic.push_back('t');
    topic.partitions.resize(1);
    response.responses.push_back(std::move(topic));
    records& r = response.responses[0].partitions[0].records_;
    r.external_length = 1000;
    r.external_id = 7;
    for (int16_t version : {0, 4, 11, 12}) {
        CAPTURE(version);
        writer out;
        response.encode(out, version);
        REQUIRE(out.gaps().size() == 1);
        CHECK(out.gaps()[0].id == 7);
        CHECK(out.gaps()[0].position == out.buffer_size() - (version >= 12 ? 3 : 0));
        CHECK(out.size() == out.buffer_size() + 1000);
        CHECK(response.encoded_size(version) == out.size());
    }
}

TEST_CASE("decoded records point into the input buffer") {
    produce_request request;
    request.fill_sample(9);
    writer out;
    request.encode(out, 9);
    produce_request decoded;
    reader in(out.buffer());
    REQUIRE(decoded.decode(in, 9));
    const records& r = decoded.topic_data[0].partition_data[0].records_;
    CHECK(r.bytes.data() >= out.buffer().data());
    CHECK(r.bytes.data() + r.bytes.size() <= out.buffer().data() + out.buffer().size());
}
