// Logits processing and sampling of one row, written once for the device sampler kernel
// (kernels.cu's SampleKernel: one thread block per draw) and for the CPU, where the same code runs
// with the block's threads emulated one after another (tests/engine/cuda_sample_math_test.cc
// checks it against engine/sampling.cc's SampleToken and ComputeLogprobs with the g++ build).
//
// The order and semantics are engine/sampling.h's: min_tokens suppression, logit bias, repetition
// penalty, presence and frequency penalties, temperature, top-k, top-p (on the largest 1024 first,
// the whole vocabulary when those do not hold top_p of the mass), min-p, then one draw with the
// uniform number the host took from the sequence's RNG; log-probabilities (token, rank, top-n)
// are those of the raw logits. Candidates are ordered by value, then lower id, as on the host.
// Sums of probabilities are doubles added per thread chunk and then across chunks in order, so a
// result never depends on timing; they are associated differently from the host's single loop,
// so a draw can differ from the host's only where the uniform falls within rounding of a
// boundary between two tokens.
//
// Structure: the work is a sequence of phases. Phase(f) runs f(t) for every thread t of the
// block, with a barrier before and after on the device; values that decide control flow are read
// from SampleShared between phases, so every thread takes the same branches. Pure functions of
// their arguments and the row's scratch; one block (or one CPU thread) per row.
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/cuda/kernel_math.h"

namespace para::cuda {

inline constexpr int kSampleThreads = 256;
inline constexpr int32_t kSampleFirstK = 1024;  // top-p without top-k: the largest 1024 first

// A logit-bias entry (value = bias) or an output count (value = count).
struct SampleEdit {
  int32_t id;
  float value;
};

// One draw: which row of logits, the sampling parameters, the uniform number, what to report,
// and where its history lies in the step's edit arrays (ids: `edit_ids`; pairs: `edits`).
struct SampleRowDesc {
  int32_t logit_row;
  float temperature;
  int32_t top_k;
  float top_p, min_p;
  float repetition_penalty, presence_penalty, frequency_penalty;
  double uniform;        // in [0, 1); used only when the draw is not greedy
  int32_t top_n;         // -1: no log-probabilities; else the chosen token's and top_n alternatives
  int32_t forced_token;  // >= 0: no draw, this token is reported (prompt log-probabilities)
  int32_t suppressed_begin, suppressed_count;  // in edit_ids
  int32_t penalized_begin, penalized_count;    // in edit_ids (distinct)
  int32_t bias_begin, bias_count;              // in edits, applied in order
  int32_t counts_begin, counts_count;          // in edits (distinct ids)
};

struct SampleRowOut {
  int32_t token;   // -1 when the row is not finite
  float logprob;   // of the token under the raw logits (when top_n >= 0)
  int32_t rank;    // 1 + tokens more likely than it (when top_n >= 0)
  int32_t finite;  // 0 when a raw logit is NaN or infinite: nothing was drawn
};

// A row's scratch: the adjusted logits, and candidate keys and ids for SortCapacity(vocab).
struct SampleScratch {
  float* v;
  uint32_t* keys;
  int32_t* ids;
};

PARA_HD int64_t SortCapacity(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// An order-preserving key: a > b as floats (no NaN) iff Key(a) > Key(b); -0 and +0 are one key.
PARA_HD uint32_t OrderedKey(float f) {
  const uint32_t bits = f == 0.0f ? 0u : FloatToBits(f);
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

// Candidate a comes before candidate b: larger value first, lower id on equal values.
PARA_HD bool Before(uint32_t ka, int32_t ia, uint32_t kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Thread t's contiguous part [begin, end) of n items.
PARA_HD int64_t ChunkBegin(int t, int64_t n) {
  const int64_t c = CeilDiv(n, kSampleThreads);
  const int64_t b = static_cast<int64_t>(t) * c;
  return b < n ? b : n;
}
PARA_HD int64_t ChunkEnd(int t, int64_t n) { return ChunkBegin(t + 1, n); }

PARA_HD bool IsFiniteF(float x) { return x - x == 0.0f; }

PARA_HD void SharedIncrement(int32_t* p) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, 1);
#else
  ++*p;
#endif
}

template <class F>
PARA_HD void Phase(F&& f) {
#if defined(__CUDA_ARCH__)
  __syncthreads();
  f(static_cast<int>(threadIdx.x));
  __syncthreads();
#else
  for (int t = 0; t < kSampleThreads; ++t) f(t);
#endif
}

// Per-block state (shared memory on the device).
struct SampleShared {
  double dsum[kSampleThreads];
  int32_t cnt[kSampleThreads];
  int32_t cnt2[kSampleThreads];
  float fval[kSampleThreads];
  int32_t ival[kSampleThreads];
  int32_t hist[256];
  // Results of the last reduction (written by thread 0, read after the phase).
  float max;
  int32_t index;
  int32_t count;
  double total;
  uint32_t prefix;
  int32_t need;
};

// A view of candidates: element i is src[ids[i]] (or src[i] when ids is null).
struct SampleView {
  const float* src;
  const int32_t* ids;
  PARA_HD int32_t Id(int64_t i) const { return ids != nullptr ? ids[i] : static_cast<int32_t>(i); }
  PARA_HD float At(int64_t i) const { return src[Id(i)]; }
};

// sh->max = the largest of the first n; sh->index = the first position holding it; sh->count = 1
// when all are finite, else 0.
PARA_HD void RowMax(SampleView x, int64_t n, SampleShared* sh) {
  Phase([&](int t) {
    float m = kNegInf;
    int32_t at = -1, finite = 1;
    for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) {
      const float v = x.At(i);
      finite &= IsFiniteF(v) ? 1 : 0;
      if (at < 0 || v > m) m = v, at = static_cast<int32_t>(i);
    }
    sh->fval[t] = m;
    sh->ival[t] = at;
    sh->cnt[t] = finite;
  });
  Phase([&](int t) {
    if (t != 0) return;
    float m = kNegInf;
    int32_t at = -1, finite = 1;
    for (int u = 0; u < kSampleThreads; ++u) {
      finite &= sh->cnt[u];
      if (sh->ival[u] >= 0 && (at < 0 || sh->fval[u] > m)) m = sh->fval[u], at = sh->ival[u];
    }
    sh->max = m;
    sh->index = at;
    sh->count = finite;
  });
}

// sh->total = Σ exp(x_i - max) over the first n, in chunk order; sh->dsum[t] ends as the sum of
// the chunks before t's.
PARA_HD void SumExp(SampleView x, int64_t n, float max, SampleShared* sh) {
  Phase([&](int t) {
    double s = 0;
    for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i)
      s += std::exp(static_cast<double>(x.At(i) - max));
    sh->dsum[t] = s;
  });
  Phase([&](int t) {
    if (t != 0) return;
    double acc = 0;
    for (int u = 0; u < kSampleThreads; ++u) {
      const double s = sh->dsum[u];
      sh->dsum[u] = acc;
      acc += s;
    }
    sh->total = acc;
  });
}

// After SumExp over the same items: sh->index = the first i whose running sum (through i) passes
// `threshold` (> when strict, >= otherwise), or -1.
PARA_HD void FirstCrossing(SampleView x, int64_t n, float max, double threshold, bool strict,
                           SampleShared* sh) {
  Phase([&](int t) {
    double acc = sh->dsum[t];
    int32_t at = -1;
    for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) {
      acc += std::exp(static_cast<double>(x.At(i) - max));
      if (strict ? threshold < acc : acc >= threshold) {
        at = static_cast<int32_t>(i);
        break;
      }
    }
    sh->ival[t] = at;
  });
  Phase([&](int t) {
    if (t != 0) return;
    int32_t at = -1;
    for (int u = 0; u < kSampleThreads && at < 0; ++u) at = sh->ival[u];
    sh->index = at;
  });
}

// sh->count = how many of the first n satisfy pred(value).
template <class P>
PARA_HD void CountIf(SampleView x, int64_t n, P pred, SampleShared* sh) {
  Phase([&](int t) {
    int32_t c = 0;
    for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) c += pred(x.At(i)) ? 1 : 0;
    sh->cnt[t] = c;
  });
  Phase([&](int t) {
    if (t != 0) return;
    int32_t c = 0;
    for (int u = 0; u < kSampleThreads; ++u) c += sh->cnt[u];
    sh->count = c;
  });
}

// Radix selection of the k-th largest key of src[0, n) (0 < k < n): sh->prefix = that key,
// sh->need = how many elements equal to it are among the k largest.
PARA_HD void SelectKey(const float* src, int64_t n, int64_t k, SampleShared* sh) {
  Phase([&](int t) {
    if (t != 0) return;
    sh->prefix = 0;
    sh->need = static_cast<int32_t>(k);
  });
  uint32_t mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    Phase([&](int t) {
      for (int b = t; b < 256; b += kSampleThreads) sh->hist[b] = 0;
    });
    const uint32_t prefix = sh->prefix;
    Phase([&](int t) {
      for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) {
        const uint32_t key = OrderedKey(src[i]);
        if ((key & mask) == prefix) SharedIncrement(&sh->hist[(key >> shift) & 0xffu]);
      }
    });
    Phase([&](int t) {
      if (t != 0) return;
      int32_t need = sh->need;
      int b = 255;
      for (; b > 0 && sh->hist[b] < need; --b) need -= sh->hist[b];
      sh->need = need;
      sh->prefix = prefix | (static_cast<uint32_t>(b) << shift);
    });
    mask |= 0xffu << shift;
  }
}

// Writes the k largest of src[0, n) (all of them when k >= n), ordered by Before(), to
// keys/ids[0, k); sh->count = k.
PARA_HD void SelectTopSorted(const float* src, int64_t n, int64_t k, SampleScratch s,
                             SampleShared* sh) {
  if (k >= n) {
    k = n;
    Phase([&](int t) {
      for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) {
        s.keys[i] = OrderedKey(src[i]);
        s.ids[i] = static_cast<int32_t>(i);
      }
    });
  } else {
    SelectKey(src, n, k, sh);
    const uint32_t pivot = sh->prefix;
    Phase([&](int t) {  // per chunk: elements above the pivot, and equal to it
      int32_t gt = 0, eq = 0;
      for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) {
        const uint32_t key = OrderedKey(src[i]);
        gt += key > pivot ? 1 : 0;
        eq += key == pivot ? 1 : 0;
      }
      sh->cnt[t] = gt;
      sh->cnt2[t] = eq;
    });
    Phase([&](int t) {  // exclusive prefix sums: where each chunk writes
      if (t != 0) return;
      int32_t gt = 0, eq = 0;
      for (int u = 0; u < kSampleThreads; ++u) {
        const int32_t a = sh->cnt[u], b = sh->cnt2[u];
        sh->cnt[u] = gt;
        sh->cnt2[u] = eq;
        gt += a;
        eq += b;
      }
      sh->count = gt;  // elements above the pivot; the equal ones follow, lowest ids first
    });
    const int32_t above = sh->count, need = sh->need;
    Phase([&](int t) {
      int32_t gt = sh->cnt[t], eq = sh->cnt2[t];
      for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) {
        const uint32_t key = OrderedKey(src[i]);
        if (key > pivot) {
          s.keys[gt] = key;
          s.ids[gt++] = static_cast<int32_t>(i);
        } else if (key == pivot && eq < need) {
          s.keys[above + eq] = key;
          s.ids[above + eq++] = static_cast<int32_t>(i);
        }
      }
    });
  }
  // Bitonic sort of the k candidates, padded to a power of two with entries that sort last.
  const int64_t p = SortCapacity(k);
  Phase([&](int t) {
    for (int64_t i = k + t; i < p; i += kSampleThreads) {
      s.keys[i] = 0;
      s.ids[i] = 0x7fffffff;
    }
  });
  for (int64_t size = 2; size <= p; size <<= 1) {
    for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
      Phase([&](int t) {
        for (int64_t i = t; i < p; i += kSampleThreads) {
          const int64_t j = i ^ stride;
          if (j <= i) continue;
          const bool forward = (i & size) == 0;
          const bool swap = forward ? Before(s.keys[j], s.ids[j], s.keys[i], s.ids[i])
                                    : Before(s.keys[i], s.ids[i], s.keys[j], s.ids[j]);
          if (swap) {
            const uint32_t tk = s.keys[i];
            s.keys[i] = s.keys[j];
            s.keys[j] = tk;
            const int32_t ti = s.ids[i];
            s.ids[i] = s.ids[j];
            s.ids[j] = ti;
          }
        }
      });
    }
  }
  Phase([&](int t) {
    if (t == 0) sh->count = static_cast<int32_t>(k);
  });
}

// min_tokens suppression, logit bias, repetition / presence / frequency penalties: v = x edited.
PARA_HD void AdjustRow(const SampleRowDesc& d, const float* x, int64_t n, const int32_t* edit_ids,
                       const SampleEdit* edits, float* v) {
  auto valid = [n](int32_t id) { return id >= 0 && id < n; };
  Phase([&](int t) {
    for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) v[i] = x[i];
  });
  Phase([&](int t) {
    for (int32_t e = t; e < d.suppressed_count; e += kSampleThreads) {
      const int32_t id = edit_ids[d.suppressed_begin + e];
      if (valid(id)) v[id] = kNegInf;
    }
  });
  Phase([&](int t) {  // in order: an id may repeat
    if (t != 0) return;
    for (int32_t e = 0; e < d.bias_count; ++e) {
      const SampleEdit b = edits[d.bias_begin + e];
      if (valid(b.id)) v[b.id] += b.value;
    }
  });
  if (d.repetition_penalty != 1.0f) {
    Phase([&](int t) {
      for (int32_t e = t; e < d.penalized_count; e += kSampleThreads) {
        const int32_t id = edit_ids[d.penalized_begin + e];
        if (!valid(id)) continue;
        const float y = v[id];
        v[id] = y > 0 ? y / d.repetition_penalty : y * d.repetition_penalty;
      }
    });
  }
  if (d.presence_penalty != 0.0f || d.frequency_penalty != 0.0f) {
    Phase([&](int t) {
      for (int32_t e = t; e < d.counts_count; e += kSampleThreads) {
        const SampleEdit c = edits[d.counts_begin + e];
        if (valid(c.id))
          v[c.id] -= d.presence_penalty +
                     d.frequency_penalty * static_cast<float>(static_cast<int32_t>(c.value));
      }
    });
  }
}

// The token drawn from the adjusted row s.v (temperature, top-k, top-p, min-p, draw).
PARA_HD int32_t DrawRow(const SampleRowDesc& d, int64_t n, SampleScratch s, SampleShared* sh) {
  float* v = s.v;
  const float inv_t = 1.0f / d.temperature;
  Phase([&](int t) {
    for (int64_t i = ChunkBegin(t, n); i < ChunkEnd(t, n); ++i) v[i] *= inv_t;
  });
  const SampleView all{v, nullptr};
  RowMax(all, n, sh);
  const float max = sh->max;
  const bool top_k_on = d.top_k > 0 && d.top_k < n;
  if (!top_k_on && d.top_p >= 1.0f && d.min_p <= 0.0f) {  // the whole vocabulary, in id order
    SumExp(all, n, max, sh);
    FirstCrossing(all, n, max, d.uniform * sh->total, true, sh);
    return sh->index >= 0 ? sh->index : static_cast<int32_t>(n - 1);
  }
  const SampleView sorted{v, s.ids};
  double total = 0;
  SelectTopSorted(v, n, top_k_on ? d.top_k : (n < kSampleFirstK ? n : kSampleFirstK), s, sh);
  int64_t keep = sh->count;
  if (top_k_on) {
    SumExp(sorted, keep, max, sh);
    total = sh->total;
  } else {
    SumExp(all, n, max, sh);
    total = sh->total;
    SumExp(sorted, keep, max, sh);
    if (sh->total < d.top_p * total) {  // the largest 1024 do not hold top_p: sort them all
      SelectTopSorted(v, n, n, s, sh);
      keep = sh->count;
    }
  }
  if (d.top_p < 1.0f) {
    SumExp(sorted, keep, max, sh);
    FirstCrossing(sorted, keep, max, d.top_p * total, false, sh);
    if (sh->index >= 0) keep = sh->index + 1;
  }
  if (d.min_p > 0.0f) {  // sorted: those at least min_p x the top probability are a prefix
    const float floor = max + std::log(d.min_p);
    CountIf(
        sorted, keep, [floor](float y) { return !(y < floor); }, sh);
    keep = sh->count > 1 ? sh->count : 1;
  }
  SumExp(sorted, keep, max, sh);
  FirstCrossing(sorted, keep, max, d.uniform * sh->total, true, sh);
  const int64_t at = sh->index >= 0 ? sh->index : keep - 1;
  return s.ids[at];
}

// The whole row: writes *out, and top_ids / top_lp[0, top_n) when d.top_n > 0. With a forced
// token nothing is drawn: only its log-probabilities are computed.
PARA_HD void SampleRow(const SampleRowDesc& d, const float* x, int64_t n, const int32_t* edit_ids,
                       const SampleEdit* edits, SampleScratch s, SampleShared* sh,
                       SampleRowOut* out, int32_t* top_ids, float* top_lp) {
  const SampleView raw{x, nullptr};
  RowMax(raw, n, sh);
  const float max_x = sh->max;
  if (sh->count == 0) {
    Phase([&](int t) {
      if (t == 0) *out = SampleRowOut{-1, 0.0f, 0, 0};
    });
    return;
  }
  int32_t token = d.forced_token < n ? d.forced_token : static_cast<int32_t>(n - 1);
  if (d.forced_token < 0) {
    AdjustRow(d, x, n, edit_ids, edits, s.v);
    if (d.temperature == 0.0f || d.top_k == 1) {
      RowMax(SampleView{s.v, nullptr}, n, sh);
      token = sh->index;
    } else {
      token = DrawRow(d, n, s, sh);
    }
  }
  if (d.top_n < 0) {
    Phase([&](int t) {
      if (t == 0) *out = SampleRowOut{token, 0.0f, 0, 1};
    });
    return;
  }
  SumExp(raw, n, max_x, sh);
  const double log_z = static_cast<double>(max_x) + std::log(sh->total);
  const float mine = x[token];
  CountIf(
      raw, n, [mine](float y) { return y > mine; }, sh);
  const int32_t rank = sh->count + 1;
  if (d.top_n > 0) {
    SelectTopSorted(x, n, d.top_n, s, sh);
    const int32_t m = sh->count;
    Phase([&](int t) {
      for (int32_t i = t; i < m; i += kSampleThreads) {
        top_ids[i] = s.ids[i];
        top_lp[i] = static_cast<float>(static_cast<double>(x[s.ids[i]]) - log_z);
      }
    });
  }
  Phase([&](int t) {
    if (t == 0)
      *out = SampleRowOut{token, static_cast<float>(static_cast<double>(mine) - log_z), rank, 1};
  });
}

}  // namespace para::cuda
