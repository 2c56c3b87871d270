#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace para {
namespace {

int32_t ArgMax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Sorts ids (descending by value) so that the first `k` are the k largest, in order.
void TopKSorted(const std::vector<float>& values, std::vector<int32_t>* ids, int64_t k) {
  auto greater = [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  };
  if (k < static_cast<int64_t>(ids->size())) {
    std::nth_element(ids->begin(), ids->begin() + k, ids->end(), greater);
    ids->resize(k);
  }
  std::sort(ids->begin(), ids->end(), greater);
}

// Draws from exp(values[ids[i]] - max) restricted to ids (in order).
int32_t Draw(const std::vector<float>& values, const std::vector<int32_t>& ids, int64_t n,
             float max_value, std::mt19937_64* rng) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += std::exp(static_cast<double>(values[ids[i]] - max_value));
  const double u = UniformDouble(rng) * total;
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc += std::exp(static_cast<double>(values[ids[i]] - max_value));
    if (u < acc) return ids[i];
  }
  return ids[n - 1];
}

}  // namespace

bool AllFinite(std::span<const float> values) {
  // x * 0 is 0 for a finite x and NaN otherwise; 16 independent sums let the loop vectorize.
  constexpr size_t kLanes = 16;
  float acc[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= values.size(); i += kLanes)
    for (size_t l = 0; l < kLanes; ++l) acc[l] += values[i + l] * 0.0f;
  for (; i < values.size(); ++i) acc[0] += values[i] * 0.0f;
  float sum = 0;
  for (float a : acc) sum += a;
  return sum == 0.0f;
}

absl::Status ValidateSamplingParams(const SamplingParams& p, int32_t max_logprobs) {
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", p.temperature));
  if (p.top_k < -1)
    return absl::InvalidArgumentError(
        absl::StrCat("top_k must be >= 0 (or -1 for off), got ", p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1))
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("repetition_penalty must be > 0, got ", p.repetition_penalty));
  for (const auto& [name, v] :
       {std::pair<const char*, float>{"presence_penalty", p.presence_penalty},
        {"frequency_penalty", p.frequency_penalty}})
    if (!(v >= -2.0f && v <= 2.0f))
      return absl::InvalidArgumentError(absl::StrCat(name, " must be in [-2, 2], got ", v));
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return absl::InvalidArgumentError(absl::StrCat("min_p must be in [0, 1], got ", p.min_p));
  for (const auto& [id, bias] : p.logit_bias)
    if (!(bias >= -100.0f && bias <= 100.0f))
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias for token ", id, " must be in [-100, 100], got ", bias));
  for (const auto& lp : {p.logprobs, p.prompt_logprobs}) {
    if (lp && (*lp < 0 || *lp > max_logprobs))
      return absl::InvalidArgumentError(
          absl::StrCat("logprobs must be in [0, ", max_logprobs, "], got ", *lp));
  }
  return absl::OkStatus();
}

namespace {

// Everything that shifts logits before temperature: min_tokens suppression, logit bias and the
// penalties, applied to `v` (a copy of the logits).
void AdjustLogits(const SamplingParams& params, const SamplingHistory& h, std::vector<float>* v) {
  const int64_t vocab = static_cast<int64_t>(v->size());
  auto valid = [&](int32_t id) { return id >= 0 && id < vocab; };
  for (int32_t id : h.suppressed)
    if (valid(id)) (*v)[id] = -INFINITY;
  for (const auto& [id, bias] : params.logit_bias)
    if (valid(id)) (*v)[id] += bias;
  if (params.repetition_penalty != 1.0f) {
    for (int32_t id : h.penalized) {
      if (!valid(id)) continue;
      float& x = (*v)[id];
      x = x > 0 ? x / params.repetition_penalty : x * params.repetition_penalty;
    }
  }
  if (params.presence_penalty != 0.0f || params.frequency_penalty != 0.0f) {
    for (const auto& [id, count] : h.output_counts)
      if (valid(id)) (*v)[id] -= params.presence_penalty + params.frequency_penalty * count;
  }
}

}  // namespace

int32_t SampleToken(std::span<const float> logits, const SamplingParams& params,
                    const SamplingHistory& history, std::mt19937_64* rng, SamplerScratch* scratch) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  std::vector<float>& v = scratch->values;
  v.assign(logits.begin(), logits.end());
  AdjustLogits(params, history, &v);
  if (params.temperature == 0.0f || params.top_k == 1) return ArgMax(v);
  const float inv_t = 1.0f / params.temperature;
  for (float& x : v) x *= inv_t;
  std::vector<int32_t>& ids = scratch->ids;
  const bool top_k_on = params.top_k > 0 && params.top_k < vocab;
  if (!top_k_on && params.top_p >= 1.0f && params.min_p <= 0.0f) {  // the whole vocabulary
    ids.resize(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    return Draw(v, ids, vocab, *std::max_element(v.begin(), v.end()), rng);
  }
  ids.resize(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  // Top-p without top-k: try the 1024 largest first, fall back to a full sort if they do not
  // hold top_p of the mass.
  int64_t k = top_k_on ? params.top_k : std::min<int64_t>(vocab, 1024);
  const float max_value = *std::max_element(v.begin(), v.end());
  double total = 0;
  if (top_k_on) {
    TopKSorted(v, &ids, k);
    for (int32_t id : ids) total += std::exp(static_cast<double>(v[id] - max_value));
  } else {
    for (float x : v) total += std::exp(static_cast<double>(x - max_value));
    std::vector<int32_t> all = ids;
    TopKSorted(v, &ids, k);
    double mass = 0;
    for (int32_t id : ids) mass += std::exp(static_cast<double>(v[id] - max_value));
    if (mass < params.top_p * total) {
      ids = std::move(all);
      TopKSorted(v, &ids, vocab);
    }
  }
  int64_t keep = static_cast<int64_t>(ids.size());
  if (params.top_p < 1.0f) {
    double acc = 0;
    for (int64_t i = 0; i < keep; ++i) {
      acc += std::exp(static_cast<double>(v[ids[i]] - max_value));
      if (acc >= params.top_p * total) {
        keep = i + 1;
        break;
      }
    }
  }
  if (params.min_p > 0.0f) {  // ids are sorted: keep those at least min_p × the top probability
    const float floor = max_value + std::log(params.min_p);
    while (keep > 1 && v[ids[keep - 1]] < floor) --keep;
  }
  return Draw(v, ids, keep, max_value, rng);
}

std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int32_t k,
                                      SamplerScratch* scratch) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float max_value = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float x : logits) total += std::exp(static_cast<double>(x - max_value));
  const double log_z = max_value + std::log(total);
  std::vector<int32_t>& ids = scratch->ids;
  ids.resize(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  scratch->values.assign(logits.begin(), logits.end());
  TopKSorted(scratch->values, &ids, std::min<int64_t>(k, vocab));
  std::vector<TokenLogprob> out;
  out.reserve(ids.size());
  for (int32_t id : ids) out.push_back({id, static_cast<float>(logits[id] - log_z)});
  return out;
}

LogprobEntry ComputeLogprobs(std::span<const float> logits, int32_t token, int32_t top_n,
                             SamplerScratch* scratch) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const float max_value = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float x : logits) total += std::exp(static_cast<double>(x - max_value));
  const double log_z = max_value + std::log(total);
  LogprobEntry e;
  e.token = token;
  e.logprob = static_cast<float>(logits[token] - log_z);
  const float mine = logits[token];
  int32_t above = 0;
  for (float x : logits) above += x > mine;
  e.rank = above + 1;
  if (top_n > 0) {
    std::vector<int32_t>& ids = scratch->ids;
    ids.resize(vocab);
    std::iota(ids.begin(), ids.end(), 0);
    scratch->values.assign(logits.begin(), logits.end());
    TopKSorted(scratch->values, &ids, std::min<int64_t>(top_n, vocab));
    for (int32_t id : ids) e.top.push_back({id, static_cast<float>(logits[id] - log_z)});
  }
  return e;
}

}  // namespace para
