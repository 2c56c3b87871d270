// State shared by the gRPC services of one para-server process: the engine and its loop (set
// once the model has loaded), the tenants, request limits and the serving phase. The services
// answer UNAVAILABLE while the model loads and while the server drains.
// Thread-safety: the pointers are published once (atomically, with `ready`) before any call uses
// them; `draining` is atomic; everything pointed to is itself thread-safe for the uses made here.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/engine_loop.h"
#include "server/cancel_link.h"
#include "server/prepare_pool.h"
#include "server/request_convert.h"
#include "server/tenants.h"

namespace para::server {

class ServerMetrics;

struct ServiceState {
  Engine* engine = nullptr;
  sched::EngineLoop* loop = nullptr;
  const TenantRegistry* tenants = nullptr;
  store::AdapterStore* adapters = nullptr;
  const sched::Clock* clock = nullptr;
  ServerMetrics* metrics = nullptr;  // null when metrics are off (tests)
  // Converts requests whose prompt is over limits.inline_prompt_bytes (null: all inline).
  PreparePool* prepare = nullptr;
  RequestLimits limits;
  std::string model_name;                // the base model's name in responses and metrics
  std::vector<std::string> model_names;  // every name meaning the base model (model_name first)
  std::atomic<bool> ready{false};
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_request_id{1};

  // UNAVAILABLE while loading or draining, else the caller's identity (UNAUTHENTICATED without a
  // valid key).
  absl::StatusOr<Principal> Admit(const grpc::CallbackServerContext* ctx,
                                  bool allow_when_draining = false) const;
  // The same for a caller presenting `authorization` (an "Authorization" header's value).
  absl::StatusOr<Principal> AdmitKey(const std::string& authorization,
                                     bool allow_when_draining = false) const;
  // The call's deadline on the engine loop's clock, if it has one.
  std::optional<sched::TimeUs> DeadlineOf(const grpc::CallbackServerContext* ctx) const;
  std::string NewRequestId(const std::string& requested);
  // UNAVAILABLE, saying why, when work has waited longer than `stall_timeout_us` for the engine
  // loop's next iteration (a stuck engine); OK otherwise, and while loading.
  absl::Status EngineHealth() const;
  int64_t stall_timeout_us = 0;  // 0 = never stalled
};

// Resolves the request's adapter through the store (which may first bring its weights back from
// disk, finishing later on a store thread), converts the request for `who` and submits it to the
// loop with `observer`; `link` then carries the loop handle for cancellation. Any refusal calls
// `fail` (once) instead, and the observer then gets nothing. Never blocks: a long prompt is
// tokenized on the prepare pool, not on the calling thread.
void StartGeneration(ServiceState* state, const Principal& who, v1::GenerateRequest request,
                     std::optional<sched::TimeUs> deadline,
                     std::shared_ptr<sched::RequestObserver> observer,
                     std::shared_ptr<CancelLink> link,
                     std::function<void(const absl::Status&)> fail);

inline grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// Parses a request's raw bytes. The services take raw bytes so that a request gRPC could not
// decode (malformed bytes, a string that is not UTF-8) gets INVALID_ARGUMENT with a reason
// rather than the framework's bare UNIMPLEMENTED; unknown fields are refused too.
absl::Status ParseRequestBytes(const grpc::ByteBuffer* bytes, google::protobuf::Message* out);
// Serialises a response into `out` (which is cleared first).
void SerializeTo(const google::protobuf::Message& message, grpc::ByteBuffer* out);

}  // namespace para::server
