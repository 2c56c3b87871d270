// LinearParts (engine/cpu/gemm16.h) on every ISA path this CPU has: against a double-precision
// reference on the same 16-bit weights, bitwise against the documented operation order, and
// bitwise batch invariance (a row's result does not depend on m, its neighbours, the threads or
// the path).
#include "engine/cpu/gemm16.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/dtype.h"

namespace para::cpu {
namespace {

const char* TypeName(WType t) {
  return t == WType::kF32 ? "F32" : t == WType::kF16 ? "F16" : "BF16";
}

// Weights of one part: stored bytes at an odd address (as in a memory-mapped file) and their F32
// values, the reference's view of them.
struct Part {
  WType type;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;  // 1 byte of offset, then rows * cols elements
  std::vector<float> values;
  WeightView view() const { return {bytes.data() + 1, type, rows, cols}; }
};

Part MakePart(WType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  Part p{type, rows, cols, {}, {}};
  const size_t es = WTypeSize(type);
  p.bytes.assign(rows * cols * es + 1, 0);
  p.values.resize(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const float v = d(rng);
    uint8_t* dst = p.bytes.data() + 1 + i * es;
    if (type == WType::kF32) {
      std::memcpy(dst, &v, 4);
      p.values[i] = v;
    } else {
      const uint16_t h = type == WType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
      std::memcpy(dst, &h, 2);
      p.values[i] = type == WType::kBF16 ? Bf16ToF32(h) : F16ToF32(h);
    }
  }
  return p;
}

std::vector<CpuIsa> Paths() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512})
    if (CpuIsaSupported(isa)) out.push_back(isa);
  return out;
}

// Restores the ISA the process started with.
class Gemm16Test : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = Gemm16Isa(); }
  void TearDown() override { SetGemm16Isa(saved_); }
  CpuIsa saved_ = CpuIsa::kAvx2;
};

struct Problem {
  int64_t m, k, ldx, ldy, n = 0;
  std::vector<Part> parts;
  std::vector<float> x, y0;  // x padded with NaN past k; y0 padded with a sentinel past n
  float beta;

  Problem(int64_t m_, int64_t k_, std::vector<std::pair<WType, int64_t>> shape, float beta_,
          std::mt19937& rng)
      : m(m_), k(k_), ldx(k_ + 5), beta(beta_) {
    for (auto [t, rows] : shape) {
      parts.push_back(MakePart(t, rows, k, rng));
      n += rows;
    }
    ldy = n + 3;
    std::uniform_real_distribution<float> d(-2.f, 2.f);
    x.assign(m * ldx, std::numeric_limits<float>::quiet_NaN());
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < k; ++j) x[i * ldx + j] = d(rng);
    y0.assign(m * ldy, 12345.f);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) y0[i * ldy + j] = d(rng);
  }
  std::vector<WeightView> views() const {
    std::vector<WeightView> v;
    for (const Part& p : parts) v.push_back(p.view());
    return v;
  }
  std::vector<float> Run(ThreadPool* pool, LinearScratch* scratch) const {
    std::vector<float> y = y0;
    const std::vector<WeightView> v = views();
    LinearParts(pool, m, v, x.data(), ldx, beta, y.data(), ldy, scratch);
    return y;
  }
  // Weight row j of the concatenation.
  const float* Row(int64_t j) const {
    for (const Part& p : parts) {
      if (j < p.rows) return p.values.data() + j * k;
      j -= p.rows;
    }
    return nullptr;
  }
};

void ExpectNearReference(const Problem& pr, const std::vector<float>& y, const std::string& what) {
  int bad = 0;
  for (int64_t i = 0; i < pr.m; ++i) {
    for (int64_t j = 0; j < pr.n; ++j) {
      const float* w = pr.Row(j);
      double sum = 0, mag = 0;
      for (int64_t t = 0; t < pr.k; ++t) {
        const double p = static_cast<double>(pr.x[i * pr.ldx + t]) * w[t];
        sum += p;
        mag += std::abs(p);
      }
      const double old = pr.y0[i * pr.ldy + j];
      const double want = (pr.beta == 0.f ? 0.0 : pr.beta * old) + sum;
      mag += std::abs(pr.beta * old);
      const double got = y[i * pr.ldy + j];
      if (!(std::abs(got - want) <= 1e-5 * mag + 1e-30) && bad++ < 5)
        ADD_FAILURE() << what << " y[" << i << ", " << j << "] = " << got << ", want " << want
                      << " (magnitude " << mag << ")";
    }
    for (int64_t j = pr.n; j < pr.ldy; ++j)
      if (y[i * pr.ldy + j] != 12345.f && bad++ < 5)
        ADD_FAILURE() << what << " wrote past n at [" << i << ", " << j << "]";
  }
}

TEST_F(Gemm16Test, MatchesDoublePrecisionOnTheStoredWeights) {
  ThreadPool pool(2);
  LinearScratch scratch;
  std::mt19937 rng(1);
  const int64_t ms[] = {1, 2, 3, 5, 8, 15, 16, 17, 31, 32, 33, 64, 200, 512};
  // (rows, k): single rows, tails of every vector and block width, several panels.
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {3, 7}, {17, 33}, {29, 130}, {50, 301}};
  for (CpuIsa isa : Paths()) {
    ASSERT_TRUE(SetGemm16Isa(isa));
    for (WType t : {WType::kBF16, WType::kF16, WType::kF32}) {
      for (int64_t m : ms) {
        for (const auto& [n, k] : shapes) {
          if (m >= 200 && n * k > 2000) continue;  // keep the reference cheap
          // Two parts when there are rows enough, beta alternating between 0 and 1.
          std::vector<std::pair<WType, int64_t>> shape = {{t, n}};
          if (n >= 3) shape = {{t, n / 3}, {t, n - n / 3}};
          const float beta = (m + n) % 2 ? 1.f : 0.f;
          Problem pr(m, k, shape, beta, rng);
          ExpectNearReference(pr, pr.Run(&pool, &scratch),
                              std::string(CpuIsaName(isa)) + " " + TypeName(t) +
                                  " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                  " k=" + std::to_string(k) + " beta=" + std::to_string(beta));
        }
      }
    }
  }
}

TEST_F(Gemm16Test, MixedPartsAndBetaScale) {
  ThreadPool pool(3);
  LinearScratch scratch;
  std::mt19937 rng(2);
  for (CpuIsa isa : Paths()) {
    ASSERT_TRUE(SetGemm16Isa(isa));
    for (int64_t m : {1, 4, 9, 40}) {
      // q, k, v as three parts of different types; then a large first part and a 1-row last.
      Problem a(m, 96, {{WType::kBF16, 64}, {WType::kF16, 16}, {WType::kF32, 16}}, 0.5f, rng);
      ExpectNearReference(a, a.Run(&pool, &scratch),
                          std::string(CpuIsaName(isa)) + " mixed m=" + std::to_string(m));
      Problem b(m, 45, {{WType::kF16, 150}, {WType::kBF16, 1}}, 1.f, rng);
      ExpectNearReference(b, b.Run(&pool, &scratch),
                          std::string(CpuIsaName(isa)) + " mixed-tail m=" + std::to_string(m));
    }
  }
}

// The operation order gemm16.h documents, in scalar code: four partial sums over k mod 4,
// (p0 + p1) + (p2 + p3), then y.
std::vector<float> Documented(const Problem& pr) {
  std::vector<float> y = pr.y0;
  for (int64_t i = 0; i < pr.m; ++i) {
    for (int64_t j = 0; j < pr.n; ++j) {
      const float* w = pr.Row(j);
      float p[4] = {0, 0, 0, 0};
      for (int64_t s = 0; 4 * s < pr.k; ++s) {
        for (int l = 0; l < 4; ++l) {
          const int64_t t = 4 * s + l;
          p[l] = std::fma(t < pr.k ? pr.x[i * pr.ldx + t] : 0.f, t < pr.k ? w[t] : 0.f, p[l]);
        }
      }
      const float sum = (p[0] + p[1]) + (p[2] + p[3]);
      float& out = y[i * pr.ldy + j];
      out = pr.beta == 0.f ? sum : pr.beta == 1.f ? out + sum : std::fma(pr.beta, out, sum);
    }
  }
  return y;
}

TEST_F(Gemm16Test, FollowsTheDocumentedOperationOrderBitwise) {
  ThreadPool pool(2);
  LinearScratch scratch;
  std::mt19937 rng(3);
  for (CpuIsa isa : Paths()) {
    ASSERT_TRUE(SetGemm16Isa(isa));
    for (WType t : {WType::kBF16, WType::kF16, WType::kF32}) {
      for (int64_t m : {1, 2, 7, 8, 9, 24, 70}) {
        for (float beta : {0.f, 1.f, -0.75f}) {
          // k spans inner blocks (256) and a tail; for some m also outer blocks (2048).
          const int64_t k = m % 2 ? 2350 : 531;
          Problem pr(m, k, {{t, 37}, {t, 12}}, beta, rng);
          const std::vector<float> got = pr.Run(&pool, &scratch), want = Documented(pr);
          int bad = 0;
          for (size_t e = 0; e < got.size(); ++e)
            if (std::memcmp(&got[e], &want[e], 4) != 0 && bad++ < 3)
              ADD_FAILURE() << CpuIsaName(isa) << " " << TypeName(t) << " m=" << m
                            << " beta=" << beta << " element " << e << ": " << got[e]
                            << " != " << want[e];
        }
      }
    }
  }
}

TEST_F(Gemm16Test, ARowsResultDoesNotDependOnItsBatch) {
  std::mt19937 rng(4);
  const int64_t k = 300, total = 80;
  for (WType t : {WType::kBF16, WType::kF16, WType::kF32}) {
    Problem full(total, k, {{t, 61}, {t, 20}}, 1.f, rng);
    ThreadPool pool2(2);
    LinearScratch scratch;
    ASSERT_TRUE(SetGemm16Isa(Paths().front()));
    const std::vector<float> ref = full.Run(&pool2, &scratch);
    for (CpuIsa isa : Paths()) {
      ASSERT_TRUE(SetGemm16Isa(isa));
      for (int threads : {1, 3}) {
        ThreadPool pool(threads);
        LinearScratch s;
        // Every batch size on both sides of the decode/prefill switch, at several offsets: the
        // same rows of x with different neighbours.
        for (int64_t m : std::vector<int64_t>{1, 2, 5, 8, 9, 16, 33, total}) {
          for (int64_t r0 : {int64_t{0}, total - m, (total - m) / 2}) {
            Problem sub = full;
            sub.m = m;
            sub.x.assign(full.x.begin() + r0 * full.ldx, full.x.begin() + (r0 + m) * full.ldx);
            sub.y0.assign(full.y0.begin() + r0 * full.ldy, full.y0.begin() + (r0 + m) * full.ldy);
            const std::vector<float> y = sub.Run(&pool, &s);
            ASSERT_EQ(0, std::memcmp(y.data(), ref.data() + r0 * full.ldy, y.size() * 4))
                << CpuIsaName(isa) << " " << TypeName(t) << " threads=" << threads << " m=" << m
                << " rows from " << r0;
          }
        }
      }
    }
  }
}

// Blocks of many weight rows (larger m cuts few, large chunks when k fits one outer block, and
// chunks of the most rows the scratch holds otherwise).
TEST_F(Gemm16Test, LargeBlocksOfRows) {
  ThreadPool pool(2);
  LinearScratch scratch;
  std::mt19937 rng(6);
  for (CpuIsa isa : Paths()) {
    ASSERT_TRUE(SetGemm16Isa(isa));
    for (const auto& [n, k] : {std::pair<int64_t, int64_t>{4000, 40}, {1700, 2100}}) {
      Problem pr(11, k, {{WType::kBF16, n - 100}, {WType::kF16, 100}}, 1.f, rng);
      const std::vector<float> got = pr.Run(&pool, &scratch), want = Documented(pr);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4))
          << CpuIsaName(isa) << " n=" << n << " k=" << k;
    }
  }
}

// Every chunk of rows is computed exactly once when threads take their own spans and then steal
// from the others' (more threads than cores here, so threads are descheduled mid-call and the
// others take over their chunks). beta = 1: a chunk done twice adds its sums twice, a skipped
// one keeps y0.
TEST_F(Gemm16Test, ThreadsTakingEachOthersChunksComputeEveryRowOnce) {
  std::mt19937 rng(7);
  for (CpuIsa isa : Paths()) {
    ASSERT_TRUE(SetGemm16Isa(isa));
    for (int threads : {2, 5, 8}) {
      ThreadPool pool(threads);
      LinearScratch scratch;
      for (int64_t m : {1, 3, 20}) {
        Problem pr(m, 64, {{WType::kBF16, 1000}, {WType::kF16, 250}}, 1.f, rng);
        const std::vector<float> want = Documented(pr);
        for (int rep = 0; rep < 20; ++rep) {
          const std::vector<float> got = pr.Run(&pool, &scratch);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4))
              << CpuIsaName(isa) << " threads=" << threads << " m=" << m << " rep " << rep;
        }
      }
    }
  }
}

// The last weight row ends right before an unmapped page: no path reads past it (k tails, row
// tails, every m regime).
TEST_F(Gemm16Test, NeverReadsPastTheWeights) {
  const long page = sysconf(_SC_PAGESIZE);
  std::mt19937 rng(5);
  ThreadPool pool(2);
  LinearScratch scratch;
  for (WType t : {WType::kBF16, WType::kF16, WType::kF32}) {
    for (int64_t k : {5, 37, 64}) {
      const int64_t rows = 7;
      const size_t bytes = rows * k * WTypeSize(t);
      const size_t span = (bytes + page - 1) / page * page + page;
      void* mem = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      ASSERT_NE(mem, MAP_FAILED);
      uint8_t* guard = static_cast<uint8_t*>(mem) + span - page;
      ASSERT_EQ(0, mprotect(guard, page, PROT_NONE));
      const Part src = MakePart(t, rows, k, rng);
      uint8_t* w = guard - bytes;
      std::memcpy(w, src.bytes.data() + 1, bytes);
      for (CpuIsa isa : Paths()) {
        ASSERT_TRUE(SetGemm16Isa(isa));
        for (int64_t m : {1, 3, 8, 20}) {
          std::vector<float> x(m * k, 0.5f), y(m * rows);
          const WeightView v{w, t, rows, k};
          LinearParts(&pool, m, {&v, 1}, x.data(), k, 0.f, y.data(), rows, &scratch);
          double want = 0;
          for (int64_t c = 0; c < k; ++c) want += 0.5 * src.values[(rows - 1) * k + c];
          EXPECT_NEAR(y[m * rows - 1], want, 1e-4);
        }
      }
      munmap(mem, span);
    }
  }
}

TEST_F(Gemm16Test, ForcingAPathNeedsTheCpuToHaveIt) {
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    EXPECT_EQ(SetGemm16Isa(isa), CpuIsaSupported(isa)) << CpuIsaName(isa);
    if (CpuIsaSupported(isa)) {
      EXPECT_EQ(Gemm16Isa(), isa);
    }
  }
  // Every machine the project builds for has AVX2 + FMA + F16C.
  EXPECT_TRUE(CpuIsaSupported(CpuIsa::kAvx2));
}

}  // namespace
}  // namespace para::cpu
