#include "loader.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "chunked_file.h"
#include "tensorflow/cc/saved_model/constants.h"
#include "tensorflow/cc/saved_model/reader.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/platform/path.h"

namespace tf_bigexport {
namespace {

bool Exists(const std::string& path) { return tensorflow::Env::Default()->FileExists(path).ok(); }

// The same steps as TensorFlow's LoadSavedModelInternal (loader.cc), with the
// program read by ReadSavedModel above.
absl::Status LoadBundle(const tensorflow::SessionOptions& session_options,
                        const tensorflow::RunOptions& run_options, const std::string& export_dir,
                        const std::unordered_set<std::string>& tags, tensorflow::MetaGraphDef* meta_graph_def,
                        std::unique_ptr<tensorflow::GraphDebugInfo>* debug_info,
                        std::unique_ptr<tensorflow::Session>* session) {
  absl::Status status = tf_bigexport::ReadMetaGraphDefFromSavedModel(export_dir, tags, meta_graph_def);
  if (!status.ok()) return status;
  if (debug_info != nullptr) {
    status = tensorflow::ReadSavedModelDebugInfoIfPresent(export_dir, debug_info);
    if (!status.ok()) return status;
  }
  status = tensorflow::LoadMetagraphIntoSession(session_options, *meta_graph_def, session);
  if (!status.ok()) return status;
  // Variables (variables/variables.index + data shards), asset paths, init op.
  return tensorflow::RestoreSession(run_options, *meta_graph_def, export_dir, session);
}

}  // namespace

absl::Status ReadSavedModel(const std::string& export_dir, tensorflow::SavedModel* saved_model) {
  // .pb, then .pbtxt, then .cpb: the preference of TensorFlow's Python loader
  // and of imageformat.read_saved_model.
  const std::string pb = tensorflow::io::JoinPath(export_dir, tensorflow::kSavedModelFilenamePb);
  const std::string pbtxt = tensorflow::io::JoinPath(export_dir, tensorflow::kSavedModelFilenamePbTxt);
  const std::string cpb = tensorflow::io::JoinPath(export_dir, tensorflow::kSavedModelFilenameCpb);
  if (Exists(pb) || Exists(pbtxt) || !Exists(cpb)) {
    return tensorflow::ReadSavedModel(export_dir, saved_model);
  }
  return ReadChunkedFile(cpb, saved_model);
}

absl::Status ReadMetaGraphDefFromSavedModel(const std::string& export_dir,
                                            const std::unordered_set<std::string>& tags,
                                            tensorflow::MetaGraphDef* meta_graph_def) {
  tensorflow::SavedModel saved_model;
  absl::Status status = tf_bigexport::ReadSavedModel(export_dir, &saved_model);
  if (!status.ok()) return status;
  absl::StatusOr<tensorflow::MetaGraphDef*> found = tensorflow::FindMetaGraphDef(tags, &saved_model);
  if (!found.ok()) {
    return absl::Status(found.status().code(), absl::StrCat(export_dir, ": ", found.status().message()));
  }
  *meta_graph_def = std::move(**found);
  return absl::OkStatus();
}

absl::Status LoadSavedModel(const tensorflow::SessionOptions& session_options,
                            const tensorflow::RunOptions& run_options, const std::string& export_dir,
                            const std::unordered_set<std::string>& tags, tensorflow::SavedModelBundle* bundle) {
  return LoadBundle(session_options, run_options, export_dir, tags, &bundle->meta_graph_def, &bundle->debug_info,
                    &bundle->session);
}

absl::Status LoadSavedModel(const tensorflow::SessionOptions& session_options,
                            const tensorflow::RunOptions& run_options, const std::string& export_dir,
                            const std::unordered_set<std::string>& tags, tensorflow::SavedModelBundleLite* bundle) {
  tensorflow::MetaGraphDef meta_graph_def;
  std::unique_ptr<tensorflow::Session> session;
  absl::Status status =
      LoadBundle(session_options, run_options, export_dir, tags, &meta_graph_def, nullptr, &session);
  if (!status.ok()) return status;
  *bundle = tensorflow::SavedModelBundleLite(std::move(session),
                                             std::move(*meta_graph_def.mutable_signature_def()));
  return absl::OkStatus();
}

bool MaybeSavedModelDirectory(const std::string& export_dir) {
  return tensorflow::MaybeSavedModelDirectory(export_dir) ||
         Exists(tensorflow::io::JoinPath(export_dir, tensorflow::kSavedModelFilenameCpb));
}

}  // namespace tf_bigexport
