#include "server/metrics_vllm.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_join.h"

namespace para::server {
namespace {

prometheus::Family<prometheus::Gauge>& Family(prometheus::Registry& r, const char* name,
                                              const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}

// Replaces the family's one series by the one with `labels` (info metrics: labels change).
prometheus::Gauge* Swap(prometheus::Family<prometheus::Gauge>& family, prometheus::Gauge* current,
                        const prometheus::Labels& labels, double value) {
  prometheus::Gauge& next = family.Add(labels);
  if (current != nullptr && current != &next) family.Remove(current);
  next.Set(value);
  return &next;
}

std::string Names(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  std::sort(a.begin(), a.end());
  return absl::StrJoin(a, ",");
}

}  // namespace

VllmCompatMetrics::VllmCompatMetrics(prometheus::Registry& registry, std::string model_name,
                                     int32_t max_lora)
    : model_name_(std::move(model_name)),
      max_lora_(max_lora),
      waiting_(Family(registry, "vllm:num_requests_waiting",
                      "Requests queued for admission (as para_num_requests_waiting)")
                   .Add({{"model_name", model_name_}})),
      running_(Family(registry, "vllm:num_requests_running",
                      "Requests in the running batch (as para_num_requests_running)")
                   .Add({{"model_name", model_name_}})),
      kv_usage_(Family(registry, "vllm:kv_cache_usage_perc",
                       "KV cache blocks in use, fraction 0-1 (as para_kv_cache_usage_perc)")
                    .Add({{"model_name", model_name_}})),
      lora_info_(Family(registry, "vllm:lora_requests_info",
                        "Adapters (LoRA and PARA) of running and waiting requests and the most a "
                        "batch may hold; the value is the Unix time of the update")),
      cache_info_(Family(registry, "vllm:cache_config_info",
                         "KV cache configuration: block_size (positions per block) and "
                         "num_gpu_blocks (blocks in the pool); the value is 1")) {}

void VllmCompatMetrics::Update(const sched::LoopSnapshot& s, double now) {
  waiting_.Set(s.waiting);
  running_.Set(s.running);
  kv_usage_.Set(s.kv_blocks_total > 0
                    ? 1.0 - static_cast<double>(s.kv_blocks_free) / s.kv_blocks_total
                    : 0.0);
  lora_series_ = Swap(lora_info_, lora_series_,
                      {{"running_lora_adapters", Names(s.running_lora, s.running_para)},
                       {"waiting_lora_adapters", Names(s.waiting_lora, s.waiting_para)},
                       {"max_lora", std::to_string(max_lora_)}},
                      now);
  cache_series_ = Swap(cache_info_, cache_series_,
                       {{"block_size", std::to_string(s.block_size)},
                        {"num_gpu_blocks", std::to_string(s.kv_blocks_total)}},
                       1.0);
}

}  // namespace para::server
