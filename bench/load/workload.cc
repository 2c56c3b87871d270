#include "bench/load/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace para::bench {

absl::StatusOr<Range> ParseRange(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  Range r;
  if (parts.size() > 2 || !absl::SimpleAtoi(parts[0], &r.lo) ||
      (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &r.hi)))
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not N or LO:HI"));
  if (parts.size() == 1) r.hi = r.lo;
  if (r.lo < 1 || r.hi < r.lo)
    return absl::InvalidArgumentError(absl::StrCat("'", text, "': need 1 <= LO <= HI"));
  return r;
}

absl::StatusOr<Popularity> ParsePopularity(const std::string& text) {
  if (text == "uniform") return Popularity::kUniform;
  if (text == "zipf") return Popularity::kZipf;
  if (text == "distinct" || text == "all-distinct") return Popularity::kAllDistinct;
  return absl::InvalidArgumentError(
      absl::StrCat("popularity '", text, "': use uniform, zipf or distinct"));
}

absl::StatusOr<std::vector<DatasetEntry>> LoadDataset(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open dataset ", path));
  std::vector<DatasetEntry> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    auto bad = [&](const char* why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": ", why));
    };
    if (!j.is_object()) return bad("not a JSON object");
    DatasetEntry e;
    if (auto p = j.find("prompt"); p != j.end() && p->is_string() && !p->empty()) {
      e.prompt = p->get<std::string>();
    } else if (auto ids = j.find("prompt_ids");
               ids != j.end() && ids->is_array() && !ids->empty()) {
      for (const auto& id : *ids) {
        if (!id.is_number_integer()) return bad("prompt_ids must be integers");
        e.prompt_ids.push_back(id.get<int32_t>());
      }
    } else {
      return bad("needs a non-empty \"prompt\" or \"prompt_ids\"");
    }
    if (auto m = j.find("max_tokens"); m != j.end()) {
      if (!m->is_number_integer() || m->get<int64_t>() < 1) return bad("max_tokens must be >= 1");
      e.max_tokens = m->get<int32_t>();
    }
    out.push_back(std::move(e));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " has no requests"));
  return out;
}

Workload::Workload(WorkloadOptions options, std::vector<DatasetEntry> dataset)
    : options_(options), dataset_(std::move(dataset)), rng_(options.seed) {
  if (options_.popularity == Popularity::kZipf) {
    double sum = 0;
    for (int32_t i = 1; i <= options_.tenants; ++i) {
      sum += 1.0 / std::pow(i, options_.zipf_s);
      zipf_cdf_.push_back(sum);
    }
    for (double& c : zipf_cdf_) c /= sum;
  }
}

int32_t Workload::PickTenant() {
  switch (options_.popularity) {
    case Popularity::kAllDistinct:
      return static_cast<int32_t>(count_ % options_.tenants);
    case Popularity::kZipf: {
      const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
      return static_cast<int32_t>(std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u) -
                                  zipf_cdf_.begin());
    }
    case Popularity::kUniform:
      break;
  }
  return std::uniform_int_distribution<int32_t>(0, options_.tenants - 1)(rng_);
}

PlannedRequest Workload::Next() {
  PlannedRequest r;
  r.tenant = PickTenant();
  auto draw = [&](Range range) {
    return std::uniform_int_distribution<int32_t>(range.lo, range.hi)(rng_);
  };
  r.max_tokens = draw(options_.output_len);
  if (!dataset_.empty()) {
    const DatasetEntry& e = dataset_[count_ % dataset_.size()];
    r.prompt = e.prompt;
    r.prompt_ids = e.prompt_ids;
    if (e.max_tokens) r.max_tokens = *e.max_tokens;
  } else {
    const int32_t n = draw(options_.input_len);
    std::uniform_int_distribution<int32_t> token(options_.first_token_id, options_.vocab_size - 1);
    if (shared_prefix_.empty() && options_.shared_prefix_len > 0) {
      std::mt19937_64 fixed(options_.seed ^ 0x5AA12Eull);  // the same for every request
      shared_prefix_.push_back(1);                         // BOS
      for (int32_t i = 1; i < options_.shared_prefix_len; ++i)
        shared_prefix_.push_back(token(fixed));
    }
    r.prompt_ids = shared_prefix_;
    if (r.prompt_ids.empty()) r.prompt_ids.push_back(1);  // BOS
    for (int32_t i = static_cast<int32_t>(r.prompt_ids.size()); i < n + options_.shared_prefix_len;
         ++i)
      r.prompt_ids.push_back(token(rng_));
  }
  ++count_;
  return r;
}

Arrivals::Arrivals(double rate, double burstiness, uint64_t seed)
    : rng_(seed), gamma_(burstiness, 1.0 / (rate * burstiness)) {}

double Arrivals::NextGapSeconds() { return gamma_(rng_); }

}  // namespace para::bench
