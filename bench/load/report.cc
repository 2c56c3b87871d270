#include "bench/load/report.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace para::bench {
namespace {

// Linear interpolation between closest ranks (numpy's default percentile).
double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

double TpotMs(const RequestRecord& r) {
  return r.output_tokens > 1 ? (r.e2e_s - r.ttft_s) * 1e3 / (r.output_tokens - 1) : 0.0;
}

bool MeetsSlo(const RequestRecord& r, const Slo& slo) {
  if (slo.ttft_ms && r.ttft_s * 1e3 > *slo.ttft_ms) return false;
  if (slo.tpot_ms && TpotMs(r) > *slo.tpot_ms) return false;
  if (slo.e2e_ms && r.e2e_s * 1e3 > *slo.e2e_ms) return false;
  return true;
}

nlohmann::json PercentilesJson(const Percentiles& p) {
  return {{"mean", p.mean}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"n", p.n}};
}

}  // namespace

Percentiles Summarise(std::vector<double> values) {
  Percentiles p;
  p.n = static_cast<int64_t>(values.size());
  if (values.empty()) return p;
  std::sort(values.begin(), values.end());
  p.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  p.p50 = Quantile(values, 0.50);
  p.p90 = Quantile(values, 0.90);
  p.p99 = Quantile(values, 0.99);
  return p;
}

Summary Summarise(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo) {
  Summary s;
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestRecord& r : records) {
    if (!r.ok) {
      ++s.failed;
      if (s.first_errors.size() < 5 &&
          std::find(s.first_errors.begin(), s.first_errors.end(), r.error) == s.first_errors.end())
        s.first_errors.push_back(r.error);
      continue;
    }
    ++s.completed;
    s.prompt_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s * 1e3);
    if (r.output_tokens > 1) tpot.push_back(TpotMs(r));
    for (double g : r.itl_s) itl.push_back(g * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    if (MeetsSlo(r, slo)) ++s.good;
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_throughput = static_cast<double>(s.prompt_tokens + s.output_tokens) / duration_s;
    s.goodput = static_cast<double>(s.good) / duration_s;
  }
  s.ttft_ms = Summarise(std::move(ttft));
  s.tpot_ms = Summarise(std::move(tpot));
  s.itl_ms = Summarise(std::move(itl));
  s.e2e_ms = Summarise(std::move(e2e));
  return s;
}

nlohmann::json ToJson(const Summary& s, const Slo& slo) {
  nlohmann::json slos = nlohmann::json::object();
  if (slo.ttft_ms) slos["ttft_ms"] = *slo.ttft_ms;
  if (slo.tpot_ms) slos["tpot_ms"] = *slo.tpot_ms;
  if (slo.e2e_ms) slos["e2e_ms"] = *slo.e2e_ms;
  return {{"completed", s.completed},
          {"failed", s.failed},
          {"duration_s", s.duration_s},
          {"prompt_tokens", s.prompt_tokens},
          {"output_tokens", s.output_tokens},
          {"request_throughput", s.request_throughput},
          {"output_throughput", s.output_throughput},
          {"total_throughput", s.total_throughput},
          {"goodput", s.goodput},
          {"good_requests", s.good},
          {"slo", slos},
          {"ttft_ms", PercentilesJson(s.ttft_ms)},
          {"tpot_ms", PercentilesJson(s.tpot_ms)},
          {"itl_ms", PercentilesJson(s.itl_ms)},
          {"e2e_ms", PercentilesJson(s.e2e_ms)},
          {"errors", s.first_errors}};
}

std::string ToTable(const Summary& s, const Slo& slo) {
  std::string out;
  auto row = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&out, absl::StrFormat("%-36s %s\n", k, v));
  };
  absl::StrAppend(&out, "============ para-bench result ============\n");
  row("Completed requests:", absl::StrCat(s.completed));
  row("Failed requests:", absl::StrCat(s.failed));
  row("Duration (s):", absl::StrFormat("%.2f", s.duration_s));
  row("Prompt tokens:", absl::StrCat(s.prompt_tokens));
  row("Output tokens:", absl::StrCat(s.output_tokens));
  row("Request throughput (req/s):", absl::StrFormat("%.3f", s.request_throughput));
  row("Output token throughput (tok/s):", absl::StrFormat("%.2f", s.output_throughput));
  row("Total token throughput (tok/s):", absl::StrFormat("%.2f", s.total_throughput));
  if (slo.ttft_ms || slo.tpot_ms || slo.e2e_ms)
    row("Goodput (req/s):",
        absl::StrFormat("%.3f (%d of %d within the SLOs)", s.goodput, s.good, s.completed));
  for (const auto& [name, p] : {std::pair<const char*, const Percentiles&>{"TTFT", s.ttft_ms},
                                {"TPOT", s.tpot_ms},
                                {"ITL", s.itl_ms},
                                {"E2E latency", s.e2e_ms}}) {
    absl::StrAppend(&out, absl::StrFormat("---------- %s (ms) ----------\n", name));
    row("  mean / p50:", absl::StrFormat("%.2f / %.2f", p.mean, p.p50));
    row("  p90 / p99:", absl::StrFormat("%.2f / %.2f", p.p90, p.p99));
  }
  for (const std::string& e : s.first_errors) row("Error:", e);
  return out;
}

}  // namespace para::bench
