#include "engine/dtype.h"

#include <algorithm>

#include <cmath>

namespace para {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kInfos[] = {
    {DType::kF32, "F32", 4},   {DType::kF16, "F16", 2},        {DType::kBF16, "BF16", 2},
    {DType::kF64, "F64", 8},   {DType::kI64, "I64", 8},        {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},   {DType::kI8, "I8", 1},          {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1}, {DType::kF8E4M3, "F8_E4M3", 1}, {DType::kF8E5M2, "F8_E5M2", 1},
};

const DTypeInfo& Info(DType t) {
  for (const auto& i : kInfos)
    if (i.type == t) return i;
  return kInfos[0];
}

}  // namespace

std::optional<DType> ParseDType(std::string_view name) {
  for (const auto& i : kInfos)
    if (i.name == name) return i.type;
  return std::nullopt;
}

const char* DTypeName(DType t) { return Info(t).name.data(); }
size_t DTypeSize(DType t) { return Info(t).size; }

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  float magnitude;
  if (exp == 0) {
    magnitude = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
  } else if (exp == 31) {
    magnitude = mant ? std::numeric_limits<float>::quiet_NaN() : INFINITY;
  } else {
    uint32_t bits = ((exp + 112u) << 23) | (mant << 13);
    std::memcpy(&magnitude, &bits, 4);
  }
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t F32ToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return sign | 0x7e00u;
  if (a >= 65520.0f) return sign | 0x7c00u;  // overflow to infinity
  if (a < 6.103515625e-05f) {                // subnormal range: quantise to 2^-24 steps
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  uint32_t abits = bits & 0x7fffffffu;
  // Round to nearest even on the 13 dropped mantissa bits.
  abits += 0x0fffu + ((abits >> 13) & 1u);
  return sign | static_cast<uint16_t>(((abits >> 13) - (112u << 10)) & 0x7fffu);
}

void ConvertToF32(DType src_type, const void* src, size_t n, float* dst) {
  const auto* bytes = static_cast<const unsigned char*>(src);
  switch (src_type) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, bytes + 2 * i, 2);
        dst[i] = Bf16ToF32(v);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, bytes + 2 * i, 2);
        dst[i] = F16ToF32(v);
      }
      return;
    default:
      return;
  }
}

void ConvertFromF32(DType dst_type, const float* src, size_t n, void* dst) {
  auto* bytes = static_cast<unsigned char*>(dst);
  switch (dst_type) {
    case DType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t v = F32ToBf16(src[i]);
        std::memcpy(bytes + 2 * i, &v, 2);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t v = F32ToF16(src[i]);
        std::memcpy(bytes + 2 * i, &v, 2);
      }
      return;
    default:
      return;
  }
}

void ConvertDType(DType src_type, const void* src, size_t n, DType dst_type, void* dst) {
  if (src_type == dst_type) {
    std::memcpy(dst, src, n * DTypeSize(src_type));
    return;
  }
  constexpr size_t kChunk = 4096;
  float tmp[kChunk];
  for (size_t i = 0; i < n; i += kChunk) {
    const size_t c = std::min(kChunk, n - i);
    ConvertToF32(src_type, static_cast<const unsigned char*>(src) + i * DTypeSize(src_type), c,
                 tmp);
    ConvertFromF32(dst_type, tmp, c, static_cast<unsigned char*>(dst) + i * DTypeSize(dst_type));
  }
}

}  // namespace para
