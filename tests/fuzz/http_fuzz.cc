// libFuzzer target: the bytes of an HTTP connection (net/http.h), possibly several pipelined
// requests, cut into pieces at arbitrary points. The parser must accept or refuse them
// without a crash or a sanitizer report, and how the bytes were cut must change nothing:
// fed whole and fed in pieces, the connection reads as the same requests.
//
// The first two bytes choose the head limit (so too_large is reached often) and seed the
// piece sizes; the rest is the connection's bytes.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "net/http.h"

namespace {

using spate::net::http_request_parser;
using state = http_request_parser::state;

// What a connection read as: per request its outcome and, when parsed, what it said.
std::string read_connection(size_t head_bytes_max, const uint8_t* data, size_t size,
                            uint32_t piece_seed) {
    http_request_parser parser(head_bytes_max);
    std::string transcript;
    uint32_t random = piece_seed;
    size_t position = 0;
    size_t piece_end = 0;
    while (position < size) {
        if (piece_seed == 0) {
            piece_end = size;  // everything at once
        } else if (position == piece_end) {
            random = random * 1103515245u + 12345u;
            piece_end = std::min(size, position + 1 + (random >> 16) % 64);
        }
        const size_t offered = piece_end - position;
        const state outcome = parser.feed(data + position, offered);
        const size_t consumed = parser.consumed();
        if (consumed > offered) __builtin_trap();
        if (outcome == state::need_more && consumed != offered) __builtin_trap();
        position += consumed;
        if (outcome == state::need_more) continue;
        transcript += static_cast<char>('0' + static_cast<int>(outcome));
        if (outcome != state::complete) return transcript;
        transcript += parser.method();
        transcript += ' ';
        transcript += parser.path();
        transcript += '?';
        transcript += parser.query();
        transcript += parser.keep_alive() ? " keep-alive" : " close";
        transcript += std::to_string(parser.content_length());
        transcript += parser.header("host").value_or("-");
        transcript += '\n';
        parser.reset();
    }
    // Bytes of a head not yet ended are where the connection stopped.
    transcript += std::to_string(position);
    return transcript;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    // 1 to 1024 bytes of head: small enough that long inputs hit the limit.
    const size_t head_bytes_max = 1 + static_cast<size_t>(data[0]) * 4;
    const uint32_t piece_seed = data[1] | 1u;
    const std::string whole = read_connection(head_bytes_max, data + 2, size - 2, 0);
    const std::string in_pieces = read_connection(head_bytes_max, data + 2, size - 2, piece_seed);
    if (whole != in_pieces) __builtin_trap();
    return 0;
}
