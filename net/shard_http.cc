// The shard's HTTP connections (shard_config::http_listen: metrics and health). Each request
// head is parsed as it arrives (net/http.h), gets a response slot like a Kafka request and
// goes to the handler; answers leave in request order. Part of class shard (net/shard.h).
#include <algorithm>

#include "net/http.h"
#include "net/shard.h"
#include "net/shard_internal.h"

namespace spate::net {

void shard::parse_http(connection& conn, const uint8_t* data, size_t size) {
    while (size > 0 && conn.state == connection::state_kind::open && !conn.close_when_answered) {
        if (conn.responses.size() >= _config.in_flight_requests_max) {
            // Pipelined past the limit: kept until answers make room, as for Kafka frames.
            conn.held_input.insert(conn.held_input.end(), data, data + size);
            return;
        }
        if (!conn.http_mid_request) {
            conn.http_mid_request = true;
            conn.frame_deadline = _now + _config.request_receive_timeout;
        }
        const http_request_parser::state outcome = conn.http->feed(data, size);
        const size_t consumed = conn.http->consumed();
        data += consumed;
        size -= consumed;
        switch (outcome) {
            case http_request_parser::state::need_more:
                SPATE_ASSERT(size == 0, "a head still incomplete took every byte");
                return;
            case http_request_parser::state::complete:
                conn.http_mid_request = false;
                deliver_http(conn);
                break;
            case http_request_parser::state::too_large:
                refuse_http(conn, 431, "Request Header Fields Too Large");
                return;
            case http_request_parser::state::bad_request:
                refuse_http(conn, 400, "Bad Request");
                return;
        }
    }
}

void shard::deliver_http(connection& conn) {
    const connection_ref ref{conn.index, conn.generation};
    const uint64_t sequence = conn.next_sequence++;
    conn.responses.emplace_back();
    if (!conn.http->keep_alive()) conn.close_when_answered = true;
    if (conn.responses.size() >= _config.in_flight_requests_max) pause_recv(conn);
    if (!_handler->on_http_request(ref, sequence, *conn.http)) {
        const std::string body = "not found\n";
        response r;
        const std::string text = http_response(
            404, "Not Found", "text/plain", body,
            conn.close_when_answered ? http_connection::close : http_connection::keep_alive);
        r.bytes.assign(text.begin(), text.end());
        respond(ref, sequence, std::move(r));
    }
    // The handler may have closed the connection; the slot and its parser live on until
    // the close completes.
    if (conn.http) conn.http->reset();
}

void shard::refuse_http(connection& conn, int status, const char* reason) {
    const connection_ref ref{conn.index, conn.generation};
    conn.http_mid_request = false;
    const uint64_t sequence = conn.next_sequence++;
    conn.responses.emplace_back();
    // What follows a head that cannot be parsed cannot be found either: answer and close.
    conn.close_when_answered = true;
    respond_http(ref, sequence, status, reason, "text/plain", std::string(reason) + "\n",
                 http_connection::close);
}

void shard::respond_http(connection_ref conn, uint64_t sequence, int status,
                         std::string_view reason, std::string_view content_type,
                         std::string_view body, http_connection connection) {
    response r;
    append_http_response(r.bytes, status, reason, content_type, body, connection);
    respond(conn, sequence, std::move(r));
}

}  // namespace spate::net
