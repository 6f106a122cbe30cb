// ApiVersions (18): which APIs and versions this broker serves, straight from the
// handler list. An unsupported request version is answered in the v0 body format
// with UNSUPPORTED_VERSION and the full list, so the client retries at our maximum
// (closing the connection would make librdkafka assume an ancient broker).
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_api_versions(request_ptr req) {
    proto::api_versions_response response;
    for (const handler_entry& entry : handler_list()) {
        proto::api_versions_response::api_version item;
        item.api_key = static_cast<int16_t>(entry.key);
        item.min_version = entry.version_min;
        item.max_version = entry.version_max;
        response.api_keys.push_back(item);
    }
    const int16_t version = req->version();
    if (version < proto::api_versions_request::version_min ||
        version > proto::api_versions_request::version_max) {
        response.error_code = proto::code(proto::error_code::unsupported_version);
        // The v0 body and response header v0: a client of any version can read it.
        req->header.api_version = 0;
        req->shard->respond(*req, response);
        return;
    }
    proto::api_versions_request body;
    proto::reader in = req->body();
    if (!body.decode(in, version)) {
        // v3 carries client software name/version; a malformed one is INVALID_REQUEST.
        response.error_code = proto::code(proto::error_code::invalid_request);
    }
    req->shard->respond(*req, response);
}

}  // namespace spate::broker
