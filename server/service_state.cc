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
  if (shared->adapter().empty()) {
    submit(nullptr);
    return;
  }
  state->adapters->Acquire(who.tenant, shared->adapter(),
                           [submit, fail](absl::StatusOr<store::Lease> lease) {
                             if (!lease.ok()) return fail(lease.status());
                             submit(&*lease);
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
