#include "chunk_metadata_check.h"

#include <limits>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tf_bigexport {
namespace {

using ::tensorflow::proto_splitter::ChunkedField;
using ::tensorflow::proto_splitter::ChunkedMessage;
using ::tensorflow::proto_splitter::ChunkInfo;
using ::tensorflow::proto_splitter::ChunkMetadata;
using ::tensorflow::proto_splitter::FieldIndex;
using tsl::protobuf::Descriptor;
using tsl::protobuf::FieldDescriptor;

// The merger version this reader implements (imageformat.merger.JOIN_VERSION).
constexpr int kJoinVersion = 0;
// Deeper ChunkedMessage nesting than protobuf itself parses (100) is malformed.
constexpr int kMaxDepth = 100;
constexpr uint64_t kMaxIntIndex = std::numeric_limits<int>::max();

// One resolved step of a field path.
struct Step {
  const FieldDescriptor* field;
  bool indexed = false;  // repeated field + element index
  bool keyed = false;    // map field + key
  std::string text;      // e.g. "node[3]" or "attr['value']"

  const FieldDescriptor* value_field() const {
    return keyed ? field->message_type()->map_value() : field;
  }
  const Descriptor* target_type() const { return value_field()->message_type(); }
};

std::string ChunkTypeName(int type) {
  switch (type) {
    case ChunkInfo::MESSAGE: return "MESSAGE";
    case ChunkInfo::BYTES: return "BYTES";
    case ChunkInfo::UNSET: return "UNSET";
    default: return absl::StrCat("type ", type);
  }
}

std::string RawPath(const ChunkedField& field) {
  std::vector<std::string> parts;
  for (const FieldIndex& tag : field.field_tag()) {
    switch (tag.kind_case()) {
      case FieldIndex::kField: parts.push_back(absl::StrCat("field ", tag.field())); break;
      case FieldIndex::kIndex: parts.push_back(absl::StrCat("index ", tag.index())); break;
      case FieldIndex::kMapKey: parts.push_back("key"); break;
      default: parts.push_back("?");
    }
  }
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) absl::StrAppend(&out, i ? "/" : "", parts[i]);
  return out;
}

// Checks a map key against the key field's type; returns its text.
absl::StatusOr<std::string> KeyText(const FieldDescriptor& map, const FieldIndex::MapKey& key) {
  const FieldDescriptor* key_field = map.message_type()->map_key();
  const std::string where = absl::StrCat("map ", map.full_name());
  switch (key.type_case()) {
    case FieldIndex::MapKey::kS:
      if (key_field->cpp_type() != FieldDescriptor::CPPTYPE_STRING) {
        return absl::InvalidArgumentError(absl::StrCat(where, " has ", key_field->cpp_type_name(),
                                                       " keys, got a string key"));
      }
      return absl::StrCat("'", key.s(), "'");
    case FieldIndex::MapKey::kBoolean:
      if (key_field->cpp_type() != FieldDescriptor::CPPTYPE_BOOL) {
        return absl::InvalidArgumentError(absl::StrCat(where, " has ", key_field->cpp_type_name(),
                                                       " keys, got a bool key"));
      }
      return std::string(key.boolean() ? "True" : "False");
    case FieldIndex::MapKey::kUi32:
    case FieldIndex::MapKey::kUi64:
    case FieldIndex::MapKey::kI32:
    case FieldIndex::MapKey::kI64: {
      const FieldDescriptor::CppType key_type = key_field->cpp_type();
      const bool unsigned_keys = key_type == FieldDescriptor::CPPTYPE_UINT32 ||
                                 key_type == FieldDescriptor::CPPTYPE_UINT64;
      if (!unsigned_keys && key_type != FieldDescriptor::CPPTYPE_INT32 &&
          key_type != FieldDescriptor::CPPTYPE_INT64) {
        return absl::InvalidArgumentError(absl::StrCat(where, " has ", key_field->cpp_type_name(),
                                                       " keys, got an integer key"));
      }
      bool in_range;
      std::string text;
      if (key.type_case() == FieldIndex::MapKey::kUi32 || key.type_case() == FieldIndex::MapKey::kUi64) {
        const uint64_t value = key.type_case() == FieldIndex::MapKey::kUi32 ? key.ui32() : key.ui64();
        in_range = value <= static_cast<uint64_t>(std::numeric_limits<int>::max());
        text = absl::StrCat(value);
      } else {
        const int64_t value = key.type_case() == FieldIndex::MapKey::kI32 ? key.i32() : key.i64();
        in_range = value >= (unsigned_keys ? 0 : std::numeric_limits<int>::min()) &&
                   value <= std::numeric_limits<int>::max();
        text = absl::StrCat(value);
      }
      if (!in_range) {
        return absl::InvalidArgumentError(absl::StrCat("key ", text, " is out of range for ", where,
                                                       " (TensorFlow's merger reads keys as int)"));
      }
      return text;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("empty map key for ", where));
  }
}

// fieldpath.resolve: every field exists; repeated fields take an index, maps a
// key; every step but the last reaches a message.
absl::StatusOr<std::vector<Step>> Resolve(const Descriptor& root, const ChunkedField& chunked_field) {
  const auto& tags = chunked_field.field_tag();
  std::vector<Step> steps;
  const Descriptor* message = &root;
  int i = 0;
  while (i < tags.size()) {
    const FieldIndex& tag = tags[i];
    if (tag.kind_case() != FieldIndex::kField) {
      const char* what = tag.kind_case() == FieldIndex::kIndex    ? "an index"
                         : tag.kind_case() == FieldIndex::kMapKey ? "a map key"
                                                                  : "an empty FieldIndex";
      return absl::InvalidArgumentError(absl::StrCat(what, " at position ", i, " does not follow a field"));
    }
    if (message == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("field ", tag.field(), " at position ", i, " follows '",
                                                     steps.back().text, "', which is not a message"));
    }
    const FieldDescriptor* field =
        tag.field() <= kMaxIntIndex ? message->FindFieldByNumber(static_cast<int>(tag.field())) : nullptr;
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(message->full_name(), " has no field number ", tag.field()));
    }
    ++i;
    const FieldIndex::KindCase following = i < tags.size() ? tags[i].kind_case() : FieldIndex::KIND_NOT_SET;
    Step step{field, false, false, ""};
    if (field->is_map()) {
      if (following != FieldIndex::kMapKey) {
        return absl::InvalidArgumentError(absl::StrCat("map field ", field->full_name(), " needs a map key"));
      }
      absl::StatusOr<std::string> key = KeyText(*field, tags[i].map_key());
      if (!key.ok()) return key.status();
      step.keyed = true;
      step.text = absl::StrCat(field->name(), "[", *key, "]");
      ++i;
    } else if (field->is_repeated()) {
      if (following != FieldIndex::kIndex) {
        return absl::InvalidArgumentError(
            absl::StrCat("repeated field ", field->full_name(), " needs an index"));
      }
      if (tags[i].index() > kMaxIntIndex) {
        return absl::InvalidArgumentError(absl::StrCat("index ", tags[i].index(), " of ", field->full_name(),
                                                       " is past what TensorFlow's merger can address"));
      }
      step.indexed = true;
      step.text = absl::StrCat(field->name(), "[", tags[i].index(), "]");
      ++i;
    } else {
      if (following == FieldIndex::kIndex || following == FieldIndex::kMapKey) {
        return absl::InvalidArgumentError(
            absl::StrCat(following == FieldIndex::kIndex ? "index" : "map key", " given for ",
                         field->full_name(), ", which is not ",
                         following == FieldIndex::kIndex ? "repeated" : "a map"));
      }
      step.text = std::string(field->name());
    }
    message = step.target_type();
    steps.push_back(std::move(step));
  }
  return steps;
}

class Checker {
 public:
  Checker(const ChunkMetadata& metadata, uint64_t file_size) : metadata_(metadata), file_size_(file_size) {}

  absl::Status Run(const Descriptor& root) {
    if (metadata_.version().join_version() > kJoinVersion) {
      return absl::FailedPreconditionError(absl::StrCat("written for merger version ",
                                                        metadata_.version().join_version(),
                                                        "; this reader merges version ", kJoinVersion));
    }
    for (int i = 0; i < metadata_.chunks_size(); ++i) {
      if (metadata_.chunks(i).offset() >= file_size_) {
        return absl::DataLossError(absl::StrCat("chunk ", i, " is at record position ", metadata_.chunks(i).offset(),
                                                ", past the end of the file (", file_size_, " bytes)"));
      }
    }
    return CheckMessage(metadata_.message(), root, std::string(root.name()), 0);
  }

 private:
  absl::Status CheckMessage(const ChunkedMessage& message, const Descriptor& type, const std::string& label,
                            int depth) {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunked message nesting deeper than ", kMaxDepth, " at ", label));
    }
    if (message.has_chunk_index()) {
      absl::Status status = Claim(message.chunk_index(), label, ChunkInfo::MESSAGE);
      if (!status.ok()) return status;
    }
    for (const ChunkedField& field : message.chunked_fields()) {
      absl::Status status = CheckField(field, type, label, depth);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status CheckField(const ChunkedField& field, const Descriptor& type, const std::string& parent,
                          int depth) {
    absl::StatusOr<std::vector<Step>> steps = Resolve(type, field);
    if (!steps.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("bad field path ", RawPath(field), " in ", parent, ": ",
                                                     steps.status().message()));
    }
    std::string label = parent;
    for (const Step& step : *steps) absl::StrAppend(&label, ".", step.text);
    const ChunkedMessage& nested = field.message();
    if (!nested.has_chunk_index()) {
      return absl::InvalidArgumentError(absl::StrCat("chunked field for ", label, " names no chunk"));
    }
    if (!steps->empty() && steps->back().target_type() != nullptr) {
      return CheckMessage(nested, *steps->back().target_type(), label, depth + 1);
    }
    if (!steps->empty()) {
      const Step& leaf = steps->back();
      const FieldDescriptor::CppType kind = leaf.value_field()->cpp_type();
      if (kind != FieldDescriptor::CPPTYPE_STRING) {
        return absl::InvalidArgumentError(absl::StrCat(label, " is a scalar field (", leaf.value_field()->type_name(),
                                                       "); chunks can only fill messages, bytes and strings"));
      }
      if (leaf.indexed || leaf.keyed) {
        return absl::InvalidArgumentError(absl::StrCat(
            label, ": a chunk can fill a singular bytes/string field only, not an element of ",
            leaf.field->full_name()));
      }
    }
    // Empty path (the chunk merges into the message itself) or a bytes/string leaf.
    if (nested.chunked_fields_size() > 0) {
      return absl::InvalidArgumentError(absl::StrCat("chunked field for ", label, " has nested fields, which ",
                                                     steps->empty() ? "a merged chunk" : "a bytes field",
                                                     " cannot take"));
    }
    return Claim(nested.chunk_index(), label, steps->empty() ? ChunkInfo::MESSAGE : ChunkInfo::BYTES);
  }

  absl::Status Claim(uint64_t index, const std::string& label, ChunkInfo::Type wanted) {
    const uint64_t count = static_cast<uint64_t>(metadata_.chunks_size());
    if (index >= count) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, " refers to chunk ", index, ", but there are only ", count, " chunks"));
    }
    auto [previous, inserted] = used_.emplace(index, label);
    if (!inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", index, " is used twice: by ", previous->second, " and by ", label));
    }
    const int actual = metadata_.chunks(static_cast<int>(index)).type();
    if (actual != wanted) {
      return absl::InvalidArgumentError(absl::StrCat("chunk ", index, " is ", ChunkTypeName(actual), " but ",
                                                     label, " needs ", ChunkTypeName(wanted)));
    }
    return absl::OkStatus();
  }

  const ChunkMetadata& metadata_;
  const uint64_t file_size_;
  std::unordered_map<uint64_t, std::string> used_;
};

}  // namespace

absl::Status CheckChunkMetadata(const ChunkMetadata& metadata, const Descriptor& root, uint64_t file_size) {
  return Checker(metadata, file_size).Run(root);
}

}  // namespace tf_bigexport
