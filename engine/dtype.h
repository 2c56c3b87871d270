// Element types of checkpoint tensors and conversions between them and float32.
//
// Conversions are exact where the source is representable (F16/BF16 -> F32 always is);
// F32 -> BF16/F16 round to nearest even. Pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace para {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2 };

// Parses a safetensors dtype name ("F32", "BF16", ...). nullopt when the name is unknown.
std::optional<DType> ParseDType(std::string_view name);
const char* DTypeName(DType t);
size_t DTypeSize(DType t);
// True for the types the engine computes with (F32, F16, BF16).
inline bool IsFloatWeightType(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

inline float Bf16ToF32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);

// Converts `n` elements of type `src_type` at `src` (any alignment) to float32 at `dst`.
// `src_type` must satisfy IsFloatWeightType.
void ConvertToF32(DType src_type, const void* src, size_t n, float* dst);
// Converts `n` float32 values to `dst_type` (F32, F16 or BF16; rounding to nearest even).
void ConvertFromF32(DType dst_type, const float* src, size_t n, void* dst);
// Converts between any two of F32, F16 and BF16 (through float32; exact when widening).
void ConvertDType(DType src_type, const void* src, size_t n, DType dst_type, void* dst);

}  // namespace para
