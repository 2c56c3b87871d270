// libFuzzer target: the gRPC request validation (CheckNoUnknownFields, then ToSubmission, which
// every Generate / GenerateStream call goes through) on arbitrary bytes read as a
// para.v1.GenerateRequest, against a tiny model with a tokenizer and a chat template. Every
// message must become a submission or be refused with a status that has a message, never crash.
// Built in the ASan tree (scripts/sanitize.sh address), which has the whole engine.
#include <cstddef>
#include <cstdint>
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

const para::Engine& TinyEngine() {
  static const para::Engine* engine = [] {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("para_grpc_fuzz_" + std::to_string(getpid())))
            .string();
    para::tools::TinyModelOptions options;
    options.max_pos = 256;
    if (!para::tools::MakeTinyModel(dir, options).ok()) std::abort();
    nlohmann::json config = nlohmann::json::object();
    if (std::ifstream in(dir + "/tokenizer_config.json"); in) config = nlohmann::json::parse(in);
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
