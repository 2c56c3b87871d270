// para-bench's results: one record per measured request, and the summary vLLM's
// benchmark_serving reports (throughputs; TTFT, TPOT, ITL and end-to-end latency as mean, p50,
// p90, p99; goodput under SLOs), printed as a table or written as JSON. Pure; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace para::bench {

struct RequestRecord {
  int32_t tenant = 0;
  bool ok = false;
  std::string error;  // "CODE: message" when not ok
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;
  double ttft_s = 0;          // send -> first token
  double e2e_s = 0;           // send -> end
  std::vector<double> itl_s;  // gaps between token-carrying messages
};

struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2e_ms;
};

struct Percentiles {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  int64_t n = 0;
};

Percentiles Summarise(std::vector<double> values);

struct Summary {
  int64_t completed = 0, failed = 0;
  double duration_s = 0;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double request_throughput = 0;  // completed requests / s
  double output_throughput = 0;   // output tokens / s
  double total_throughput = 0;    // (prompt + output) tokens / s
  double goodput = 0;             // requests / s meeting every SLO given
  int64_t good = 0;
  Percentiles ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::vector<std::string> first_errors;  // up to 5 distinct
};

Summary Summarise(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo);
nlohmann::json ToJson(const Summary& s, const Slo& slo);
std::string ToTable(const Summary& s, const Slo& slo);

}  // namespace para::bench
