// Test support: tiny random models written once per test binary into a temporary directory.
// Not thread-safe (tests run sequentially within a binary).
#pragma once

#include <memory>
#include <string>

#include "engine/engine.h"
#include "scheduler/engine_loop.h"
#include "tools/tiny_model.h"

namespace para::testing {

// A directory holding a tiny model made with `options` (cached by the options' fields).
const std::string& TinyModelDir(const tools::TinyModelOptions& options);
// The default tiny GQA model (2 layers, hidden 64, 4 heads, 2 kv heads, vocab 512).
const std::string& DefaultTinyModelDir();
// A fresh temporary directory.
std::string MakeTempDir(const std::string& prefix);
// An engine on `dir` with a small KV cache.
std::unique_ptr<Engine> MakeEngine(const std::string& dir, int32_t num_blocks = 512,
                                   int32_t block_size = 16);
// Runs requests together to completion through the engine loop (default scheduler settings).
std::vector<absl::StatusOr<sched::RequestResult>> RunRequests(
    Engine* engine, const std::vector<GenerationRequest>& requests);

}  // namespace para::testing
