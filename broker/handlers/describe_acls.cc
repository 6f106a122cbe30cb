// DescribeAcls (29): SECURITY_DISABLED, the answer of a Kafka broker without an authorizer.
#include "broker/handlers/acls.h"
#include "broker/handlers/handlers.h"
#include "proto/error_code.h"
#include "proto/messages.h"

namespace spate::broker {

void handle_describe_acls(request_ptr req) {
    proto::describe_acls_request body;
    proto::reader in = req->body();
    if (!body.decode(in, req->version())) {
        req->shard->close_connection(*req, "malformed DescribeAcls request");
        return;
    }
    proto::describe_acls_response response;
    response.error_code = proto::code(proto::error_code::security_disabled);
    response.error_message = no_authorizer_message;
    req->shard->respond(*req, response);
}

}  // namespace spate::broker
