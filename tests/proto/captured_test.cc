// Frames captured from a real client: kcat 1.7 / librdkafka 2.0.2 running
// `kcat -L -b 127.0.0.1:PORT` against a throwaway listener that recorded what it
// received (and, for the second frame, answered ApiVersions so that the client went on
// to ask for Metadata). Each array is one whole frame, 4-byte size prefix included.
#include <doctest/doctest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/header.h"
#include "proto/messages.h"

using namespace spate::proto;

namespace {

constexpr uint8_t librdkafka_api_versions_v3[] = {
    0x00, 0x00, 0x00, 0x24, 0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x07,
    0x72, 0x64, 0x6b, 0x61, 0x66, 0x6b, 0x61, 0x00, 0x0b, 0x6c, 0x69, 0x62, 0x72, 0x64,
    0x6b, 0x61, 0x66, 0x6b, 0x61, 0x06, 0x32, 0x2e, 0x30, 0x2e, 0x32, 0x00,
};

constexpr uint8_t librdkafka_metadata_v4[] = {
    0x00, 0x00, 0x00, 0x16, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00,
    0x07, 0x72, 0x64, 0x6b, 0x61, 0x66, 0x6b, 0x61, 0x00, 0x00, 0x00, 0x00, 0x00,
};

// Strips and checks the size prefix, then decodes the header.
reader open_frame(std::span<const uint8_t> frame, request_header& header) {
    reader size_reader(frame);
    const int32_t size = size_reader.int32();
    REQUIRE(size_reader.ok());
    REQUIRE(static_cast<size_t>(size) == size_reader.remaining());
    reader in(frame.subspan(4));
    REQUIRE(decode_request_header(in, header));
    return in;
}

}  // namespace

TEST_CASE("librdkafka's ApiVersions v3 request decodes") {
    request_header header;
    reader in = open_frame(librdkafka_api_versions_v3, header);
    CHECK(header.api_key == static_cast<int16_t>(api_key::api_versions));
    CHECK(header.api_version == 3);
    CHECK(header.correlation_id == 1);
    CHECK(header.client_id == "rdkafka");
    api_versions_request body;
    REQUIRE(body.decode(in, header.api_version));
    CHECK(body.client_software_name == "librdkafka");
    CHECK(body.client_software_version == "2.0.2");
    CHECK(in.remaining() == 0);

    // Re-encoding gives the client's bytes back.
    writer out;
    out.int32(0);
    encode_request_header(out, header);
    body.encode(out, header.api_version);
    out.patch_int32(0, static_cast<int32_t>(out.size() - 4));
    CHECK(out.buffer() == std::vector<uint8_t>(std::begin(librdkafka_api_versions_v3),
                                               std::end(librdkafka_api_versions_v3)));
}

TEST_CASE("librdkafka's Metadata v4 request decodes") {
    request_header header;
    reader in = open_frame(librdkafka_metadata_v4, header);
    CHECK(header.api_key == static_cast<int16_t>(api_key::metadata));
    CHECK(header.api_version == 4);
    CHECK(header.correlation_id == 2);
    metadata_request body;
    REQUIRE(body.decode(in, header.api_version));
    // A brokers-only refresh: an empty (not null) topic list, no auto-creation.
    REQUIRE(body.topics.has_value());
    CHECK(body.topics->empty());
    CHECK_FALSE(body.allow_auto_topic_creation);
    CHECK(in.remaining() == 0);
}
