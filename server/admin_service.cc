#include "server/admin_service.h"

namespace para::server {

grpc::ServerUnaryReactor* AdminService::GetServerStats(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* bytes,
                                                       grpc::ByteBuffer* out) {
  auto* reactor = ctx->DefaultReactor();
  v1::GetServerStatsRequest request;
  absl::StatusOr<Principal> who = state_->Admit(ctx, /*allow_when_draining=*/true);
  absl::Status s = who.ok() ? ParseRequestBytes(bytes, &request) : who.status();
  if (s.ok() && !who->admin) s = absl::PermissionDeniedError("the admin API needs an admin key");
  if (!s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  const sched::LoopSnapshot snap = state_->loop->Snapshot();
  v1::ServerStats response;
  response.set_kv_blocks_total(snap.kv_blocks_total);
  response.set_kv_blocks_free(snap.kv_blocks_free);
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

}  // namespace para::server
