#include "tools/safetensors_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/aligned_buffer.h"
#include "nlohmann/json.hpp"

namespace para::tools {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

void Encode(DType t, const float* src, int64_t n, std::vector<unsigned char>* out) {
  out->resize(n * DTypeSize(t));
  unsigned char* p = out->data();
  for (int64_t i = 0; i < n; ++i) {
    if (t == DType::kF32) {
      std::memcpy(p + 4 * i, src + i, 4);
    } else {
      uint16_t v = t == DType::kBF16 ? F32ToBf16(src[i]) : F32ToF16(src[i]);
      std::memcpy(p + 2 * i, &v, 2);
    }
  }
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  int64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep tensor data 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  const uint64_t len = text.size();
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(len >> (8 * i));
  out.write(reinterpret_cast<const char*>(len_bytes), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<unsigned char> bytes;
  for (const auto& t : tensors) {
    AlignedBuffer values(static_cast<size_t>(std::max<int64_t>(1, t.numel())));
    t.fill(values.data(), t.numel());
    Encode(t.dtype, values.data(), t.numel(), &bytes);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", path, " failed (disk full?)"));
  return absl::OkStatus();
}

absl::Status WriteCheckpoint(const std::string& dir, const std::vector<TensorSpec>& tensors,
                             int num_shards) {
  namespace fs = std::filesystem;
  if (num_shards <= 1)
    return WriteSafetensors((fs::path(dir) / "model.safetensors").string(), tensors,
                            {{"format", "pt"}});
  int64_t total = 0;
  for (const auto& t : tensors) total += t.nbytes();
  std::vector<std::vector<TensorSpec>> shards(num_shards);
  int64_t acc = 0;
  for (const auto& t : tensors) {
    int shard = static_cast<int>(
        std::min<int64_t>(num_shards - 1, acc * num_shards / std::max<int64_t>(1, total)));
    shards[shard].push_back(t);
    acc += t.nbytes();
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (int s = 0; s < num_shards; ++s) {
    const std::string name = absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, num_shards);
    if (absl::Status st =
            WriteSafetensors((fs::path(dir) / name).string(), shards[s], {{"format", "pt"}});
        !st.ok())
      return st;
    for (const auto& t : shards[s]) index["weight_map"][t.name] = name;
  }
  std::ofstream out(fs::path(dir) / "model.safetensors.index.json");
  out << index.dump(2) << "\n";
  return out ? absl::OkStatus()
             : absl::PermissionDeniedError("cannot write model.safetensors.index.json");
}

}  // namespace para::tools
