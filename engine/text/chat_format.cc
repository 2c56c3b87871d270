#include "engine/text/chat_format.h"

#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace para::text {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
}

// A special token in tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
std::string TokenString(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  return "";
}

absl::Status CheckMessages(const nlohmann::ordered_json& messages) {
  if (!messages.is_array() || messages.empty())
    return absl::InvalidArgumentError("a conversation needs at least one message");
  for (size_t i = 0; i < messages.size(); ++i) {
    const nlohmann::ordered_json& m = messages[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
        m["role"].get<std::string>().empty())
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, " needs a non-empty 'role' string"));
  }
  return absl::OkStatus();
}

// transformers' continue_final_message: the rendering is cut right after the final message's
// content (found from the end; stripped of surrounding whitespace when the template trimmed it).
absl::StatusOr<std::string> CutAfterFinalMessage(std::string rendered,
                                                 const nlohmann::ordered_json& messages) {
  const nlohmann::ordered_json& content =
      messages.back().value("content", nlohmann::ordered_json());
  if (!content.is_string())
    return absl::InvalidArgumentError("continue_final_message needs a final message with content");
  std::string final_text = content.get<std::string>();
  size_t at = rendered.rfind(final_text);
  if (at == std::string::npos) {
    final_text = std::string(absl::StripAsciiWhitespace(final_text));
    at = rendered.rfind(final_text);
  }
  if (at == std::string::npos)
    return absl::InvalidArgumentError(
        "continue_final_message: the chat template does not render the final message's content");
  rendered.resize(at + final_text.size());
  return rendered;
}

}  // namespace

absl::StatusOr<std::optional<ChatFormat>> ChatFormat::Load(const std::string& dir,
                                                           const TemplateLimits& limits) {
  json config = json::object();
  const fs::path config_path = fs::path(dir) / "tokenizer_config.json";
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    ASSIGN_OR_RETURN(std::string text, ReadTextFile(config_path.string()));
    config = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object())
      return Bad(config_path.string(), "not a valid JSON object");
  }
  std::optional<std::string> source;
  std::string source_name = (fs::path(dir) / "chat_template.jinja").string();
  if (fs::exists(source_name, ec)) {
    ASSIGN_OR_RETURN(source, ReadTextFile(source_name));
  } else {
    source_name = config_path.string();
    absl::StatusOr<std::string> selected = SelectChatTemplate(config);
    if (absl::IsNotFound(selected.status())) return std::optional<ChatFormat>();
    if (!selected.ok()) return Bad(source_name, std::string(selected.status().message()));
    source = *std::move(selected);
  }
  absl::StatusOr<ChatFormat> format = FromSource(*source, TokenString(config, "bos_token"),
                                                 TokenString(config, "eos_token"), limits);
  if (!format.ok())
    return Bad(source_name,
               absl::StrCat("the chat template does not compile: ", format.status().message()));
  return std::optional<ChatFormat>(*std::move(format));
}

absl::StatusOr<ChatFormat> ChatFormat::FromSource(std::string_view source, std::string bos_token,
                                                  std::string eos_token,
                                                  const TemplateLimits& limits) {
  ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::Compile(source, limits));
  return ChatFormat(std::move(t), std::move(bos_token), std::move(eos_token));
}

absl::StatusOr<std::string> ChatFormat::Render(const nlohmann::ordered_json& messages,
                                               const ChatOptions& options) const {
  RETURN_IF_ERROR(CheckMessages(messages));
  if (options.continue_final_message && options.add_generation_prompt)
    return absl::InvalidArgumentError(
        "continue_final_message and add_generation_prompt cannot both be set");
  if (!options.template_kwargs.is_object())
    return absl::InvalidArgumentError("template kwargs must be a JSON object");
  nlohmann::ordered_json vars = options.template_kwargs;
  vars["messages"] = messages;
  vars["add_generation_prompt"] = options.add_generation_prompt;
  vars["bos_token"] = bos_token_;
  vars["eos_token"] = eos_token_;
  absl::StatusOr<std::string> rendered = template_.Render(vars);
  if (!rendered.ok()) {
    if (!ChatTemplate::IsRaisedByTemplate(rendered.status())) return rendered.status();
    return absl::InvalidArgumentError(
        absl::StrCat("the chat template refused the conversation: ", rendered.status().message()));
  }
  if (!options.continue_final_message) return rendered;
  return CutAfterFinalMessage(*std::move(rendered), messages);
}

}  // namespace para::text
