#pragma once
// What the ACL APIs answer: spate has no authorizer (every client may do everything, as
// in a Kafka broker without authorizer.class.name), so ACLs can be neither listed nor
// changed, and saying so beats pretending to store them.

namespace spate::broker {

inline constexpr const char* no_authorizer_message =
    "No Authorizer is configured: spate does not enforce ACLs";

}  // namespace spate::broker
