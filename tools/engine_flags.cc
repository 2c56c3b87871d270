#include "tools/engine_flags.h"

#include "common/status_macros.h"

namespace para::tools {

absl::StatusOr<EngineOptions> EngineOptionsFromArgs(const Args& args) {
  EngineOptions o;
  auto model = args.Get("model");
  if (!model) return absl::InvalidArgumentError("--model DIR is required");
  o.model_dir = *model;
  o.device = args.GetOr("device", "auto");
  const std::string prefix = args.GetOr("prefix-caching", "off");
  if (prefix != "on" && prefix != "off")
    return absl::InvalidArgumentError("--prefix-caching must be on or off");
  o.kv_cache.prefix_caching = prefix == "on";
  const std::string sampling = args.GetOr("device-sampling", "on");
  if (sampling != "on" && sampling != "off")
    return absl::InvalidArgumentError("--device-sampling must be on or off");
  o.device_sampling = sampling == "on";
  ASSIGN_OR_RETURN(o.dtype, ParseDTypeChoice(args.GetOr("dtype", "auto"), "--dtype"));
  ASSIGN_OR_RETURN(o.kv_cache_dtype,
                   ParseDTypeChoice(args.GetOr("kv-cache-dtype", "auto"), "--kv-cache-dtype"));
  ASSIGN_OR_RETURN(int64_t bs, args.Int("block-size", 16));
  ASSIGN_OR_RETURN(int64_t blocks, args.Int("kv-cache-blocks", 0));
  ASSIGN_OR_RETURN(int64_t bytes, args.Int("kv-cache-bytes", 1ll << 30));
  ASSIGN_OR_RETURN(int64_t threads, args.Int("threads", 0));
  ASSIGN_OR_RETURN(int64_t max_len, args.Int("max-model-len", 0));
  ASSIGN_OR_RETURN(o.max_lora_rank, args.Int("max-lora-rank", o.max_lora_rank));
  if (o.max_lora_rank < 1) return absl::InvalidArgumentError("--max-lora-rank must be >= 1");
  if (blocks < 0 || bytes <= 0 || threads < 0 || max_len < 0)
    return absl::InvalidArgumentError(
        "--kv-cache-blocks, --kv-cache-bytes, --threads and --max-model-len must not be negative");
  o.kv_cache.block_size = static_cast<int32_t>(bs);
  o.kv_cache.num_blocks = static_cast<int32_t>(blocks);
  o.kv_cache.bytes = bytes;
  o.num_threads = static_cast<int>(threads);
  o.max_model_len = max_len;
  return o;
}

std::set<std::string> Union(std::set<std::string> a, const std::set<std::string>& b) {
  a.insert(b.begin(), b.end());
  return a;
}

}  // namespace para::tools
