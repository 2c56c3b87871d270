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

TEST(KernelsTest, QkvEpilogueScalesQBeforeRopeAndVBeforeStore) {
  const int64_t nq = 2, nkv = 1, hd = 4;
  std::vector<float> q = {1, 2, 3, 4, 5, 6, 7, 8}, k = {1, 0, 0, 1}, v = {1, 2, 3, 4};
  const std::vector<float> lq = {2, 2, 2, 2, 0.5f, 0.5f, 0.5f, 0.5f}, lv = {3, 3, 3, 3};
  const float angle = 0.3f;
  std::vector<float> cos = {std::cos(angle), std::cos(angle / 100)},
                     sin = {std::sin(angle), std::sin(angle / 100)};
  std::vector<float> kc(hd), vc(hd);
  float* kd[] = {kc.data()};
  float* vd[] = {vc.data()};
  std::vector<float> q0 = q;
  QkvRowEpilogue(q.data(), k.data(), v.data(), nq, nkv, hd, cos.data(), sin.data(), lq.data(),
                 lv.data(), kd, vd);
  // Head 0, pair (0, 2): scaled by 2 then rotated by `angle`.
  const double a = 2 * q0[0], b = 2 * q0[2];
  EXPECT_NEAR(q[0], a * std::cos(angle) - b * std::sin(angle), 1e-6);
  EXPECT_NEAR(q[2], b * std::cos(angle) + a * std::sin(angle), 1e-6);
  for (int i = 0; i < hd; ++i) EXPECT_FLOAT_EQ(vc[i], 3.0f * (i + 1));
  EXPECT_EQ(kc, k);  // k is rotated in place and that is what is stored
}

}  // namespace
}  // namespace para::cpu
