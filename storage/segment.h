#pragma once
// One segment of a partition log: a .log file plus its two sparse indexes.
//
// <20-digit base offset>.log — record batches (Kafka's v2 format, see
// proto/record_batch.h) stored back to back, byte for byte as the producer sent them
// except for base_offset (and, for LogAppendTime topics, what the broker stamped before
// appending). There is no file header, so the file is identical to a Kafka segment:
//   position 0:           batch whose base_offset is the segment's base offset
//   position 12 + len0:   next batch, whose base_offset is the previous last offset + 1
//   ...                   until the end of the file
// A batch never straddles two segments. While a segment is the active one of a running
// broker, its file may end in zeros past the last batch (tail padding, below); a sealed
// segment, and every segment after a clean stop, ends with its last batch. Positions fit
// an int32 (segments stay below 2 GiB), and the offsets of a segment lie within int32
// of its base offset, which is what the 4-byte relative offsets of the indexes need.
//
// The .index and .timeindex formats are described in storage/index.h.
//
// Ownership: a partition_log owns its segments; all of them live on the partition's
// owner shard and are not thread-safe. The open file is shared (segment_file) with
// in-flight zero-copy transfers. The last segment of a log is the active one: only it
// is appended to, and its indexes live in memory until it is sealed (on roll or close).
// Closed segments open their file and load their indexes lazily, on first use, which
// keeps an idle partition small. With a descriptor cache (storage/fd_cache.h) every
// segment, the active one included, holds its descriptor only as a cache entry: the
// cache may make it let go whenever another segment of the shard opens its file, and
// file() reopens it. So nothing may keep a raw descriptor of a segment across a call
// into another segment: callers hold the shared segment_file while they use its fd.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "proto/record_batch.h"
#include "proto/result.h"
#include "storage/fd_cache.h"
#include "storage/file.h"
#include "storage/index.h"
#include "storage/leader_epoch.h"

namespace spate::storage {

// Tail padding: an append shorter than this that passes the end of the file pads it
// with zeros up to the next multiple of this many bytes, so the page cache takes the new
// region as one large folio (one allocation, memory-cgroup charge and page-cache insertion
// instead of one per 4 KiB page) and the appends after it copy into pages that already
// exist. The Java producer's ~15.8 KB batches cost 0.50 s of kernel cpu per GiB written
// plainly and 0.21-0.23 s so (ext4 on Linux 6.18, which gives regular files large folios:
// bench/tail_padding.py). Longer appends get large folios from their own length (the page
// cache sizes a new folio by the write's length and alignment); padding them too cost RF 3
// throughput here (bench/replication.py --phase 1: medians 499-575 against 740-938 MB/s,
// with 10x the time in the page-cache copy). Readers never see the zeros (they stop at the
// segment's size), sealing a segment cuts them, and recovery cuts a tail of fewer zeros than
// this ending on such a multiple without calling it damage.
constexpr int64_t tail_padding_bytes = 64 << 10;

// The bytes of a batch header are enough to walk a segment; this is where one lives.
struct batch_location {
    int64_t position;
    proto::batch_header header;
};

// How a segment scan ended (recovery and index rebuilds).
struct scan_outcome {
    int64_t valid_bytes;    // the prefix of the file made of valid, contiguous batches
    int64_t next_offset;    // the offset after the last valid batch (base offset if none)
    bool tail_was_invalid;  // bytes after valid_bytes existed and were not a valid batch
    int64_t file_bytes;     // the size of the file when the scan started
    // truncate_invalid with an invalid tail: the last offset of the chain of plausible
    // batch headers found after the valid prefix (CRC unchecked), a best guess of what
    // the cut-off bytes held for the log line; -1 when there was none.
    int64_t dropped_last_offset;
    // truncate_invalid with an invalid tail: the .corrupt file the tail was copied to,
    // or empty and why when the disk had no room for the copy (the tail is cut anyway).
    std::filesystem::path moved_to;
    std::string aside_failure;
    // truncate_invalid: zeros of tail padding (see tail_padding_bytes) after valid_bytes,
    // cut without being called invalid.
    int64_t padding_bytes = 0;
};

enum class scan_mode : uint8_t {
    rebuild_only,  // rebuild indexes from the valid prefix, leave the file alone
    // Recovery: also cut the file at the first invalid byte, after copying the bytes cut
    // off to a .corrupt file (see copy_aside_from), so that nothing is deleted unseen.
    truncate_invalid,
};

// Bytes that recovery removed from a segment are never deleted: they are kept next to
// it as `<20-digit base offset>.log.<position>.corrupt`, holding the segment's bytes
// from `position` on (position 0 for a whole segment), for an operator to inspect or
// remove. open() ignores these files and retention never deletes them. A name already
// taken gets a further `.<n>` before `.corrupt` rather than replacing older evidence.
inline constexpr const char* corrupt_file_extension = ".corrupt";

// What a scan demands of the offsets of consecutive batches.
enum class offset_rule : uint8_t {
    // Each batch starts where the previous one ended, the first at the base offset:
    // every segment that compaction never rewrote. This also catches a damaged
    // base_offset, which the CRC does not cover.
    contiguous,
    // Each batch starts after the previous one ended, the first at or after the base
    // offset: a segment rewritten by compaction, where whole batches may be gone.
    increasing,
};

// Builds the two sparse indexes of a segment file written in one go rather than
// through appends (a compacted copy), with the same spacing rules as appends, so that
// load_indexes finds them plausible. Owned by the compaction run that writes the file.
class index_builder {
public:
    index_builder(int64_t base_offset, int32_t index_interval_bytes)
        : _base_offset(base_offset), _index_interval_bytes(index_interval_bytes) {}
    // Notes the batch written at `position` (batches in file order).
    void add(const proto::batch_header& header, int64_t position);
    // The files' images, the time index ending with the largest timestamp as a sealed
    // segment's does.
    std::vector<uint8_t> offset_index_bytes() const { return _index.serialize(); }
    std::vector<uint8_t> time_index_bytes();

private:
    int64_t _base_offset;
    int32_t _index_interval_bytes;
    int64_t _bytes_since_index_entry = 0;
    offset_index _index;
    time_index _time_index;
    std::optional<time_index_entry> _max_timestamp;
};

class segment : private cached_descriptor {
public:
    // Creates a new, empty segment file at `base_offset` (which must not exist yet).
    // `index_interval_bytes` is the spacing of offset-index entries (log_config).
    // `descriptors` is the owner shard's cache, or null to keep the file open as long as
    // the segment wants it (tools and tests without a shard).
    static result<std::unique_ptr<segment>> create(const std::filesystem::path& directory,
                                                   int64_t base_offset, int64_t created_ms,
                                                   int64_t preallocate_bytes,
                                                   int32_t index_interval_bytes,
                                                   fd_cache* descriptors);
    // Describes an existing segment file of `size_bytes`; nothing is opened or read.
    static std::unique_ptr<segment> attach(const std::filesystem::path& directory,
                                           int64_t base_offset, int64_t size_bytes,
                                           int64_t created_ms, int32_t index_interval_bytes,
                                           fd_cache* descriptors);
    ~segment();

    static std::filesystem::path log_path(const std::filesystem::path& directory,
                                          int64_t base_offset);

    int64_t base_offset() const { return _base_offset; }
    int64_t size_bytes() const { return _size; }
    int64_t created_ms() const { return _created_ms; }
    const std::filesystem::path& path() const { return _log_path; }
    std::filesystem::path index_path() const;
    std::filesystem::path time_index_path() const;

    // The open file, opened on first use (again after the cache made the segment let it
    // go). A failed open (EMFILE, ENFILE, ENOENT, EACCES, ...) is an error naming the
    // file, never a crash: the log's operation fails and the partition reports a storage
    // error. EMFILE and ENFILE are retried after the cache gave up descriptors.
    result<std::shared_ptr<segment_file>> file() const;

    // Loads both indexes from their files, rebuilding them from the log (and saving
    // them) when a file is missing or fails its sanity checks. An empty segment needs
    // no index files (seal writes none for it).
    result<void> load_indexes() const;
    // Frees the in-memory indexes of a closed segment; the next lookup reloads them.
    void release_indexes() const;

    // Reads every batch from position 0 with full validation (size, magic, CRC-32C,
    // offsets as `rule` demands, within int32 of the base offset), rebuilds the
    // in-memory indexes and the append bookkeeping, and in truncate_invalid mode cuts
    // the file at the first invalid byte.
    result<scan_outcome> scan(scan_mode mode, offset_rule rule);

    // Clean-shutdown path: adopts the saved indexes of the active segment and the log
    // end offset recorded at close, after checking that the file ends on a whole batch
    // there: the batches after the last offset-index entry (at most about one index
    // interval of them) are read and fully validated (size, magic, CRC-32C, contiguous
    // offsets), and the last of them must end at the end of the file and at offset
    // next_offset - 1. A marker does not prove that nobody cut or extended the file
    // after the close. False when anything disagrees: the caller then scans. `rule` is
    // the scan's rule for this segment (a follower's active segment may have gaps).
    result<bool> adopt_clean_state(int64_t next_offset, offset_rule rule);

    // Recovery only: copies the bytes of the file from `position` to its end into a new
    // .corrupt file (see corrupt_file_extension) and fdatasyncs it; the caller then cuts
    // the file or removes it. Returns the path written.
    result<std::filesystem::path> copy_aside_from(int64_t position);
    // Recovery only: renames the whole log file aside as a .corrupt file (position 0)
    // and removes its index files, which are derived data. Returns the new path.
    result<std::filesystem::path> move_aside();

    // Active segment only: notes a batch just written at `position` (its header already
    // carries the assigned base offset), updating size, indexes and the max timestamp.
    void record_append(const proto::batch_header& header, int64_t position);
    // Applies a new index spacing to the entries added from now on.
    void set_index_interval_bytes(int32_t bytes) { _index_interval_bytes = bytes; }

    // Active segment only: reserves the file's blocks up to at least `end` ahead of the
    // write that needs them (fallocate, keeping the file size), in steps of the segment's
    // size so far, from 64 KiB up to `ahead_max` bytes beyond `end`, never past `limit`
    // (the segment size the log rolls at). Writes into reserved blocks skip the file
    // system's per-block delayed allocation: about a fifth of the broker's cpu per
    // appended GiB on ext4. Best effort: a file system without fallocate (or out of space)
    // just gets plain writes, which then fail or not on their own.
    void reserve_ahead(int fd, int64_t end, int64_t ahead_max, int64_t limit);

    // Active segment only: where an append of [position, end) should end the file (tail
    // padding, see tail_padding_bytes): the next multiple of tail_padding_bytes when the
    // append is shorter than that, passes the zeros already there, the segment holds at
    // least that many bytes already (an idle partition holds no zeros) and the padding
    // stays within `limit`; `end` otherwise.
    int64_t padding_end(int64_t position, int64_t end, int64_t limit) const;
    // Active segment only: an append just wrote zeros up to `file_end` past the data.
    void note_padding(int64_t file_end) { _padded_end = std::max(_padded_end, file_end); }

    // Active segment only: rolls the file back to `size_bytes` after a failed write.
    result<void> truncate_to(int64_t size_bytes);
    // Truncation of the log (partition_log::truncate_to): cuts the file before the batch
    // holding `offset` (the first batch whose last offset is >= it; none: the file stays
    // whole) and leaves the segment ready to be the active one again: both indexes and
    // the largest timestamp follow the cut, and the index spacing continues from the last
    // kept entry. Reads the headers after the last index entry below the cut (about one
    // index interval). Returns the offset after the last batch kept (the base offset when
    // none is). The cut is not synced.
    result<int64_t> truncate_before(int64_t offset);

    // Rebuilding the leader epoch cache (storage/leader_epoch.h): appends to `starts` the
    // first batch of every leader epoch in this segment that is newer than the last
    // epoch in `starts` (epochs < 0 are none), in offset order, among the batches that
    // end at or after `from_offset` (the log start: batches wholly below it may be
    // leftovers of a log emptied by a truncation, with any epoch). Epochs never decrease
    // along a log from its start, so this bisects the offset index (a batch boundary per
    // entry) between boundaries whose batches carry different epochs and reads the
    // headers of the few batches between two adjacent ones: about log2(entries) + one
    // index interval of headers per epoch change, plus the tail after the last entry.
    result<void> collect_epoch_starts(std::vector<epoch_entry>& starts, int64_t from_offset) const;

    // Makes the segment a closed one: final time-index entry, index files written
    // atomically, log data fdatasync'ed. The in-memory indexes stay until released.
    // Blocking; used by recovery and close.
    result<void> seal();
    // The same without waiting for the disk (a roll on the owner shard): the index
    // files are replaced unsynced and the log data's fdatasync is left to the caller
    // (partition_log queues it as a sync request). Index files are derived data that
    // load_indexes checks, so losing them to a machine crash costs a rebuild only.
    result<void> seal_without_sync();
    // Drops the segment's reference to its open file (a closed, synced segment nobody
    // reads), so an idle partition keeps one descriptor; file() reopens it on demand.
    // Transfers and sync requests holding the file keep it open until they finish.
    void release_file() const;
    bool file_open() const { return _file != nullptr; }
    bool holds_file(const segment_file* file) const { return _file.get() == file; }

    // The batch containing `offset` (the first batch whose last offset is >= it), or
    // nullopt when the segment holds no such batch.
    result<std::optional<batch_location>> find_batch(int64_t offset) const;
    // The header of the batch at `position` (which must be a batch boundary < size).
    result<proto::batch_header> header_at(int64_t position) const;
    // The end of the run of whole batches starting at `start` (a batch boundary whose
    // batch is `first_size` bytes long) that fits in `max_bytes`, at least one batch.
    // A header that cannot start a batch ends the run before it: the batches in front
    // of damaged bytes are still served, and only a read of the damaged batch fails.
    // Batches whose last offset is >= `max_offset` end the run too (the caller checked
    // the first one).
    result<int64_t> extent_end(int64_t start, int64_t first_size, int64_t max_bytes,
                               int64_t max_offset) const;

    // The largest batch max_timestamp in the segment and the last offset of that
    // batch, or -1/-1 without timestamps. Closed segments read it from the time index.
    result<time_index_entry> max_timestamp() const;
    // The position from which to scan for the first batch with max_timestamp >= `ts`.
    result<int64_t> scan_start_for_timestamp(int64_t timestamp) const;
    // The file's modification time, the retention clock of segments without timestamps.
    result<int64_t> modified_ms() const;

    // Closed segment only: the file was just replaced (renamed over) by a compacted copy
    // of `size_bytes` whose index files replaced the old ones too. Drops the cached
    // descriptor, indexes and largest timestamp so the next use reads the new files;
    // holders of the old descriptor (transfers in flight) keep reading the old file.
    void adopt_rewritten(int64_t size_bytes);

    // Unlinks the three files. Open descriptors stay valid for their holders.
    result<void> remove_files() const;

    size_t memory_bytes() const;

private:
    segment(std::filesystem::path log_path, int64_t base_offset, int64_t size_bytes,
            int64_t created_ms, int32_t index_interval_bytes, fd_cache* descriptors);
    // The cache evicts this segment's descriptor (cached_descriptor's drop function).
    static void drop_descriptor(cached_descriptor& entry) {
        static_cast<segment&>(entry)._file.reset();
    }
    // Tells the cache the segment uses its descriptor now.
    void note_file_use() const;
    enum class index_durability : uint8_t { synced, unsynced };
    result<void> save_indexes(index_durability durability) const;
    void append_final_time_entry();
    // Gives back the reserved blocks and cuts the padding past the end of the data (both
    // seals: a closed segment holds only its data). The file's size is the segment's.
    result<void> release_reserve();
    // The file was just cut to `file_size`: what was reserved or padded past it is gone.
    void note_cut(int64_t file_size);

    std::filesystem::path _log_path;
    int64_t _base_offset;
    int64_t _size;
    int64_t _created_ms;
    int32_t _index_interval_bytes;
    // Append bookkeeping of the active segment.
    int64_t _bytes_since_index_entry = 0;
    // The file's blocks are reserved up to here (reserve_ahead; 0 when unknown, as after
    // a restart, where reserving again is harmless). A failed reservation stops them.
    int64_t _reserved_end = 0;
    bool _reserve_failed = false;
    // The file holds tail padding (zeros) up to here when this is past _size.
    int64_t _padded_end = 0;
    fd_cache* _descriptors;
    // Mutable: opened, loaded and cached lazily by const lookups.
    mutable std::shared_ptr<segment_file> _file;
    mutable offset_index _index;
    mutable time_index _time_index;
    mutable bool _indexes_loaded = false;
    mutable std::optional<time_index_entry> _max_timestamp;
};

}  // namespace spate::storage
