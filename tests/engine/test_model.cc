#include "tests/engine/test_model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <vector>

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

std::vector<absl::StatusOr<sched::RequestResult>> RunRequests(
    Engine* engine, const std::vector<GenerationRequest>& requests) {
  std::vector<sched::Submission> subs;
  for (const auto& r : requests) subs.push_back({r, "", 0, std::nullopt, nullptr});
  return sched::RunOffline(engine, std::move(subs), sched::SchedulerConfig());
}

std::unique_ptr<Engine> MakeEngine(const std::string& dir, int32_t num_blocks, int32_t block_size) {
  EngineOptions o;
  o.model_dir = dir;
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
