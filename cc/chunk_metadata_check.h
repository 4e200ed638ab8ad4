// Checks a .cpb's ChunkMetadata before TensorFlow's Merger walks it.
//
// TensorFlow's Merger (tensorflow/tools/proto_splitter/merge.cc) trusts the
// metadata: a chunk index past the chunk list reads past the end of a vector
// (a segfault, measured with TensorFlow 2.21), a path ending at a scalar goes
// through std::stoi, a repeated string or map value at the end of a path makes
// protobuf reflection abort. The rules below are those of the Python merger
// (imageformat/merger.py: chunk indices in range and used once, chunk types
// matching their targets, paths valid in the schema), plus what TensorFlow's
// Merger needs on top:
//   * every chunked field names its chunk (the Merger reads
//     message.chunk_index, default 0, for every field);
//   * element indices and integer map keys fit an int (the Merger casts them);
//   * a bytes/string chunk fills a singular field (TensorFlow's and this
//     project's splitters only split tensor_content there).
// What only the chunks' contents decide (an element index past the end of its
// repeated field) is left to the Merger, which reports it by exception.
#ifndef TF_BIGEXPORT_CC_CHUNK_METADATA_CHECK_H_
#define TF_BIGEXPORT_CC_CHUNK_METADATA_CHECK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "tensorflow/tools/proto_splitter/chunk.pb.h"
#include "tsl/platform/protobuf.h"

namespace tf_bigexport {

// `root`: the merged message's type (tensorflow.SavedModel for a .cpb).
// `file_size`: record positions must lie inside the file.
// The returned error says what is wrong and where (e.g. a field path); the
// caller adds the file name.
absl::Status CheckChunkMetadata(const ::tensorflow::proto_splitter::ChunkMetadata& metadata,
                                const tsl::protobuf::Descriptor& root, uint64_t file_size);

}  // namespace tf_bigexport

#endif  // TF_BIGEXPORT_CC_CHUNK_METADATA_CHECK_H_
