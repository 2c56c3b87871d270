#include "server/service_state.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"

namespace para::server {

absl::StatusOr<Principal> ServiceState::Admit(const grpc::CallbackServerContext* ctx,
                                              bool allow_when_draining) const {
  if (!ready.load()) return absl::UnavailableError("the model is still loading");
  if (draining.load() && !allow_when_draining)
    return absl::UnavailableError("the server is shutting down and accepts no new requests");
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::string value;
  if (it != md.end()) value.assign(it->second.data(), it->second.size());
  return tenants->Authenticate(BearerToken(value));
}

absl::StatusOr<Principal> ServiceState::AdmitKey(const std::string& authorization,
                                                 bool allow_when_draining) const {
  if (!ready.load()) return absl::UnavailableError("the model is still loading");
  if (draining.load() && !allow_when_draining)
    return absl::UnavailableError("the server is shutting down and accepts no new requests");
  return tenants->Authenticate(BearerToken(authorization));
}

namespace {

// The bytes a request's prompt gives the tokenizer (a chat's: its messages' contents).
int64_t PromptBytes(const v1::GenerateRequest& r) {
  if (r.has_text()) return static_cast<int64_t>(r.text().size());
  int64_t bytes = 0;
  if (r.has_chat())
    for (const v1::ChatMessage& m : r.chat().messages())
      bytes += static_cast<int64_t>(m.content().size());
  return bytes;
}

}  // namespace

void StartGeneration(ServiceState* state, const Principal& who, v1::GenerateRequest request,
                     std::optional<sched::TimeUs> deadline,
                     std::shared_ptr<sched::RequestObserver> observer,
                     std::shared_ptr<CancelLink> link,
                     std::function<void(const absl::Status&)> fail) {
  auto shared = std::make_shared<const v1::GenerateRequest>(std::move(request));
  // Validates and submits with the resolved adapter (null = base model).
  auto submit = [state, shared, who, deadline, observer, link, fail](const store::Lease* lease) {
    absl::StatusOr<sched::Submission> sub =
        ToSubmission(*shared, who, lease ? &lease->ref() : nullptr, *state->engine, state->limits);
    absl::Status s = sub.status();
    if (sub.ok()) {
      sub->deadline = deadline;
      sub->observer = observer;
      sub->adapter_name = shared->adapter();
      if (lease) sub->keepalive = std::make_shared<store::Lease>(*lease);
      absl::StatusOr<uint64_t> handle = state->loop->Submit(*std::move(sub));
      if (handle.ok()) {
        link->SetHandle(state->loop, *handle);
        return;
      }
      s = handle.status();
    }
    fail(s);
  };
  // A long prompt is converted (tokenized) on the prepare pool, whatever thread gets here.
  const int64_t bytes = PromptBytes(*shared);
  PreparePool* pool = bytes > state->limits.inline_prompt_bytes ? state->prepare : nullptr;
  auto run = [pool, bytes, tenant = who.tenant, submit, fail](const store::Lease* lease) {
    if (pool == nullptr) return submit(lease);
    std::optional<store::Lease> held;
    if (lease) held = *lease;
    absl::Status s = pool->Post(tenant, bytes, [submit, held] { submit(held ? &*held : nullptr); });
    if (!s.ok()) fail(s);
  };
  if (shared->adapter().empty()) {
    run(nullptr);
    return;
  }
  state->adapters->Acquire(who.tenant, shared->adapter(),
                           [run, fail](absl::StatusOr<store::Lease> lease) {
                             if (!lease.ok()) return fail(lease.status());
                             run(&*lease);
                           });
}

std::optional<sched::TimeUs> ServiceState::DeadlineOf(
    const grpc::CallbackServerContext* ctx) const {
  const auto deadline = ctx->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return std::nullopt;
  const auto left = std::chrono::duration_cast<std::chrono::microseconds>(
      deadline - std::chrono::system_clock::now());
  if (left.count() > int64_t{1} << 50) return std::nullopt;  // effectively infinite
  return clock->Now() + left.count();
}

absl::Status ParseRequestBytes(const grpc::ByteBuffer* bytes, google::protobuf::Message* out) {
  grpc::ByteBuffer copy(*bytes);
  if (!grpc::SerializationTraits<google::protobuf::Message>::Deserialize(&copy, out).ok())
    return absl::InvalidArgumentError(
        absl::StrCat("the request is not a valid ", out->GetTypeName(),
                     " (malformed bytes, or a string field that is not valid UTF-8)"));
  return CheckNoUnknownFields(*out);
}

void SerializeTo(const google::protobuf::Message& message, grpc::ByteBuffer* out) {
  out->Clear();
  bool own = false;
  grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, out, &own);
}

absl::Status ServiceState::EngineHealth() const {
  if (!ready.load() || stall_timeout_us <= 0) return absl::OkStatus();
  const sched::TimeUs stalled = loop->StalledFor();
  if (stalled <= stall_timeout_us) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("engine stalled: work has waited ", stalled / 1000,
                                             " ms for the engine loop (limit ",
                                             stall_timeout_us / 1000, " ms)"));
}

std::string ServiceState::NewRequestId(const std::string& requested) {
  if (!requested.empty()) return requested;
  return absl::StrCat("req-", next_request_id.fetch_add(1));
}

}  // namespace para::server
