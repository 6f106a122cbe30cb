#pragma once
// zk_session: one ZooKeeper session through Debian's libzookeeper-mt (the C client).
//
// Threads: the C client runs two threads of its own (I/O and completions); watch and
// session events arrive on its completion thread and are handed, unchanged, to the
// `on_event` callback given at connect — which only queues them for the cluster agent's
// thread (broker/cluster/agent.h). Every other call is synchronous and made from the
// agent's thread; none of them touches shard state. Lives as long as the agent, or
// until the session expires (the agent then makes a new one).

// The synchronous calls exist only in the multi-threaded client, declared under THREADED.
#ifndef THREADED
#define THREADED
#endif
#include <zookeeper/zookeeper.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"

namespace spate::broker::cluster {

// What a watch or a session change reports. `type` is ZooKeeper's (ZOO_CHILD_EVENT,
// ZOO_CHANGED_EVENT, ZOO_DELETED_EVENT, ZOO_CREATED_EVENT, ZOO_SESSION_EVENT).
struct zk_event {
    int type = 0;
    int state = 0;
    std::string path;
};

struct zk_node {
    std::string data;
    Stat stat{};
};

// One operation of a multi (all or nothing). A `check` asserts the version of `path`.
struct zk_op {
    enum class kind : uint8_t { create, set, remove, check } what = kind::check;
    std::string path;
    std::string data;
    int32_t version = -1;  // set / remove / check; -1 matches any version
    int flags = 0;         // create: ZOO_EPHEMERAL, ZOO_SEQUENCE, …
};

// A failed ZooKeeper call carries ZooKeeper's code (ZNONODE, ZNODEEXISTS, ZBADVERSION,
// …, all negative) and a message naming the path.
template <class T>
using zk_result = result<T>;

class zk_session {
public:
    // Connects to `connect` ("host:port[,host:port…][/chroot]") and waits up to
    // `connect_timeout_ms` for the session; the error names the address.
    static result<std::unique_ptr<zk_session>> connect(const std::string& connect,
                                                       int32_t session_timeout_ms,
                                                       int32_t connect_timeout_ms,
                                                       std::function<void(zk_event)> on_event);
    ~zk_session();
    zk_session(const zk_session&) = delete;
    zk_session& operator=(const zk_session&) = delete;

    int64_t session_id() const;
    // The session timeout ZooKeeper granted (it clamps the asked one to its own bounds).
    int32_t negotiated_timeout_ms() const { return zoo_recv_timeout(_handle); }
    bool expired() const;

    // Watches (`watch` true) fire once, through on_event.
    zk_result<zk_node> get(const std::string& path, bool watch = false);
    zk_result<std::optional<Stat>> exists(const std::string& path, bool watch = false);
    zk_result<std::vector<std::string>> children(const std::string& path, bool watch = false);
    // Returns the created path (with its sequence number when flags has ZOO_SEQUENCE).
    zk_result<std::string> create(const std::string& path, const std::string& data, int flags = 0);
    zk_result<void> set(const std::string& path, const std::string& data, int32_t version = -1);
    zk_result<void> remove(const std::string& path, int32_t version = -1);
    zk_result<void> multi(const std::vector<zk_op>& ops);

    // Creates `path` and any missing parents as empty persistent nodes; an existing node
    // is success.
    zk_result<void> ensure_path(const std::string& path);
    // Deletes `path` and everything below it; a missing node is success.
    zk_result<void> remove_recursive(const std::string& path);

private:
    zk_session() = default;
    // Runs a synchronous call again while the connection is lost but the session lives.
    template <class Call>
    int retry(Call call);
    static void watcher(zhandle_t* handle, int type, int state, const char* path, void* context);

    zhandle_t* _handle = nullptr;
    std::function<void(zk_event)> _on_event;
};

// ZooKeeper's name for a result code (zerror).
std::string zk_error_text(int code);

}  // namespace spate::broker::cluster
