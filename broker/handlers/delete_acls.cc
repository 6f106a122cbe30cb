// DeleteAcls (31): SECURITY_DISABLED for every filter (no authorizer, see acls.h).
#include "broker/handlers/acls.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_delete_acls(request_ptr req) {
    proto::delete_acls_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DeleteAcls request");
        return;
    }
    proto::delete_acls_response response;
    for (size_t i = 0; i < body.filters.size(); ++i) {
        proto::delete_acls_response::delete_acls_filter_result result;
        result.error_code = proto::code(proto::error_code::security_disabled);
        result.error_message = no_authorizer_message;
        response.filter_results.push_back(std::move(result));
    }
    req->shard->respond(*req, response);
}

}  // namespace spate::broker
