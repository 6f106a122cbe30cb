#pragma once
// partition_log's compaction run: the state kept between compact_step calls. Internal to
// storage/log.cc (lifetime, memory report) and storage/log_compaction.cc (the steps).

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "storage/compaction.h"
#include "storage/log.h"
#include "storage/segment.h"

namespace spate::storage {

// The state of one compaction run, kept between compact_step calls. Owned by the log.
struct partition_log::compaction_run {
    enum class phase : uint8_t { mapping, cleaning };
    phase step = phase::mapping;
    key_offset_map map;
    int64_t map_end;                // the log end when the run started: mapping stops there
    int64_t map_segment;            // base offset of the segment being mapped
    int64_t map_position;           // position of the next batch to map in it
    int64_t covered_end;            // every keyed record below this offset is in the map
    std::vector<int64_t> to_clean;  // base offsets of the segments to rewrite, ascending
    size_t next_clean = 0;
    int64_t due_ms = std::numeric_limits<int64_t>::max();
    // The segment being rewritten.
    struct rewrite {
        int64_t base;
        int64_t source_size;
        int64_t position;  // next batch to read from the source
        std::shared_ptr<segment_file> source;
        std::unique_ptr<segment_file> output;
        std::filesystem::path output_path;
        int64_t output_size = 0;
        index_builder indexes;
        int64_t records_removed = 0;
        bool changed = false;
    };
    std::optional<rewrite> current;

    compaction_run(size_t entries_max, int64_t end, int64_t first_segment)
        : map(entries_max),
          map_end(end),
          map_segment(first_segment),
          map_position(0),
          covered_end(first_segment) {}
};

}  // namespace spate::storage
