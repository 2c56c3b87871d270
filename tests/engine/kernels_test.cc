// CPU kernels against their definitions, computed here in double precision.
#include "engine/cpu/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace para::cpu {
namespace {

TEST(KernelsTest, ExpFIsWithinAFewUlpOverItsRange) {
  double worst = 0;
  for (double x = -87.0; x <= 88.5; x += 0.0137) {
    const double want = std::exp(x);
    const double rel = std::abs(ExpF(static_cast<float>(x)) -
                                std::exp(static_cast<double>(static_cast<float>(x)))) /
                       want;
    worst = std::max(worst, rel);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(ExpF(0.0f), 1.0f);
  EXPECT_EQ(ExpF(-1000.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(ExpF(1000.0f)));
}

TEST(KernelsTest, SwiGluRowAndRmsNormMatchDefinitions) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-8.f, 8.f);
  const int n = 203;  // not a multiple of the vector width
  std::vector<float> g(n), u(n), lu(n), out(n), scaled(n);
  for (int i = 0; i < n; ++i) {
    g[i] = d(rng);
    u[i] = d(rng);
    lu[i] = 1.0f + d(rng) / 16;
  }
  SwiGluRow(g.data(), u.data(), nullptr, n, out.data());
  SwiGluRow(g.data(), u.data(), lu.data(), n, scaled.data());
  for (int i = 0; i < n; ++i) {
    const double silu = g[i] / (1.0 + std::exp(-static_cast<double>(g[i])));
    EXPECT_NEAR(out[i], silu * u[i], 1e-5 * (1 + std::abs(silu * u[i])));
    EXPECT_NEAR(scaled[i], silu * u[i] * lu[i], 1e-5 * (1 + std::abs(silu * u[i] * lu[i])));
  }
  std::vector<float> w(n, 1.5f), y(n);
  RmsNorm(g.data(), w.data(), 1e-5f, n, y.data());
  double ss = 0;
  for (float v : g) ss += static_cast<double>(v) * v;
  const double scale = 1.0 / std::sqrt(ss / n + 1e-5);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(y[i], g[i] * scale * 1.5, 1e-5);
}

TEST(KernelsTest, QkvEpilogueScalesQBeforeRopeRotatesKAndScalesV) {
  const int64_t nq = 2, nkv = 1, hd = 4;
  std::vector<float> q = {1, 2, 3, 4, 5, 6, 7, 8}, k = {1, -2, 0.5f, 3}, v = {1, 2, 3, 4};
  const std::vector<float> lq = {2, 2, 2, 2, 0.5f, 0.5f, 0.5f, 0.5f}, lv = {3, 3, 3, 3};
  const double a0 = 0.3, a1 = 0.003;  // the two frequencies' angles
  std::vector<float> cos = {static_cast<float>(std::cos(a0)), static_cast<float>(std::cos(a1))},
                     sin = {static_cast<float>(std::sin(a0)), static_cast<float>(std::sin(a1))};
  QkvRowEpilogue(q.data(), k.data(), v.data(), nq, nkv, hd, cos.data(), sin.data(), lq.data(),
                 lv.data());
  // rotate_half layout: pairs (i, i + hd/2), rotated by angle i.
  auto rotated = [](double x, double y, double angle) {
    return std::pair<double, double>(x * std::cos(angle) - y * std::sin(angle),
                                     y * std::cos(angle) + x * std::sin(angle));
  };
  // q head 0 is scaled by 2 before the rotation, head 1 by 0.5.
  auto [q0, q2] = rotated(2 * 1, 2 * 3, a0);
  auto [q1, q3] = rotated(2 * 2, 2 * 4, a1);
  auto [q4, q6] = rotated(0.5 * 5, 0.5 * 7, a0);
  auto [q5, q7] = rotated(0.5 * 6, 0.5 * 8, a1);
  const std::vector<double> want_q = {q0, q1, q2, q3, q4, q5, q6, q7};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(q[i], want_q[i], 1e-5) << "q " << i;
  // k is rotated (never scaled).
  auto [k0, k2] = rotated(1, 0.5, a0);
  auto [k1, k3] = rotated(-2, 3, a1);
  const std::vector<double> want_k = {k0, k1, k2, k3};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(k[i], want_k[i], 1e-5) << "k " << i;
  // v is scaled (never rotated).
  for (int i = 0; i < hd; ++i) EXPECT_FLOAT_EQ(v[i], 3.0f * (i + 1));
}

TEST(KernelsTest, CacheRowsOfEachTypeRoundTrip) {
  std::vector<float> row(37);
  for (size_t i = 0; i < row.size(); ++i) row[i] = std::sin(0.7 * i) * 3 + 0.01f * i;
  std::vector<float> a(row.size());
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::cos(0.3 * i);
  std::vector<uint16_t> h(row.size()), b(row.size());
  StoreRow(DType::kF16, row.data(), row.size(), h.data());
  StoreRow(DType::kBF16, row.data(), row.size(), b.data());
  double dot_h = 0, dot_b = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    EXPECT_EQ(h[i], F32ToF16(row[i]));  // round to nearest even, as the scalar conversion
    EXPECT_EQ(b[i], F32ToBf16(row[i]));
    dot_h += static_cast<double>(a[i]) * F16ToF32(h[i]);
    dot_b += static_cast<double>(a[i]) * Bf16ToF32(b[i]);
  }
  EXPECT_NEAR(DotF16(a.data(), h.data(), row.size()), dot_h, 1e-5);
  EXPECT_NEAR(DotBF16(a.data(), b.data(), row.size()), dot_b, 1e-5);
  std::vector<float> yh(row.size(), 1.0f), yb(row.size(), 1.0f);
  AxpyF16(0.5f, h.data(), row.size(), yh.data());
  AxpyBF16(0.5f, b.data(), row.size(), yb.data());
  for (size_t i = 0; i < row.size(); ++i) {
    EXPECT_FLOAT_EQ(yh[i], 1.0f + 0.5f * F16ToF32(h[i]));
    EXPECT_FLOAT_EQ(yb[i], 1.0f + 0.5f * Bf16ToF32(b[i]));
  }
}

}  // namespace
}  // namespace para::cpu
