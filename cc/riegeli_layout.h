// Where the last record of a Riegeli/records file sits, from its chunk headers.
//
// A .cpb keeps its ChunkMetadata in the last record. TensorFlow's reader finds
// it with Riegeli's SeekBack, which the wheel does not expose (no Riegeli
// headers ship with it); this walks the 40-byte chunk headers instead (no chunk
// data is read or decompressed) and returns the record's numeric position, which
// TensorFlow's Merger then reads with all its hash checks.
#ifndef TF_BIGEXPORT_CC_RIEGELI_LAYOUT_H_
#define TF_BIGEXPORT_CC_RIEGELI_LAYOUT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tf_bigexport {

struct RiegeliFileSummary {
  uint64_t file_size = 0;
  // Numeric position (chunk begin + record index) of the file's last record.
  uint64_t last_record_position = 0;
};

// Fails (naming `path`) if the file is not a Riegeli/records file, is
// truncated, holds a chunk header that points past its end, or has no record.
absl::StatusOr<RiegeliFileSummary> SummarizeRiegeliFile(const std::string& path);

}  // namespace tf_bigexport

#endif  // TF_BIGEXPORT_CC_RIEGELI_LAYOUT_H_
