// libFuzzer target: the gRPC request validation (CheckNoUnknownFields, then ToSubmission, which
// every Generate / GenerateStream call goes through) on arbitrary bytes read as a
// para.v1.GenerateRequest, against a tiny model with a tokenizer and a chat template. Every
// message must become a submission or be refused with a status that has a message, never crash.
// Built in the ASan tree (scripts/sanitize.sh address), which has the whole engine. The tokenizer
// is a LLaMA-shaped tokenizer.json written here (byte fallback, "▁" for spaces, ChatML specials):
// the sentencepiece one cannot load in a sanitized process that also loads the system protobuf
// (docs/fuzzing.md).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <unistd.h>

#include "engine/engine.h"
#include "nlohmann/json.hpp"
#include "server/request_convert.h"
#include "tools/tiny_model.h"

namespace {

// A ChatML-style template written for this target.
constexpr char kTemplate[] =
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

// Vocabulary: <unk> <s> </s>, the 256 byte pieces, "▁", the printable ASCII characters, and the
// two ChatML specials; no merges, so text falls back to characters and bytes.
nlohmann::json TokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  int32_t id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>"}) vocab[t] = id++;
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof(piece), "<0x%02X>", b);
    vocab[piece] = id++;
  }
  vocab["\xe2\x96\x81"] = id++;
  for (char c = '!'; c <= '~'; ++c) vocab[std::string(1, c)] = id++;
  nlohmann::json added = nlohmann::json::array();
  for (const char* t : {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"}) {
    if (!vocab.contains(t)) vocab[t] = id++;
    added.push_back({{"id", vocab[t]},
                     {"content", t},
                     {"special", true},
                     {"normalized", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"single_word", false}});
  }
  const nlohmann::json space = {
      {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}};
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}}, space}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"byte_fallback", true},
            {"fuse_unk", true},
            {"vocab", vocab},
            {"merges", nlohmann::json::array()}}}};
}

const para::Engine& TinyEngine() {
  static const para::Engine* engine = [] {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("para_grpc_fuzz_" + std::to_string(getpid())))
            .string();
    para::tools::TinyModelOptions options;
    options.max_pos = 256;
    options.tokenizer = false;
    if (!para::tools::MakeTinyModel(dir, options).ok()) std::abort();
    std::ofstream(dir + "/tokenizer.json") << TokenizerJson().dump();
    nlohmann::json config = {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"add_bos_token", true}};
    config["chat_template"] = kTemplate;
    std::ofstream(dir + "/tokenizer_config.json") << config.dump();
    para::EngineOptions eo;
    eo.model_dir = dir;
    eo.device = "cpu";
    eo.num_threads = 1;
    auto e = para::Engine::Create(eo);
    if (!e.ok()) std::abort();
    std::filesystem::remove_all(dir);
    return e->release();
  }();
  return *engine;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const para::Engine& engine = TinyEngine();
  para::v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!para::server::CheckNoUnknownFields(request).ok()) return 0;
  const para::server::Principal who{"acme", false};
  para::server::RequestLimits limits;
  limits.max_prompt_bytes = 4096;
  auto sub = para::server::ToSubmission(request, who, /*adapter=*/nullptr, engine, limits);
  if (!sub.ok() && sub.status().message().empty()) std::abort();
  return 0;
}
