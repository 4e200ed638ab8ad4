// NumPy .npy files <-> tensorflow::Tensor, for the runner.
//
// Numbers (float16/32/64, int8..64, uint8..64, bool, complex64/128) map to
// the TensorFlow dtype of the same name; fixed-width bytes ('S') and unicode
// ('U', written out as UTF-8) arrays map to DT_STRING, and DT_STRING outputs
// are written as 'S' arrays. Object arrays (pickled), big-endian and Fortran
// order files are refused with a message saying so.
#ifndef TF_BIGEXPORT_CC_NPY_H_
#define TF_BIGEXPORT_CC_NPY_H_

#include <string>

#include "absl/status/statusor.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.pb.h"

namespace tf_bigexport {

absl::StatusOr<tensorflow::Tensor> ReadNpy(const std::string& path);

absl::Status WriteNpy(const std::string& path, const tensorflow::Tensor& tensor);

// NumPy's name for a dtype ("float32", "int64", "bytes", ...).
std::string NumpyName(tensorflow::DataType dtype);

}  // namespace tf_bigexport

#endif  // TF_BIGEXPORT_CC_NPY_H_
