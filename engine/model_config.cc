#include "engine/model_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace para {
namespace {

using json = nlohmann::json;

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// Reads an optional positive integer field.
absl::Status ReadInt(const json& j, const char* key, const std::string& source, bool required,
                     int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? Bad(source, absl::StrCat("missing required field '", key, "'"))
                    : absl::OkStatus();
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0)
    return Bad(source, absl::StrCat("'", key, "' must be a positive integer"));
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const json& j, const char* key, const std::string& source, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number() || it->get<double>() <= 0)
    return Bad(source, absl::StrCat("'", key, "' must be a positive number"));
  *out = it->get<double>();
  return absl::OkStatus();
}

// eos_token_id may be an int or a list of ints.
absl::Status ReadTokenIds(const json& j, const char* key, const std::string& source,
                          std::vector<int32_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  std::vector<int32_t> ids;
  auto add = [&](const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) return false;
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
    return true;
  };
  bool ok = it->is_array() ? std::all_of(it->begin(), it->end(), add) : add(*it);
  if (!ok)
    return Bad(source, absl::StrCat("'", key, "' must be a token id or a list of token ids"));
  *out = std::move(ids);
  return absl::OkStatus();
}

// Reads one rope parameter set: `theta_key` names the base frequency's field ("rope_theta" inside
// transformers 5's rope_parameters; absent in transformers 4's rope_scaling, whose base is the
// top-level rope_theta).
absl::Status ParseRopeObject(const json& r, const std::string& where, const std::string& source,
                             double* theta, RopeScaling* out) {
  if (!r.is_object()) return Bad(source, absl::StrCat("'", where, "' must be an object or null"));
  RETURN_IF_ERROR(ReadDouble(r, "rope_theta", source, theta));
  if (auto prf = r.find("partial_rotary_factor");
      prf != r.end() && !prf->is_null() && !(prf->is_number() && prf->get<double>() == 1.0))
    return absl::UnimplementedError(absl::StrCat(
        source, ": '", where, ".partial_rotary_factor' other than 1 is not supported"));
  const std::string type = r.value("rope_type", r.value("type", std::string("default")));
  if (type == "default") return absl::OkStatus();
  if (type == "linear") {
    out->type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    out->type = RopeScaling::Type::kLlama3;
    RETURN_IF_ERROR(ReadDouble(r, "low_freq_factor", source, &out->low_freq_factor));
    RETURN_IF_ERROR(ReadDouble(r, "high_freq_factor", source, &out->high_freq_factor));
    RETURN_IF_ERROR(ReadInt(r, "original_max_position_embeddings", source, false,
                            &out->original_max_position_embeddings));
  } else {
    return absl::UnimplementedError(
        absl::StrCat(source, ": rope type '", type, "' in '", where,
                     "' is not supported (supported: default, linear, llama3)"));
  }
  out->factor = 0;
  RETURN_IF_ERROR(ReadDouble(r, "factor", source, &out->factor));
  if (out->factor <= 0)
    return Bad(source,
               absl::StrCat("'", where, "' of type '", type, "' needs a positive 'factor'"));
  return absl::OkStatus();
}

// RoPE from either layout: transformers 5's "rope_parameters" (theta inside; one set, or one per
// layer type, which must then all be equal), or transformers 4's top-level "rope_theta" with
// "rope_scaling". rope_parameters wins when both are present, as in transformers 5.
absl::Status ParseRope(const json& j, const std::string& source, ModelConfig* c) {
  RETURN_IF_ERROR(ReadDouble(j, "rope_theta", source, &c->rope_theta));
  auto params = j.find("rope_parameters");
  if (params != j.end() && !params->is_null()) {
    if (params->is_object() && !params->empty() && params->begin()->is_object()) {
      // Per layer type ({"full_attention": {...}, "sliding_attention": {...}}).
      const json& first = params->begin().value();
      for (const auto& [layer_type, p] : params->items())
        if (p != first)
          return absl::UnimplementedError(absl::StrCat(
              source, ": 'rope_parameters' differ between layer types ('", params->begin().key(),
              "' vs '", layer_type, "'); per-layer RoPE is not supported"));
      return ParseRopeObject(first, absl::StrCat("rope_parameters.", params->begin().key()), source,
                             &c->rope_theta, &c->rope_scaling);
    }
    return ParseRopeObject(*params, "rope_parameters", source, &c->rope_theta, &c->rope_scaling);
  }
  auto scaling = j.find("rope_scaling");
  if (scaling == j.end() || scaling->is_null()) return absl::OkStatus();
  double ignored_theta = c->rope_theta;
  RETURN_IF_ERROR(
      ParseRopeObject(*scaling, "rope_scaling", source, &ignored_theta, &c->rope_scaling));
  return absl::OkStatus();
}

// Fields that change a LLaMA model's math and that this engine does not implement: refused when
// they ask for anything but the plain LLaMA computation, never ignored.
absl::Status CheckUnimplementedMath(const json& j, const std::string& source) {
  auto refuse = [&](const std::string& what) {
    return absl::UnimplementedError(absl::StrCat(source, ": ", what, " is not supported"));
  };
  for (const char* flag : {"attention_bias", "mlp_bias", "use_sliding_window", "qk_norm"}) {
    auto it = j.find(flag);
    if (it != j.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>()))
      return refuse(absl::StrCat("'", flag, "': ", it->dump()));
  }
  if (auto it = j.find("sliding_window"); it != j.end() && !it->is_null())
    return refuse(absl::StrCat("'sliding_window': ", it->dump(), " (sliding-window attention)"));
  if (auto it = j.find("layer_types"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return Bad(source, "'layer_types' must be a list");
    for (const json& t : *it)
      if (t != "full_attention")
        return refuse(absl::StrCat("layer type ", t.dump(), " in 'layer_types'"));
  }
  if (auto it = j.find("quantization_config"); it != j.end() && !it->is_null())
    return refuse("a quantized checkpoint ('quantization_config')");
  if (auto it = j.find("pretraining_tp");
      it != j.end() && !it->is_null() && !(it->is_number_integer() && it->get<int64_t>() >= 1))
    return Bad(source, "'pretraining_tp' must be a positive integer");
  return absl::OkStatus();
}

// Upper bounds on sizes, so that a hostile or corrupt config is an error and never an
// allocation of terabytes.
absl::Status CheckLimits(const ModelConfig& c, const std::string& source) {
  const struct {
    const char* name;
    int64_t value, max;
  } limits[] = {
      {"hidden_size", c.hidden_size, 1 << 16},
      {"intermediate_size", c.intermediate_size, 1 << 18},
      {"num_hidden_layers", c.num_hidden_layers, 1 << 10},
      {"num_attention_heads", c.num_attention_heads, 1 << 10},
      {"num_key_value_heads", c.num_key_value_heads, 1 << 10},
      {"head_dim", c.head_dim, 1 << 11},
      {"vocab_size", c.vocab_size, 1 << 22},
      {"max_position_embeddings", c.max_position_embeddings, 1 << 24},
  };
  for (const auto& l : limits)
    if (l.value > l.max)
      return Bad(source,
                 absl::StrCat("'", l.name, "' is ", l.value, "; at most ", l.max, " is accepted"));
  return absl::OkStatus();
}

absl::Status CheckArchitecture(const json& j, const std::string& source, ModelConfig* c) {
  auto arch = j.find("architectures");
  if (arch != j.end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string()) {
    c->architecture = (*arch)[0].get<std::string>();
  } else if (j.value("model_type", std::string()) != "llama") {
    return Bad(source, "neither 'architectures' nor model_type 'llama' identifies a LLaMA model");
  }
  if (c->architecture != "LlamaForCausalLM")
    return absl::UnimplementedError(absl::StrCat(source, ": unsupported architecture '",
                                                 c->architecture,
                                                 "' (supported: LlamaForCausalLM)"));
  if (j.value("hidden_act", std::string("silu")) != "silu")
    return absl::UnimplementedError(absl::StrCat(source, ": hidden_act '",
                                                 j.value("hidden_act", std::string()),
                                                 "' is not supported (LLaMA uses silu)"));
  return CheckUnimplementedMath(j, source);
}

}  // namespace

int64_t ModelConfig::NumParameters() const {
  const int64_t h = hidden_size;
  const int64_t per_layer =
      h * (q_dim() + 2 * kv_dim()) + q_dim() * h + 3 * h * intermediate_size + 2 * h;
  return vocab_size * h * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * per_layer + h;
}

namespace {

absl::StatusOr<ModelConfig> ParseModelConfigJson(const json& j, const std::string& source) {
  ModelConfig c;
  RETURN_IF_ERROR(CheckArchitecture(j, source, &c));
  RETURN_IF_ERROR(ReadInt(j, "hidden_size", source, true, &c.hidden_size));
  RETURN_IF_ERROR(ReadInt(j, "intermediate_size", source, true, &c.intermediate_size));
  RETURN_IF_ERROR(ReadInt(j, "num_hidden_layers", source, true, &c.num_hidden_layers));
  RETURN_IF_ERROR(ReadInt(j, "num_attention_heads", source, true, &c.num_attention_heads));
  RETURN_IF_ERROR(ReadInt(j, "vocab_size", source, true, &c.vocab_size));
  c.num_key_value_heads = c.num_attention_heads;
  RETURN_IF_ERROR(ReadInt(j, "num_key_value_heads", source, false, &c.num_key_value_heads));
  RETURN_IF_ERROR(ReadInt(j, "max_position_embeddings", source, false, &c.max_position_embeddings));
  if (c.hidden_size % c.num_attention_heads != 0 && !j.contains("head_dim"))
    return Bad(source,
               "hidden_size is not a multiple of num_attention_heads and no head_dim is given");
  c.head_dim = c.hidden_size / c.num_attention_heads;
  RETURN_IF_ERROR(ReadInt(j, "head_dim", source, false, &c.head_dim));
  if (c.head_dim % 2 != 0) return Bad(source, "head_dim must be even for rotary embeddings");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    return Bad(source, absl::StrCat("num_attention_heads (", c.num_attention_heads,
                                    ") is not a multiple of num_key_value_heads (",
                                    c.num_key_value_heads, ")"));
  RETURN_IF_ERROR(ReadDouble(j, "rms_norm_eps", source, &c.rms_norm_eps));
  RETURN_IF_ERROR(CheckLimits(c, source));
  RETURN_IF_ERROR(ParseRope(j, source, &c));
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  std::vector<int32_t> bos;
  RETURN_IF_ERROR(ReadTokenIds(j, "bos_token_id", source, &bos));
  if (!bos.empty()) c.bos_token_id = bos[0];
  RETURN_IF_ERROR(ReadTokenIds(j, "eos_token_id", source, &c.eos_token_ids));
  for (int32_t id : c.eos_token_ids)
    if (id >= c.vocab_size)
      return Bad(source, absl::StrCat("eos_token_id ", id, " is outside the vocabulary"));
  if (c.bos_token_id >= c.vocab_size) return Bad(source, "bos_token_id is outside the vocabulary");
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(source, "not a valid JSON object");
  try {
    return ParseModelConfigJson(j, source);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    return Bad(source, e.what());
  }
}

absl::Status ApplyGenerationConfig(const std::string& json_text, const std::string& source,
                                   ModelConfig* c) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(source, "not a valid JSON object");
  std::vector<int32_t> bos;
  RETURN_IF_ERROR(ReadTokenIds(j, "bos_token_id", source, &bos));
  if (!bos.empty()) c->bos_token_id = bos[0];
  RETURN_IF_ERROR(ReadTokenIds(j, "eos_token_id", source, &c->eos_token_ids));
  GenerationDefaults& g = c->generation;
  try {
    g.do_sample = j.value("do_sample", false);
  } catch (const json::exception& e) {
    return Bad(source, e.what());
  }
  if (j.contains("temperature") && j["temperature"].is_number())
    g.temperature = j["temperature"].get<float>();
  if (j.contains("top_k") && j["top_k"].is_number_integer()) g.top_k = j["top_k"].get<int>();
  if (j.contains("top_p") && j["top_p"].is_number()) g.top_p = j["top_p"].get<float>();
  if (j.contains("repetition_penalty") && j["repetition_penalty"].is_number())
    g.repetition_penalty = j["repetition_penalty"].get<float>();
  int64_t max_new = 0;
  RETURN_IF_ERROR(ReadInt(j, "max_new_tokens", source, false, &max_new));
  if (max_new > 0) g.max_new_tokens = static_cast<int32_t>(std::min<int64_t>(max_new, INT32_MAX));
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path cfg_path = fs::path(dir) / "config.json";
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(cfg_path.string()));
  ASSIGN_OR_RETURN(ModelConfig c, ParseModelConfig(text, cfg_path.string()));
  const fs::path gen_path = fs::path(dir) / "generation_config.json";
  if (fs::exists(gen_path)) {
    ASSIGN_OR_RETURN(std::string gen, ReadTextFile(gen_path.string()));
    RETURN_IF_ERROR(ApplyGenerationConfig(gen, gen_path.string(), &c));
  }
  const fs::path tok_path = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(tok_path)) {
    ASSIGN_OR_RETURN(std::string tok, ReadTextFile(tok_path.string()));
    json j = json::parse(tok, nullptr, false);
    if (j.is_object() && j.contains("add_bos_token") && j["add_bos_token"].is_boolean())
      c.add_bos_token = j["add_bos_token"].get<bool>();
  }
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j = {
      {"architectures", {c.architecture}},
      {"model_type", "llama"},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"hidden_act", "silu"},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", nullptr},
      {"max_position_embeddings", c.max_position_embeddings},
      {"vocab_size", c.vocab_size},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id",
       c.eos_token_ids.size() == 1 ? json(c.eos_token_ids[0]) : json(c.eos_token_ids)},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"torch_dtype", "float32"},
  };
  return j.dump(2) + "\n";
}

}  // namespace para
