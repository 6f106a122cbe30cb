#pragma once
// close_logs: the clean close of many partition logs at once (a broker shard's shutdown).
//
// Closing each log on its own costs several fsyncs per partition (the active segment,
// its two index files, the recovery point and the marker, each with a directory fsync):
// minutes for 100,000 partitions, beyond a service manager's stop timeout. Here a log
// that is still vouched for by its clean-shutdown marker costs nothing, and the logs that
// changed share two syncfs(2) calls per file system, in the order storage/log.h's header
// comment argues safe: data and indexes unsynced, syncfs, recovery points and markers
// unsynced, syncfs. A log whose directory is on another file system than the one given
// (a partition directory that is a mount point) is closed on its own (close()).
//
// Write-back errors: syncfs reports an error of the file system that happened since the
// descriptor it is given was opened (Linux 5.8+, the superblock's errseq), whichever file
// it hit; so the caller opens that descriptor before the logs are opened, and a failed
// syncfs writes no marker at all (the next open scans every log that changed).
//
// Blocking; called on the shard that owns the logs, which must not be used afterwards
// (each is closed, successfully or not).

#include <cstddef>
#include <span>

#include "proto/result.h"
#include "storage/log.h"

namespace spate::storage {

struct close_report {
    size_t untouched = 0;     // closed without a write: still vouched for by their marker
    size_t synced = 0;        // closed through the shared syncfs
    size_t on_their_own = 0;  // on another file system: closed with their own fsyncs
    size_t failed = 0;        // left without a marker (each failure logged at ERROR)
    // How long the steps took, for the shutdown's log line: stopping the logs and
    // writing what they hold unsynced, the first syncfs, the markers, the second syncfs.
    int64_t stop_ms = 0;
    int64_t first_sync_ms = 0;
    int64_t markers_ms = 0;
    int64_t second_sync_ms = 0;
};

// `filesystem_fd` is an open directory descriptor on the file system holding the logs
// (opened before their writes, see above), or -1 to close every log on its own.
// Fails only when a syncfs fails; the report counts the logs either way.
result<close_report> close_logs(std::span<partition_log* const> logs, int filesystem_fd);

}  // namespace spate::storage
