#include "engine/lora_adapter.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "engine/safetensors.h"
#include "nlohmann/json.hpp"

namespace para {
namespace {

// ordered_json keeps the file's key order: rank_pattern / alpha_pattern take the first match.
using json = nlohmann::ordered_json;

constexpr const char* kTargetNames[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                        "gate_proj", "up_proj", "down_proj"};

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

absl::Status Unsupported(const std::string& source, const std::string& what) {
  return absl::UnimplementedError(absl::StrCat(source, ": ", what));
}

LoraSite SiteOf(LoraTarget t) {
  switch (t) {
    case LoraTarget::kQ:
    case LoraTarget::kK:
    case LoraTarget::kV:
      return LoraSite::kQkv;
    case LoraTarget::kO:
      return LoraSite::kO;
    case LoraTarget::kGate:
    case LoraTarget::kUp:
      return LoraSite::kGateUp;
    case LoraTarget::kDown:
      return LoraSite::kDown;
  }
  return LoraSite::kQkv;
}

const char* ParentOf(LoraTarget t) { return t <= LoraTarget::kO ? "self_attn" : "mlp"; }

// in/out features of a projection, and its column offset inside its site's output.
struct Dims {
  int64_t in, out, out_offset;
};

Dims DimsOf(const ModelConfig& c, LoraTarget t) {
  switch (t) {
    case LoraTarget::kQ:
      return {c.hidden_size, c.q_dim(), 0};
    case LoraTarget::kK:
      return {c.hidden_size, c.kv_dim(), c.q_dim()};
    case LoraTarget::kV:
      return {c.hidden_size, c.kv_dim(), c.q_dim() + c.kv_dim()};
    case LoraTarget::kO:
      return {c.q_dim(), c.hidden_size, 0};
    case LoraTarget::kGate:
      return {c.hidden_size, c.intermediate_size, 0};
    case LoraTarget::kUp:
      return {c.hidden_size, c.intermediate_size, c.intermediate_size};
    case LoraTarget::kDown:
      return {c.intermediate_size, c.hidden_size, 0};
  }
  return {0, 0, 0};
}

// lora_alpha scales the adapter's update (by alpha / r): a negative one inverts it, and a huge
// one (1e308) turns every weight into infinity. Real adapters use small values (PEFT's default
// is 8; alpha = 2r for large ranks).
constexpr double kMaxLoraAlpha = 65536;

bool IsSaneAlpha(const json& v) {
  if (!v.is_number()) return false;
  const double a = v.get<double>();
  return std::isfinite(a) && a > 0 && a <= kMaxLoraAlpha;
}

bool JsonIsSet(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_array() || it->is_object() || it->is_string()) return !it->empty() && *it != "";
  return true;
}

absl::StatusOr<LoraConfig> ParseConfigJson(const json& j, const std::string& source) {
  LoraConfig c;
  auto peft = j.find("peft_type");
  if (peft == j.end()) return Bad(source, "missing 'peft_type' (expected \"LORA\")");
  if (!peft->is_string() || peft->get<std::string>() != "LORA")
    return Bad(source, absl::StrCat("peft_type is ", peft->dump(), ", expected \"LORA\""));
  auto r = j.find("r");
  if (r == j.end()) return Bad(source, "missing 'r'");
  if (!r->is_number_integer() || r->get<int64_t>() <= 0)
    return Bad(source, absl::StrCat("'r' must be a positive integer, got ", r->dump()));
  c.r = r->get<int64_t>();
  if (auto a = j.find("lora_alpha"); a != j.end() && !a->is_null()) {
    if (!IsSaneAlpha(*a))
      return Bad(source, absl::StrCat("'lora_alpha' must be a number in (0, ", kMaxLoraAlpha,
                                      "], got ", a->dump()));
    c.lora_alpha = a->get<double>();
  }
  c.use_rslora = j.value("use_rslora", false);
  if (JsonIsSet(j, "use_dora"))
    return Unsupported(source, "DoRA adapters (use_dora: true) are not supported");
  if (j.contains("bias") && j["bias"] != "none")
    return Unsupported(source, absl::StrCat("LoRA bias '", j["bias"].dump(),
                                            "' is not supported (only \"none\")"));
  if (JsonIsSet(j, "lora_bias")) return Unsupported(source, "lora_bias: true is not supported");
  if (JsonIsSet(j, "modules_to_save"))
    return Unsupported(source,
                       "modules_to_save (fully trained copies of base modules) is not supported");
  if (JsonIsSet(j, "fan_in_fan_out"))
    return Unsupported(source, "fan_in_fan_out: true is not supported for LLaMA");
  if (JsonIsSet(j, "layer_replication"))
    return Unsupported(source, "layer_replication is not supported");
  if (JsonIsSet(j, "trainable_token_indices"))
    return Unsupported(source, "trainable_token_indices is not supported");
  if (auto rp = j.find("rank_pattern"); rp != j.end() && rp->is_object()) {
    for (const auto& [k, v] : rp->items()) {
      if (!v.is_number_integer() || v.get<int64_t>() <= 0)
        return Bad(source, absl::StrCat("rank_pattern['", k, "'] must be a positive integer"));
      c.rank_pattern.emplace_back(k, v.get<int64_t>());
    }
  }
  if (auto ap = j.find("alpha_pattern"); ap != j.end() && ap->is_object()) {
    for (const auto& [k, v] : ap->items()) {
      if (!IsSaneAlpha(v))
        return Bad(source, absl::StrCat("alpha_pattern['", k, "'] must be a number in (0, ",
                                        kMaxLoraAlpha, "], got ", v.dump()));
      c.alpha_pattern.emplace_back(k, v.get<double>());
    }
  }
  if (auto t = j.find("target_modules"); t != j.end() && !t->is_null()) {
    if (t->is_string()) {
      c.target_regex = t->get<std::string>();
    } else if (t->is_array()) {
      for (const auto& name : *t) {
        if (!name.is_string()) return Bad(source, "target_modules must list module names");
        c.target_names.push_back(name.get<std::string>());
      }
    } else {
      return Bad(source, "target_modules must be a list of module names or a string");
    }
  }
  return c;
}

// PEFT's pattern lookup: the first key k with re.match(r"(.*\.)?(k)$", module_key).
template <typename T>
absl::StatusOr<std::optional<T>> PatternValue(
    const std::vector<std::pair<std::string, T>>& patterns, const std::string& key,
    const std::string& source) {
  for (const auto& [pattern, value] : patterns) {
    try {
      if (std::regex_match(key, std::regex("(.*\\.)?(" + pattern + ")")))
        return std::optional<T>(value);
    } catch (const std::regex_error&) {
      return Bad(source, absl::StrCat("pattern '", pattern, "' is not a valid regular expression"));
    }
  }
  return std::optional<T>();
}

absl::StatusOr<bool> Targeted(const LoraConfig& c, const std::string& key, LoraTarget t,
                              const std::string& source) {
  if (c.target_names.empty() && c.target_regex.empty())
    return true;  // not stated: trust the tensors
  if (!c.target_regex.empty()) {
    if (c.target_regex == "all-linear") return true;
    try {
      return std::regex_match(key, std::regex(c.target_regex));
    } catch (const std::regex_error&) {
      return Bad(source, absl::StrCat("target_modules '", c.target_regex,
                                      "' is not a valid regular expression"));
    }
  }
  const std::string name = kTargetNames[static_cast<int>(t)];
  for (const auto& n : c.target_names)
    if (n == name || key == n || (key.size() > n.size() && key.ends_with("." + n))) return true;
  return false;
}

struct Found {
  const TensorView* a = nullptr;
  const TensorView* b = nullptr;
};

}  // namespace

const char* LoraTargetName(LoraTarget t) { return kTargetNames[static_cast<int>(t)]; }

std::string LoraTensorName(int64_t layer, LoraTarget t, char which) {
  return absl::StrCat("base_model.model.model.layers.", layer, ".", ParentOf(t), ".",
                      LoraTargetName(t), ".lora_", std::string(1, which), ".weight");
}

absl::StatusOr<LoraConfig> ParseLoraConfig(const std::string& json_text,
                                           const std::string& source) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad(source, "not a valid JSON object");
  try {
    return ParseConfigJson(j, source);
  } catch (const json::exception& e) {
    return Bad(source, e.what());
  }
}

std::vector<LoraTarget> LoraAdapter::targets() const {
  std::vector<LoraTarget> out;
  for (int t = 0; t < kNumLoraTargets; ++t)
    if (present_[t]) out.push_back(static_cast<LoraTarget>(t));
  return out;
}

absl::StatusOr<std::shared_ptr<const LoraAdapter>> LoraAdapter::Load(const std::string& dir,
                                                                     const ModelConfig& m,
                                                                     int64_t max_rank) {
  namespace fs = std::filesystem;
  const fs::path cfg_path = fs::path(dir) / "adapter_config.json";
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(cfg_path.string()));
  const std::string src = cfg_path.string();
  ASSIGN_OR_RETURN(LoraConfig config, ParseLoraConfig(text, src));
  ASSIGN_OR_RETURN(auto store, TensorStore::OpenDirectory(dir, "adapter_model.safetensors",
                                                          "adapter_model.safetensors.index.json"));

  // Map every tensor to (layer, target, A|B); anything else is refused by name.
  static const std::regex kName(
      R"(base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.lora_(A|B)\.weight)");
  std::map<std::pair<int64_t, int>, Found> found;
  for (const std::string& name : store->Names()) {
    std::smatch mt;
    const TensorView* t = store->Find(name);
    if (!std::regex_match(name, mt, kName))
      return absl::InvalidArgumentError(
          absl::StrCat(store->description(), " has unsupported tensor '", name,
                       "' (only lora_A/lora_B of q/k/v/o/gate/up/down projections of decoder "
                       "layers are supported)"));
    const int64_t layer = std::stoll(mt[1].str());
    const std::string proj = mt[3].str() + "_proj";
    const int target =
        static_cast<int>(std::find(std::begin(kTargetNames), std::end(kTargetNames), proj) -
                         std::begin(kTargetNames));
    if (mt[2].str() != ParentOf(static_cast<LoraTarget>(target)))
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", *t->file, " puts ",
                                                     proj, " under ", mt[2].str()));
    if (layer >= m.num_hidden_layers)
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' in ", *t->file, " is for layer ", layer,
                       " but the base model has ", m.num_hidden_layers, " layers"));
    Found& f = found[{layer, target}];
    (mt[4].str() == "A" ? f.a : f.b) = t;
  }
  if (found.empty())
    return absl::InvalidArgumentError(absl::StrCat(store->description(), " holds no LoRA tensors"));

  auto a = std::make_shared<LoraAdapter>();
  a->dir_ = dir;
  a->config_ = config;
  a->layers_.resize(m.num_hidden_layers);
  std::vector<std::vector<std::pair<LoraModule, const TensorView*>>> staged(m.num_hidden_layers *
                                                                            kNumLoraSites);
  for (const auto& [key, f] : found) {
    const auto [layer, ti] = key;
    const LoraTarget target = static_cast<LoraTarget>(ti);
    const std::string a_name = LoraTensorName(layer, target, 'A'),
                      b_name = LoraTensorName(layer, target, 'B');
    if (f.a == nullptr || f.b == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("tensor '", f.a == nullptr ? a_name : b_name,
                                                     "' is missing from ", store->description(),
                                                     " (its pair is present)"));
    const std::string module_key =
        absl::StrCat("model.layers.", layer, ".", ParentOf(target), ".", LoraTargetName(target));
    ASSIGN_OR_RETURN(bool targeted, Targeted(config, module_key, target, src));
    if (!targeted)
      return absl::InvalidArgumentError(absl::StrCat("tensor '", a_name, "' adapts ", module_key,
                                                     ", which target_modules in ", src,
                                                     " does not name"));
    ASSIGN_OR_RETURN(auto rank_override, PatternValue(config.rank_pattern, module_key, src));
    ASSIGN_OR_RETURN(auto alpha_override, PatternValue(config.alpha_pattern, module_key, src));
    const int64_t rank = rank_override.value_or(config.r);
    const double alpha = alpha_override.value_or(config.lora_alpha);
    if (rank > max_rank)
      return absl::InvalidArgumentError(
          absl::StrCat("LoRA rank ", rank, " of ", module_key, " in ", dir,
                       " exceeds the server's maximum LoRA rank ", max_rank));
    const Dims d = DimsOf(m, target);
    ASSIGN_OR_RETURN(const TensorView* ta, store->Get(a_name, {rank, d.in}));
    LoraModule mod;
    mod.target = target;
    mod.rank = rank;
    mod.out_offset = d.out_offset;
    mod.out_dim = d.out;
    mod.scale = static_cast<float>(config.use_rslora ? alpha / std::sqrt(static_cast<double>(rank))
                                                     : alpha / rank);
    ASSIGN_OR_RETURN(mod.b, store->ReadFiniteF32(b_name, {d.out, rank}, mod.scale));
    a->present_[ti] = true;
    a->max_rank_ = std::max(a->max_rank_, rank);
    a->num_parameters_ += rank * (d.in + d.out);
    staged[layer * kNumLoraSites + static_cast<int>(SiteOf(target))].push_back(
        {std::move(mod), ta});
  }
  // Stack each site's A matrices (in target order) and keep the modules' B.
  for (int64_t layer = 0; layer < m.num_hidden_layers; ++layer) {
    for (int s = 0; s < kNumLoraSites; ++s) {
      auto& mods = staged[layer * kNumLoraSites + s];
      if (mods.empty()) continue;
      LoraSiteWeights& site = a->layers_[layer].sites[s];
      site.in_dim = DimsOf(m, mods[0].first.target).in;
      for (const auto& [mod, _] : mods) site.total_rank += mod.rank;
      site.a = AlignedBuffer(static_cast<size_t>(site.total_rank * site.in_dim));
      int64_t row = 0;
      for (auto& [mod, ta] : mods) {
        ASSIGN_OR_RETURN(AlignedBuffer a_f32, store->ReadFiniteF32(ta->name, ta->shape));
        std::copy(a_f32.data(), a_f32.data() + mod.rank * site.in_dim,
                  site.a.data() + row * site.in_dim);
        mod.a_offset = row;
        row += mod.rank;
        site.modules.push_back(std::move(mod));
      }
    }
  }
  return std::shared_ptr<const LoraAdapter>(std::move(a));
}

}  // namespace para
