// tf_bigexport_run: load a SavedModel version directory (.pb or .cpb) in C++
// and run one signature on .npy inputs, writing .npy outputs.
//
//   tf_bigexport_run --export_dir registry/split/1 --signature serving_default
//                    --input x=x.npy --outdir out/
//   tf_bigexport_run --export_dir registry/split/1 --show        (signatures as JSON)
//   tf_bigexport_run --loader stock ...   (TensorFlow's own LoadSavedModel: .pb only)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "loader.h"
#include "npy.h"
#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/platform/path.h"

namespace {

enum ExitCode { kOk = 0, kUsage = 2, kLoadFailed = 3, kBadInput = 4, kRunFailed = 5, kWriteFailed = 6 };

constexpr char kUsageText[] =
    "usage: tf_bigexport_run --export_dir DIR [--signature KEY] [--input NAME=FILE.npy ...]\n"
    "                        [--outdir DIR] [--tags serve[,TAG...]] [--loader tf_bigexport|stock] [--show]\n"
    "Loads the SavedModel in DIR (saved_model.pb, .pbtxt or .cpb) and runs signature KEY\n"
    "(default serving_default) on the given inputs; prints each output and, with --outdir,\n"
    "writes it as DIR/<output>.npy. --show prints the signatures as JSON instead.\n"
    "--loader stock loads with TensorFlow's own tensorflow::LoadSavedModel (no .cpb).\n"
    "Exit status: 0 ok, 2 usage, 3 cannot load, 4 bad input, 5 run failed, 6 cannot write.\n";

struct Options {
  std::string export_dir;
  std::string signature = "serving_default";
  std::map<std::string, std::string> inputs;  // name -> .npy path
  std::string outdir;
  std::unordered_set<std::string> tags = {"serve"};
  std::string loader = "tf_bigexport";
  bool show = false;
};

// One line per error (TensorFlow's statuses may span several).
int Fail(int code, std::string message) {
  std::replace(message.begin(), message.end(), '\n', ' ');
  std::cerr << "tf_bigexport_run: " << message << std::endl;
  return code;
}

// Returns an error message, or "" when the arguments parse.
std::string ParseArgs(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    const size_t eq = arg.find('=');
    const bool is_flag = arg.rfind("--", 0) == 0;
    if (is_flag && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (arg == "--show") {
      options->show = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") return "help";
    if (!is_flag) return absl::StrCat("unexpected argument '", arg, "'");
    if (eq == std::string::npos) {
      if (i + 1 >= argc) return absl::StrCat(arg, " needs a value");
      value = argv[++i];
    }
    if (arg == "--export_dir") {
      options->export_dir = value;
    } else if (arg == "--signature") {
      options->signature = value;
    } else if (arg == "--outdir") {
      options->outdir = value;
    } else if (arg == "--loader") {
      if (value != "tf_bigexport" && value != "stock") return "--loader is tf_bigexport or stock";
      options->loader = value;
    } else if (arg == "--tags") {
      options->tags.clear();
      for (absl::string_view tag : absl::StrSplit(value, ',', absl::SkipEmpty())) options->tags.emplace(tag);
    } else if (arg == "--input") {
      const size_t split = value.find('=');
      if (split == std::string::npos || split == 0) return absl::StrCat("--input takes NAME=FILE.npy, got '", value, "'");
      options->inputs[value.substr(0, split)] = value.substr(split + 1);
    } else {
      return absl::StrCat("unknown option '", arg, "'");
    }
  }
  if (options->export_dir.empty()) return "--export_dir is required";
  return "";
}

std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string JsonTensorInfos(const google::protobuf::Map<std::string, tensorflow::TensorInfo>& infos) {
  std::map<std::string, const tensorflow::TensorInfo*> sorted;
  for (const auto& [name, info] : infos) sorted[name] = &info;
  std::vector<std::string> items;
  for (const auto& [name, info] : sorted) {
    std::string shape = "null";
    if (!info->tensor_shape().unknown_rank()) {
      std::vector<std::string> dims;
      for (const auto& dim : info->tensor_shape().dim()) dims.push_back(absl::StrCat(dim.size()));
      shape = absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
    }
    items.push_back(absl::StrCat(JsonString(name), ": {\"dtype\": ", JsonString(tf_bigexport::NumpyName(info->dtype())),
                                 ", \"shape\": ", shape, "}"));
  }
  return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
}

void ShowSignatures(const tensorflow::SavedModelBundle& bundle) {
  std::map<std::string, const tensorflow::SignatureDef*> sorted;
  for (const auto& [key, signature] : bundle.GetSignatures()) {
    if (key.rfind("__", 0) != 0) sorted[key] = &signature;  // __saved_model_init_op is not callable
  }
  std::vector<std::string> items;
  for (const auto& [key, signature] : sorted) {
    items.push_back(absl::StrCat("    ", JsonString(key), ": {\"inputs\": ", JsonTensorInfos(signature->inputs()),
                                 ", \"outputs\": ", JsonTensorInfos(signature->outputs()), "}"));
  }
  std::cout << "{\"signatures\": {\n" << absl::StrJoin(items, ",\n") << "\n}}" << std::endl;
}

bool ShapeFits(const tensorflow::TensorShapeProto& expected, const tensorflow::TensorShape& actual) {
  if (expected.unknown_rank()) return true;
  if (expected.dim_size() != actual.dims()) return false;
  for (int i = 0; i < actual.dims(); ++i) {
    if (expected.dim(i).size() >= 0 && expected.dim(i).size() != actual.dim_size(i)) return false;
  }
  return true;
}

std::string ShapeString(const tensorflow::TensorShapeProto& shape) {
  if (shape.unknown_rank()) return "<unknown rank>";
  std::vector<std::string> dims;
  for (const auto& dim : shape.dim()) dims.push_back(dim.size() < 0 ? "None" : absl::StrCat(dim.size()));
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

std::string Keys(const google::protobuf::Map<std::string, tensorflow::TensorInfo>& infos) {
  std::vector<std::string> keys;
  for (const auto& [name, info] : infos) keys.push_back(name);
  std::sort(keys.begin(), keys.end());
  return absl::StrJoin(keys, ", ");
}

int Run(const Options& options) {
  tensorflow::SavedModelBundle bundle;
  const absl::Status loaded =
      options.loader == "stock"
          ? tensorflow::LoadSavedModel(tensorflow::SessionOptions(), tensorflow::RunOptions(), options.export_dir,
                                       options.tags, &bundle)
          : tf_bigexport::LoadSavedModel(tensorflow::SessionOptions(), tensorflow::RunOptions(),
                                         options.export_dir, options.tags, &bundle);
  if (!loaded.ok()) {
    return Fail(kLoadFailed, absl::StrCat("cannot load ", options.export_dir, " (", options.loader,
                                          " loader): ", loaded.ToString()));
  }
  if (options.show) {
    ShowSignatures(bundle);
    return kOk;
  }
  const auto found = bundle.GetSignatures().find(options.signature);
  if (found == bundle.GetSignatures().end()) {
    std::vector<std::string> keys;
    for (const auto& [key, signature] : bundle.GetSignatures()) {
      if (key.rfind("__", 0) != 0) keys.push_back(key);
    }
    std::sort(keys.begin(), keys.end());
    return Fail(kBadInput, absl::StrCat(options.export_dir, ": no signature '", options.signature,
                                        "' (signatures: ", absl::StrJoin(keys, ", "), ")"));
  }
  const tensorflow::SignatureDef& signature = found->second;
  std::vector<std::pair<std::string, tensorflow::Tensor>> feeds;
  for (const auto& [name, path] : options.inputs) {
    if (!signature.inputs().contains(name)) {
      return Fail(kBadInput, absl::StrCat("signature '", options.signature, "' has no input '", name,
                                          "' (inputs: ", Keys(signature.inputs()), ")"));
    }
  }
  for (const auto& [name, info] : signature.inputs()) {
    const auto given = options.inputs.find(name);
    if (given == options.inputs.end()) {
      return Fail(kBadInput, absl::StrCat("signature '", options.signature, "' needs input '", name,
                                          "' (--input ", name, "=FILE.npy)"));
    }
    absl::StatusOr<tensorflow::Tensor> tensor = tf_bigexport::ReadNpy(given->second);
    if (!tensor.ok()) return Fail(kBadInput, std::string(tensor.status().message()));
    if (tensor->dtype() != info.dtype()) {
      return Fail(kBadInput, absl::StrCat(given->second, ": input '", name, "' is ",
                                          tf_bigexport::NumpyName(tensor->dtype()), ", the signature wants ",
                                          tf_bigexport::NumpyName(info.dtype())));
    }
    if (!ShapeFits(info.tensor_shape(), tensor->shape())) {
      return Fail(kBadInput, absl::StrCat(given->second, ": input '", name, "' has shape ",
                                          tensor->shape().DebugString(), ", the signature wants ",
                                          ShapeString(info.tensor_shape())));
    }
    feeds.emplace_back(info.name(), *std::move(tensor));
  }
  std::vector<std::string> output_keys, fetches;
  for (const auto& [key, info] : signature.outputs()) output_keys.push_back(key);
  std::sort(output_keys.begin(), output_keys.end());
  for (const std::string& key : output_keys) fetches.push_back(signature.outputs().at(key).name());
  std::vector<tensorflow::Tensor> outputs;
  const absl::Status ran = bundle.GetSession()->Run(feeds, fetches, {}, &outputs);
  if (!ran.ok()) {
    return Fail(kRunFailed, absl::StrCat("running '", options.signature, "' failed: ", ran.ToString()));
  }
  if (!options.outdir.empty()) {
    const absl::Status made = tensorflow::Env::Default()->RecursivelyCreateDir(options.outdir);
    if (!made.ok()) return Fail(kWriteFailed, absl::StrCat(options.outdir, ": ", made.message()));
  }
  for (size_t i = 0; i < output_keys.size(); ++i) {
    std::cout << output_keys[i] << ": " << tf_bigexport::NumpyName(outputs[i].dtype()) << " "
              << outputs[i].shape().DebugString();
    if (!options.outdir.empty()) {
      std::string file = output_keys[i];
      std::replace(file.begin(), file.end(), '/', '_');
      const std::string path = tensorflow::io::JoinPath(options.outdir, file + ".npy");
      const absl::Status written = tf_bigexport::WriteNpy(path, outputs[i]);
      if (!written.ok()) return Fail(kWriteFailed, std::string(written.message()));
      std::cout << " -> " << path;
    }
    std::cout << std::endl;
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  const std::string error = ParseArgs(argc, argv, &options);
  if (error == "help") {
    std::cout << kUsageText;
    return kOk;
  }
  if (!error.empty()) {
    std::cerr << "tf_bigexport_run: " << error << "\n" << kUsageText;
    return kUsage;
  }
  return Run(options);
}
