#pragma once
// The leader epoch cache of one partition log (Kafka's KIP-101 and KIP-279): for every
// leader epoch that wrote to the log, the offset of its first batch. Followers ask the
// leader (OffsetsForLeaderEpoch) where their latest epoch ends, and truncate to there
// before fetching, so that a log never keeps records a new leader did not have.
//
// leader-epoch-checkpoint (in the partition directory), Kafka's text format byte for
// byte, so that Kafka's tools read it and a Kafka broker's file reads here:
//   line 1   "0"                      the format version
//   line 2   "<count>"                the number of entries, decimal
//   then     "<epoch> <start_offset>" one line per entry, oldest first, one space
// Every line ends with "\n". Epochs (int32) and start offsets (int64) are decimal,
// non-negative and strictly increasing from line to line. A file that breaks any of
// these rules (a wrong version, a count that disagrees with the lines, a number that
// does not parse, an entry out of order) is damaged: partition_log rebuilds the cache
// from the batches of the log (see storage/log.h). The file has no checksum (Kafka's has
// none); its writes replace it whole (a temporary file renamed over it), so a crash
// leaves the old or the new file, and a torn write at most a .tmp file, which the open
// deletes. write_file makes the replacement durable (fsync, rename, directory fsync);
// write_file_unsynced does not, which only a power loss can undo (the log's rules for
// using each are in storage/log.h).
//
// Ownership: a member of its partition_log, on the partition's owner shard; not
// thread-safe. The cache itself does no I/O except the writes and read_file; the log
// decides when it is persisted.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/result.h"

namespace spate::storage {

inline constexpr const char* leader_epoch_file_name = "leader-epoch-checkpoint";

// The file is read whole: a larger one is damaged (about half a million entries; a log
// sees one entry per leader election that wrote to it).
constexpr size_t leader_epoch_file_bytes_max = 16 << 20;

// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
constexpr int32_t undefined_epoch = -1;
constexpr int64_t undefined_epoch_offset = -1;

struct epoch_entry {
    int32_t epoch;
    int64_t start_offset;

    bool operator==(const epoch_entry&) const = default;
};

class leader_epoch_cache {
public:
    leader_epoch_cache() = default;
    explicit leader_epoch_cache(std::vector<epoch_entry> entries);

    const std::vector<epoch_entry>& entries() const { return _entries; }
    // -1 when empty.
    int32_t latest_epoch() const {
        return _entries.empty() ? undefined_epoch : _entries.back().epoch;
    }

    // KIP-279: for a requested epoch, returns {epoch, end_offset}: the largest epoch <=
    // requested that the cache knows and the start offset of the next epoch after it (or
    // `log_end` when it is the latest); {-1, -1} when requested < first known epoch (or
    // the cache is empty).
    std::pair<int32_t, int64_t> end_offset_for(int32_t requested, int64_t log_end) const;

    // Records that `epoch` starts at `start_offset`, when `epoch` is newer than the latest
    // (a negative epoch, or one <= the latest, is ignored: returns false). Entries whose
    // start offset is >= `start_offset` are removed first (newer Kafka's rule), so both
    // columns stay strictly increasing. Returns whether the cache changed.
    bool assign(int32_t epoch, int64_t start_offset);
    // Removes the entries with start_offset >= `end_offset` (Kafka's truncateFromEnd: the
    // log was truncated to end there). Returns whether the cache changed.
    bool truncate_from_end(int64_t end_offset);
    // Removes the entries that lie wholly before `start_offset` and raises the start of
    // the first kept one to it (Kafka's truncateFromStart: the log start moved). The
    // latest entry always stays. Returns whether the cache changed.
    bool truncate_from_start(int64_t start_offset);
    // Returns whether the cache held anything.
    bool clear();

    // The file's text (see the header comment).
    std::string serialize() const;
    // The cache a file's text describes; nullopt when the text is damaged.
    static std::optional<leader_epoch_cache> parse(std::string_view text);

    // Replaces the file at `path`, durably (write_file) or not (write_file_unsynced).
    result<void> write_file(const std::filesystem::path& path) const;
    result<void> write_file_unsynced(const std::filesystem::path& path) const;
    enum class read_status : uint8_t { loaded, missing, damaged };
    // Reads `path` into `out` (left empty unless loaded). Any read error other than a
    // missing file counts as damage: the caller rebuilds the cache either way.
    static read_status read_file(const std::filesystem::path& path, leader_epoch_cache& out);

    size_t memory_bytes() const { return _entries.capacity() * sizeof(epoch_entry); }

private:
    void check_order() const;

    // Ascending in both epoch and start offset.
    std::vector<epoch_entry> _entries;
};

}  // namespace spate::storage
