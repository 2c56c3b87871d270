// The workload of para-bench: which tenant sends each request (uniform, Zipf or every tenant in
// turn), when it arrives (Poisson, gamma with a burstiness factor, or closed loop), and its prompt
// and output lengths (fixed, uniform, or from a JSONL dataset). Deterministic for a seed.
// Thread-safety: none; one generator per thread.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace para::bench {

enum class Popularity { kUniform, kZipf, kAllDistinct };

struct Range {
  int32_t lo = 0, hi = 0;  // inclusive; lo == hi is a fixed value
};

// "128" or "64:256".
absl::StatusOr<Range> ParseRange(const std::string& text);
absl::StatusOr<Popularity> ParsePopularity(const std::string& text);

struct DatasetEntry {
  std::string prompt;               // text prompt, or
  std::vector<int32_t> prompt_ids;  // token ids
  std::optional<int32_t> max_tokens;
};

// One JSON object per line with "prompt" (text) or "prompt_ids", and optionally "max_tokens".
absl::StatusOr<std::vector<DatasetEntry>> LoadDataset(const std::string& path);

struct PlannedRequest {
  int32_t tenant = 0;
  std::string prompt;
  std::vector<int32_t> prompt_ids;
  int32_t max_tokens = 0;
};

struct WorkloadOptions {
  int32_t tenants = 1;
  Popularity popularity = Popularity::kUniform;
  double zipf_s = 1.1;
  Range input_len{128, 128};
  Range output_len{128, 128};
  int32_t vocab_size = 32000;
  int32_t first_token_id = 3;  // random prompts avoid the special tokens below this
  uint64_t seed = 0;
  // Random prompts start with the same this many tokens (a shared system prompt), then their own.
  int32_t shared_prefix_len = 0;
};

class Workload {
 public:
  Workload(WorkloadOptions options, std::vector<DatasetEntry> dataset);
  PlannedRequest Next();

 private:
  int32_t PickTenant();
  WorkloadOptions options_;
  std::vector<DatasetEntry> dataset_;
  std::mt19937_64 rng_;
  std::vector<double> zipf_cdf_;
  std::vector<int32_t> shared_prefix_;
  int64_t count_ = 0;
};

// Inter-arrival times for an open loop at `rate` requests/s: exponential (burstiness 1, a
// Poisson process) or gamma with shape `burstiness` (< 1 burstier, > 1 more regular), same mean.
class Arrivals {
 public:
  Arrivals(double rate, double burstiness, uint64_t seed);
  double NextGapSeconds();

 private:
  std::mt19937_64 rng_;
  std::gamma_distribution<double> gamma_;
};

}  // namespace para::bench
