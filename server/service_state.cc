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
  std::string key;
  if (it != md.end()) key = BearerToken(std::string(it->second.data(), it->second.size()));
  return tenants->Authenticate(key);
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

std::string ServiceState::NewRequestId(const std::string& requested) {
  if (!requested.empty()) return requested;
  return absl::StrCat("req-", next_request_id.fetch_add(1));
}

}  // namespace para::server
