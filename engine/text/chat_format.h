// A model's chat format: its chat template (chat_template.jinja, else tokenizer_config.json's
// "chat_template", a string or a list of named templates of which "default" is used) with the
// special-token strings the template is given (bos_token, eos_token from tokenizer_config.json).
// Renders a conversation the way transformers' apply_chat_template does, before tokenization.
// Immutable after Load; Render is const and safe from any thread.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/text/chat_template.h"
#include "nlohmann/json.hpp"

namespace para::text {

struct ChatOptions {
  // End with the template's assistant header (transformers' add_generation_prompt).
  bool add_generation_prompt = true;
  // Cut the rendering right after the final message's content so the model continues it
  // (transformers' continue_final_message); excludes add_generation_prompt.
  bool continue_final_message = false;
  // Extra template variables (a JSON object).
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();
};

class ChatFormat {
 public:
  // Reads the template and token strings from a model directory. nullopt when the model has no
  // chat template; an error naming the file when one is malformed or does not compile.
  static absl::StatusOr<std::optional<ChatFormat>> Load(const std::string& dir,
                                                        const TemplateLimits& limits = {});
  // From a template's source and the strings it is given (tests, tools).
  static absl::StatusOr<ChatFormat> FromSource(std::string_view source, std::string bos_token,
                                               std::string eos_token,
                                               const TemplateLimits& limits = {});

  // `messages` is a JSON array of message objects ({role, content, ...}); key order is kept, as
  // the template may show it. INVALID_ARGUMENT for a bad conversation and for template errors
  // (a template's raise_exception message included).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& messages,
                                     const ChatOptions& options) const;

  const std::string& bos_token() const { return bos_token_; }
  // The end-of-turn token's text (tokenizer_config.json's eos_token); may be empty.
  const std::string& eos_token() const { return eos_token_; }

 private:
  ChatFormat(ChatTemplate t, std::string bos, std::string eos)
      : template_(std::move(t)), bos_token_(std::move(bos)), eos_token_(std::move(eos)) {}

  ChatTemplate template_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace para::text
