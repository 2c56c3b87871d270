// The metric names vLLM exports that routers read without configuration (the Gateway API
// Inference Extension's endpoint picker with its default engine config):
// vllm:num_requests_waiting, vllm:num_requests_running, vllm:kv_cache_usage_perc (each with a
// model_name label), vllm:lora_requests_info (PARA adapters listed beside LoRA ones) and
// vllm:cache_config_info{block_size,num_gpu_blocks}. Registered beside the para_ metrics when
// para-server runs with --metrics-compat vllm; the para_ names stay.
// Ownership: the families live in the registry given to the constructor.
// Thread-safety: Update is called under ServerMetrics' scrape lock (one at a time).
#pragma once

#include <string>

#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "scheduler/engine_loop.h"

namespace para::server {

class VllmCompatMetrics {
 public:
  // `max_lora` is the most adapters a batch may hold (the info series' max_lora label).
  VllmCompatMetrics(prometheus::Registry& registry, std::string model_name, int32_t max_lora);

  // Sets every series from the loop's snapshot; `now` is the Unix time for the info series.
  void Update(const sched::LoopSnapshot& s, double now);

 private:
  const std::string model_name_;
  const int32_t max_lora_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& running_;
  prometheus::Gauge& kv_usage_;
  prometheus::Family<prometheus::Gauge>& lora_info_;
  prometheus::Family<prometheus::Gauge>& cache_info_;
  prometheus::Gauge* lora_series_ = nullptr;
  prometheus::Gauge* cache_series_ = nullptr;
};

}  // namespace para::server
