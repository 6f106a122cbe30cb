// `dump-log FILE…`: decodes log segment files the way kafka-dump-log.sh does.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "proto/record_batch.h"
#include "tools/commands.h"
#include "tools/format.h"

namespace spate::tools {

namespace {

// Decompressed bytes one batch may expand to when printing its records.
constexpr size_t decompressed_batch_bytes_max = 64u << 20;
// Largest batch accepted when checking CRCs; a segment holds batches far smaller.
constexpr size_t batch_bytes_max = 1u << 30;

// A read-only mapping of one file, unmapped when it goes out of scope.
class mapped_file {
public:
    static result<mapped_file> open(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return error{1, "cannot open \"" + path + "\" (" + std::strerror(errno) + ")"};
        struct stat info {};
        if (::fstat(fd, &info) != 0) {
            const int saved = errno;
            ::close(fd);
            return error{1, "cannot stat \"" + path + "\" (" + std::strerror(saved) + ")"};
        }
        mapped_file file;
        file._size = static_cast<size_t>(info.st_size);
        if (file._size > 0) {
            void* address = ::mmap(nullptr, file._size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (address == MAP_FAILED) {
                const int saved = errno;
                ::close(fd);
                return error{1, "cannot map \"" + path + "\" (" + std::strerror(saved) + ")"};
            }
            file._data = static_cast<const uint8_t*>(address);
        }
        ::close(fd);
        return file;
    }
    mapped_file(mapped_file&& other) noexcept
        : _data(std::exchange(other._data, nullptr)), _size(std::exchange(other._size, 0)) {}
    mapped_file& operator=(mapped_file&&) = delete;
    mapped_file(const mapped_file&) = delete;
    ~mapped_file() {
        if (_data != nullptr) ::munmap(const_cast<uint8_t*>(_data), _size);
    }
    std::span<const uint8_t> bytes() const { return {_data, _size}; }

private:
    mapped_file() = default;
    const uint8_t* _data = nullptr;
    size_t _size = 0;
};

result<void> dump_one(const std::string& path, bool print_data) {
    std::printf("Dumping %s\n", path.c_str());
    const auto suffix = path.size() >= 4 ? path.substr(path.size() - 4) : std::string();
    if (suffix != ".log")
        return error{1,
                     "\"" + path + "\" is not a log segment (.log); index files are not decoded"};
    auto file = mapped_file::open(path);
    if (!file) return file.failure();
    const auto bytes = file->bytes();
    error record_failure{0, ""};
    std::string out;
    size_t batches_end = 0;
    auto split = proto::for_each_batch(bytes, [&](std::span<const uint8_t> batch,
                                                  const proto::batch_header& header) {
        const auto check = proto::validate_batch(batch, batch_bytes_max, proto::batch_source::log);
        const int64_t position = batch.data() - bytes.data();
        batches_end = static_cast<size_t>(position) + batch.size();
        out += format_batch_line(header, position, check.error == proto::batch_error::none);
        out += '\n';
        if (print_data && check.error == proto::batch_error::none) {
            auto walked = proto::for_each_record(
                batch, decompressed_batch_bytes_max, [&](const proto::record_view& record) {
                    out += format_record_line(header, record, true);
                    out += '\n';
                });
            if (!walked && record_failure.code == 0) record_failure = walked.failure();
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
        out.clear();
    });
    // A running broker's active segment may end in zeros (tail padding, storage/segment.h).
    const auto tail = bytes.subspan(batches_end);
    if (!tail.empty() && std::all_of(tail.begin(), tail.end(), [](uint8_t b) { return b == 0; })) {
        std::printf(
            "Found %zu zero bytes after the last batch of %s (a running broker pads its "
            "active segment)\n",
            tail.size(), path.c_str());
    } else if (!split) {
        return error{1,
                     "\"" + path + "\": malformed batch header (" + split.failure().message + ")"};
    } else if (!tail.empty()) {
        std::printf("Found %zu invalid bytes at the end of %s\n", tail.size(), path.c_str());
    }
    if (record_failure.code != 0)
        return error{1, "\"" + path + "\": cannot decode records (" + record_failure.message + ")"};
    return ok_result();
}

}  // namespace

result<void> run_dump_log(const command_line& line) {
    const bool print_data = line.has("--print-data-log");
    for (const auto& path : line.positionals) {
        auto dumped = dump_one(path, print_data);
        if (!dumped) return dumped;
    }
    return ok_result();
}

}  // namespace spate::tools
