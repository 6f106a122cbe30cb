// libFuzzer target: one request frame body (no size prefix) as a client would send it.
// Decodes the request header, then the body of that api at that version when spate
// describes it. Any input must end in a clean accept or reject: no crash, no sanitizer
// report, no allocation beyond what the input could hold.
#include <cstddef>
#include <cstdint>

#include "proto/header.h"
#include "proto/messages.h"
#include "proto/reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace spate::proto;
    reader in(data, size);
    request_header header;
    if (!decode_request_header(in, header)) return 0;
    const api_description* api = find_api(header.api_key);
    if (api == nullptr) return 0;
    if (header.api_version < api->version_min || header.api_version > api->version_max) return 0;
    visit_request_type(header.api_key, [&](auto type) {
        using request = typename decltype(type)::type;
        request body;
        if (!body.decode(in, header.api_version)) return;
        // What decodes must encode again to a size the size counter agrees with.
        writer out;
        body.encode(out, header.api_version);
        if (out.size() != body.encoded_size(header.api_version)) __builtin_trap();
    });
    return 0;
}
