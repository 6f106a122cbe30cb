#pragma once
// partition_log: the log of one partition — segments, offsets, recovery, retention.
//
// Directory layout (`<data>/<topic>-<partition>/`, Kafka's):
//   <20-digit base offset>.log        record batches (storage/segment.h)
//   <20-digit base offset>.index      sparse offset index (storage/index.h)
//   <20-digit base offset>.timeindex  sparse time index (storage/index.h)
//   recovery-point.checkpoint         storage/checkpoint.h
//   log-start-offset.checkpoint       storage/checkpoint.h
//   clean-shutdown.checkpoint         storage/checkpoint.h, from a clean close to the
//                                     first change of the log after the next open
//   cleaned-through.checkpoint        storage/checkpoint.h, see "Compaction" below
//   replicated-gaps.checkpoint        storage/checkpoint.h, see "Replication" below
//   leader-epoch-checkpoint           storage/leader_epoch.h (Kafka's text file), see
//                                     "Replication" below
//   *.tmp                             a checkpoint or index write cut short; deleted at open
//
// Offsets move forward through named marks, asserted on every update:
//   log_start_offset <= log_end_offset and durable_offset <= log_end_offset
//   log_start_offset <= every leader epoch's start offset <= log_end_offset
// (DeleteRecords may move the log start past the durable offset: they are independent).
// Only a truncation (see "Replication") moves marks back.
//
// Durability: appends go to the page cache (pwrite/pwritev). Nothing is fdatasync'ed
// per append unless the flush policy (flush_messages / flush_ms) or the broker asks:
// the broker may fdatasync active_file() on its ring and then call mark_durable, or call
// the blocking sync().
//
// Descriptors: opened with the owner shard's fd_cache (storage/fd_cache.h), no segment,
// the active one included, keeps its descriptor longer than the cache allows; it is
// reopened on the next use, and a failed reopen (EMFILE, ENOENT, ...) fails that
// operation with the errno, like any other I/O error of the partition.
//
// Rolling a segment never waits for the disk (a blocking fdatasync of a just-closed
// 1 GiB segment would stall every connection of the shard for up to seconds). The roll
// writes the closed segment's indexes unsynced and queues a sync request: the closed
// segment's file (kept open by the request) and the offset that becomes durable once it
// is fdatasync'ed, the new segment's base offset. The owner hands the requests to its
// ring (take_sync_requests) and reports each completion (complete_sync), in any order.
// Kafka does the same: the old segment is flushed in the background after a roll.
//
// The marks, each asserted on every update:
//   recovery_point <= durable_offset <= log_end_offset,
//   recovery_point == base offset of the oldest segment with an unfinished sync request
//                     (or of the active segment when there is none).
// The recovery point advances only over a contiguous prefix of completed requests and
// is then checkpointed (a small atomic file write whose directory fsync also makes the
// newer segments' directory entries durable). Recovery scans every segment from the
// one holding the recovery point, so it never trusts data that was not synced. The
// durable offset (what may be acknowledged as on disk) may pass the recovery point
// only when no sync request is outstanding: otherwise an unsynced older segment could
// be torn by a machine crash, and recovery would cut the log there, losing the newer
// data even though its own segment was synced.
//
// Recovery at open: with a valid clean-shutdown marker, the saved indexes are trusted
// once the active segment's tail checks out (segment::adopt_clean_state: the batches
// after its last index entry are validated and must end exactly at the file's end and
// the recorded log end). Otherwise (no marker, or a tail that disagrees with it: a file
// cut or extended after the close) every segment from the one holding the recovery
// point on is read batch by batch (size, magic, CRC-32C, contiguous offsets, or strictly
// increasing ones in segments compaction may have rewritten). The first invalid byte of
// a segment ends it: the bytes from there on are copied aside to a .corrupt file (see
// storage/segment.h) and the segment is truncated. If the next segment still continues
// at the offset where the valid data ended (the invalid bytes were junk after the last
// batch), it is kept and scanned in turn; otherwise the log ends there and every later
// segment is renamed aside to a .corrupt file too, since a log with a hole in its
// offsets is not one that clients, the indexes or the next recovery could follow.
// This is Kafka's rule (truncate at the first invalid batch of the unflushed part, drop
// what follows), except that nothing is deleted: whatever recovery drops stays on disk
// for an operator, is logged at WARN (partition directory, offsets, bytes, where it
// went) and is counted in recovery_report(). Segments below the recovery point were
// fdatasync'ed and verified before and are not read at open (as in Kafka); damage
// there reaches only the reads of the damaged batches. A torn tail never prevents
// start-up.
//
// The clean-shutdown marker vouches for the log exactly as a clean close left it: every
// segment fdatasync'ed (or the whole file system synced), the active segment's indexes
// saved, the recovery point at the log end. An open that adopts it leaves it in place
// and writes nothing (the recovery point is already the log end), so that a partition
// that stays idle costs no write at open or at close: its close only stops the log. The
// marker is removed, durably (unlink, then fsync of the directory), before the first
// change of the log reaches a file: an append (and so a roll), a log start move
// (DeleteRecords, retention), a segment deletion, a compaction's cleaned-through
// checkpoint or swap (retire_clean_marker). So a marker on disk always describes the
// files as they are, whether the process then closes, crashes or is killed: a crash of
// an unchanged log reopens it clean, a crash after a change finds no marker and scans.
// The first change after an open pays that one directory fsync.
//
// Shutdown of many logs (storage/shutdown.h) batches the durability work of the logs
// that changed instead of syncing each file: (1) close_unsynced() stops each log and
// replaces its active segment's indexes without fsync; (2) one syncfs(2) of the file
// system makes every segment's data, every index and every directory entry durable;
// (3) close_after_sync() writes each log's recovery point and marker, unsynced; (4) a
// second syncfs makes those durable. No marker or recovery point is written before the
// syncfs that covers the data it vouches for has returned success, so no crash between
// the steps can leave a marker (or recovery point) over data that is not on disk: it
// leaves no marker (a scan) or a damaged one (read as absent, a scan). A failed syncfs
// writes no marker at all, and syncfs fails on any write-back error of the file system
// since the broker opened its data directory (storage/shutdown.h), so an error that an
// fdatasync of the old per-log close would have seen is not missed. Writes that would
// repeat what the files already say are skipped on every path: an unchanged recovery
// point, and the index files of an empty segment (an empty segment's indexes are empty
// whatever its files hold); so a partition created and stopped empty writes its segment
// file and its marker, nothing else.
//
// Compaction (cleanup.policy=compact, see storage/compaction.h for what a run keeps):
// the owner calls compact_step() periodically; each call does a bounded amount of work
// (about compaction_step_bytes of reading) and keeps the run's state in the log, so the
// shard loop never stalls for a whole segment. A run maps every key of the log to its
// latest offset, then rewrites the closed segments that end at or below the recovery
// point (so never one with an outstanding sync request, and never the active one),
// oldest first, each into `<base>.log.cleaned` (+ `.index.cleaned`, `.timeindex.cleaned`).
// Swap of one segment, all on the owner shard between two appends:
//   1. the .cleaned files are fdatasync'ed;
//   2. the index files are renamed to `<base>.index.swap` / `.timeindex.swap`, then the
//      log to `<base>.log.swap` (its existence is the commit point), directory fsync;
//   3. the index .swap files are renamed over the old index files, then the log .swap
//      over the old log, directory fsync.
// Recovery at open deletes every .cleaned file, completes every swap whose .log.swap
// exists (step 3 again, index files first) and deletes index .swap files without one:
// a crash leaves either the old or the new segment, never a mix. Before the first swap
// of a run, cleaned-through.checkpoint records the end of the range being rewritten;
// recovery accepts offset gaps only in segments ending at or below it (or the recovery
// point) and demands contiguous offsets elsewhere. Retention and DeleteRecords may
// delete segments while a run is in progress: every step looks segments up again by
// base offset, and a swap happens only if its segment still exists unchanged. Readers
// holding the old segment_file keep reading the old (unlinked) file.
//
// Replication (a follower copying its leader; leader epochs as in Kafka's KIP-101 and
// KIP-279). append_replicated writes a batch at the offsets its leader gave it, at or
// after the log end: a gap is allowed, since the leader's log may have been compacted.
// Before the first batch after a gap is written, replicated-gaps.checkpoint records its
// offset (once per log, unless a lower gap comes), and recovery accepts gaps (strictly
// increasing offsets, as below the cleaned-through offset) in every segment from there
// on, the active one and a clean open's tail check included. A roll for such a batch
// starts the new segment at the batch's base offset (the log end jumps there, as in
// Kafka), so that the segment's relative offsets reach the batch even across a gap of
// more than 2^31 offsets.
//
// The leader epoch cache (storage/leader_epoch.h) holds the first offset of every leader
// epoch in the log: each appended batch (append or append_replicated) whose
// partition_leader_epoch is newer than the latest adds an entry at its base offset, and
// a new leader announces its epoch with assign_epoch before it has a batch. A new entry
// is written to leader-epoch-checkpoint (replaced whole) before the first batch of its
// epoch, so after a process crash (kill -9: the page cache outlives it) the file never
// lacks the epoch of a batch in the log. That write is not fsync'ed, as Kafka's is not
// since KAFKA-15046: two fsyncs per new epoch stalled the shard for milliseconds, at the
// first batch of every new partition and for every partition that changed leader. A
// power loss can undo it, so the file is written durably before the recovery point
// passes its entries (advance_recovery_point, close) and at open, and the open adds
// the epochs that start in the batches it scans (every segment from the recovery
// point's on) to the file's; the file vouches only for the log below the recovery point.
// Only batches from the log start on count: a full truncation cut short by a crash
// leaves old batches below it, whose epochs may exceed the new ones.
// The file may name an epoch whose first batch never made it (a crash between the two),
// so the open drops the entries starting at or after the recovered log end (Kafka's
// rule), and applies the log start. A log start move (DeleteRecords, retention) drops
// the entries wholly before it and raises the first kept one to it in memory only: the
// next open repeats that from log-start-offset.checkpoint, so the move costs no further
// write. Any other change of the cache is written before the next batch is. The file is
// not covered by the clean-shutdown marker (every open reads it), so writing it leaves
// the marker.
// A new log writes it before its first batch, whatever epoch that carries, so a log
// with batches and no file predates epochs (an upgrade) or lost the file: a missing or
// damaged file is rebuilt at open from the batch headers of every segment and saved
// once. Bisecting each segment's offset index (segment::collect_epoch_starts) makes that
// cost a few header reads per segment and per epoch change rather than a read of the
// whole log, which matters for the one open that rebuilds every partition (the first
// after an upgrade). The rebuild trusts the epochs the batches carry; the CRC does not
// cover them.
//
// Truncation (a follower dropping what its leader does not have, Kafka's truncateTo):
// truncate_to(offset) keeps the segments starting at or below `offset`, cuts the last of
// them before the batch holding `offset` (its new active segment, possibly empty) and
// clamps every mark to the new end. In this order, each step durable before the next:
//   1. the clean-shutdown marker is removed, as before any change;
//   2. the later segments are deleted, newest first (a crash leaves a prefix of the
//      log), then the directory is fsync'ed;
//   3. the holding segment's file is cut and fdatasync'ed; its indexes follow in memory
//      (its index files are rewritten when it is sealed again; until then any crash
//      makes recovery scan it, as the segment holding the recovery point or the last);
//   4. the checkpoints naming offsets beyond the new end are rewritten: the log start
//      (when the cut went below it), cleaned-through, the recovery point;
//   5. the epoch cache drops the entries starting at or after the new end, persisted.
// A kill before step 3 leaves the uncut log (or a prefix of it), after step 3 the cut
// one; a checkpoint that step 4 did not get to rewrite names an offset past the end,
// which the open clamps (the log start) or which no longer names a segment beyond the
// last one, which recovery scans anyway (the recovery point, cleaned-through); entries
// that step 5 did not get to remove start at or after the log end, and the open drops
// them. A kill -9 at any point therefore opens.
// Sync requests of the deleted segments and of the holding one (synced in step 3) are
// dropped; a compaction run is aborted. An fdatasync the owner submitted before a
// truncation must not be reported after it (see truncation_count()).
// truncate_fully_and_start_at(offset) empties the log and restarts it at `offset`: the
// log start checkpoint first (a crash from there on reopens the old log, or what is left
// of it, with its start moved to `offset`, so empty at the old end when `offset` lies
// past it, the case this is for; or the new log), then the emptied epoch cache, then
// every segment goes, oldest first as retention deletes them (a prefix deleted leaves
// the old end), and an empty one at `offset` is created.
//
// Ownership: exactly one shard owns a partition_log for as long as the partition exists
// on it; it is not thread-safe and every call is blocking file I/O on that shard (appends
// hit the page cache; fdatasync happens only in sync(), run_sync_requests(), close(),
// the truncations and at open; complete_sync() writes the small recovery-point
// checkpoint, and the epoch file durably first when it was written unsynced; the
// first batch of a new leader epoch, assign_epoch and a log's first batch write the
// small epoch file (unsynced), and a follower's first gap the replicated-gaps one; the
// first change after a clean open fsyncs the directory once to remove the marker).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "proto/result.h"
#include "storage/fd_cache.h"
#include "storage/file.h"
#include "storage/leader_epoch.h"

namespace spate::storage {

class segment;

using steady = std::chrono::steady_clock::time_point;

// Error codes of partition_log results that are not errnos (errnos are positive).
enum log_error : int {
    offset_out_of_range = -1,  // read/delete offset outside [log start, log end]
    invalid_batch = -2,        // append of bytes that are not one well-formed batch
    log_closed = -3,           // the log was closed or a failed write left it unusable
    offset_out_of_order = -4,  // append_replicated of a batch starting below the log end
};

struct log_config {
    int64_t segment_bytes = 1 << 30;
    int64_t segment_ms = 7 * 24 * 3600 * 1000LL;
    // segment.jitter.ms: each segment rolls by time up to this much before segment_ms
    // (a per-segment amount drawn from its base offset), so partitions created together
    // do not all roll at once.
    int64_t segment_jitter_ms = 0;
    int32_t index_interval_bytes = 4096;
    int64_t retention_ms = 7 * 24 * 3600 * 1000LL;                 // -1: keep forever
    int64_t retention_bytes = -1;                                  // -1: no size limit
    int64_t flush_messages = std::numeric_limits<int64_t>::max();  // Kafka: no forced fsync
    int64_t flush_ms = std::numeric_limits<int64_t>::max();
    bool preallocate = false;  // reserve segment_bytes of blocks when a segment is created
    // Blocks of the active segment reserved ahead of its appends, at most this far
    // (segment::reserve_ahead; given back when the segment is sealed). 0: none.
    int64_t preallocate_ahead_bytes = 64 << 20;
    // Appends pad the active segment with zeros to the next 64 KiB (storage/segment.h,
    // tail_padding_bytes): large page-cache folios for small appends.
    bool tail_padding = true;
    // cleanup.policy: "delete" enables retention by time and size (segments wholly below
    // the log start are deleted either way), "compact" enables compaction.
    bool cleanup_delete = true;
    bool cleanup_compact = false;
    int64_t delete_retention_ms = 24 * 3600 * 1000LL;  // how long tombstones survive compaction
    int64_t min_compaction_lag_ms = 0;  // segments with newer records are not compacted
    // The key map of a compaction run holds at most this many keys (24 bytes each, at
    // most twice that with the hash table's slack); a log with more keys is compacted
    // over the prefix the map covers.
    int64_t compaction_map_entries_max = 1 << 19;
    // Bytes of log one compact_step reads (at least one batch), bounding its duration.
    int64_t compaction_step_bytes = 4 << 20;
};

// What compaction has done so far in this log (since open).
struct compaction_stats {
    int64_t runs_completed = 0;
    int64_t segments_rewritten = 0;
    int64_t records_removed = 0;
    int64_t runs_aborted = 0;
};

// What recovery at open dropped from the log: counted, and each event logged at WARN
// when it happens. All zero after a clean start; for the broker's metrics and tests.
struct recovery_stats {
    // Segments cut at an invalid byte (a torn or damaged batch, or junk after the last).
    int64_t truncations = 0;
    // Whole segments renamed aside because the log ended before them.
    int64_t segments_moved_aside = 0;
    // Bytes taken out of the log, cut tails and whole segments: moved into .corrupt
    // files, except the bytes_lost that the disk had no room to copy.
    int64_t bytes_dropped = 0;
    int64_t bytes_lost = 0;
    // Zeros of tail padding a crash left after the last batch, cut as such (not counted
    // above: they never held records).
    int64_t padding_bytes = 0;
    // Where recovery ended the log when the bytes it dropped may have held records (a
    // cut in the last segment, or segments moved aside): the first offset that may be
    // lost. -1 when no offset can have been lost (nothing dropped, or only junk after
    // the last batch of a segment that the next one continues).
    int64_t first_dropped_offset = -1;
    // A clean-shutdown marker was present but the active segment's tail disagreed
    // with it, so the segment was scanned instead of trusted.
    bool clean_marker_rejected = false;
};

// A byte range of a segment file for a zero-copy transfer. Holding `file` keeps the
// descriptor open even if retention deletes the segment meanwhile.
struct file_slice {
    std::shared_ptr<segment_file> file;
    int64_t position;
    int32_t length;
};

struct read_result {
    std::vector<file_slice> slices;
    // The offset bound of the read: the log end, or max_offset when that is lower.
    int64_t high_watermark;
    int64_t log_start_offset;
    int32_t bytes;
};

// A closed segment waiting for its fdatasync. Holding `file` keeps the descriptor open
// even if retention deletes the segment meanwhile (the sync then costs nothing useful
// but stays harmless). Once the fdatasync of `file` succeeded, every offset below
// `durable_offset` (the next segment's base offset) is on disk, as far as this segment
// is concerned.
struct sync_request {
    std::shared_ptr<segment_file> file;
    int64_t durable_offset;
};

struct append_result {
    int64_t base_offset;
    int64_t log_append_time_ms;  // the batch's max timestamp for LogAppendTime batches, else -1
};

class partition_log {
public:
    // Creates `dir` if needed and recovers whatever it holds. `descriptors` is the owner
    // shard's descriptor cache, which must outlive the log; null keeps every file the
    // log uses open (tools and tests without a shard).
    static result<std::unique_ptr<partition_log>> open(std::filesystem::path dir,
                                                       const log_config& config,
                                                       fd_cache* descriptors = nullptr);
    ~partition_log();
    partition_log(const partition_log&) = delete;
    partition_log& operator=(const partition_log&) = delete;

    // Assigns offsets [log_end, log_end + records_count) by rewriting base_offset in
    // place and writes the batch to the active segment, rolling first when the segment
    // is full or old. The caller validated the batch (validate_batch from a client);
    // records_count must equal last_offset_delta + 1. On a write error the segment is
    // cut back to where it was and the error (errno) is returned.
    result<append_result> append(std::span<uint8_t> batch, int32_t records_count);
    // Several batches in one vectored write (one per segment they land in).
    result<std::vector<append_result>> append_many(std::span<std::span<uint8_t>> batches);
    // Appends a batch that already carries its offsets (a follower copying its leader):
    // base_offset (bytes 0..7 of the batch) must be >= log_end_offset() (else
    // offset_out_of_order; gaps are allowed, the leader's log may have been compacted),
    // and the log end becomes base + last_offset_delta + 1. Offsets are NOT rewritten.
    // Rolls like append() (at the batch's base offset, see "Replication" above). Same
    // error behaviour as append(). The caller validated the batch (validate_batch with
    // batch_source::log: the CRC; records_count may be below last_offset_delta + 1 in a
    // compacted batch, so it is not checked here).
    result<append_result> append_replicated(std::span<uint8_t> batch);

    // Both append() and append_replicated() record the batch's partition_leader_epoch
    // (proto/record_batch.h, bytes 12..15; the leader stamps it, this log trusts it) in
    // the epoch cache when it is newer than the latest epoch (start offset = the batch's
    // base offset), persisting the checkpoint before the batch is written. Epoch < 0 is
    // ignored. A new leader records its epoch's start at once, before any batch of that
    // epoch: ignored if epoch <= latest; `start_offset` (normally the log end) must lie
    // in [log start, log end] (else offset_out_of_range), and entries starting at or
    // after it are replaced. A failed write is retried before the next batch is written.
    result<void> assign_epoch(int32_t epoch, int64_t start_offset);
    const leader_epoch_cache& leader_epochs() const { return _epochs; }
    // OffsetsForLeaderEpoch: leader_epoch_cache::end_offset_for with the log end.
    std::pair<int32_t, int64_t> end_offset_for_epoch(int32_t requested) const {
        return _epochs.end_offset_for(requested, _log_end);
    }

    // Truncates the log so that it ends at `offset` or just below it at a batch boundary
    // (the batch containing `offset`, if any, goes entirely; Kafka's truncateTo; in a gap
    // the log ends after the last batch below it). Requires log_start <= offset (else
    // offset_out_of_range); offset >= log end does nothing. Returns the new log end,
    // which may be below the log start (a log start inside the cut batch): the log start
    // then follows it down. See "Replication" above for the steps. Blocking: deletes
    // files and syncs the cut segment, the directory and up to four checkpoints. An I/O
    // error stops the log (log_closed) until it is reopened; recovery then finds it cut
    // or not, both valid logs. In-flight zero-copy transfers of the cut range read short.
    result<int64_t> truncate_to(int64_t offset);
    // Deletes everything and restarts the log empty at `offset` (>= 0; a follower whose
    // leader's log starts after this log's end): log start = log end = offset, epochs
    // cleared, compaction and gap records forgotten. Errors as truncate_to.
    result<void> truncate_fully_and_start_at(int64_t offset);
    // How many truncations (either kind) this log made since it was opened. The owner
    // captures it with every fdatasync it submits (mark_durable's active segment, or a
    // sync request) and drops the completion if it changed meanwhile: the offsets such a
    // completion reports may name data a truncation replaced.
    uint64_t truncation_count() const { return _truncations; }
    // Segments rolled since the log was opened (metrics).
    uint64_t roll_count() const { return _rolls; }

    // Whole batches, from the one holding `offset`, fitting in max_bytes (at least one
    // batch when the log has one at `offset`), from one segment and never past the log
    // end. Offsets outside [log start, log end] fail with log_error::offset_out_of_range.
    result<read_result> read(int64_t offset, int32_t max_bytes) const;
    // The same with an upper bound: batches whose last offset is >= max_offset are not
    // returned (consumers read only below the high watermark); none at all when the
    // batch holding `offset` reaches it. max_offset >= log end is the read above.
    result<read_result> read(int64_t offset, int32_t max_bytes, int64_t max_offset) const;

    int64_t log_start_offset() const { return _log_start; }
    int64_t log_end_offset() const { return _log_end; }
    // Every offset below this one has been fdatasync'ed.
    int64_t durable_offset() const { return _durable; }
    // Recovery after a crash scans from the segment holding this offset (checkpointed).
    int64_t recovery_point() const { return _recovery_point; }
    // The active segment's file, for an fdatasync submitted by the broker, who holds the
    // reference until the fdatasync completes: the descriptor cache may close the
    // segment's own reference meanwhile, and a bare descriptor number could by then
    // name another file. Reopening it may fail (EMFILE, ENOENT).
    result<std::shared_ptr<segment_file>> active_file() const;
    // Records that an fdatasync of the active segment's descriptor, submitted when the
    // log end was `offset` (<= log end now), completed. The durable offset follows at
    // once if no sync request is outstanding, else when the requests complete. The
    // caller must capture `offset` when it submits the fdatasync, not when it completes:
    // appends made in between are not covered. A completion of an fdatasync submitted
    // before a truncation must not be reported (see truncation_count()): its offset may
    // lie beyond the log end (an assertion) or name data appended since.
    void mark_durable(int64_t offset);
    // Blocking: fdatasyncs every closed segment with an outstanding sync request and the
    // active segment, then advances the durable offset and the recovery point to the
    // log end. For close() and the flush policy; the hot path uses sync requests.
    result<void> sync();

    // Sync work the owner should submit (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC on
    // its ring), oldest first; each request is handed out once (again only after a
    // retryable failure was reported). Requests are queued by rolls only, so at most one
    // exists per closed segment.
    std::vector<sync_request> take_sync_requests();
    // Whether a request is waiting to be taken.
    bool has_sync_requests() const;
    // Reports the completion of the fdatasync of the request for `durable_offset`: `res`
    // is 0 or -errno, as in the CQE. Completions may arrive in any order; the recovery
    // point (checkpointed) and the durable offset advance only over the contiguous prefix
    // of completed requests. A completion of a request that is no longer outstanding
    // (sync() did it meanwhile) only retries a failed checkpoint write. Requests taken
    // before a truncation must not be reported after it (see truncation_count()): a
    // request queued since may have the same durable offset.
    // Errors: -EINTR, -EAGAIN, -ECANCELED, -ENOMEM put the request back to be taken
    // again and return that errno. Any other errno (EIO, ENOSPC, EDQUOT, ...) means the
    // kernel may have dropped the dirty pages, so a later fdatasync could succeed over
    // lost data: the log stops accepting appends (log_closed) and the error is returned;
    // the partition must be reopened, which recovers from the recovery point. A failed
    // checkpoint write is returned as well and retried by the next completion or sync.
    result<void> complete_sync(int64_t durable_offset, int res);
    // For tests and tools without a ring: fdatasyncs every outstanding request inline
    // (including taken ones: a second fdatasync is harmless) and completes them.
    result<void> run_sync_requests();
    // Requests queued and not yet completed (taken or not).
    size_t outstanding_sync_count() const { return _syncs.size(); }
    // Whether flush_messages / flush_ms say the log should be synced now.
    bool flush_due(steady now) const;

    // ListOffsets: -1 latest, -2 earliest, -3 largest timestamp, else the first offset
    // whose record timestamp is >= timestamp_ms ({-1, -1} when there is none).
    struct offset_and_timestamp {
        int64_t offset;
        int64_t timestamp;
    };
    result<offset_and_timestamp> offset_for_timestamp(int64_t timestamp_ms) const;

    // DeleteRecords: moves the log start forward to `offset` (<= log end).
    result<void> delete_records_before(int64_t offset);
    // Deletes whole closed segments: older than retention_ms (by their largest
    // timestamp), beyond retention_bytes, or entirely below the log start.
    result<void> apply_retention(int64_t now_ms);

    // One bounded slice of compaction work (see the header comment), when the config
    // enables it and there is something to do: a new closed segment since the last run,
    // or a kept tombstone or too-young segment whose time has come. Returns whether a
    // run is still in progress. A failure aborts the run (its .cleaned files are
    // deleted) and is retried after a delay.
    result<bool> compact_step(int64_t now_ms);
    const compaction_stats& compaction_progress() const { return _compaction_stats; }
    // What recovery dropped when this log was opened.
    const recovery_stats& recovery_report() const { return _recovery_stats; }
    // Offsets below this lie in segments compaction may have rewritten (checkpointed).
    int64_t cleaned_through() const { return _cleaned_through; }

    void set_config(const log_config& config);
    const log_config& config() const { return _config; }

    // Syncs, seals the active segment's indexes, writes the checkpoints and the
    // clean-shutdown marker. A log still vouched for by the marker it was opened with
    // (nothing changed since) writes nothing. Further appends fail; calling close()
    // again does nothing.
    result<void> close();
    // The two halves of a close whose syncing the caller batches over many logs with
    // syncfs(2) (storage/shutdown.h, the ordering in the header comment). Step 1 stops
    // the log and replaces the active segment's indexes unsynced; it returns whether
    // the log needs step 2 (false for a log still vouched for by its marker, or one a
    // write-back error left unusable, which must not get a marker). Step 2 may be
    // called only after a syncfs of the log's file system that started after step 1
    // returned and succeeded: it writes the recovery point and the marker, unsynced.
    result<bool> close_unsynced();
    result<void> close_after_sync();
    // Whether the clean-shutdown marker on disk describes the log as it is now.
    bool vouched_by_clean_marker() const { return _clean_marker; }
    const std::filesystem::path& directory() const { return _dir; }

    // Heap bytes held by this log (segments, indexes, paths), for the memory report.
    size_t memory_bytes() const;
    size_t segment_count() const { return _segments.size(); }
    // Bytes of every segment file (what DescribeLogDirs reports as the partition's size).
    int64_t size_bytes() const;
    // Descriptors this log holds open (the active segment, closed segments being read
    // or waiting for their sync), for the resource report.
    size_t open_file_count() const;

private:
    partition_log(std::filesystem::path dir, const log_config& config, fd_cache* descriptors);
    result<void> recover();
    // Completes the leader epoch cache at the end of recovery, given how reading its
    // file went (the file's entries are in _epochs when it loaded): a rebuild from the
    // segments when it is missing or damaged, else the epochs that start in the scanned
    // batches (`scanned`, in log order) added; then the log start and end applied.
    result<void> load_leader_epochs(leader_epoch_cache::read_status status,
                                    const std::vector<epoch_entry>& scanned);
    // Writes the epoch cache when it differs from the file in a way the next open
    // would not repair (new entries, entries removed from the end), unsynced (see the
    // header comment).
    result<void> persist_epochs();
    // Writes the epoch cache durably when the file lags it or was written unsynced.
    result<void> sync_epochs();
    // Records (durably) that a batch at `base_offset` follows an offset gap.
    result<void> note_replicated_gap(int64_t base_offset);
    enum class offsets_mode : uint8_t { assign, keep };
    result<std::vector<append_result>> append_batches(std::span<std::span<uint8_t>> batches,
                                                      offsets_mode mode);
    // Closes the active segment and starts one at `base_offset` (>= the log end, which
    // moves there).
    result<void> roll(int64_t now_ms, int64_t base_offset);
    // Whether a batch of `batch_bytes` ending at `last_offset` must go to a new segment
    // when the active one already holds `segment_bytes`.
    int64_t roll_jitter_ms(int64_t base_offset) const;
    bool should_roll(int64_t segment_bytes, int64_t batch_bytes, int64_t last_offset,
                     int64_t now_ms) const;
    result<void> delete_oldest_segments(size_t count);
    // Removes the clean-shutdown marker durably before the first change of the log
    // (see the header comment); nothing once it is gone.
    result<void> retire_clean_marker();
    // Recovery: renames the newest `count` segments aside (see the header comment).
    result<void> move_newest_segments_aside(size_t count);
    result<void> advance_log_start(int64_t offset);
    void check_marks() const;
    // Completes the requests from the front that are done: checkpoints the recovery
    // point, closes their segments' descriptors and recomputes the durable offset.
    result<void> advance_recovery_point();
    void update_durable();
    result<void> fail_sync(size_t request, int errno_value);
    segment& active() const { return *_segments.back(); }
    // Completes or rolls back the swaps a crash interrupted and deletes .cleaned files.
    result<void> recover_compaction_leftovers();
    struct compaction_run;
    result<void> start_compaction(int64_t now_ms);
    result<void> map_step(int64_t& budget_bytes, int64_t now_ms);
    result<void> clean_step(int64_t& budget_bytes, int64_t now_ms);
    result<void> finish_cleaned_segment();
    void abort_compaction();
    bool compaction_due(int64_t now_ms) const;
    // The segment with this base offset, or nullptr.
    segment* find_segment(int64_t base_offset) const;
    void release_closed_file(segment& seg) const;
    int64_t closed_synced_end() const;

    std::filesystem::path _dir;
    log_config _config;
    fd_cache* _descriptors;
    // Ascending base offsets; never empty after open; back() is the active segment.
    std::vector<std::unique_ptr<segment>> _segments;
    int64_t _log_start = 0;
    int64_t _log_end = 0;
    int64_t _durable = 0;
    int64_t _recovery_point = 0;
    // What recovery-point.checkpoint holds as this log last wrote (or, at open, found)
    // it, so that a close does not write the same value again.
    int64_t _checkpointed_recovery_point = -1;
    // The largest offset mark_durable reported for the active segment; it becomes the
    // durable offset once no sync request is outstanding.
    int64_t _active_synced = 0;

    enum class sync_state : uint8_t { queued, taken, done };
    struct pending_sync {
        std::shared_ptr<segment_file> file;
        int64_t segment_base;    // base offset of the closed segment
        int64_t durable_offset;  // the next segment's base offset
        sync_state state;
    };
    // Outstanding requests, ascending offsets; front().segment_base == _recovery_point.
    // One entry per closed segment not yet synced and checkpointed, so it is as short as
    // the disk is behind, and a vector (not a deque) costs nothing while empty.
    std::vector<pending_sync> _syncs;
    steady _last_flush;
    bool _usable = true;
    // The marker on disk vouches for the log as it is (opened clean, unchanged since).
    bool _clean_marker = false;
    // Between close_unsynced (which returned true) and close_after_sync.
    bool _awaiting_close_sync = false;

    // Compaction: the run in progress (null between runs, so an idle log pays a pointer),
    // the checkpointed end of the rewritten range, and when a run is due again without
    // new segments (a kept tombstone expires, a too-young segment ages).
    std::unique_ptr<compaction_run> _compaction;
    int64_t _cleaned_through = 0;
    // Where the next run starts mapping: segments before it hold each key at most once
    // (a completed run removed the rest), so only newer segments need mapping. Starts at
    // the checkpointed cleaned-through offset after a restart.
    int64_t _dirty_start = 0;
    // The end of the closed, synced segments when the last run started: a run is due
    // when a segment beyond it closes and is synced.
    int64_t _compaction_considered_end = 0;
    int64_t _compaction_due_ms = std::numeric_limits<int64_t>::max();
    int64_t _compaction_retry_ms = 0;
    compaction_stats _compaction_stats;
    recovery_stats _recovery_stats;

    // Replication (see the header comment): the epoch cache, whether the file lags it in
    // a way that must be written before the next batch, whether its last write was
    // unsynced, the first offset after a gap a follower copied (-1: none,
    // checkpointed), and the truncations since open.
    leader_epoch_cache _epochs;
    bool _epochs_unpersisted = false;
    bool _epochs_unsynced = false;
    int64_t _replicated_gaps_from = -1;
    uint64_t _truncations = 0;
    uint64_t _rolls = 0;
};

}  // namespace spate::storage
