// Reading a chunked proto file (saved_model.cpb) with TensorFlow's own Merger.
#ifndef TF_BIGEXPORT_CC_CHUNKED_FILE_H_
#define TF_BIGEXPORT_CC_CHUNKED_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "tsl/platform/protobuf.h"

namespace tf_bigexport {

// Merges the chunked file at `cpb_path` (which must end in ".cpb") into
// `message`, whose type must be the file's root type (tensorflow.SavedModel for
// saved_model.cpb). The ChunkMetadata is read through TensorFlow's Merger (its
// Riegeli reader checks every hash), checked (chunk_metadata_check.h), then
// handed back to the Merger for the merge. Every failure, including
// exceptions thrown inside TensorFlow, is a Status naming the file.
absl::Status ReadChunkedFile(const std::string& cpb_path, tsl::protobuf::Message* message);

}  // namespace tf_bigexport

#endif  // TF_BIGEXPORT_CC_CHUNKED_FILE_H_
