#include "storage/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace spate::storage {

segment_file::~segment_file() {
    if (fd >= 0) ::close(fd);
}

error errno_error(const char* operation, const std::filesystem::path& path) {
    const int code = errno;
    return error{code, std::string(operation) + " " + path.string() + ": " + std::strerror(code)};
}

result<void> pwrite_all(int fd, std::span<const uint8_t> bytes, int64_t position,
                        const std::filesystem::path& path) {
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done,
                                   static_cast<off_t>(position + static_cast<int64_t>(done)));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("pwrite", path);
        }
        done += static_cast<size_t>(n);
    }
    return {};
}

result<size_t> pread_some(int fd, std::span<uint8_t> bytes, int64_t position,
                          const std::filesystem::path& path) {
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done,
                                  static_cast<off_t>(position + static_cast<int64_t>(done)));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("pread", path);
        }
        if (n == 0) break;
        done += static_cast<size_t>(n);
    }
    return done;
}

result<void> pread_exact(int fd, std::span<uint8_t> bytes, int64_t position,
                         const std::filesystem::path& path) {
    auto got = pread_some(fd, bytes, position, path);
    if (!got) return got.failure();
    if (*got != bytes.size())
        return error{EIO, "pread " + path.string() + ": file shorter than expected"};
    return {};
}

bool pread_cached(int fd, std::span<uint8_t> bytes, int64_t position) {
    size_t done = 0;
    while (done < bytes.size()) {
        iovec into{bytes.data() + done, bytes.size() - done};
        const ssize_t got = ::preadv2(
            fd, &into, 1, static_cast<off_t>(position + static_cast<int64_t>(done)), RWF_NOWAIT);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;  // EAGAIN: not cached; 0: the file is shorter
        done += static_cast<size_t>(got);
    }
    return true;
}

result<void> sync_data(int fd, const std::filesystem::path& path) {
    while (::fdatasync(fd) != 0) {
        if (errno != EINTR) return errno_error("fdatasync", path);
    }
    return {};
}

result<void> sync_directory(const std::filesystem::path& directory) {
    const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_error("open directory", directory);
    segment_file holder(fd);
    while (::fsync(fd) != 0) {
        if (errno != EINTR) return errno_error("fsync directory", directory);
    }
    return {};
}

result<void> write_file_atomically(const std::filesystem::path& path,
                                   std::span<const uint8_t> bytes) {
    std::filesystem::path temporary = path;
    temporary += ".tmp";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno_error("create", temporary);
    {
        segment_file holder(fd);
        if (auto written = pwrite_all(fd, bytes, 0, temporary); !written) return written;
        while (::fsync(fd) != 0) {
            if (errno != EINTR) return errno_error("fsync", temporary);
        }
    }
    if (::rename(temporary.c_str(), path.c_str()) != 0) return errno_error("rename", temporary);
    return sync_directory(path.parent_path());
}

result<void> replace_file_unsynced(const std::filesystem::path& path,
                                   std::span<const uint8_t> bytes) {
    std::filesystem::path temporary = path;
    temporary += ".tmp";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno_error("create", temporary);
    {
        segment_file holder(fd);
        if (auto written = pwrite_all(fd, bytes, 0, temporary); !written) return written;
    }
    if (::rename(temporary.c_str(), path.c_str()) != 0) return errno_error("rename", temporary);
    return {};
}

result<std::string> read_small_file(const std::filesystem::path& path, size_t size_max) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error("open", path);
    segment_file holder(fd);
    struct stat info {};
    if (::fstat(fd, &info) != 0) return errno_error("fstat", path);
    if (info.st_size < 0 || static_cast<uint64_t>(info.st_size) > size_max)
        return error{EFBIG, "read " + path.string() + ": file larger than expected"};
    std::string content(static_cast<size_t>(info.st_size), '\0');
    auto got = pread_some(
        fd, std::span<uint8_t>(reinterpret_cast<uint8_t*>(content.data()), content.size()), 0,
        path);
    if (!got) return got.failure();
    content.resize(*got);
    return content;
}

result<void> remove_file(const std::filesystem::path& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("unlink", path);
    return {};
}

}  // namespace spate::storage
