#include "engine/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace para {
namespace {

using json = nlohmann::json;

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("corrupt safetensors file ", path, ": ", what));
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

// Validates one header entry and fills `view` (data pointer relative to `data_begin`).
absl::Status ParseEntry(const std::string& path, const std::string& name, const json& entry,
                        const unsigned char* data_begin, uint64_t data_size, TensorView* view) {
  auto bad = [&](const std::string& what) {
    return Corrupt(path, absl::StrCat("tensor '", name, "' ", what));
  };
  if (!entry.is_object()) return bad("is not a JSON object");
  auto dt = entry.find("dtype");
  if (dt == entry.end() || !dt->is_string()) return bad("has no string 'dtype'");
  auto dtype = ParseDType(dt->get<std::string>());
  if (!dtype) return bad(absl::StrCat("has unknown dtype '", dt->get<std::string>(), "'"));
  auto sh = entry.find("shape");
  if (sh == entry.end() || !sh->is_array()) return bad("has no 'shape' array");
  if (sh->size() > 8) return bad("has more than 8 dimensions");
  uint64_t numel = 1;
  std::vector<int64_t> shape;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned()) return bad("has a shape entry that is not a non-negative integer");
    uint64_t v = d.get<uint64_t>();
    if (v > (1ull << 40) || MulOverflows(numel, v, &numel))
      return bad("has a shape whose size overflows");
    shape.push_back(static_cast<int64_t>(v));
  }
  auto off = entry.find("data_offsets");
  if (off == entry.end() || !off->is_array() || off->size() != 2 ||
      !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
    return bad("has no valid 'data_offsets' [begin, end]");
  const uint64_t begin = (*off)[0].get<uint64_t>();
  const uint64_t end = (*off)[1].get<uint64_t>();
  if (begin > end) return bad(absl::StrCat("has data_offsets begin ", begin, " > end ", end));
  if (end > data_size)
    return bad(absl::StrCat("has data_offsets end ", end, " beyond the data section (", data_size,
                            " bytes): file truncated or header lies"));
  uint64_t nbytes;
  if (MulOverflows(numel, DTypeSize(*dtype), &nbytes) || nbytes != end - begin)
    return bad(absl::StrCat("has ", end - begin, " bytes of data but shape [",
                            absl::StrJoin(shape, ","), "] of ", DTypeName(*dtype), " needs ",
                            numel * DTypeSize(*dtype)));
  view->name = name;
  view->dtype = *dtype;
  view->shape = std::move(shape);
  view->data = data_begin + begin;
  view->nbytes = nbytes;
  return absl::OkStatus();
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::vector<TensorView>> ParseSafetensors(const unsigned char* data, size_t size,
                                                         const std::string& path) {
  if (size < 8)
    return Corrupt(path,
                   absl::StrCat("file is ", size, " bytes, shorter than the 8-byte header length"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxSafetensorsHeader)
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the ",
                                      kMaxSafetensorsHeader, "-byte limit"));
  if (header_len > size - 8)
    return Corrupt(path, absl::StrCat("header length ", header_len, " exceeds the file size ", size,
                                      " (truncated file?)"));
  const char* hdr = reinterpret_cast<const char*>(data + 8);
  json header = json::parse(hdr, hdr + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return Corrupt(path, "header is not valid JSON");
  if (!header.is_object()) return Corrupt(path, "header is not a JSON object");

  const unsigned char* data_begin = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<TensorView> views;
  views.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    TensorView v;
    RETURN_IF_ERROR(ParseEntry(path, name, entry, data_begin, data_size, &v));
    views.push_back(std::move(v));
  }
  std::vector<const TensorView*> sorted;
  for (const auto& v : views) sorted.push_back(&v);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->data < b->data; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const TensorView* prev = sorted[i - 1];
    if (prev->nbytes > 0 && sorted[i]->data < prev->data + prev->nbytes)
      return Corrupt(
          path, absl::StrCat("tensors '", prev->name, "' and '", sorted[i]->name, "' overlap"));
  }
  return views;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  ASSIGN_OR_RETURN(f->file_, MappedFile::Open(path));
  ASSIGN_OR_RETURN(f->tensors_, ParseSafetensors(f->file_->data(), f->file_->size(), path));
  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    f->tensors_[i].file = &f->file_->path();
    f->index_[f->tensors_[i].name] = i;
  }
  return f;
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<TensorStore>> TensorStore::OpenDirectory(
    const std::string& dir, const std::string& single_file, const std::string& index_file) {
  namespace fs = std::filesystem;
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  const fs::path single = fs::path(dir) / single_file;
  const fs::path index = fs::path(dir) / index_file;
  std::error_code ec;
  if (fs::exists(single, ec)) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single.string()));
    for (const auto& t : file->tensors()) store->by_name_[t.name] = &t;
    store->files_.push_back(std::move(file));
    store->description_ = single.string();
    return store;
  }
  if (!fs::exists(index, ec))
    return absl::NotFoundError(
        absl::StrCat("no ", single_file, " and no ", index_file, " in ", dir));

  ASSIGN_OR_RETURN(std::string index_text, ReadTextFile(index.string()));
  json j = json::parse(index_text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
      !j["weight_map"].is_object())
    return absl::InvalidArgumentError(
        absl::StrCat(index.string(), ": not valid JSON with a 'weight_map' object"));
  std::map<std::string, SafetensorsFile*> shards;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string())
      return absl::InvalidArgumentError(
          absl::StrCat(index.string(), ": weight_map entry for '", name, "' is not a file name"));
    const std::string fname = file.get<std::string>();
    if (fname.empty() || fname.find('/') != std::string::npos || fname == ".." || fname == ".")
      return absl::InvalidArgumentError(
          absl::StrCat(index.string(), ": shard name '", fname, "' for tensor '", name,
                       "' is not a plain file name in the model directory"));
    auto it = shards.find(fname);
    if (it == shards.end()) {
      ASSIGN_OR_RETURN(auto shard, SafetensorsFile::Open((fs::path(dir) / fname).string()));
      it = shards.emplace(fname, shard.get()).first;
      store->files_.push_back(std::move(shard));
    }
    const TensorView* t = it->second->Find(name);
    if (t == nullptr)
      return absl::InvalidArgumentError(absl::StrCat(index.string(), " maps tensor '", name,
                                                     "' to ", it->second->path(),
                                                     " but that file does not contain it"));
    store->by_name_[name] = t;
  }
  store->description_ = absl::StrCat(index.string(), " (", store->files_.size(), " shards)");
  return store;
}

const TensorView* TensorStore::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

absl::StatusOr<const TensorView*> TensorStore::Get(const std::string& name,
                                                   const std::vector<int64_t>& shape) const {
  const TensorView* t = Find(name);
  if (t == nullptr)
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' is missing from ", description_));
  if (!IsFloatWeightType(t->dtype))
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", *t->file,
                                                   " has dtype ", DTypeName(t->dtype),
                                                   "; supported: F32, F16, BF16"));
  if (t->shape != shape)
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", *t->file,
                                                   " has shape ", t->ShapeString(), ", expected [",
                                                   absl::StrJoin(shape, ", "), "]"));
  return t;
}

absl::Status TensorStore::ReadF32(const std::string& name, const std::vector<int64_t>& shape,
                                  float* dst) const {
  ASSIGN_OR_RETURN(const TensorView* t, Get(name, shape));
  ConvertToF32(t->dtype, t->data, static_cast<size_t>(t->numel()), dst);
  return absl::OkStatus();
}

namespace {

// The index of the first element whose exponent bits are all ones (NaN or infinity), or -1.
template <typename Bits>
int64_t FirstNonFinite(const unsigned char* data, size_t n, Bits exponent) {
  constexpr size_t kBlock = 4096;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = std::min(n, start + kBlock);
    bool any = false;
    for (size_t i = start; i < end; ++i) {  // no early exit: the loop vectorises
      Bits v;
      std::memcpy(&v, data + i * sizeof(Bits), sizeof(Bits));
      any |= (v & exponent) == exponent;
    }
    if (!any) continue;
    for (size_t i = start; i < end; ++i) {
      Bits v;
      std::memcpy(&v, data + i * sizeof(Bits), sizeof(Bits));
      if ((v & exponent) == exponent) return static_cast<int64_t>(i);
    }
  }
  return -1;
}

}  // namespace

absl::Status CheckFinite(const TensorView& t) {
  const size_t n = static_cast<size_t>(t.numel());
  int64_t bad = -1;
  switch (t.dtype) {
    case DType::kF32:
      bad = FirstNonFinite<uint32_t>(t.data, n, 0x7f800000u);
      break;
    case DType::kF16:
      bad = FirstNonFinite<uint16_t>(t.data, n, 0x7c00u);
      break;
    case DType::kBF16:
      bad = FirstNonFinite<uint16_t>(t.data, n, 0x7f80u);
      break;
    default:
      return absl::OkStatus();
  }
  if (bad < 0) return absl::OkStatus();
  float value = 0;
  ConvertToF32(t.dtype, t.data + static_cast<size_t>(bad) * DTypeSize(t.dtype), 1, &value);
  return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "' in ", *t.file,
                                                 " has a non-finite value (", value,
                                                 ") at flat index ", bad));
}

absl::StatusOr<AlignedBuffer> TensorStore::ReadFiniteF32(const std::string& name,
                                                         const std::vector<int64_t>& shape,
                                                         float scale) const {
  ASSIGN_OR_RETURN(const TensorView* t, Get(name, shape));
  AlignedBuffer out(static_cast<size_t>(std::max<int64_t>(1, t->numel())));
  ConvertToF32(t->dtype, t->data, static_cast<size_t>(t->numel()), out.data());
  for (int64_t i = 0; i < t->numel(); ++i) {
    if (!std::isfinite(out.data()[i]))
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", *t->file,
                                                     " has a non-finite value (", out.data()[i],
                                                     ") at flat index ", i));
    out.data()[i] *= scale;
    if (!std::isfinite(out.data()[i]))
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' in ", *t->file, " overflows to infinity at flat index ",
                       i, " when scaled by ", scale, " (the adapter's lora_alpha / r)"));
  }
  return out;
}

std::vector<std::string> TensorStore::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, _] : by_name_) names.push_back(n);
  return names;
}

}  // namespace para
