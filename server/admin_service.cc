#include "server/admin_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"

namespace para::server {
namespace {

// Authenticates an admin and parses the request; an error status means: finish with it.
absl::Status AdminRequest(ServiceState* state, grpc::CallbackServerContext* ctx,
                          const grpc::ByteBuffer* bytes, google::protobuf::Message* request) {
  absl::StatusOr<Principal> who = state->Admit(ctx, /*allow_when_draining=*/true);
  if (!who.ok()) return who.status();
  if (!who->admin) return absl::PermissionDeniedError("the admin API needs an admin key");
  return ParseRequestBytes(bytes, request);
}

v1::AdapterInfo ToProto(const store::AdapterInfo& i) {
  v1::AdapterInfo out;
  out.set_name(i.name);
  out.set_tenant(i.tenant);
  out.set_path(i.path);
  out.set_type(i.type == store::AdapterType::kPara   ? v1::ADAPTER_TYPE_PARA
               : i.type == store::AdapterType::kLora ? v1::ADAPTER_TYPE_LORA
                                                     : v1::ADAPTER_TYPE_AUTO);
  out.set_rank(static_cast<int32_t>(i.rank));
  out.set_bytes(i.bytes);
  out.set_version(i.version);
  out.set_tier(
      i.tier == store::Tier::kDevice
          ? v1::ADAPTER_TIER_DEVICE
          : (i.tier == store::Tier::kHost ? v1::ADAPTER_TIER_HOST : v1::ADAPTER_TIER_DISK));
  out.set_in_flight(i.in_flight);
  out.set_load_seconds(i.load_time_us / 1e6);
  out.set_loaded_at_unix_seconds(
      std::chrono::duration<double>(i.loaded_at.time_since_epoch()).count());
  out.set_sha256(i.sha256);
  switch (i.state) {
    case store::State::kReady:
      out.set_state(v1::ADAPTER_STATE_READY);
      break;
    case store::State::kOnDisk:
      out.set_state(v1::ADAPTER_STATE_ON_DISK);
      break;
    case store::State::kReloading:
      out.set_state(v1::ADAPTER_STATE_RELOADING);
      break;
    case store::State::kFailed:
      out.set_state(v1::ADAPTER_STATE_FAILED);
      break;
  }
  out.set_last_error(i.last_error);
  out.set_retired_in_flight(i.retired_in_flight);
  return out;
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::GetServerStats(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* bytes,
                                                       grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  v1::GetServerStatsRequest request;
  if (absl::Status s = AdminRequest(state_, ctx, bytes, &request); !s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  const sched::LoopSnapshot snap = state_->loop->Snapshot();
  v1::ServerStats response;
  response.set_kv_blocks_total(snap.kv_blocks_total);
  response.set_kv_blocks_free(snap.kv_blocks_free);
  response.set_prefix_cache_query_tokens(snap.prefix_query_tokens);
  response.set_prefix_cache_hit_tokens(snap.prefix_hit_tokens);
  response.set_prefix_cache_blocks(snap.prefix_cached_blocks);
  response.set_block_size(snap.block_size);
  response.set_requests_running(snap.running);
  response.set_requests_waiting(snap.waiting);
  response.set_requests_in_flight(snap.in_flight);
  response.set_preemptions(snap.scheduler.preemptions);
  response.set_engine_steps(snap.steps);
  response.set_draining(state_->draining.load());
  SerializeTo(response, out);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::LoadAdapter(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* bytes,
                                                    grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  v1::LoadAdapterRequest request;
  absl::Status s = AdminRequest(state_, ctx, bytes, &request);
  if (s.ok() && !state_->tenants->HasTenant(request.tenant()))
    s = absl::NotFoundError(absl::StrCat("unknown tenant '", request.tenant(), "'"));
  if (!s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  store::LoadSpec spec;
  spec.name = request.name();
  spec.tenant = request.tenant();
  spec.path = request.path();
  spec.sha256 = request.sha256();
  spec.type = request.type() == v1::ADAPTER_TYPE_PARA   ? store::AdapterType::kPara
              : request.type() == v1::ADAPTER_TYPE_LORA ? store::AdapterType::kLora
                                                        : store::AdapterType::kAuto;
  state_->adapters->Load(spec, [reactor, out](absl::StatusOr<store::AdapterInfo> info) {
    if (!info.ok()) return reactor->Finish(ToGrpc(info.status()));
    SerializeTo(ToProto(*info), out);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::UnloadAdapter(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* bytes,
                                                      grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  v1::UnloadAdapterRequest request;
  absl::Status s = AdminRequest(state_, ctx, bytes, &request);
  if (s.ok()) s = state_->adapters->Unload(request.name());
  if (s.ok()) SerializeTo(v1::UnloadAdapterResponse(), out);
  reactor->Finish(ToGrpc(s));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ListAdapters(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* bytes,
                                                     grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  v1::ListAdaptersRequest request;
  absl::Status s = AdminRequest(state_, ctx, bytes, &request);
  if (s.ok()) {
    v1::ListAdaptersResponse response;
    for (const store::AdapterInfo& i : state_->adapters->List(request.tenant()))
      *response.add_adapters() = ToProto(i);
    SerializeTo(response, out);
  }
  reactor->Finish(ToGrpc(s));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::GetAdapter(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* bytes,
                                                   grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  v1::GetAdapterRequest request;
  absl::Status s = AdminRequest(state_, ctx, bytes, &request);
  absl::StatusOr<store::AdapterInfo> info = s.ok() ? state_->adapters->Get(request.name()) : s;
  if (info.ok()) SerializeTo(ToProto(*info), out);
  reactor->Finish(ToGrpc(info.status()));
  return reactor;
}

}  // namespace para::server
