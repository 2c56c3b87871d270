// libFuzzer target: chat templates (ChatTemplate::Compile and Render) on arbitrary template
// text, rendered with a small conversation. Every template must compile and render or be
// refused with INVALID_ARGUMENT, within its limits (tightened here so that a run stays fast),
// never crash, hang or exceed the output limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/text/chat_template.h"

namespace {

para::text::TemplateLimits FuzzLimits() {
  para::text::TemplateLimits l;
  l.max_template_bytes = 64 << 10;
  l.max_output_bytes = 64 << 10;
  l.max_steps = 200'000;
  l.max_loop_iterations = 20'000;
  l.max_container_items = 10'000;
  l.max_allocated_bytes = 16 << 20;
  return l;
}

const nlohmann::ordered_json& Variables() {
  static const auto* v = new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": "Hi <b>there</b> \u00e9\u65e5"},
                 {"role": "assistant", "content": "Hello!", "tool_calls": []},
                 {"role": "user", "content": [{"type": "text", "text": "part"}]}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "tools": null,
    "extra": {"a": [1, 2.5, "x", null, true], "b": {"c": -3}}})"));
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  const para::text::TemplateLimits limits = FuzzLimits();
  auto tmpl = para::text::ChatTemplate::Compile(source, limits);
  if (!tmpl.ok()) {
    if (tmpl.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  auto out = tmpl->Render(Variables());
  if (out.ok() && out->size() > limits.max_output_bytes) std::abort();
  if (!out.ok() && out.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
  return 0;
}
