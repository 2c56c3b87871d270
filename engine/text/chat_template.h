// ChatTemplate: renders a model's Hugging Face chat template (Jinja) to a prompt string, the way
// transformers does with Python's jinja2 (ImmutableSandboxedEnvironment with trim_blocks,
// lstrip_blocks and loopcontrols, the globals raise_exception() and strftime_now(), and its
// `tojson` filter), in a sandbox of our own: no file access (include/import/extends are refused),
// attribute access only to data and to the safe methods of strings, lists and dicts, and limits
// on template size, output size, steps, loop iterations, recursion and allocation.
//
// Ownership and thread-safety: Compile returns an immutable object that shares its compiled form
// (copies are cheap); Render is const and may be called from any number of threads at once.
// Errors are absl::Status (never exceptions): INVALID_ARGUMENT for a template that does not
// compile, fails while rendering, exceeds a limit or calls raise_exception(msg) — the latter
// with the template's message verbatim and the payload kRaisedPayload set.
//
// Variables: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `tools`, and any
// extra keyword arguments, as one JSON object. Pass an nlohmann::ordered_json to keep the
// caller's key order (what Python's dicts keep, and what `tojson` and `.items()` show); an
// nlohmann::json is accepted too, its keys then in sorted order.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace para::text {

struct TemplateLimits {
  size_t max_template_bytes = 1 << 20;      // template source size
  int max_nesting_depth = 100;              // blocks and expressions nested in the source
  size_t max_output_bytes = 4 << 20;        // the prompt, and any one string built on the way
  int64_t max_steps = 10'000'000;           // statements and expressions evaluated
  int64_t max_loop_iterations = 1'000'000;  // all loops of one render together
  int max_call_depth = 64;                  // nested macro calls and recursive loop calls
  int max_render_depth = 400;               // nested evaluation, all frames together
  size_t max_container_items = 100'000;     // items of a list or dict a template builds
  int64_t max_allocated_bytes = 256 << 20;  // bytes of strings and lists built, in total
  int max_value_depth = 64;                 // nesting of lists and dicts (variables included)
};

class ChatTemplate {
 public:
  // The status payload type URL set on errors raised by the template's raise_exception().
  static constexpr std::string_view kRaisedPayload = "para.text/chat_template.raise_exception";

  static absl::StatusOr<ChatTemplate> Compile(std::string_view source,
                                              const TemplateLimits& limits = {});

  // `variables` must be a JSON object. strftime_now() uses the local time of `now`.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& variables) const;
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& variables,
                                     std::chrono::system_clock::time_point now) const;
  absl::StatusOr<std::string> Render(const nlohmann::json& variables) const;

  const TemplateLimits& limits() const;

  // True when `status` came from the template's raise_exception().
  static bool IsRaisedByTemplate(const absl::Status& status);

 private:
  struct Compiled;
  explicit ChatTemplate(std::shared_ptr<const Compiled> compiled);
  std::shared_ptr<const Compiled> compiled_;
};

// Picks the chat template out of a tokenizer_config.json: its `chat_template` is either a
// string, or a list of {"name", "template"} from which `name` is chosen. NOT_FOUND when there is
// none (or no template of that name), INVALID_ARGUMENT when the field is malformed.
absl::StatusOr<std::string> SelectChatTemplate(const nlohmann::json& tokenizer_config,
                                               std::string_view name = "default");

}  // namespace para::text
