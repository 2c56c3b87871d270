#include "engine/text/chat_template.h"

#include <exception>
#include <new>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_ast.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_lexer.h"
#include "engine/text/jinja_parser.h"
#include "engine/text/jinja_renderer.h"

namespace para::text {

using jinja::Error;
using jinja::ErrorKind;
using jinja::Value;

struct ChatTemplate::Compiled {
  TemplateLimits limits;
  jinja::Body body;
};

namespace {

absl::Status ToStatus(const Error& e) {
  if (e.kind() == ErrorKind::kRaised) {
    absl::Status status = absl::InvalidArgumentError(e.message());
    status.SetPayload(jinja::AV(ChatTemplate::kRaisedPayload), absl::Cord());
    return status;
  }
  const char* what = "chat template error";
  switch (e.kind()) {
    case ErrorKind::kSyntax:
      what = "chat template syntax error";
      break;
    case ErrorKind::kLimit:
      what = "chat template limit exceeded";
      break;
    case ErrorKind::kUnsupported:
      what = "chat template uses an unsupported feature";
      break;
    default:
      break;
  }
  if (e.line() > 0)
    return absl::InvalidArgumentError(absl::StrCat(what, " (line ", e.line(), "): ", e.message()));
  return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.message()));
}

// JSON variables to template values: objects keep their key order.
template <typename Json>
Value FromJson(jinja::Renderer& r, const Json& j, int depth) {
  if (depth > r.limits().max_value_depth) {
    throw Error(ErrorKind::kLimit, absl::StrCat("variables nested deeper than ",
                                                r.limits().max_value_depth, " levels"));
  }
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::Int(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) {
        throw Error(ErrorKind::kUnsupported, "an integer variable beyond 64 bits");
      }
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value::Float(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value::String(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(FromJson(r, item, depth + 1));
      return Value::List(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      auto dict = std::make_shared<jinja::DictData>();
      for (auto it = j.begin(); it != j.end(); ++it) {
        dict->Set(Value::String(it.key()), FromJson(r, it.value(), depth + 1));
      }
      return Value::Dict(std::move(dict));
    }
    default:
      throw Error(ErrorKind::kUnsupported, "binary JSON values are not supported");
  }
}

}  // namespace

ChatTemplate::ChatTemplate(std::shared_ptr<const Compiled> compiled)
    : compiled_(std::move(compiled)) {}

absl::StatusOr<ChatTemplate> ChatTemplate::Compile(std::string_view source,
                                                   const TemplateLimits& limits) {
  if (source.size() > limits.max_template_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template limit exceeded: the template has ", source.size(),
                     " bytes, more than the limit of ", limits.max_template_bytes));
  }
  try {
    auto compiled = std::make_shared<Compiled>();
    compiled->limits = limits;
    compiled->body = jinja::Parse(jinja::Tokenize(source), limits.max_nesting_depth);
    return ChatTemplate(std::move(compiled));
  } catch (const Error& e) {
    return ToStatus(e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory compiling the chat template");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("chat template compilation failed: ", e.what()));
  }
}

namespace {

template <typename Json>
absl::StatusOr<std::string> RenderJson(const TemplateLimits& limits, const jinja::Body& body,
                                       const Json& vars,
                                       std::chrono::system_clock::time_point now) {
  if (!vars.is_object()) {
    return absl::InvalidArgumentError("chat template variables must be a JSON object");
  }
  try {
    jinja::Renderer renderer(limits, now);
    auto root = std::make_shared<jinja::Scope>();
    for (auto it = vars.begin(); it != vars.end(); ++it) {
      root->vars[it.key()] = FromJson(renderer, it.value(), 1);
    }
    return renderer.Run(body, std::move(root));
  } catch (const Error& e) {
    return ToStatus(e);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory rendering the chat template");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("chat template rendering failed: ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& variables,
                                                 std::chrono::system_clock::time_point now) const {
  return RenderJson(compiled_->limits, compiled_->body, variables, now);
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& variables) const {
  return Render(variables, std::chrono::system_clock::now());
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& variables) const {
  return RenderJson(compiled_->limits, compiled_->body, variables,
                    std::chrono::system_clock::now());
}

const TemplateLimits& ChatTemplate::limits() const { return compiled_->limits; }

bool ChatTemplate::IsRaisedByTemplate(const absl::Status& status) {
  return status.GetPayload(jinja::AV(kRaisedPayload)).has_value();
}

absl::StatusOr<std::string> SelectChatTemplate(const nlohmann::json& config,
                                               std::string_view name) {
  if (!config.is_object() || !config.contains("chat_template") ||
      config["chat_template"].is_null()) {
    return absl::NotFoundError("tokenizer_config.json has no chat_template");
  }
  const auto& field = config["chat_template"];
  if (field.is_string()) return field.get<std::string>();
  if (!field.is_array()) {
    return absl::InvalidArgumentError("chat_template must be a string or a list of templates");
  }
  std::string names;
  for (const auto& entry : field) {
    if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
        !entry["name"].is_string() || !entry["template"].is_string()) {
      return absl::InvalidArgumentError(
          "each chat_template entry must be an object with string 'name' and 'template'");
    }
    if (entry["name"].get<std::string>() == name) return entry["template"].get<std::string>();
    absl::StrAppend(&names, names.empty() ? "" : ", ", entry["name"].get<std::string>());
  }
  return absl::NotFoundError(
      absl::StrCat("no chat template named '", jinja::AV(name), "' (templates: ", names, ")"));
}

}  // namespace para::text
