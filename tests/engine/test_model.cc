#include "tests/engine/test_model.h"

#include "engine/device.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>

#include <vector>
#include "engine/safetensors.h"

#include "absl/strings/str_cat.h"

namespace para::testing {

namespace {

// Removes the directories made by MakeTempDir when the test binary exits.
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
  }
};

TempDirs& Dirs() {
  static TempDirs dirs;
  return dirs;
}

}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "XXXXXX")).string();
  char* p = ::mkdtemp(tmpl.data());
  if (p == nullptr) std::abort();
  Dirs().dirs.push_back(tmpl);
  return tmpl;
}

const std::string& TinyModelDir(const tools::TinyModelOptions& o) {
  static auto* cache = new std::map<std::string, std::string>();
  const std::string key =
      absl::StrCat(o.layers, "/", o.hidden, "/", o.heads, "/", o.kv_heads, "/", o.head_dim, "/",
                   o.ffn, "/", o.vocab, "/", o.seed, "/", static_cast<int>(o.dtype), "/", o.shards,
                   "/", o.tie_embeddings, "/", o.tokenizer, "/", o.max_pos);
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  std::string dir = MakeTempDir("para_tiny_");
  absl::Status s = tools::MakeTinyModel(dir, o);
  if (!s.ok()) {
    ADD_FAILURE() << "MakeTinyModel: " << s;
    std::abort();
  }
  return cache->emplace(key, dir).first->second;
}

const std::string& DefaultTinyModelDir() { return TinyModelDir(tools::TinyModelOptions()); }

std::vector<int32_t> RandomIds(int n, uint64_t seed, int vocab) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
  return ids;
}

float MaxAbsDiff(const float* a, const float* b, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return MaxAbsDiff(a.data(), b.data(), static_cast<int64_t>(std::min(a.size(), b.size())));
}

void RunTogether(Engine& e, std::vector<Stream*> streams) {
  const int64_t vocab = e.config().vocab_size;
  std::vector<float> logits;
  for (;;) {
    std::vector<ForwardItem> items;
    std::vector<Stream*> in_step;
    for (Stream* s : streams) {
      if (s->pos >= s->ids.size()) continue;
      const size_t n = s->pos == 0 ? s->k : 1;
      items.push_back({&s->kv, std::span<const int32_t>(s->ids).subspan(s->pos, n), false, s->para,
                       0, s->lora});
      in_step.push_back(s);
    }
    if (items.empty()) break;
    ASSERT_TRUE(e.Forward(items, &logits).ok());
    for (size_t i = 0; i < in_step.size(); ++i) {
      in_step[i]->rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
      in_step[i]->pos += items[i].tokens.size();
    }
  }
  for (Stream* s : streams) e.kv_cache().Release(&s->kv);
}

void EditSafetensors(const std::string& path,
                     const std::function<void(std::vector<tools::TensorSpec>&)>& edit) {
  std::vector<tools::TensorSpec> specs;
  {
    auto f = SafetensorsFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status();
    for (const TensorView& t : (*f)->tensors()) {
      std::vector<float> v(t.numel());
      ConvertToF32(t.dtype, t.data, v.size(), v.data());
      specs.push_back({t.name, DType::kF32, t.shape,
                       [v](float* d, int64_t n) { std::copy_n(v.begin(), n, d); }});
    }
  }
  edit(specs);
  ASSERT_TRUE(tools::WriteSafetensors(path, specs).ok());
}

std::vector<absl::StatusOr<sched::RequestResult>> RunRequests(
    Engine* engine, const std::vector<GenerationRequest>& requests) {
  std::vector<sched::Submission> subs;
  for (const auto& r : requests) subs.push_back({r, "", 0, std::nullopt, nullptr});
  return sched::RunOffline(engine, std::move(subs), sched::SchedulerConfig());
}

std::vector<std::string> TestDevices() { return {"cpu", "cuda"}; }

bool DeviceRuns(const std::string& device, std::string* why) {
  if (device == "cpu") return true;
  std::string reason;
  if (CudaDeviceCount(&reason) > 0) return true;
  *why = "no GPU run: " + reason;
  return false;
}

float SameLogitsTolerance(const std::string& device) { return device == "cpu" ? 1e-5f : 2e-3f; }

std::unique_ptr<Engine> MakeEngine(const std::string& dir, int32_t num_blocks, int32_t block_size,
                                   DType kv_dtype, std::optional<DType> weights_dtype,
                                   const std::string& device) {
  EngineOptions o;
  o.model_dir = dir;
  o.device = device;
  o.dtype = weights_dtype;
  o.kv_cache_dtype = kv_dtype;
  o.kv_cache.num_blocks = num_blocks;
  o.kv_cache.block_size = block_size;
  auto e = Engine::Create(o);
  if (!e.ok()) {
    ADD_FAILURE() << "Engine::Create: " << e.status();
    return nullptr;
  }
  return *std::move(e);
}

}  // namespace para::testing
