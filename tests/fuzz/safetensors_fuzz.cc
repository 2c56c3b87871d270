// libFuzzer target: the safetensors header parser (ParseSafetensors) on arbitrary bytes. It must
// return a status — never crash, hang or read outside the buffer — whatever the input.
#include <cstddef>
#include <cstdint>

#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto views = para::ParseSafetensors(data, size, "fuzz.safetensors");
  if (views.ok()) {
    // Touch every tensor's bytes: offsets the parser accepted must lie inside the input.
    volatile unsigned char sink = 0;
    for (const auto& v : *views)
      for (size_t i = 0; i < v.nbytes; i += 4096) sink = sink ^ v.data[i];
  }
  return 0;
}
