// The .npy format: numpy/lib/format.py (magic, version, little-endian header
// length, a Python dict literal padded with spaces to 64 bytes, the data).
#include "npy.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tf_bigexport {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

struct NumericType {
  char kind;
  size_t size;
  tensorflow::DataType dtype;
  const char* name;
};

constexpr NumericType kNumericTypes[] = {
    {'f', 2, tensorflow::DT_HALF, "float16"},      {'f', 4, tensorflow::DT_FLOAT, "float32"},
    {'f', 8, tensorflow::DT_DOUBLE, "float64"},    {'i', 1, tensorflow::DT_INT8, "int8"},
    {'i', 2, tensorflow::DT_INT16, "int16"},       {'i', 4, tensorflow::DT_INT32, "int32"},
    {'i', 8, tensorflow::DT_INT64, "int64"},       {'u', 1, tensorflow::DT_UINT8, "uint8"},
    {'u', 2, tensorflow::DT_UINT16, "uint16"},     {'u', 4, tensorflow::DT_UINT32, "uint32"},
    {'u', 8, tensorflow::DT_UINT64, "uint64"},     {'b', 1, tensorflow::DT_BOOL, "bool"},
    {'c', 8, tensorflow::DT_COMPLEX64, "complex64"}, {'c', 16, tensorflow::DT_COMPLEX128, "complex128"},
};

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

absl::Status Bad(const std::string& path, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

// The value after 'key': in the header dict, up to (not including) `stop`.
bool FindValue(const std::string& dict, const std::string& key, std::string* value) {
  const std::string quoted = absl::StrCat("'", key, "'");
  size_t at = dict.find(quoted);
  if (at == std::string::npos) return false;
  at = dict.find(':', at + quoted.size());
  if (at == std::string::npos) return false;
  *value = dict.substr(at + 1);
  const size_t start = value->find_first_not_of(' ');
  *value = start == std::string::npos ? "" : value->substr(start);
  return true;
}

absl::StatusOr<Header> ParseHeader(const std::string& path, const std::string& dict) {
  Header header;
  std::string value;
  if (!FindValue(dict, "descr", &value) || value.empty() || (value[0] != '\'' && value[0] != '"')) {
    return Bad(path, "the .npy header has no 'descr' string (a structured or object array?)");
  }
  const size_t end = value.find(value[0], 1);
  if (end == std::string::npos) return Bad(path, "unterminated 'descr' in the .npy header");
  header.descr = value.substr(1, end - 1);
  if (!FindValue(dict, "fortran_order", &value)) return Bad(path, "the .npy header has no 'fortran_order'");
  header.fortran_order = value.rfind("True", 0) == 0;
  if (!FindValue(dict, "shape", &value) || value.empty() || value[0] != '(') {
    return Bad(path, "the .npy header has no 'shape' tuple");
  }
  const size_t close = value.find(')');
  if (close == std::string::npos) return Bad(path, "unterminated 'shape' in the .npy header");
  std::stringstream dims(value.substr(1, close - 1));
  std::string item;
  while (std::getline(dims, item, ',')) {
    const size_t first = item.find_first_not_of(' ');
    if (first == std::string::npos) continue;
    char* rest = nullptr;
    const long long dim = std::strtoll(item.c_str() + first, &rest, 10);
    if (rest == item.c_str() + first || dim < 0) return Bad(path, absl::StrCat("bad dimension '", item, "' in shape"));
    header.shape.push_back(dim);
  }
  return header;
}

void AppendUtf8(uint32_t code, std::string* out) {
  if (code < 0x80) {
    out->push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code >> 6)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

std::string ShapeText(const tensorflow::TensorShape& shape) {
  std::vector<std::string> dims;
  for (int i = 0; i < shape.dims(); ++i) dims.push_back(absl::StrCat(shape.dim_size(i)));
  if (dims.size() == 1) return absl::StrCat("(", dims[0], ",)");
  return absl::StrCat("(", absl::StrJoin(dims, ", "), ")");
}

}  // namespace

std::string NumpyName(tensorflow::DataType dtype) {
  for (const NumericType& type : kNumericTypes) {
    if (type.dtype == dtype) return type.name;
  }
  if (dtype == tensorflow::DT_STRING) return "bytes";
  return tensorflow::DataTypeString(dtype);
}

absl::StatusOr<tensorflow::Tensor> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open ", std::strerror(errno)));
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < kMagicSize + 4 || data.compare(0, kMagicSize, kMagic, kMagicSize) != 0) {
    return Bad(path, "not a .npy file (no \\x93NUMPY magic)");
  }
  const int major = static_cast<unsigned char>(data[kMagicSize]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | static_cast<unsigned char>(data[9]) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) return Bad(path, "truncated .npy header");
    header_len = 0;
    for (int i = 3; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(data[8 + i]);
    offset = 12;
  } else {
    return Bad(path, absl::StrCat("unsupported .npy format version ", major));
  }
  if (header_len > data.size() - offset) return Bad(path, "truncated .npy header");
  absl::StatusOr<Header> header = ParseHeader(path, data.substr(offset, header_len));
  if (!header.ok()) return header.status();
  offset += header_len;
  if (header->fortran_order) return Bad(path, "Fortran-order arrays are not supported (save np.ascontiguousarray(a))");
  const std::string& descr = header->descr;
  if (descr.size() < 2) return Bad(path, absl::StrCat("unsupported dtype '", descr, "'"));
  const char order = descr[0], kind = descr[1];
  char* rest = nullptr;
  const unsigned long long item = std::strtoull(descr.c_str() + 2, &rest, 10);
  if (kind == 'O') return Bad(path, "object arrays are pickled, not supported: save strings as np.array(..., dtype=bytes)");
  if (rest == descr.c_str() + 2 || *rest != '\0' || item == 0) {
    return Bad(path, absl::StrCat("unsupported dtype '", descr, "'"));
  }
  if (order == '>' && item > 1 && kind != 'S') {
    return Bad(path, absl::StrCat("big-endian dtype '", descr, "' is not supported (save a.astype(a.dtype.newbyteorder('<')))"));
  }
  const size_t unit = kind == 'U' ? 4 * item : item;
  tensorflow::TensorShape shape;
  uint64_t count = 1;
  for (int64_t dim : header->shape) {
    if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / unit / static_cast<uint64_t>(dim)) {
      return Bad(path, "shape too large");
    }
    count *= static_cast<uint64_t>(dim);
    absl::Status status = shape.AddDimWithStatus(dim);
    if (!status.ok()) return Bad(path, std::string(status.message()));
  }
  const size_t payload = data.size() - offset;
  if (payload != count * unit) {
    return Bad(path, absl::StrCat("holds ", payload, " data bytes, but shape ", ShapeText(shape), " of '", descr,
                                  "' needs ", count * unit, " (truncated?)"));
  }
  const char* bytes = data.data() + offset;
  if (kind == 'S' || kind == 'U') {
    tensorflow::Tensor tensor(tensorflow::DT_STRING, shape);
    auto flat = tensor.flat<tensorflow::tstring>();
    for (uint64_t i = 0; i < count; ++i) {
      const char* element = bytes + i * unit;
      std::string value;
      if (kind == 'S') {
        size_t n = item;
        while (n > 0 && element[n - 1] == '\0') --n;  // NumPy pads with NULs
        value.assign(element, n);
      } else {
        size_t n = item;
        auto code_at = [&](size_t k) {
          uint32_t code = 0;
          for (int b = 3; b >= 0; --b) code = code << 8 | static_cast<unsigned char>(element[4 * k + b]);
          return code;
        };
        while (n > 0 && code_at(n - 1) == 0) --n;
        for (size_t k = 0; k < n; ++k) AppendUtf8(code_at(k), &value);
      }
      flat(i) = value;
    }
    return tensor;
  }
  for (const NumericType& type : kNumericTypes) {
    if (type.kind == kind && type.size == item) {
      tensorflow::Tensor tensor(type.dtype, shape);
      if (payload > 0) std::memcpy(const_cast<char*>(tensor.tensor_data().data()), bytes, payload);
      return tensor;
    }
  }
  return Bad(path, absl::StrCat("unsupported dtype '", descr, "'"));
}

absl::Status WriteNpy(const std::string& path, const tensorflow::Tensor& tensor) {
  std::string descr;
  std::string body;
  if (tensor.dtype() == tensorflow::DT_STRING) {
    auto flat = tensor.flat<tensorflow::tstring>();
    size_t width = 1;
    for (int64_t i = 0; i < flat.size(); ++i) width = std::max(width, flat(i).size());
    descr = absl::StrCat("|S", width);
    body.assign(width * flat.size(), '\0');
    for (int64_t i = 0; i < flat.size(); ++i) std::memcpy(&body[i * width], flat(i).data(), flat(i).size());
  } else {
    for (const NumericType& type : kNumericTypes) {
      if (type.dtype == tensor.dtype()) descr = absl::StrCat(type.size == 1 ? "|" : "<", std::string(1, type.kind), type.size);
    }
    if (descr.empty()) {
      return absl::UnimplementedError(absl::StrCat(path, ": no .npy dtype for ",
                                                   tensorflow::DataTypeString(tensor.dtype())));
    }
    body.assign(tensor.tensor_data().data(), tensor.tensor_data().size());
  }
  std::string dict = absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ",
                                  ShapeText(tensor.shape()), ", }");
  // Magic, version 1.0, 2-byte length, dict padded with spaces and ended by '\n' to 64 bytes.
  const size_t unpadded = kMagicSize + 2 + 2 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  std::string header(kMagic, kMagicSize);
  header.push_back('\x01');
  header.push_back('\x00');
  header.push_back(static_cast<char>(dict.size() & 0xff));
  header.push_back(static_cast<char>(dict.size() >> 8));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << header << dict;
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write: ", std::strerror(errno)));
  return absl::OkStatus();
}

}  // namespace tf_bigexport
