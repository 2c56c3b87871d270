#include "engine/cuda/device_adapters.h"

#include <cstring>

#include "engine/dtype.h"

namespace para::cuda {

void DeviceAdapters::MakeRoom(int64_t incoming) {
  while (bytes_ + incoming > budget_) {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->second->last_step < step_ &&
          (victim == entries_.end() || it->second->last_step < victim->second->last_step))
        victim = it;
    if (victim == entries_.end()) return;  // everything resident is in use: go over budget
    bytes_ -= static_cast<int64_t>(victim->second->mem.size());
    entries_.erase(victim);
  }
}

absl::StatusOr<DeviceAdapters::Entry*> DeviceAdapters::Insert(uint64_t uid, size_t bytes,
                                                              const char* what) {
  MakeRoom(static_cast<int64_t>(bytes));
  auto e = std::make_unique<Entry>();
  if (absl::Status s = e->mem.Allocate(bytes, what); !s.ok()) return s;
  bytes_ += static_cast<int64_t>(bytes);
  ++uploads_;
  e->last_step = step_;
  Entry* raw = e.get();
  entries_[uid] = std::move(e);
  return raw;
}

absl::StatusOr<const LoraSiteDesc*> DeviceAdapters::Lora(const LoraAdapter& a) {
  if (auto it = entries_.find(a.uid()); it != entries_.end()) {
    it->second->last_step = step_;
    return it->second->lora_table;
  }
  const int64_t layers = a.num_layers();
  // Sizes: the table, then every A and B as BF16.
  Carve count;
  count.Take<LoraSiteDesc>(layers * kNumLoraSites);
  for (int64_t l = 0; l < layers; ++l)
    for (const LoraSiteWeights& w : a.layer(l).sites) {
      if (w.empty()) continue;
      count.Take<uint16_t>(w.total_rank * w.in_dim);
      for (const LoraModule& m : w.modules) count.Take<uint16_t>(m.out_dim * m.rank);
    }
  // Build the whole image on the host, then one copy.
  std::vector<uint8_t> image(count.used());
  Entry* e;
  {
    auto inserted = Insert(a.uid(), image.size(), "a LoRA adapter");
    if (!inserted.ok()) return inserted.status();
    e = *inserted;
  }
  Carve host(image.data()), dev(e->mem.data());
  auto* table = host.Take<LoraSiteDesc>(layers * kNumLoraSites);
  e->lora_table = dev.Take<LoraSiteDesc>(layers * kNumLoraSites);
  for (int64_t l = 0; l < layers; ++l)
    for (int s = 0; s < kNumLoraSites; ++s) {
      const LoraSiteWeights& w = a.layer(l).sites[s];
      LoraSiteDesc& d = table[l * kNumLoraSites + s];
      std::memset(&d, 0, sizeof(d));
      if (w.empty()) continue;
      const int64_t na = w.total_rank * w.in_dim;
      ConvertFromF32(DType::kBF16, w.a.data(), na, host.Take<uint16_t>(na));
      d.a = dev.Take<uint16_t>(na);
      d.in_dim = static_cast<int32_t>(w.in_dim);
      d.total_rank = static_cast<int32_t>(w.total_rank);
      d.num_modules = static_cast<int32_t>(w.modules.size());
      for (size_t i = 0; i < w.modules.size() && i < 3; ++i) {
        const LoraModule& m = w.modules[i];
        const int64_t nb = m.out_dim * m.rank;
        ConvertFromF32(DType::kBF16, m.b.data(), nb, host.Take<uint16_t>(nb));
        d.modules[i] = {dev.Take<uint16_t>(nb), static_cast<int32_t>(m.rank),
                        static_cast<int32_t>(m.a_offset), static_cast<int32_t>(m.out_offset),
                        static_cast<int32_t>(m.out_dim)};
      }
    }
  if (absl::Status s =
          CudaCheck(cudaMemcpy(e->mem.data(), image.data(), image.size(), cudaMemcpyHostToDevice),
                    "uploading a LoRA adapter");
      !s.ok())
    return s;
  return e->lora_table;
}

absl::StatusOr<const std::vector<DeviceParaLayer>*> DeviceAdapters::Para(const ParaAdapter& a) {
  if (auto it = entries_.find(a.uid()); it != entries_.end()) {
    it->second->last_step = step_;
    return &it->second->para;
  }
  const int64_t layers = a.num_layers();
  Carve count;
  for (int64_t l = 0; l < layers; ++l) {
    const ParaLayerWeights& w = a.layer(l);
    count.Take<float>(w.down.size());
    count.Take<float>(w.up.size());
    count.Take<float>(w.bias.size());
  }
  std::vector<uint8_t> image(count.used());
  Entry* e;
  {
    auto inserted = Insert(a.uid(), image.size(), "a PARA adapter");
    if (!inserted.ok()) return inserted.status();
    e = *inserted;
  }
  Carve host(image.data()), dev(e->mem.data());
  for (int64_t l = 0; l < layers; ++l) {
    const ParaLayerWeights& w = a.layer(l);
    DeviceParaLayer d{};
    const AlignedBuffer* parts[3] = {&w.down, &w.up, &w.bias};
    const float** dst[3] = {&d.down, &d.up, &d.bias};
    for (int i = 0; i < 3; ++i) {
      const int64_t n = static_cast<int64_t>(parts[i]->size());
      std::memcpy(host.Take<float>(n), parts[i]->data(), n * sizeof(float));
      *dst[i] = dev.Take<float>(n);
    }
    e->para.push_back(d);
  }
  if (absl::Status s =
          CudaCheck(cudaMemcpy(e->mem.data(), image.data(), image.size(), cudaMemcpyHostToDevice),
                    "uploading a PARA adapter");
      !s.ok())
    return s;
  return &e->para;
}

}  // namespace para::cuda
