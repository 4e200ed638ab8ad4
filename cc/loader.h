// SavedModel loading that also reads TensorFlow's image format (saved_model.cpb).
//
// Drop-in replacements for the functions of tensorflow/cc/saved_model/loader.h
// and reader.h with the same signatures: a server that calls these instead of
// tensorflow::LoadSavedModel serves .cpb versions too (see docs/serving.md for
// TensorFlow Serving). saved_model.pb / .pbtxt directories load exactly as
// TensorFlow loads them.
//
// A .cpb is merged by TensorFlow's own Merger (tensorflow/tools/proto_splitter,
// exported by libtensorflow_framework), after its ChunkMetadata was checked
// here: TensorFlow's Merger trusts the metadata, and a hostile file could make
// it index past its chunk list. Errors come back as a Status naming the file.
#ifndef TF_BIGEXPORT_CC_LOADER_H_
#define TF_BIGEXPORT_CC_LOADER_H_

#include <memory>
#include <string>
#include <unordered_set>

#include "absl/status/status.h"
#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"
#include "tensorflow/core/protobuf/saved_model.pb.h"

namespace tf_bigexport {

// Reads export_dir/saved_model.cpb (merged), else saved_model.pb or .pbtxt.
// A .cpb must be on a local (or mounted) file system: TensorFlow's Merger
// reads it through a file descriptor.
absl::Status ReadSavedModel(const std::string& export_dir, tensorflow::SavedModel* saved_model);

// The MetaGraphDef whose tag set equals `tags`, as tensorflow::ReadMetaGraphDefFromSavedModel.
absl::Status ReadMetaGraphDefFromSavedModel(const std::string& export_dir,
                                            const std::unordered_set<std::string>& tags,
                                            tensorflow::MetaGraphDef* meta_graph_def);

// Reads the program (merging a .cpb), creates the session, restores the
// variables and runs the init op with the asset paths fed, as
// tensorflow::LoadSavedModel does.
absl::Status LoadSavedModel(const tensorflow::SessionOptions& session_options,
                            const tensorflow::RunOptions& run_options, const std::string& export_dir,
                            const std::unordered_set<std::string>& tags,
                            tensorflow::SavedModelBundle* bundle);

absl::Status LoadSavedModel(const tensorflow::SessionOptions& session_options,
                            const tensorflow::RunOptions& run_options, const std::string& export_dir,
                            const std::unordered_set<std::string>& tags,
                            tensorflow::SavedModelBundleLite* bundle);

// Whether export_dir may hold a SavedModel: saved_model.pb, .pbtxt or .cpb
// (tensorflow::MaybeSavedModelDirectory does not know .cpb).
bool MaybeSavedModelDirectory(const std::string& export_dir);

}  // namespace tf_bigexport

#endif  // TF_BIGEXPORT_CC_LOADER_H_
