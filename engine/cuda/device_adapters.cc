#include "engine/cuda/device_adapters.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/dtype.h"

namespace para::cuda {
namespace {

using Layout = std::function<size_t(uint8_t* host, uint8_t* dev, DeviceAdapterView* view)>;

// An adapter's device image: with a null `host` only its size; otherwise the image is written to
// `host` holding the addresses it will have at `dev`, and `view` says where its pieces are.
// LoRA: the site table, then every A and B as BF16.
size_t LayOutLora(const LoraAdapter& a, uint8_t* host, uint8_t* dev, DeviceAdapterView* view) {
  const int64_t layers = a.num_layers();
  Carve h(host), d(dev);
  LoraSiteDesc* table = h.Take<LoraSiteDesc>(layers * kNumLoraSites);
  view->lora_table = d.Take<LoraSiteDesc>(layers * kNumLoraSites);
  for (int64_t l = 0; l < layers; ++l)
    for (int s = 0; s < kNumLoraSites; ++s) {
      const LoraSiteWeights& w = a.layer(l).sites[s];
      LoraSiteDesc* desc = host != nullptr ? &table[l * kNumLoraSites + s] : nullptr;
      if (desc != nullptr) std::memset(desc, 0, sizeof(*desc));
      if (w.empty()) continue;
      const int64_t na = w.total_rank * w.in_dim;
      uint16_t* ha = h.Take<uint16_t>(na);
      const uint16_t* da = d.Take<uint16_t>(na);
      if (desc != nullptr) {
        ConvertFromF32(DType::kBF16, w.a.data(), na, ha);
        desc->a = da;
        desc->in_dim = static_cast<int32_t>(w.in_dim);
        desc->total_rank = static_cast<int32_t>(w.total_rank);
        desc->num_modules = static_cast<int32_t>(w.modules.size());
      }
      for (size_t i = 0; i < w.modules.size() && i < 3; ++i) {
        const LoraModule& m = w.modules[i];
        const int64_t nb = m.out_dim * m.rank;
        uint16_t* hb = h.Take<uint16_t>(nb);
        const uint16_t* db = d.Take<uint16_t>(nb);
        if (desc == nullptr) continue;
        ConvertFromF32(DType::kBF16, m.b.data(), nb, hb);
        desc->modules[i] = {db, static_cast<int32_t>(m.rank), static_cast<int32_t>(m.a_offset),
                            static_cast<int32_t>(m.out_offset), static_cast<int32_t>(m.out_dim)};
      }
    }
  return h.used();
}

// PARA: each layer's down, up and bias, F32.
size_t LayOutPara(const ParaAdapter& a, uint8_t* host, uint8_t* dev, DeviceAdapterView* view) {
  Carve h(host), d(dev);
  view->para.clear();
  for (int64_t l = 0; l < a.num_layers(); ++l) {
    const ParaLayerWeights& w = a.layer(l);
    DeviceParaLayer layer{};
    const AlignedBuffer* parts[3] = {&w.down, &w.up, &w.bias};
    const float** dst[3] = {&layer.down, &layer.up, &layer.bias};
    for (int i = 0; i < 3; ++i) {
      const int64_t n = static_cast<int64_t>(parts[i]->size());
      float* hp = h.Take<float>(n);
      *dst[i] = d.Take<float>(n);
      if (host != nullptr) std::memcpy(hp, parts[i]->data(), n * sizeof(float));
    }
    view->para.push_back(layer);
  }
  return h.used();
}

Layout LayoutOf(const LoraAdapter& a) {
  return [&a](uint8_t* h, uint8_t* d, DeviceAdapterView* v) { return LayOutLora(a, h, d, v); };
}
Layout LayoutOf(const ParaAdapter& a) {
  return [&a](uint8_t* h, uint8_t* d, DeviceAdapterView* v) { return LayOutPara(a, h, d, v); };
}

// Whether the work recorded by `e` has completed; never waits. (A "not ready" answer is not left
// behind as the thread's last error, which the step checks after its kernels.)
bool Completed(cudaEvent_t e) {
  const cudaError_t before = cudaPeekAtLastError();
  const cudaError_t q = cudaEventQuery(e);
  if (q != cudaErrorNotReady) return true;  // done, or failed (the failure surfaces elsewhere)
  if (before == cudaSuccess) (void)cudaGetLastError();
  return false;
}

}  // namespace

DeviceAdapters::~DeviceAdapters() {
  if (side_ != nullptr) cudaStreamSynchronize(side_);
  for (auto& [uid, p] : promoted_) {
    cudaFree(p.mem);  // frees cudaMallocAsync memory too, after synchronising the device
    cudaEventDestroy(p.uploaded);
  }
  for (auto& s : staging_)
    if (s->done != nullptr) cudaEventDestroy(s->done);
  staging_.clear();
  if (side_ != nullptr) cudaStreamDestroy(side_);
}

void DeviceAdapters::BeginStep(cudaStream_t main) {
  ++step_;
  main_ = main;
  DeviceTierBook::Changes changes = book_.TakeChanges();
  for (const DeviceTierBook::Free& f : changes.frees) FreePromoted(f);
  // A promotion that cannot start (no device memory) leaves the adapter to upload on first use,
  // which reports the error to the step if it persists.
  for (const AdapterRef& a : changes.uploads)
    if (!StartUpload(a).ok()) book_.UploadFailed(a.uid());
}

void DeviceAdapters::FreePromoted(const DeviceTierBook::Free& f) {
  auto it = promoted_.find(f.uid);
  if (it == promoted_.end()) return;
  Promoted& p = it->second;
  if (f.wait_for_upload) cudaStreamWaitEvent(main_, p.uploaded, 0);
  cudaFreeAsync(p.mem, main_);  // after everything already queued on the main stream
  cudaEventDestroy(p.uploaded);
  tier_bytes_ -= static_cast<int64_t>(p.bytes);
  promoted_.erase(it);
}

absl::StatusOr<DeviceAdapters::Staging*> DeviceAdapters::StagingFor(size_t bytes) {
  Staging* fit = nullptr;
  Staging* idle = nullptr;
  for (auto& s : staging_) {
    if (s->busy) {
      if (!Completed(s->done)) continue;
      s->busy = false;
    }
    if (s->buf.size() >= bytes) {
      if (fit == nullptr || s->buf.size() < fit->buf.size()) fit = s.get();
    } else if (idle == nullptr) {
      idle = s.get();
    }
  }
  if (fit != nullptr) return fit;
  Staging* s = idle;
  if (s == nullptr) {
    staging_.push_back(std::make_unique<Staging>());
    s = staging_.back().get();
    RETURN_IF_ERROR(CudaCheck(cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming),
                              "creating an adapter upload event"));
  }
  size_t capacity = size_t{1} << 20;
  while (capacity < bytes) capacity *= 2;
  RETURN_IF_ERROR(s->buf.Allocate(capacity, "staging an adapter upload"));
  return s;
}

absl::Status DeviceAdapters::StartUpload(const AdapterRef& a) {
  if (side_ == nullptr)
    RETURN_IF_ERROR(CudaCheck(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking),
                              "creating the adapter upload stream"));
  const Layout lay = a.lora ? LayoutOf(*a.lora) : LayoutOf(*a.para);
  DeviceAdapterView sizing;
  const size_t bytes = lay(nullptr, nullptr, &sizing);
  ASSIGN_OR_RETURN(Staging * staging, StagingFor(bytes));
  Promoted p;
  p.bytes = bytes;
  RETURN_IF_ERROR(CudaCheck(cudaMallocAsync(&p.mem, bytes, side_), "allocating an adapter copy"));
  lay(staging->buf.data(), static_cast<uint8_t*>(p.mem), &p.view);
  cudaError_t e = cudaMemcpyAsync(p.mem, staging->buf.data(), bytes, cudaMemcpyHostToDevice, side_);
  if (e == cudaSuccess) {
    staging->busy = true;
    e = cudaEventRecord(staging->done, side_);
  }
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&p.uploaded, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventRecord(p.uploaded, side_);
  if (e != cudaSuccess) {
    if (p.uploaded != nullptr) cudaEventDestroy(p.uploaded);
    cudaFreeAsync(p.mem, side_);
    return CudaCheck(e, "starting an adapter upload");
  }
  tier_bytes_ += static_cast<int64_t>(bytes);
  ++tier_uploads_;
  promoted_[a.uid()] = std::move(p);
  return absl::OkStatus();
}

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

absl::StatusOr<const DeviceAdapterView*> DeviceAdapters::View(uint64_t uid, const Layout& lay,
                                                              const char* what) {
  const DeviceTierBook::Use use = book_.UseInStep(uid);
  if (use != DeviceTierBook::Use::kNotPromoted) {
    if (auto p = promoted_.find(uid); p != promoted_.end()) {
      if (use == DeviceTierBook::Use::kWaitForUpload)
        RETURN_IF_ERROR(CudaCheck(cudaStreamWaitEvent(main_, p->second.uploaded, 0),
                                  "waiting for an adapter upload"));
      return &p->second.view;
    }
  }
  if (auto it = entries_.find(uid); it != entries_.end()) {
    it->second->last_step = step_;
    return &it->second->view;
  }
  DeviceAdapterView sizing;
  const size_t bytes = lay(nullptr, nullptr, &sizing);
  ASSIGN_OR_RETURN(Entry * e, Insert(uid, bytes, what));
  std::vector<uint8_t> image(bytes);  // built on the host, then one copy
  lay(image.data(), e->mem.data(), &e->view);
  const absl::Status copied =
      CudaCheck(cudaMemcpy(e->mem.data(), image.data(), bytes, cudaMemcpyHostToDevice),
                absl::StrCat("uploading ", what).c_str());
  if (!copied.ok()) {
    bytes_ -= static_cast<int64_t>(bytes);
    entries_.erase(uid);
    return copied;
  }
  return &e->view;
}

absl::StatusOr<const LoraSiteDesc*> DeviceAdapters::Lora(const LoraAdapter& a) {
  ASSIGN_OR_RETURN(const DeviceAdapterView* v, View(a.uid(), LayoutOf(a), "a LoRA adapter"));
  return v->lora_table;
}

absl::StatusOr<const std::vector<DeviceParaLayer>*> DeviceAdapters::Para(const ParaAdapter& a) {
  ASSIGN_OR_RETURN(const DeviceAdapterView* v, View(a.uid(), LayoutOf(a), "a PARA adapter"));
  return &v->para;
}

}  // namespace para::cuda
