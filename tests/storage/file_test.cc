// Tests of the small file primitives (storage/file.h) that the broker's hot paths lean on:
// pread_cached, the page-cache-only read with which a Fetch answer of a few KiB is copied
// instead of spliced (broker/handlers/fetch.cc), must read exactly what was written, and
// say "no" (never block, never read short) for anything it cannot serve whole.

#include "storage/file.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "tests/storage/test_support.h"

namespace {

using namespace spate::storage;
using namespace spate::storage::testing;

std::vector<uint8_t> pattern(size_t size) {
    std::vector<uint8_t> bytes(size);
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 31 + 7);
    return bytes;
}

}  // namespace

TEST_CASE("pread_cached reads back bytes just written, at any position") {
    temp_dir dir("file-test");
    std::filesystem::create_directories(dir.path());
    const auto path = dir.path() / "segment";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    const std::vector<uint8_t> written = pattern(3 * 4096 + 123);
    REQUIRE(pwrite_all(fd, written, 0, path));

    std::vector<uint8_t> whole(written.size());
    CHECK(pread_cached(fd, whole, 0));
    CHECK(whole == written);

    // A slice that straddles pages, as a batch in the middle of a segment does.
    std::vector<uint8_t> middle(5000);
    CHECK(pread_cached(fd, middle, 4000));
    CHECK(std::equal(middle.begin(), middle.end(), written.begin() + 4000));

    std::vector<uint8_t> nothing;
    CHECK(pread_cached(fd, nothing, 0));
    ::close(fd);
}

TEST_CASE("pread_cached refuses what it cannot read whole") {
    temp_dir dir("file-test");
    std::filesystem::create_directories(dir.path());
    const auto path = dir.path() / "segment";
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    const std::vector<uint8_t> written = pattern(1000);
    REQUIRE(pwrite_all(fd, written, 0, path));

    // Past the end (a segment cut by a truncation meanwhile): false, not a short read.
    std::vector<uint8_t> longer(1001);
    CHECK_FALSE(pread_cached(fd, longer, 0));
    std::vector<uint8_t> beyond(10);
    CHECK_FALSE(pread_cached(fd, beyond, 5000));
    ::close(fd);

    // A descriptor that is not open: false, errno aside.
    std::vector<uint8_t> some(10);
    CHECK_FALSE(pread_cached(fd, some, 0));
    CHECK_FALSE(pread_cached(-1, some, 0));
}
