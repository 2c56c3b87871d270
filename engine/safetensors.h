// Reader for the safetensors format (one file, or a sharded checkpoint with an index).
//
// SafetensorsFile memory-maps one file and validates its header completely on Open: header
// length against the file size, JSON shape, dtypes, shapes, offsets (overflow-safe) and that
// tensors neither overlap nor run past the data. Every error names the file (and tensor).
// TensorStore groups the shards of a checkpoint directory under one name -> tensor lookup.
// Both are immutable after Open; concurrent readers are safe. Tensor data pointers stay valid
// while the owning object lives.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/aligned_buffer.h"
#include "engine/dtype.h"
#include "engine/mapped_file.h"

namespace para {

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  const std::string* file = nullptr;  // path of the file holding it

  int64_t numel() const;
  std::string ShapeString() const;
};

// OK when every value of a float tensor (F32/F16/BF16; other dtypes pass) is finite, else
// INVALID_ARGUMENT naming the tensor, its file and the flat index of the first NaN or infinity.
// Reads the whole tensor (from the mapped file); scans at memory speed.
absl::Status CheckFinite(const TensorView& t);

// Largest header accepted (the format allows up to 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

// Parses and validates a safetensors image held in memory. `path` is used in messages only.
// Returned views point into `data`.
absl::StatusOr<std::vector<TensorView>> ParseSafetensors(const unsigned char* data, size_t size,
                                                         const std::string& path);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(const std::string& name) const;
  const std::string& path() const { return file_->path(); }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
};

// All tensors of a checkpoint: `model.safetensors`, or the shards named by
// `model.safetensors.index.json`, in one directory.
class TensorStore {
 public:
  // Opens `dir/<single_file>` if present, otherwise `dir/<index_file>` and its shards.
  static absl::StatusOr<std::unique_ptr<TensorStore>> OpenDirectory(
      const std::string& dir, const std::string& single_file = "model.safetensors",
      const std::string& index_file = "model.safetensors.index.json");

  const TensorView* Find(const std::string& name) const;
  // The tensor, checked to have exactly `shape` and a float dtype (F32/F16/BF16).
  absl::StatusOr<const TensorView*> Get(const std::string& name,
                                        const std::vector<int64_t>& shape) const;
  // Get() then converts to float32 into `dst` (numel floats).
  absl::Status ReadF32(const std::string& name, const std::vector<int64_t>& shape,
                       float* dst) const;
  std::vector<std::string> Names() const;
  // Get() then converts to float32 times `scale`; INVALID_ARGUMENT naming the tensor and index
  // when a value is NaN or infinite (adapters must be finite).
  absl::StatusOr<AlignedBuffer> ReadFiniteF32(const std::string& name,
                                              const std::vector<int64_t>& shape,
                                              float scale = 1.0f) const;
  const std::string& description() const { return description_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
  std::string description_;  // "dir/model.safetensors" or "dir (N shards)"
};

}  // namespace para
