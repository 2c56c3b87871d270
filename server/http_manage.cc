// The vLLM-compatible management and utility endpoints of an HTTP session: /health and /ping,
// /version, /tokenize, /detokenize, /v1/models and /v1/models/{id}, and adapter management
// (/v1/load_lora_adapter, /v1/unload_lora_adapter) behind the admin key.
#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/http_session.h"
#include "server/openai_fields.h"

#ifndef PARA_VERSION
#define PARA_VERSION "unknown"
#endif

namespace para::server {

namespace net = boost::asio;
namespace http = boost::beast::http;
using nlohmann::json;

namespace {

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json BaseModelCard(const ServiceState& st, const std::string& id, int64_t created) {
  return {{"id", id},
          {"object", "model"},
          {"created", created},
          {"owned_by", "para-server"},
          {"root", st.model_name},
          {"parent", nullptr},
          {"max_model_len", st.engine->max_model_len()}};
}

json AdapterCard(const ServiceState& st, const store::AdapterInfo& a, int64_t created) {
  return {{"id", a.name},
          {"object", "model"},
          {"created", created},
          {"owned_by", a.tenant},
          {"root", a.name},  // not its path: tenants see no server paths
          {"parent", st.model_name},
          {"max_model_len", st.engine->max_model_len()},
          {"adapter_type", store::AdapterTypeName(a.type)},
          {"rank", a.rank}};
}

bool IsBaseName(const ServiceState& st, const std::string& name) {
  return std::find(st.model_names.begin(), st.model_names.end(), name) != st.model_names.end();
}

// The adapter `name` when `who` may use it (NOT_FOUND otherwise: another tenant's adapters are
// not revealed).
absl::StatusOr<store::AdapterInfo> VisibleAdapter(const ServiceState& st, const Principal& who,
                                                  const std::string& name) {
  absl::StatusOr<store::AdapterInfo> a = st.adapters->Get(name);
  if (!a.ok() || (!who.admin && a->tenant != who.tenant) || a->state == store::State::kFailed)
    return absl::NotFoundError(absl::StrCat("The model `", name, "` does not exist."));
  return a;
}

// The optional "model" of /tokenize and /detokenize: a base model name or a visible adapter.
absl::Status CheckModelField(const ServiceState& st, const Principal& who, const json& body) {
  auto it = body.find("model");
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return openai::NotA("model", "a string");
  const std::string name = it->get<std::string>();
  if (IsBaseName(st, name)) return absl::OkStatus();
  return VisibleAdapter(st, who, name).status();
}

// "%2F" -> "/" (a malformed escape is kept as it is).
std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hi = 0, lo = 0;
    auto hex = [](char c, int* v) {
      if (c >= '0' && c <= '9') return *v = c - '0', true;
      if (c >= 'a' && c <= 'f') return *v = c - 'a' + 10, true;
      if (c >= 'A' && c <= 'F') return *v = c - 'A' + 10, true;
      return false;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1], &hi) && hex(s[i + 2], &lo)) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Parses a /v1/load_lora_adapter body into a load spec (the tenant resolved later).
struct LoadBody {
  store::LoadSpec spec;
  bool load_inplace = false;
};

absl::StatusOr<LoadBody> ParseLoadBody(const std::string& text) {
  absl::StatusOr<json> body = openai::ParseBody(
      text, {"lora_name", "lora_path", "load_inplace", "tenant", "adapter_type", "sha256"});
  if (!body.ok()) return body.status();
  LoadBody out;
  auto str = [&](const char* field, std::string* dst) -> absl::Status {
    auto it = body->find(field);
    if (it == body->end() || it->is_null()) return absl::OkStatus();
    if (!it->is_string()) return openai::NotA(field, "a string");
    *dst = it->get<std::string>();
    return absl::OkStatus();
  };
  std::string type = "auto";
  for (absl::Status s :
       {str("lora_name", &out.spec.name), str("lora_path", &out.spec.path),
        str("tenant", &out.spec.tenant), str("adapter_type", &type),
        str("sha256", &out.spec.sha256), openai::GetBool(*body, "load_inplace", &out.load_inplace)})
    if (!s.ok()) return s;
  if (out.spec.name.empty() || out.spec.path.empty())
    return openai::Invalid("Both 'lora_name' and 'lora_path' must be provided.");
  absl::StatusOr<store::AdapterType> t = store::ParseAdapterType(type);
  if (!t.ok()) return openai::Invalid("'adapter_type' must be auto, para or lora");
  out.spec.type = *t;
  return out;
}

}  // namespace

// ---- Health, version ----------------------------------------------------------------------

void HttpSession::ServeHealth() {
  const ServiceState& st = *shared_->state;
  if (!st.ready.load()) return Respond(503, "text/plain", "loading\n");
  if (absl::Status s = st.EngineHealth(); !s.ok())
    return Respond(503, "text/plain", absl::StrCat(s.message(), "\n"));
  Respond(200, "text/plain", "");
}

void HttpSession::ServeLiveness() {
  if (absl::Status s = shared_->state->EngineHealth(); !s.ok())
    return Respond(503, "text/plain", absl::StrCat(s.message(), "\n"));
  Respond(200, "text/plain", "ok\n");
}

void HttpSession::ServeVersion() {
  Respond(200, "application/json", openai::Dump({{"version", PARA_VERSION}}));
}

// ---- Models -------------------------------------------------------------------------------

void HttpSession::ServeModels(const Request& req) {
  ServiceState& st = *shared_->state;
  absl::StatusOr<Principal> who =
      st.AdmitKey(std::string(req[http::field::authorization]), /*allow_when_draining=*/true);
  if (!who.ok()) return RespondError(who.status());
  const int64_t created = UnixSeconds();
  json data = json::array();
  for (const std::string& name : st.model_names) data.push_back(BaseModelCard(st, name, created));
  for (const store::AdapterInfo& a : st.adapters->List(who->admin ? "" : who->tenant)) {
    if (a.state == store::State::kFailed) continue;
    data.push_back(AdapterCard(st, a, created));
  }
  Respond(200, "application/json", openai::Dump({{"object", "list"}, {"data", data}}));
}

void HttpSession::ServeModel(const Request& req, const std::string& escaped_id) {
  ServiceState& st = *shared_->state;
  absl::StatusOr<Principal> who =
      st.AdmitKey(std::string(req[http::field::authorization]), /*allow_when_draining=*/true);
  if (!who.ok()) return RespondError(who.status());
  const std::string id = PercentDecode(escaped_id);
  if (IsBaseName(st, id))
    return Respond(200, "application/json", openai::Dump(BaseModelCard(st, id, UnixSeconds())));
  absl::StatusOr<store::AdapterInfo> a = VisibleAdapter(st, *who, id);
  if (!a.ok()) return RespondError(a.status());
  Respond(200, "application/json", openai::Dump(AdapterCard(st, *a, UnixSeconds())));
}

// ---- Tokenizer ----------------------------------------------------------------------------

void HttpSession::ServeTokenize(const Request& req) {
  ServiceState& st = *shared_->state;
  absl::StatusOr<Principal> who =
      st.AdmitKey(std::string(req[http::field::authorization]), /*allow_when_draining=*/true);
  if (!who.ok()) return RespondError(who.status());
  absl::StatusOr<json> body = openai::ParseBody(
      req.body(), {"model", "prompt", "messages", "add_special_tokens", "add_generation_prompt",
                   "continue_final_message", "chat_template_kwargs", "return_token_strs"});
  if (!body.ok()) return RespondError(body.status());
  if (absl::Status s = CheckModelField(st, *who, *body); !s.ok()) return RespondError(s);
  const Model& model = st.engine->model();
  const Tokenizer* tok = model.tokenizer();
  if (tok == nullptr)
    return RespondError(absl::FailedPreconditionError("this model has no tokenizer"));
  const bool has_prompt = body->contains("prompt"), has_messages = body->contains("messages");
  if (has_prompt == has_messages)
    return RespondError(openai::Invalid("give exactly one of 'prompt' and 'messages'"));
  bool special = !has_messages, generation_prompt = true, continue_final = false, strs = false;
  for (absl::Status s : {openai::GetBool(*body, "add_special_tokens", &special),
                         openai::GetBool(*body, "add_generation_prompt", &generation_prompt),
                         openai::GetBool(*body, "continue_final_message", &continue_final),
                         openai::GetBool(*body, "return_token_strs", &strs)})
    if (!s.ok()) return RespondError(s);
  absl::StatusOr<std::vector<int32_t>> ids;
  if (has_prompt) {
    const json& p = (*body)["prompt"];
    if (!p.is_string()) return RespondError(openai::NotA("prompt", "a string"));
    const std::string text = p.get<std::string>();
    if (static_cast<int64_t>(text.size()) > st.limits.max_prompt_bytes)
      return RespondError(openai::Invalid(absl::StrCat(
          "'prompt' is ", text.size(), " bytes; the limit is ", st.limits.max_prompt_bytes)));
    ids = special ? model.EncodePrompt(text) : tok->Encode(text);
  } else {
    const json& m = (*body)["messages"];
    if (!m.is_array() || m.empty())
      return RespondError(openai::NotA("messages", "a non-empty array of messages"));
    text::ChatOptions options;
    options.add_generation_prompt = generation_prompt && !continue_final;
    options.continue_final_message = continue_final;
    if (auto kw = body->find("chat_template_kwargs"); kw != body->end() && !kw->is_null()) {
      if (!kw->is_object()) return RespondError(openai::NotA("chat_template_kwargs", "an object"));
      options.template_kwargs = nlohmann::ordered_json::parse(kw->dump());
    }
    ids = model.EncodeChat(nlohmann::ordered_json::parse(m.dump()), options);
    if (ids.ok() && special) tok->ApplyPostProcessor(&*ids);
  }
  if (!ids.ok()) return RespondError(ids.status());
  json out = {{"count", ids->size()},
              {"max_model_len", st.engine->max_model_len()},
              {"tokens", *ids},
              {"token_strs", nullptr}};
  if (strs) {
    json pieces = json::array();
    for (int32_t id : *ids) pieces.push_back(tok->IdToPiece(id));
    out["token_strs"] = pieces;
  }
  Respond(200, "application/json", openai::Dump(out));
}

void HttpSession::ServeDetokenize(const Request& req) {
  ServiceState& st = *shared_->state;
  absl::StatusOr<Principal> who =
      st.AdmitKey(std::string(req[http::field::authorization]), /*allow_when_draining=*/true);
  if (!who.ok()) return RespondError(who.status());
  absl::StatusOr<json> body = openai::ParseBody(req.body(), {"model", "tokens"});
  if (!body.ok()) return RespondError(body.status());
  if (absl::Status s = CheckModelField(st, *who, *body); !s.ok()) return RespondError(s);
  const Tokenizer* tok = st.engine->model().tokenizer();
  if (tok == nullptr)
    return RespondError(absl::FailedPreconditionError("this model has no tokenizer"));
  auto it = body->find("tokens");
  if (it == body->end() || !it->is_array())
    return RespondError(openai::Invalid("'tokens' is required: an array of token ids"));
  std::vector<int32_t> ids;
  const int64_t vocab = tok->vocab_size();
  for (const json& t : *it) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= vocab)
      return RespondError(openai::Invalid(
          absl::StrCat("'tokens' must hold token ids in [0, ", vocab, "); got ", t.dump())));
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  Respond(200, "application/json", openai::Dump({{"prompt", tok->Decode(ids)}}));
}

// ---- Adapter management -------------------------------------------------------------------

absl::Status HttpSession::AdmitAdmin(const Request& req) {
  absl::StatusOr<Principal> who = shared_->state->AdmitKey(
      std::string(req[http::field::authorization]), /*allow_when_draining=*/true);
  if (!who.ok()) return who.status();
  if (!who->admin)
    return absl::PermissionDeniedError("adapter management needs an admin key, not a tenant's");
  return absl::OkStatus();
}

void HttpSession::LoadAdapter(const Request& req) {
  ServiceState& st = *shared_->state;
  if (absl::Status s = AdmitAdmin(req); !s.ok()) return RespondError(s);
  absl::StatusOr<LoadBody> body = ParseLoadBody(req.body());
  if (!body.ok()) return RespondError(body.status());
  store::LoadSpec spec = std::move(body->spec);
  absl::StatusOr<store::AdapterInfo> existing = st.adapters->Get(spec.name);
  if (existing.ok() && !body->load_inplace)
    return RespondError(openai::Invalid(
        absl::StrCat("The lora adapter '", spec.name,
                     "' has already been loaded. Set 'load_inplace' to replace it.")));
  if (spec.tenant.empty() && existing.ok()) spec.tenant = existing->tenant;
  if (spec.tenant.empty() && st.tenants->tenants().size() == 1)
    spec.tenant = st.tenants->tenants().begin()->first;
  if (spec.tenant.empty())
    return RespondError(openai::Invalid(
        "'tenant' is required: the tenant that owns the adapter (the server has several)"));
  if (!st.tenants->HasTenant(spec.tenant))
    return RespondError(absl::NotFoundError(absl::StrCat("unknown tenant '", spec.tenant, "'")));
  const std::string name = spec.name;
  st.adapters->Load(
      std::move(spec), [self = shared_from_this(), name](absl::StatusOr<store::AdapterInfo> info) {
        net::post(self->stream_.get_executor(), [self, name, info = std::move(info)] {
          if (!info.ok()) return self->RespondError(info.status());
          self->Respond(200, "text/plain; charset=utf-8",
                        absl::StrCat("Success: LoRA adapter '", name, "' added successfully."));
        });
      });
}

void HttpSession::UnloadAdapter(const Request& req) {
  ServiceState& st = *shared_->state;
  if (absl::Status s = AdmitAdmin(req); !s.ok()) return RespondError(s);
  absl::StatusOr<json> body = openai::ParseBody(req.body(), {"lora_name", "lora_int_id"});
  if (!body.ok()) return RespondError(body.status());
  auto it = body->find("lora_name");
  if (it == body->end() || !it->is_string() || it->get<std::string>().empty())
    return RespondError(openai::Invalid("'lora_name' is required"));
  const std::string name = it->get<std::string>();
  if (absl::Status s = st.adapters->Unload(name); !s.ok()) {
    if (s.code() == absl::StatusCode::kNotFound)
      s = absl::NotFoundError(absl::StrCat("The lora adapter '", name, "' cannot be found."));
    return RespondError(s);
  }
  Respond(200, "text/plain; charset=utf-8",
          absl::StrCat("Success: LoRA adapter '", name, "' removed successfully."));
}

}  // namespace para::server
