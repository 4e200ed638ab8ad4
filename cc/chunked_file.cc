#include "chunked_file.h"

#include <exception>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "chunk_metadata_check.h"
#include "riegeli_layout.h"
#include "tensorflow/tools/proto_splitter/chunk.pb.h"
#include "tensorflow/tools/proto_splitter/merge.h"

namespace tf_bigexport {
namespace {

using ::tensorflow::proto_splitter::ChunkInfo;
using ::tensorflow::proto_splitter::ChunkMetadata;
using ::tensorflow::tools::proto_splitter::Merger;

absl::Status WithFile(const std::string& path, const absl::Status& status) {
  if (status.ok() || absl::StrContains(status.message(), path)) return status;
  return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
}

// TensorFlow's Merger signals some bad input by exception (std::bad_alloc,
// absl::BadStatusOrAccess, std::invalid_argument from std::stoi).
absl::Status Guarded(const std::string& path, const std::function<absl::Status()>& call) {
  try {
    return WithFile(path, call());
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": TensorFlow's merger failed: ", e.what()));
  } catch (...) {
    return absl::DataLossError(absl::StrCat(path, ": TensorFlow's merger failed with an unknown exception"));
  }
}

// The last record, read as a ChunkMetadata by asking the Merger for a one-chunk
// message whose only chunk is that record.
absl::StatusOr<ChunkMetadata> ReadMetadata(const std::string& prefix, const std::string& path,
                                           uint64_t position) {
  ChunkMetadata probe;
  ChunkInfo* info = probe.add_chunks();
  info->set_type(ChunkInfo::MESSAGE);
  info->set_offset(position);
  probe.mutable_message()->set_chunk_index(0);
  ChunkMetadata metadata;
  absl::Status status = Guarded(path, [&] { return Merger::ReadPartial(prefix, probe, &metadata); });
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(status.message(), " (reading the ChunkMetadata record)"));
  }
  return metadata;
}

}  // namespace

absl::Status ReadChunkedFile(const std::string& cpb_path, tsl::protobuf::Message* message) {
  if (!absl::EndsWith(cpb_path, ".cpb")) {
    return absl::InvalidArgumentError(absl::StrCat(cpb_path, ": a chunked proto file name ends in .cpb"));
  }
  const std::string prefix = cpb_path.substr(0, cpb_path.size() - 4);
  absl::StatusOr<RiegeliFileSummary> file = SummarizeRiegeliFile(cpb_path);
  if (!file.ok()) return file.status();
  absl::StatusOr<ChunkMetadata> metadata = ReadMetadata(prefix, cpb_path, file->last_record_position);
  if (!metadata.ok()) return metadata.status();
  absl::Status status = CheckChunkMetadata(*metadata, *message->GetDescriptor(), file->file_size);
  if (!status.ok()) return WithFile(cpb_path, status);
  // The Merger pre-allocates ChunkInfo.size bytes per chunk before reading the
  // record (which then replaces the buffer): a forged size must not become an
  // allocation.
  for (ChunkInfo& info : *metadata->mutable_chunks()) info.set_size(0);
  message->Clear();
  status = Guarded(cpb_path, [&] { return Merger::ReadPartial(prefix, *metadata, message); });
  if (!status.ok()) message->Clear();
  return status;
}

}  // namespace tf_bigexport
