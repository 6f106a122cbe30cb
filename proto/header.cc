// Kafka request and response headers; layouts are described in proto/header.h.
#include "proto/header.h"

#include "proto/assert.h"
#include "proto/messages.h"

namespace spate::proto {

int16_t request_header_version(int16_t api_key, int16_t api_version) {
    const api_description* api = find_api(api_key);
    if (api == nullptr) return 1;
    const bool flexible = api->flexible_min >= 0 && api_version >= api->flexible_min;
    return flexible ? 2 : 1;
}

int16_t response_header_version(int16_t api_key, int16_t api_version) {
    // ApiVersions answers with header v0 at every version (KIP-511): the client reads
    // the correlation id before it can know whether the broker speaks flexible versions.
    if (api_key == static_cast<int16_t>(api_key::api_versions)) return 0;
    const api_description* api = find_api(api_key);
    if (api == nullptr) return 0;
    const bool flexible = api->flexible_min >= 0 && api_version >= api->flexible_min;
    return flexible ? 1 : 0;
}

bool decode_request_header(reader& in, request_header& out) {
    out.api_key = in.int16();
    out.api_version = in.int16();
    out.correlation_id = in.int32();
    // client_id keeps its classic int16 length even in header v2.
    out.client_id = in.nullable_string(false);
    if (in.ok() && request_header_version(out.api_key, out.api_version) >= 2)
        in.skip_tagged_fields();
    return in.ok();
}

void encode_request_header(writer& out, const request_header& header) {
    out.int16(header.api_key);
    out.int16(header.api_version);
    out.int32(header.correlation_id);
    out.nullable_string(header.client_id, false);
    if (request_header_version(header.api_key, header.api_version) >= 2) out.empty_tagged_fields();
}

void encode_response_header(writer& out, int32_t correlation_id, int16_t header_version) {
    SPATE_ASSERT(header_version == 0 || header_version == 1, "response header version is 0 or 1");
    out.int32(correlation_id);
    if (header_version >= 1) out.empty_tagged_fields();
}

bool decode_response_header(reader& in, int16_t header_version, int32_t& correlation_id) {
    correlation_id = in.int32();
    if (in.ok() && header_version >= 1) in.skip_tagged_fields();
    return in.ok();
}

}  // namespace spate::proto
