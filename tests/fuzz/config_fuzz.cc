// libFuzzer target: the adapter and model configuration parsers (PARA adapter_config.json,
// PEFT LoRA adapter_config.json, and the model's config.json) on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/lora_adapter.h"
#include "engine/model_config.h"
#include "engine/para_adapter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)para::ParseParaConfig(text, "fuzz");
  (void)para::ParseLoraConfig(text, "fuzz");
  (void)para::ParseModelConfig(text, "fuzz");
  return 0;
}
