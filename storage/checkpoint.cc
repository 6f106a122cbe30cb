#include "storage/checkpoint.h"

#include <array>
#include <cstring>
#include <span>

#include "proto/crc32c.h"
#include "storage/file.h"

namespace spate::storage {

namespace {
constexpr std::array<uint8_t, 4> checkpoint_magic = {'S', 'P', 'C', 'K'};
constexpr size_t checkpoint_crc_position = 16;
static_assert(checkpoint_crc_position + 4 == checkpoint_file_size);

std::array<uint8_t, checkpoint_file_size> encode_checkpoint(int64_t value) {
    std::array<uint8_t, checkpoint_file_size> bytes{};
    std::memcpy(bytes.data(), checkpoint_magic.data(), checkpoint_magic.size());
    bytes[4] = static_cast<uint8_t>(checkpoint_version >> 8);
    bytes[5] = static_cast<uint8_t>(checkpoint_version);
    store_be64(bytes.data() + 8, static_cast<uint64_t>(value));
    const uint32_t crc =
        proto::crc32c(std::span<const uint8_t>(bytes.data(), checkpoint_crc_position));
    store_be32(bytes.data() + checkpoint_crc_position, crc);
    return bytes;
}

}  // namespace

result<void> write_checkpoint(const std::filesystem::path& path, int64_t value) {
    return write_file_atomically(path, encode_checkpoint(value));
}

result<void> write_checkpoint_unsynced(const std::filesystem::path& path, int64_t value) {
    return replace_file_unsynced(path, encode_checkpoint(value));
}

std::optional<int64_t> read_checkpoint(const std::filesystem::path& path) {
    auto content = read_small_file(path, checkpoint_file_size);
    if (!content || content->size() != checkpoint_file_size) return std::nullopt;
    const auto* bytes = reinterpret_cast<const uint8_t*>(content->data());
    if (std::memcmp(bytes, checkpoint_magic.data(), checkpoint_magic.size()) != 0)
        return std::nullopt;
    const uint16_t version = static_cast<uint16_t>((bytes[4] << 8) | bytes[5]);
    if (version != checkpoint_version) return std::nullopt;
    const uint32_t crc = proto::crc32c(std::span<const uint8_t>(bytes, checkpoint_crc_position));
    if (crc != load_be32(bytes + checkpoint_crc_position)) return std::nullopt;
    return static_cast<int64_t>(load_be64(bytes + 8));
}

}  // namespace spate::storage
