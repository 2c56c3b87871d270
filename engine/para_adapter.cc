#include "engine/para_adapter.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "engine/safetensors.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace para {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

absl::StatusOr<ParaConfig> ParseConfigJson(const json& j, const std::string& source) {
  ParaConfig c;
  auto peft = j.find("peft_type");
  if (peft == j.end()) return Bad(source, "missing 'peft_type' (expected \"PARA\")");
  if (!peft->is_string() || peft->get<std::string>() != "PARA")
    return Bad(source, absl::StrCat("peft_type is ", peft->dump(), ", expected \"PARA\""));
  auto r = j.find("r");
  if (r == j.end()) return Bad(source, "missing 'r'");
  if (!r->is_number_integer() || r->get<int64_t>() <= 0 || r->get<int64_t>() > 65536)
    return Bad(source, absl::StrCat("'r' must be a positive integer, got ", r->dump()));
  c.r = r->get<int64_t>();
  if (auto p = j.find("pooler"); p != j.end()) {
    const std::string v = p->is_string() ? p->get<std::string>() : p->dump();
    if (v == "last") {
      c.pooler = ParaPooler::kLast;
    } else if (v == "mean") {
      c.pooler = ParaPooler::kMean;
    } else {
      return Bad(source, absl::StrCat("pooler '", v, "' is not one of \"last\", \"mean\""));
    }
  }
  if (auto a = j.find("activation"); a != j.end()) {
    const std::string v = a->is_string() ? a->get<std::string>() : a->dump();
    static const std::pair<const char*, ParaActivation> kActs[] = {
        {"gelu", ParaActivation::kGelu},
        {"gelu_tanh", ParaActivation::kGeluTanh},
        {"relu", ParaActivation::kRelu},
        {"silu", ParaActivation::kSilu}};
    bool found = false;
    for (const auto& [name, act] : kActs) {
      if (v == name) {
        c.activation = act;
        found = true;
      }
    }
    if (!found)
      return Bad(source,
                 absl::StrCat("activation '", v, "' is not one of gelu, gelu_tanh, relu, silu"));
  }
  if (auto t = j.find("target_modules"); t != j.end()) {
    const json want = {"q_proj", "v_proj", "up_proj"};
    if (*t != want)
      return Bad(source, absl::StrCat("target_modules is ", t->dump(), "; this version requires ",
                                      want.dump()));
  }
  return c;
}

}  // namespace

absl::StatusOr<ParaConfig> ParseParaConfig(const std::string& json_text,
                                           const std::string& source) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(source, "not a valid JSON object");
  return ParseConfigJson(j, source);
}

const char* ParaPoolerName(ParaPooler p) { return p == ParaPooler::kLast ? "last" : "mean"; }

const char* ParaActivationName(ParaActivation a) {
  switch (a) {
    case ParaActivation::kGelu:
      return "gelu";
    case ParaActivation::kGeluTanh:
      return "gelu_tanh";
    case ParaActivation::kRelu:
      return "relu";
    case ParaActivation::kSilu:
      return "silu";
  }
  return "";
}

float ParaActivate(ParaActivation a, float x) {
  switch (a) {
    case ParaActivation::kGelu:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case ParaActivation::kGeluTanh:
      return 0.5f * x * (1.0f + std::tanh(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case ParaActivation::kRelu:
      return x > 0 ? x : 0.0f;
    case ParaActivation::kSilu:
      return x / (1.0f + std::exp(-x));
  }
  return x;
}

std::string ParaTensorName(int64_t layer, const char* which) {
  return absl::StrCat("base_model.model.model.layers.", layer, ".para.", which);
}

int64_t ParaAdapter::num_parameters() const {
  return num_layers() * (config_.r * hidden_ + d_out_ * config_.r + d_out_);
}

absl::StatusOr<std::shared_ptr<const ParaAdapter>> ParaAdapter::Load(const std::string& dir,
                                                                     const ModelConfig& m) {
  namespace fs = std::filesystem;
  const fs::path cfg_path = fs::path(dir) / "adapter_config.json";
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(cfg_path.string()));
  ASSIGN_OR_RETURN(ParaConfig config, ParseParaConfig(text, cfg_path.string()));
  ASSIGN_OR_RETURN(auto store, TensorStore::OpenDirectory(dir, "adapter_model.safetensors",
                                                          "adapter_model.safetensors.index.json"));

  auto a = std::make_shared<ParaAdapter>();
  a->dir_ = dir;
  a->config_ = config;
  a->hidden_ = m.hidden_size;
  a->d_out_ = m.q_dim() + m.kv_dim() + m.intermediate_size;
  const int64_t r = config.r;
  std::set<std::string> expected;
  for (int64_t i = 0; i < m.num_hidden_layers; ++i) {
    for (const char* w : {"down.weight", "up.weight", "up.bias"})
      expected.insert(ParaTensorName(i, w));
  }
  for (const std::string& name : store->Names()) {
    if (!expected.count(name))
      return absl::InvalidArgumentError(absl::StrCat(
          store->description(), " has unexpected tensor '", name, "' (the base model has ",
          m.num_hidden_layers, " layers; a PARA adapter holds only para.down/para.up tensors)"));
  }
  a->layers_.resize(m.num_hidden_layers);
  for (int64_t i = 0; i < m.num_hidden_layers; ++i) {
    const std::string down = ParaTensorName(i, "down.weight"), up = ParaTensorName(i, "up.weight");
    // Name an r mismatch as such rather than as a generic shape error.
    for (const auto& [name, dim] : {std::pair{down, 0}, std::pair{up, 1}}) {
      const TensorView* t = store->Find(name);
      if (t != nullptr && t->shape.size() == 2 && t->shape[dim] != r)
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", *t->file,
                                                       " has rank ", t->shape[dim],
                                                       " but adapter_config.json says r = ", r));
    }
    ParaLayerWeights& w = a->layers_[i];
    ASSIGN_OR_RETURN(w.down, store->ReadFiniteF32(down, {r, m.hidden_size}));
    ASSIGN_OR_RETURN(w.up, store->ReadFiniteF32(up, {a->d_out_, r}));
    ASSIGN_OR_RETURN(w.bias, store->ReadFiniteF32(ParaTensorName(i, "up.bias"), {a->d_out_}));
  }
  return std::shared_ptr<const ParaAdapter>(std::move(a));
}

}  // namespace para
