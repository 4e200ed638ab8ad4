// tf_bigexport_read: read (merge) the SavedModel of each directory with the
// library's reader, without creating a session. One line per directory:
//   DIR: ok (1 meta graph, 123 nodes, 45 functions)
//   DIR: error: <status>
// Exit status: 0 if every directory was read, 3 otherwise, 2 on usage errors.
// The tests feed it many forged .cpb files in one process: a crash would kill it.
#include <algorithm>
#include <iostream>
#include <string>

#include "loader.h"

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help") {
    std::cerr << "usage: tf_bigexport_read DIR [DIR...]\n";
    return argc < 2 ? 2 : 0;
  }
  int failures = 0;
  for (int i = 1; i < argc; ++i) {
    tensorflow::SavedModel saved_model;
    const absl::Status status = tf_bigexport::ReadSavedModel(argv[i], &saved_model);
    if (!status.ok()) {
      ++failures;
      std::string message = status.ToString();
      std::replace(message.begin(), message.end(), '\n', ' ');
      std::cout << argv[i] << ": error: " << message << std::endl;
      continue;
    }
    int nodes = 0, functions = 0;
    for (const auto& meta_graph : saved_model.meta_graphs()) {
      nodes += meta_graph.graph_def().node_size();
      functions += meta_graph.graph_def().library().function_size();
    }
    std::cout << argv[i] << ": ok (" << saved_model.meta_graphs_size() << " meta graph"
              << (saved_model.meta_graphs_size() == 1 ? "" : "s") << ", " << nodes << " nodes, " << functions
              << " functions)" << std::endl;
  }
  return failures == 0 ? 0 : 3;
}
