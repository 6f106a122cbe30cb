#pragma once
// Kafka request and response headers.
//
// Request header v1: api_key int16, api_version int16, correlation_id int32,
// client_id nullable string (classic int16 length, even in v2). Request header v2 is
// v1 followed by a tagged-field section; it goes with flexible request versions.
// Request header v0 (no client_id) belongs only to ControlledShutdown v0, which spate
// does not serve, so it is never produced or accepted here.
// Response header v0: correlation_id int32. v1 adds a tagged-field section and goes
// with flexible response versions, except ApiVersions, whose response header is always
// v0 so that a client can read it before it knows which versions the broker speaks.
//
// Stateless free functions; any thread may call them.

#include <cstdint>
#include <optional>
#include <string>

#include "proto/reader.h"
#include "proto/writer.h"

namespace spate::proto {

struct request_header {
    int16_t api_key = 0;
    int16_t api_version = 0;
    int32_t correlation_id = 0;
    std::optional<std::string> client_id;
};

// 1 for non-flexible versions, 2 for flexible ones; an api spate does not describe
// gets 1 (enough to read the correlation id and answer with an error).
int16_t request_header_version(int16_t api_key, int16_t api_version);
// 0 for non-flexible versions and for ApiVersions at any version, otherwise 1.
int16_t response_header_version(int16_t api_key, int16_t api_version);

// Reads api_key and api_version first, then the rest in the layout they imply.
// False on malformed input (the reader's sticky error says why).
bool decode_request_header(reader& in, request_header& out);
void encode_request_header(writer& out, const request_header& header);

void encode_response_header(writer& out, int32_t correlation_id, int16_t header_version);
bool decode_response_header(reader& in, int16_t header_version, int32_t& correlation_id);

}  // namespace spate::proto
