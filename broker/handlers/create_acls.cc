// CreateAcls (30): SECURITY_DISABLED for every creation (no authorizer, see acls.h).
#include "broker/handlers/acls.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_create_acls(request_ptr req) {
    proto::create_acls_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed CreateAcls request");
        return;
    }
    proto::create_acls_response response;
    for (size_t i = 0; i < body.creations.size(); ++i) {
        proto::create_acls_response::acl_creation_result result;
        result.error_code = proto::code(proto::error_code::security_disabled);
        result.error_message = no_authorizer_message;
        response.results.push_back(std::move(result));
    }
    req->shard->respond(*req, response);
}

}  // namespace spate::broker
