// Tests of the checkpoint file format: round trip and rejection of damaged files.

#include "storage/checkpoint.h"

#include <doctest/doctest.h>

#include "storage/file.h"
#include "tests/storage/test_support.h"

using namespace spate::storage;

TEST_CASE("checkpoints round-trip and reject damaged files") {
    testing::temp_dir dir("checkpoint");
    std::filesystem::create_directories(dir.path());
    const auto path = dir.path() / "value.checkpoint";
    CHECK(!read_checkpoint(path).has_value());
    REQUIRE(write_checkpoint(path, 1234567890123).ok());
    CHECK(read_checkpoint(path) == 1234567890123);
    CHECK(std::filesystem::file_size(path) == checkpoint_file_size);
    REQUIRE(write_checkpoint(path, -7).ok());
    CHECK(read_checkpoint(path) == -7);
    // No temporary file is left behind.
    CHECK(!std::filesystem::exists(dir.path() / "value.checkpoint.tmp"));

    auto content = read_small_file(path, 100);
    REQUIRE(content.ok());
    const std::vector<uint8_t> bytes(content->begin(), content->end());
    for (size_t i = 0; i < bytes.size(); ++i) {
        std::vector<uint8_t> damaged = bytes;
        damaged[i] = static_cast<uint8_t>(damaged[i] ^ 0x10);
        REQUIRE(write_file_atomically(path, damaged).ok());
        CHECK_MESSAGE(!read_checkpoint(path).has_value(), "byte ", i);
    }
    REQUIRE(write_file_atomically(path, std::span<const uint8_t>(bytes).first(10)).ok());
    CHECK(!read_checkpoint(path).has_value());
}
