#include "server/metrics.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_join.h"
#include "prometheus/text_serializer.h"
#include "server/service_state.h"

namespace para::server {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

// Bucket choices follow vLLM's, so dashboards built for it read ours the same way.
const Histogram::BucketBoundaries kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                                  0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                                  20.0,  40.0,  80.0, 160., 640., 2560.};
const Histogram::BucketBoundaries kTokenLatencyBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                                          0.3,  0.4,   0.5,  0.75,  1.0, 2.5,  5.0,
                                                          7.5,  10.0,  20.0, 40.0,  80.0};
const Histogram::BucketBoundaries kRequestLatencyBuckets = {
    0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,   5.0,   10.0,  15.0, 20.0,
    30.0, 40.0, 50.0, 60.0, 120., 240.0, 480.0, 960.0, 1920., 7680.};
const Histogram::BucketBoundaries kTokenCountBuckets = {
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& r, const char* name,
                                                 const char* help) {
  return BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& Gauge(prometheus::Registry& r, const char* name,
                                             const char* help) {
  return BuildGauge().Name(name).Help(help).Register(r);
}
Histogram& Hist(prometheus::Registry& r, const char* name, const char* help,
                const Histogram::BucketBoundaries& buckets) {
  return BuildHistogram().Name(name).Help(help).Register(r).Add({}, buckets);
}

const char* FinishLabel(const sched::FinishedRequest& r) {
  if (r.code == absl::StatusCode::kDeadlineExceeded) return "deadline_exceeded";
  if (r.code != absl::StatusCode::kOk) return "error";
  switch (r.finish_reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kNone:
      break;
  }
  return "error";
}

const char* CodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kCancelled:
      return "CANCELLED";
    case absl::StatusCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case absl::StatusCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case absl::StatusCode::kNotFound:
      return "NOT_FOUND";
    case absl::StatusCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case absl::StatusCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case absl::StatusCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case absl::StatusCode::kUnavailable:
      return "UNAVAILABLE";
    case absl::StatusCode::kUnauthenticated:
      return "UNAUTHENTICATED";
    case absl::StatusCode::kInternal:
      return "INTERNAL";
    default:
      return "OTHER";
  }
}

double Seconds(sched::TimeUs us) { return static_cast<double>(us) / 1e6; }

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

ServerMetrics::ServerMetrics(MetricsConfig config)
    : config_(config),
      registry_(std::make_shared<prometheus::Registry>()),
      requests_(Counter(*registry_, "para_requests_total",
                        "Generation requests that ended in the engine, by tenant, adapter ('' = "
                        "base model) and finish reason (stop, eos, length, cancelled, "
                        "deadline_exceeded, error)")),
      errors_(Counter(*registry_, "para_request_errors_total",
                      "Generation requests answered with an error, by API (grpc, http) and gRPC "
                      "status code name")),
      prompt_tokens_(Counter(*registry_, "para_prompt_tokens_total",
                             "Prompt tokens of requests that ended, by tenant and adapter")),
      generation_tokens_(Counter(*registry_, "para_generation_tokens_total",
                                 "Generated tokens of requests that ended, by tenant and adapter")),
      preemptions_(Counter(*registry_, "para_num_preemptions_total",
                           "Sequences preempted (recomputed later) to free KV cache blocks")
                       .Add({})),
      prefix_queries_(Counter(*registry_, "para_prefix_cache_queries_total",
                              "Prompt tokens looked up in the prefix cache")
                          .Add({})),
      prefix_hits_(Counter(*registry_, "para_prefix_cache_hits_total",
                           "Prompt tokens whose KV came from the prefix cache")
                       .Add({})),
      adapter_loads_(Counter(*registry_, "para_adapter_loads_total",
                             "Adapter loads that succeeded (including reloads from disk)")
                         .Add({})),
      adapter_load_failures_(Counter(*registry_, "para_adapter_load_failures_total",
                                     "Adapter loads refused or failed (including reloads)")
                                 .Add({})),
      adapter_evictions_(Counter(*registry_, "para_adapter_evictions_total",
                                 "Adapters moved to a lower residency tier to make room")
                             .Add({})),
      adapter_lazy_loads_(Counter(*registry_, "para_adapter_lazy_loads_total",
                                  "Adapters loaded from --adapter-dir on their first use "
                                  "(counted in para_adapter_loads_total too)")
                              .Add({})),
      ttft_(Hist(*registry_, "para_time_to_first_token_seconds",
                 "Time from submission to the first generated token", kTtftBuckets)),
      tpot_(Hist(*registry_, "para_time_per_output_token_seconds",
                 "Per request: (end - first token) / (generated tokens - 1)",
                 kTokenLatencyBuckets)),
      itl_(Hist(*registry_, "para_inter_token_latency_seconds",
                "Time between consecutive tokens of a request", kTokenLatencyBuckets)),
      e2e_(Hist(*registry_, "para_e2e_request_latency_seconds",
                "Time from submission to the end of a request", kRequestLatencyBuckets)),
      queue_(Hist(*registry_, "para_request_queue_time_seconds",
                  "Time from submission to the first admission into the batch",
                  kRequestLatencyBuckets)),
      prompt_len_(Hist(*registry_, "para_request_prompt_tokens", "Prompt length of requests",
                       kTokenCountBuckets)),
      generation_len_(Hist(*registry_, "para_request_generation_tokens",
                           "Generated tokens per request", kTokenCountBuckets)),
      running_(
          Gauge(*registry_, "para_num_requests_running", "Requests in the running batch").Add({})),
      waiting_(Gauge(*registry_, "para_num_requests_waiting",
                     "Requests queued for admission (including preempted ones)")
                   .Add({})),
      kv_usage_(Gauge(*registry_, "para_kv_cache_usage_perc",
                      "KV cache blocks in use, as a fraction of all blocks (0-1)")
                    .Add({})),
      kv_free_blocks_(
          Gauge(*registry_, "para_kv_cache_free_blocks", "Free KV cache blocks").Add({})),
      kv_blocks_(Gauge(*registry_, "para_kv_cache_blocks", "KV cache blocks in all").Add({})),
      adapters_(Gauge(*registry_, "para_adapters",
                      "Registered adapters by residency tier (device, host, disk)")),
      adapter_bytes_(Gauge(*registry_, "para_adapter_bytes",
                           "Bytes of adapter weights by residency tier (disk: not in memory)")),
      adapters_failed_(Gauge(*registry_, "para_adapters_failed",
                             "Manifest adapters that did not load at start (state FAILED)")
                           .Add({})),
      lora_info_(Gauge(*registry_, "para_lora_requests_info",
                       "LoRA adapters of running and waiting requests and the most a batch may "
                       "hold; the value is the Unix time of the update (vllm:lora_requests_info)")),
      adapter_info_(Gauge(*registry_, "para_adapter_requests_info",
                          "As para_lora_requests_info, for adapters of every type (PARA and "
                          "LoRA)")) {
  if (config_.vllm_compat) {
    const int32_t max_lora = config_.max_loras > 0 ? config_.max_loras : config_.max_num_seqs;
    vllm_ = std::make_unique<VllmCompatMetrics>(*registry_, config_.model_name, max_lora);
  }
}

void ServerMetrics::OnInterTokenLatency(sched::TimeUs us) { itl_.Observe(Seconds(us)); }

void ServerMetrics::OnRequestFinished(const sched::FinishedRequest& r) {
  requests_.Add({{"tenant", r.tenant}, {"adapter", r.adapter}, {"finish_reason", FinishLabel(r)}})
      .Increment();
  const prometheus::Labels who = {{"tenant", r.tenant}, {"adapter", r.adapter}};
  prompt_tokens_.Add(who).Increment(r.prompt_tokens);
  generation_tokens_.Add(who).Increment(r.generated_tokens);
  prompt_len_.Observe(r.prompt_tokens);
  generation_len_.Observe(r.generated_tokens);
  e2e_.Observe(Seconds(r.e2e_us));
  if (r.queue_us) queue_.Observe(Seconds(*r.queue_us));
  if (r.ttft_us) {
    ttft_.Observe(Seconds(*r.ttft_us));
    if (r.generated_tokens > 1)
      tpot_.Observe(Seconds(r.e2e_us - *r.ttft_us) / (r.generated_tokens - 1));
  }
}

void ServerMetrics::RecordError(const char* api, const absl::Status& status) {
  if (status.ok()) return;
  errors_.Add({{"api", api}, {"code", CodeName(status.code())}}).Increment();
}

void ServerMetrics::SetInfo(prometheus::Family<prometheus::Gauge>& family,
                            prometheus::Gauge** current, const prometheus::Labels& labels,
                            double value) {
  prometheus::Gauge& next = family.Add(labels);
  if (*current != nullptr && *current != &next) family.Remove(*current);
  *current = &next;
  next.Set(value);
}

void ServerMetrics::UpdateFromLoop(const sched::LoopSnapshot& s) {
  running_.Set(s.running);
  waiting_.Set(s.waiting);
  kv_blocks_.Set(s.kv_blocks_total);
  kv_free_blocks_.Set(s.kv_blocks_free);
  kv_usage_.Set(s.kv_blocks_total > 0
                    ? 1.0 - static_cast<double>(s.kv_blocks_free) / s.kv_blocks_total
                    : 0.0);
  preemptions_.Increment(static_cast<double>(s.scheduler.preemptions - seen_preemptions_));
  seen_preemptions_ = s.scheduler.preemptions;
  prefix_queries_.Increment(static_cast<double>(s.prefix_query_tokens - seen_prefix_queries_));
  seen_prefix_queries_ = s.prefix_query_tokens;
  prefix_hits_.Increment(static_cast<double>(s.prefix_hit_tokens - seen_prefix_hits_));
  seen_prefix_hits_ = s.prefix_hit_tokens;

  const double now = UnixNow();
  const int32_t max_lora = config_.max_loras > 0 ? config_.max_loras : config_.max_num_seqs;
  SetInfo(lora_info_, &lora_info_series_,
          {{"running_lora_adapters", absl::StrJoin(s.running_lora, ",")},
           {"waiting_lora_adapters", absl::StrJoin(s.waiting_lora, ",")},
           {"max_lora", std::to_string(max_lora)}},
          now);
  std::vector<std::string> running = s.running_lora, waiting = s.waiting_lora;
  running.insert(running.end(), s.running_para.begin(), s.running_para.end());
  waiting.insert(waiting.end(), s.waiting_para.begin(), s.waiting_para.end());
  std::sort(running.begin(), running.end());
  std::sort(waiting.begin(), waiting.end());
  SetInfo(adapter_info_, &adapter_info_series_,
          {{"running_lora_adapters", absl::StrJoin(running, ",")},
           {"waiting_lora_adapters", absl::StrJoin(waiting, ",")},
           {"max_lora", std::to_string(config_.max_num_seqs)}},
          now);
  if (vllm_) vllm_->Update(s, now);
}

void ServerMetrics::UpdateFromStore(const ServiceState& state) {
  const store::AdapterStore::Counts c = state.adapters->GetCounts();
  static_assert(static_cast<int>(store::Tier::kDisk) == 0 &&
                static_cast<int>(store::Tier::kHost) == 1 &&
                static_cast<int>(store::Tier::kDevice) == 2);
  static constexpr const char* kTiers[3] = {"disk", "host", "device"};
  for (int t = 0; t < 3; ++t) {
    adapters_.Add({{"tier", kTiers[t]}}).Set(static_cast<double>(c.adapters[t]));
    adapter_bytes_.Add({{"tier", kTiers[t]}}).Set(static_cast<double>(c.bytes[t]));
  }
  adapters_failed_.Set(static_cast<double>(c.failed_entries));
  adapter_loads_.Increment(static_cast<double>(c.loads - seen_loads_));
  adapter_load_failures_.Increment(static_cast<double>(c.load_failures - seen_load_failures_));
  adapter_evictions_.Increment(static_cast<double>(c.evictions - seen_evictions_));
  seen_loads_ = c.loads;
  seen_load_failures_ = c.load_failures;
  seen_evictions_ = c.evictions;
  adapter_lazy_loads_.Increment(static_cast<double>(c.lazy_loads - seen_lazy_loads_));
  seen_lazy_loads_ = c.lazy_loads;
}

std::string ServerMetrics::Scrape(const ServiceState& state) {
  std::lock_guard<std::mutex> lock(scrape_mu_);
  if (state.ready.load()) {
    UpdateFromLoop(state.loop->Snapshot());
    UpdateFromStore(state);
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace para::server
