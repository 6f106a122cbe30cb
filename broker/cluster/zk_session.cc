// zk_session: synchronous calls on the C client, watch events forwarded as they come.
#include "broker/cluster/zk_session.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

namespace spate::broker::cluster {
namespace {

// ZooKeeper's default jute.maxbuffer: no znode holds more.
constexpr int node_bytes_max = 1 << 20;

error failure_of(int code, const char* what, const std::string& path) {
    return error{code, std::string(what) + " " + path + ": " + zk_error_text(code)};
}

}  // namespace

std::string zk_error_text(int code) { return zerror(code); }

result<std::unique_ptr<zk_session>> zk_session::connect(const std::string& connect,
                                                        int32_t session_timeout_ms,
                                                        int32_t connect_timeout_ms,
                                                        std::function<void(zk_event)> on_event) {
    // The C client logs to stderr, even at ERROR level a line per reconnection attempt
    // (three a second while ZooKeeper is away): it stays silent, and the agent logs each
    // change of the session's state once (cluster_agent::handle_event).
    zoo_set_debug_level(static_cast<ZooLogLevel>(0));
    std::unique_ptr<zk_session> session(new zk_session());
    session->_on_event = std::move(on_event);
    session->_handle = zookeeper_init(connect.c_str(), &zk_session::watcher, session_timeout_ms,
                                      nullptr, session.get(), 0);
    if (session->_handle == nullptr)
        return error{errno, "cannot use zookeeper_connect \"" + connect + "\""};
    // The client connects in the background; the session exists once the state says so.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(connect_timeout_ms);
    while (zoo_state(session->_handle) != ZOO_CONNECTED_STATE) {
        if (std::chrono::steady_clock::now() > deadline)
            return error{ZCONNECTIONLOSS, "ZooKeeper at \"" + connect +
                                              "\" did not answer within " +
                                              std::to_string(connect_timeout_ms) + " ms"};
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return session;
}

zk_session::~zk_session() {
    if (_handle != nullptr) zookeeper_close(_handle);
}

void zk_session::watcher(zhandle_t*, int type, int state, const char* path, void* context) {
    auto* session = static_cast<zk_session*>(context);
    if (session == nullptr || !session->_on_event) return;
    session->_on_event(zk_event{type, state, path == nullptr ? std::string() : path});
}

template <class Call>
int zk_session::retry(Call call) {
    // While the client reconnects (another server of the ensemble, a server restarting) the
    // session lives on and calls fail at once with ZCONNECTIONLOSS: they are tried again,
    // for as long as the session could survive, instead of failing admin requests that
    // would succeed a moment later. A create retried after a loss may find its own node
    // (ZNODEEXISTS): the callers treat that as Kafka does, as "already exists".
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(negotiated_timeout_ms());
    for (;;) {
        const int rc = call();
        if (rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT) return rc;
        if (expired() || std::chrono::steady_clock::now() > deadline) return rc;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

int64_t zk_session::session_id() const {
    const clientid_t* id = zoo_client_id(_handle);
    return id == nullptr ? 0 : id->client_id;
}

bool zk_session::expired() const { return zoo_state(_handle) == ZOO_EXPIRED_SESSION_STATE; }

zk_result<zk_node> zk_session::get(const std::string& path, bool watch) {
    zk_node node;
    std::string buffer(node_bytes_max, '\0');
    int length = node_bytes_max;
    const int rc = retry([&] {
        length = node_bytes_max;
        return zoo_get(_handle, path.c_str(), watch ? 1 : 0, buffer.data(), &length, &node.stat);
    });
    if (rc != ZOK) return failure_of(rc, "get", path);
    node.data.assign(buffer.data(), length < 0 ? 0 : static_cast<size_t>(length));
    return node;
}

zk_result<std::optional<Stat>> zk_session::exists(const std::string& path, bool watch) {
    Stat stat{};
    const int rc = retry([&] { return zoo_exists(_handle, path.c_str(), watch ? 1 : 0, &stat); });
    if (rc == ZNONODE) return std::optional<Stat>();
    if (rc != ZOK) return failure_of(rc, "exists", path);
    return std::optional<Stat>(stat);
}

zk_result<std::vector<std::string>> zk_session::children(const std::string& path, bool watch) {
    String_vector names{};
    const int rc =
        retry([&] { return zoo_get_children(_handle, path.c_str(), watch ? 1 : 0, &names); });
    if (rc != ZOK) return failure_of(rc, "children of", path);
    std::vector<std::string> out;
    out.reserve(static_cast<size_t>(names.count));
    for (int32_t i = 0; i < names.count; ++i) out.emplace_back(names.data[i]);
    deallocate_String_vector(&names);
    return out;
}

zk_result<std::string> zk_session::create(const std::string& path, const std::string& data,
                                          int flags) {
    std::string created(path.size() + 32, '\0');
    const int rc =
        zoo_create(_handle, path.c_str(), data.data(), static_cast<int>(data.size()),
                   &ZOO_OPEN_ACL_UNSAFE, flags, created.data(), static_cast<int>(created.size()));
    if (rc != ZOK) return failure_of(rc, "create", path);
    created.resize(std::char_traits<char>::length(created.c_str()));
    return created;
}

zk_result<void> zk_session::set(const std::string& path, const std::string& data, int32_t version) {
    const int rc = retry([&] {
        return zoo_set(_handle, path.c_str(), data.data(), static_cast<int>(data.size()), version);
    });
    if (rc != ZOK) return failure_of(rc, "set", path);
    return {};
}

zk_result<void> zk_session::remove(const std::string& path, int32_t version) {
    const int rc = retry([&] { return zoo_delete(_handle, path.c_str(), version); });
    if (rc != ZOK) return failure_of(rc, "delete", path);
    return {};
}

zk_result<void> zk_session::multi(const std::vector<zk_op>& ops) {
    if (ops.empty()) return {};
    std::vector<zoo_op_t> raw(ops.size());
    std::vector<zoo_op_result_t> results(ops.size());
    std::vector<std::string> created(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) {
        const zk_op& op = ops[i];
        switch (op.what) {
            case zk_op::kind::create:
                created[i].assign(op.path.size() + 32, '\0');
                zoo_create_op_init(&raw[i], op.path.c_str(), op.data.data(),
                                   static_cast<int>(op.data.size()), &ZOO_OPEN_ACL_UNSAFE, op.flags,
                                   created[i].data(), static_cast<int>(created[i].size()));
                break;
            case zk_op::kind::set:
                zoo_set_op_init(&raw[i], op.path.c_str(), op.data.data(),
                                static_cast<int>(op.data.size()), op.version, nullptr);
                break;
            case zk_op::kind::remove:
                zoo_delete_op_init(&raw[i], op.path.c_str(), op.version);
                break;
            case zk_op::kind::check:
                zoo_check_op_init(&raw[i], op.path.c_str(), op.version);
                break;
        }
    }
    const int rc = retry([&] {
        // libzookeeper 3.8's zoo_amulti, on a handle it can no longer use (session expired,
        // auth failed), stops preparing the ops at the first one and then, for each later
        // op, frees a path pointer it never set: in practice the first op's path, which is
        // ours (ASan: free() of operator new's memory; without ASan a double free). Such a
        // handle stays unusable for its life, so a multi is not handed to it; what is left
        // is the moment between this check and the call.
        const int state = zoo_state(_handle);
        if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE)
            return static_cast<int>(ZINVALIDSTATE);
        return zoo_multi(_handle, static_cast<int>(raw.size()), raw.data(), results.data());
    });
    if (rc == ZOK) return {};
    // Name the operation that failed: the others report ZRUNTIMEINCONSISTENCY or ZOK.
    for (size_t i = 0; i < ops.size(); ++i)
        if (results[i].err != ZOK && results[i].err != ZRUNTIMEINCONSISTENCY)
            return failure_of(results[i].err, "multi at", ops[i].path);
    return failure_of(rc, "multi at", ops.front().path);
}

zk_result<void> zk_session::ensure_path(const std::string& path) {
    for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
        const std::string prefix = slash == std::string::npos ? path : path.substr(0, slash);
        auto made = create(prefix, "");
        if (!made && made.failure().code != ZNODEEXISTS) return made.failure();
        if (slash == std::string::npos) return {};
    }
}

zk_result<void> zk_session::remove_recursive(const std::string& path) {
    auto below = children(path);
    if (!below) return below.failure().code == ZNONODE ? zk_result<void>() : below.failure();
    for (const std::string& child : *below)
        if (auto gone = remove_recursive(path + "/" + child); !gone) return gone;
    auto gone = remove(path);
    if (!gone && gone.failure().code != ZNONODE) return gone;
    return {};
}

}  // namespace spate::broker::cluster
