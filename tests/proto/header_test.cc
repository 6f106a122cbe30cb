// Request and response headers against byte vectors derived by hand from the protocol
// description (header v1: key, version, correlation id, int16-length client id; v2 adds
// a tagged-field section; response header v0 is the correlation id, v1 adds tags).
#include "proto/header.h"

#include <doctest/doctest.h>

#include <vector>

#include "proto/messages.h"

using namespace spate::proto;

TEST_CASE("header versions follow each api's flexible versions") {
    CHECK(request_header_version(18, 0) == 1);
    CHECK(request_header_version(18, 3) == 2);
    CHECK(request_header_version(3, 8) == 1);
    CHECK(request_header_version(3, 9) == 2);
    CHECK(request_header_version(999, 0) == 1);
    CHECK(request_header_version(17, 1) == 1);  // SaslHandshake is never flexible.
    CHECK(response_header_version(3, 8) == 0);
    CHECK(response_header_version(3, 9) == 1);
    // ApiVersions answers with header v0 even at its flexible v3.
    CHECK(response_header_version(18, 3) == 0);
    CHECK(response_header_version(1, 12) == 1);
}

TEST_CASE("ApiVersions v0 request with header v1") {
    // key 18, version 0, correlation id 7, client id "ab"; the v0 body is empty.
    const std::vector<uint8_t> bytes{0x00, 0x12, 0x00, 0x00, 0x00, 0x00,
                                     0x00, 0x07, 0x00, 0x02, 'a',  'b'};
    reader in(bytes);
    request_header header;
    REQUIRE(decode_request_header(in, header));
    CHECK(header.api_key == 18);
    CHECK(header.api_version == 0);
    CHECK(header.correlation_id == 7);
    CHECK(header.client_id == "ab");
    api_versions_request body;
    REQUIRE(body.decode(in, header.api_version));
    CHECK(in.remaining() == 0);

    writer out;
    encode_request_header(out, header);
    body.encode(out, header.api_version);
    CHECK(out.buffer() == bytes);
}

TEST_CASE("ApiVersions v3 request with header v2 and compact strings") {
    const std::vector<uint8_t> bytes{
        0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x2a,  // key 18, v3, correlation 42
        0x00, 0x01, 'c',                                 // client id "c" (classic length)
        0x00,                                            // header tagged fields
        0x06, 's',  'p',  'a',  't',  'e',               // compact "spate"
        0x04, '0',  '.',  '1',                           // compact "0.1"
        0x00,                                            // body tagged fields
    };
    reader in(bytes);
    request_header header;
    REQUIRE(decode_request_header(in, header));
    CHECK(header.correlation_id == 42);
    CHECK(header.client_id == "c");
    api_versions_request body;
    REQUIRE(body.decode(in, 3));
    CHECK(body.client_software_name == "spate");
    CHECK(body.client_software_version == "0.1");
    CHECK(in.remaining() == 0);

    writer out;
    encode_request_header(out, header);
    body.encode(out, 3);
    CHECK(out.buffer() == bytes);
}

TEST_CASE("Metadata v1 request with one topic and a null client id") {
    const std::vector<uint8_t> bytes{
        0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05,  // key 3, v1, correlation 5
        0xff, 0xff,                                      // null client id
        0x00, 0x00, 0x00, 0x01,                          // one topic
        0x00, 0x01, 't',                                 // name "t"
    };
    reader in(bytes);
    request_header header;
    REQUIRE(decode_request_header(in, header));
    CHECK_FALSE(header.client_id.has_value());
    metadata_request body;
    REQUIRE(body.decode(in, 1));
    REQUIRE(body.topics.has_value());
    REQUIRE(body.topics->size() == 1);
    CHECK((*body.topics)[0].name == "t");
    CHECK(in.remaining() == 0);

    writer out;
    encode_request_header(out, header);
    body.encode(out, 1);
    CHECK(out.buffer() == bytes);
}

TEST_CASE("response headers v0 and v1") {
    writer v0;
    encode_response_header(v0, 0x01020304, 0);
    CHECK(v0.buffer() == std::vector<uint8_t>{0x01, 0x02, 0x03, 0x04});
    writer v1;
    encode_response_header(v1, 0x01020304, 1);
    CHECK(v1.buffer() == std::vector<uint8_t>{0x01, 0x02, 0x03, 0x04, 0x00});

    int32_t correlation_id = 0;
    reader in0(v0.buffer());
    REQUIRE(decode_response_header(in0, 0, correlation_id));
    CHECK(correlation_id == 0x01020304);
    reader in1(v1.buffer());
    REQUIRE(decode_response_header(in1, 1, correlation_id));
    CHECK(in1.remaining() == 0);
}

TEST_CASE("truncated headers are errors, not crashes") {
    const std::vector<uint8_t> bytes{0x00, 0x12, 0x00, 0x03, 0x00, 0x00,
                                     0x00, 0x2a, 0x00, 0x05, 'a'};
    for (size_t cut = 0; cut <= bytes.size(); ++cut) {
        reader in(bytes.data(), cut);
        request_header header;
        CHECK_FALSE(decode_request_header(in, header));
    }
    const std::vector<uint8_t> short_response{0x00, 0x01};
    reader in(short_response);
    int32_t correlation_id = 0;
    CHECK_FALSE(decode_response_header(in, 0, correlation_id));
}
