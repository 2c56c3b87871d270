// Test support: tiny random models written once per test binary into a temporary directory.
// Not thread-safe (tests run sequentially within a binary).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "scheduler/engine_loop.h"
#include "tools/safetensors_writer.h"
#include "tools/tiny_model.h"

namespace para::testing {

// A directory holding a tiny model made with `options` (cached by the options' fields).
const std::string& TinyModelDir(const tools::TinyModelOptions& options);
// The default tiny GQA model (2 layers, hidden 64, 4 heads, 2 kv heads, vocab 512).
const std::string& DefaultTinyModelDir();
// A fresh temporary directory.
std::string MakeTempDir(const std::string& prefix);
// An engine on `dir` with a small KV cache (float32 unless `kv_dtype` says otherwise), on the CPU
// backend unless `device` says otherwise (the CPU suite's tolerances are the CPU's).
std::unique_ptr<Engine> MakeEngine(const std::string& dir, int32_t num_blocks = 512,
                                   int32_t block_size = 16, DType kv_dtype = DType::kF32,
                                   std::optional<DType> weights_dtype = std::nullopt,
                                   const std::string& device = "cpu");
// The backends the engine suites run on, the parameter of every backend suite: "cpu" always,
// and "cuda", whose instances skip (printing why) where the build or the machine has no device.
std::vector<std::string> TestDevices();
// Whether `device` can run here; `why` says why not.
bool DeviceRuns(const std::string& device, std::string* why);
// The largest difference allowed between logits that must be equal (the same request alone and
// in a batch, decoded incrementally and recomputed): 1e-5 on the CPU's F32 path, batch-invariant
// by construction; 2e-3 on CUDA (BF16 GEMM inputs, and cuBLASLt may pick another algorithm for
// another number of rows).
float SameLogitsTolerance(const std::string& device);

// A suite run once per backend (TEST_P; INSTANTIATE with BackendValues()): skips devices that
// cannot run here, and makes engines on its device.
class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why;
    if (!DeviceRuns(GetParam(), &why)) GTEST_SKIP() << why;
  }
  const std::string& device() const { return GetParam(); }
  bool on_cpu() const { return GetParam() == "cpu"; }
  float same() const { return SameLogitsTolerance(GetParam()); }
  std::unique_ptr<Engine> Make(const std::string& dir, int32_t num_blocks = 512,
                               int32_t block_size = 16, DType kv_dtype = DType::kF32,
                               std::optional<DType> weights_dtype = std::nullopt) const {
    return MakeEngine(dir, num_blocks, block_size, kv_dtype, weights_dtype, GetParam());
  }
};
inline auto BackendValues() { return ::testing::ValuesIn(TestDevices()); }
inline std::string DeviceName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param == "cpu" ? "Cpu" : "Cuda";
}

// n random token ids in [3, vocab).
std::vector<int32_t> RandomIds(int n, uint64_t seed, int vocab = 512);
float MaxAbsDiff(const float* a, const float* b, int64_t n);
float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b);

// A teacher-forced sequence: a prefill of its first k ids, then one id per step, with an optional
// adapter; `rows` collects the logits of each of its steps.
struct Stream {
  std::vector<int32_t> ids;
  int k = 1;
  const ParaAdapter* para = nullptr;
  const LoraAdapter* lora = nullptr;
  KvSequence kv;
  size_t pos = 0;
  std::vector<std::vector<float>> rows;
};
// Steps all streams together (each step: every unfinished stream's prefill or next id) until
// all are done, then releases their blocks.
void RunTogether(Engine& engine, std::vector<Stream*> streams);

// Rewrites a safetensors file: every tensor is read (as F32), `edit` may change the list (names,
// shapes, values), and the result is written back in F32.
void EditSafetensors(const std::string& path,
                     const std::function<void(std::vector<tools::TensorSpec>&)>& edit);

// Runs requests together to completion through the engine loop (default scheduler settings).
std::vector<absl::StatusOr<sched::RequestResult>> RunRequests(
    Engine* engine, const std::vector<GenerationRequest>& requests);

}  // namespace para::testing
