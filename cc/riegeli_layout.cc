// Formulas from the "Implementation notes" of Riegeli's file format
// specification (doc/riegeli_records_file_format.md), as imageformat/riegeli/layout.py.
#include "riegeli_layout.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tf_bigexport {
namespace {

constexpr uint64_t kBlockSize = uint64_t{1} << 16;
constexpr uint64_t kBlockHeaderSize = 24;
constexpr uint64_t kUsableBlockSize = kBlockSize - kBlockHeaderSize;
constexpr uint64_t kChunkHeaderSize = 40;

// The first 64 bytes of every Riegeli/records file: the first block header and
// the header of the (empty) signature chunk.
constexpr unsigned char kFileSignature[64] = {
    0x83, 0xaf, 0x70, 0xd1, 0x0d, 0x88, 0x4a, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x91, 0xba, 0xc2, 0x3c, 0x92, 0x87, 0xe1, 0xa9,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe1, 0x9f, 0x13, 0xc0, 0xe9, 0xb1, 0xc3, 0x72,
    0x73, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

enum ChunkType : uint8_t {
  kSignature = 's',
  kMetadata = 'm',
  kPadding = 'p',
  kSimple = 'r',
  kTransposed = 't',
};

struct ChunkHeader {
  uint64_t data_size;
  uint8_t type;
  uint64_t num_records;
};

uint64_t LittleEndian64(const unsigned char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// Physical position reached after `size` logical bytes starting at `pos`.
uint64_t AddWithOverhead(uint64_t pos, uint64_t size) {
  const uint64_t overhead_blocks = (size + (pos + kUsableBlockSize - 1) % kBlockSize) / kUsableBlockSize;
  return pos + size + overhead_blocks * kBlockHeaderSize;
}

uint64_t RoundUpToPossibleChunkBoundary(uint64_t pos) {
  const uint64_t remaining_in_block = (kBlockSize - pos % kBlockSize) % kBlockSize;
  return pos + (remaining_in_block > kUsableBlockSize - 1 ? remaining_in_block - (kUsableBlockSize - 1) : 0);
}

class FileReader {
 public:
  explicit FileReader(std::string path) : path_(std::move(path)) {}
  ~FileReader() {
    if (fd_ >= 0) close(fd_);
  }

  absl::Status Open() {
    fd_ = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return Error(absl::StrCat("cannot open: ", std::strerror(errno)));
    struct stat st;
    if (fstat(fd_, &st) != 0) return Error(absl::StrCat("cannot stat: ", std::strerror(errno)));
    size_ = static_cast<uint64_t>(st.st_size);
    return absl::OkStatus();
  }

  uint64_t size() const { return size_; }

  absl::Status ReadAt(uint64_t pos, size_t n, unsigned char* out) const {
    while (n > 0) {
      const ssize_t got = pread(fd_, out, n, static_cast<off_t>(pos));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return Error(absl::StrCat("read failed at ", pos, ": ", std::strerror(errno)));
      if (got == 0) return Error(absl::StrCat("truncated: unexpected end of file at ", pos));
      out += got;
      pos += static_cast<uint64_t>(got);
      n -= static_cast<size_t>(got);
    }
    return absl::OkStatus();
  }

  // `n` logical bytes from `pos`, skipping the block headers they straddle.
  absl::Status ReadLogical(uint64_t pos, size_t n, unsigned char* out) const {
    while (n > 0) {
      if (pos % kBlockSize == 0) pos += kBlockHeaderSize;
      const size_t take = std::min<uint64_t>(n, kBlockSize - pos % kBlockSize);
      absl::Status status = ReadAt(pos, take, out);
      if (!status.ok()) return status;
      pos += take;
      out += take;
      n -= take;
    }
    return absl::OkStatus();
  }

  absl::Status Error(const std::string& problem) const {
    return absl::DataLossError(absl::StrCat(path_, ": ", problem));
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

absl::StatusOr<ChunkHeader> ReadChunkHeader(const FileReader& file, uint64_t chunk_begin) {
  unsigned char raw[kChunkHeaderSize];
  absl::Status status = file.ReadLogical(chunk_begin, sizeof(raw), raw);
  if (!status.ok()) return status;
  const uint64_t type_and_count = LittleEndian64(raw + 24);
  ChunkHeader header{LittleEndian64(raw + 8), static_cast<uint8_t>(type_and_count & 0xff), type_and_count >> 8};
  switch (header.type) {
    case kSignature: case kMetadata: case kPadding: case kSimple: case kTransposed:
      break;
    default:
      return file.Error(absl::StrCat("chunk at ", chunk_begin, " has unknown type 0x",
                                     absl::Hex(header.type), " (corrupt chunk header)"));
  }
  // Sizes past the file cannot be real, and would overflow the layout arithmetic.
  if (header.data_size > file.size() || header.num_records > file.size()) {
    return file.Error(absl::StrCat("chunk at ", chunk_begin, " claims ", header.data_size, " bytes and ",
                                   header.num_records, " records, more than the file holds (",
                                   file.size(), " bytes)"));
  }
  return header;
}

// Walks chunks from `chunk_begin` to the end of the file; returns the position
// of the last record seen, if any.
absl::StatusOr<std::optional<uint64_t>> LastRecordFrom(const FileReader& file, uint64_t chunk_begin) {
  std::optional<uint64_t> last;
  while (chunk_begin < file.size()) {
    absl::StatusOr<ChunkHeader> header = ReadChunkHeader(file, chunk_begin);
    if (!header.ok()) return header.status();
    const uint64_t end = std::max(AddWithOverhead(chunk_begin, kChunkHeaderSize + header->data_size),
                                  RoundUpToPossibleChunkBoundary(chunk_begin + header->num_records));
    if (end > file.size()) {
      return file.Error(absl::StrCat("truncated: the chunk at ", chunk_begin, " ends at ", end,
                                     ", past the end of the file (", file.size(), " bytes)"));
    }
    if (header->num_records > 0) last = chunk_begin + header->num_records - 1;
    chunk_begin = end;
  }
  return last;
}

}  // namespace

absl::StatusOr<RiegeliFileSummary> SummarizeRiegeliFile(const std::string& path) {
  FileReader file(path);
  absl::Status status = file.Open();
  if (!status.ok()) return status;
  unsigned char head[sizeof(kFileSignature)];
  if (file.size() < sizeof(head) || !file.ReadAt(0, sizeof(head), head).ok() ||
      std::memcmp(head, kFileSignature, sizeof(head)) != 0) {
    return file.Error("not a Riegeli/records file (its first 64 bytes are not the file signature)");
  }
  // The last block header says where the chunk it interrupts begins: walking
  // from there reads a few headers instead of every chunk header of the file.
  const uint64_t last_block = (file.size() - 1) / kBlockSize * kBlockSize;
  uint64_t start = sizeof(kFileSignature);
  if (last_block > 0) {
    unsigned char block_header[kBlockHeaderSize];
    status = file.ReadAt(last_block, sizeof(block_header), block_header);
    if (!status.ok()) return status;
    const uint64_t previous_chunk = LittleEndian64(block_header + 8);
    if (previous_chunk <= last_block && last_block - previous_chunk >= start) start = last_block - previous_chunk;
  }
  absl::StatusOr<std::optional<uint64_t>> last = LastRecordFrom(file, start);
  if (last.ok() && !last->has_value() && start != sizeof(kFileSignature)) {
    last = LastRecordFrom(file, sizeof(kFileSignature));  // the tail held no records: walk everything
  }
  if (!last.ok()) return last.status();
  if (!last->has_value()) return file.Error("holds no records (an empty chunked proto file)");
  return RiegeliFileSummary{file.size(), **last};
}

}  // namespace tf_bigexport
