// Prometheus metrics of one para-server process (prometheus-cpp), exposed by the HTTP listener's
// /metrics. Request metrics arrive from the engine loop (as its LoopListener) and from the front
// doors (errors they answer); gauges and mirrored counters (preemptions, adapter loads) are read
// from the loop's snapshot and the adapter store when a scrape comes in.
// Names follow Prometheus conventions (`para_` prefix, `_total` counters, base units) and the
// gauges the Kubernetes Gateway API Inference Extension reads are documented in docs/metrics.md.
// Ownership: owns its registry; borrows the ServiceState given to Scrape.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "scheduler/engine_loop.h"
#include "server/metrics_vllm.h"

namespace para::server {

struct ServiceState;

// What the scrape needs to know about the configuration.
struct MetricsConfig {
  int32_t max_num_seqs = 256;
  int32_t max_loras = 0;     // 0 = no limit
  bool vllm_compat = false;  // also export vLLM's names (metrics_vllm.h)
  std::string model_name;    // their model_name label
};

class ServerMetrics final : public sched::LoopListener {
 public:
  explicit ServerMetrics(MetricsConfig config);

  // sched::LoopListener (engine thread).
  void OnInterTokenLatency(sched::TimeUs us) override;
  void OnRequestFinished(const sched::FinishedRequest& r) override;

  // A generation request answered with an error by a front door (`api` is "grpc" or "http").
  void RecordError(const char* api, const absl::Status& status);

  // Updates the gauges from `state` (when it is ready) and returns the text exposition format.
  std::string Scrape(const ServiceState& state);

 private:
  void UpdateFromLoop(const sched::LoopSnapshot& s);
  void UpdateFromStore(const ServiceState& state);
  void SetInfo(prometheus::Family<prometheus::Gauge>& family, prometheus::Gauge** current,
               const prometheus::Labels& labels, double value);

  const MetricsConfig config_;
  std::shared_ptr<prometheus::Registry> registry_;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& errors_;
  prometheus::Family<prometheus::Counter>& prompt_tokens_;
  prometheus::Family<prometheus::Counter>& generation_tokens_;
  prometheus::Counter& preemptions_;
  prometheus::Counter& prefix_queries_;
  prometheus::Counter& prefix_hits_;
  prometheus::Counter& adapter_loads_;
  prometheus::Counter& adapter_load_failures_;
  prometheus::Counter& adapter_evictions_;
  prometheus::Counter& adapter_lazy_loads_;

  prometheus::Histogram& ttft_;
  prometheus::Histogram& tpot_;
  prometheus::Histogram& itl_;
  prometheus::Histogram& e2e_;
  prometheus::Histogram& queue_;
  prometheus::Histogram& prompt_len_;
  prometheus::Histogram& generation_len_;

  prometheus::Gauge& running_;
  prometheus::Gauge& waiting_;
  prometheus::Gauge& kv_usage_;
  prometheus::Gauge& kv_free_blocks_;
  prometheus::Gauge& kv_blocks_;
  prometheus::Family<prometheus::Gauge>& adapters_;
  prometheus::Family<prometheus::Gauge>& adapter_bytes_;
  prometheus::Gauge& adapters_failed_;
  prometheus::Family<prometheus::Gauge>& lora_info_;
  prometheus::Family<prometheus::Gauge>& adapter_info_;

  std::unique_ptr<VllmCompatMetrics> vllm_;  // with --metrics-compat vllm

  std::mutex scrape_mu_;  // one scrape at a time: mirrored counters and info series
  int64_t seen_preemptions_ = 0, seen_loads_ = 0, seen_load_failures_ = 0, seen_evictions_ = 0;
  int64_t seen_lazy_loads_ = 0;
  int64_t seen_prefix_queries_ = 0, seen_prefix_hits_ = 0;
  prometheus::Gauge* lora_info_series_ = nullptr;
  prometheus::Gauge* adapter_info_series_ = nullptr;
};

}  // namespace para::server
