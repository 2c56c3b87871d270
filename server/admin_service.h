// para.v1.Admin on gRPC's callback API: operator views of the server. Admin keys only
// (PERMISSION_DENIED for a tenant key, UNAUTHENTICATED without a valid key). Thread-safe.
#pragma once

#include "para/v1/admin.grpc.pb.h"
#include "server/service_state.h"

namespace para::server {

class AdminService final
    : public v1::Admin::WithRawCallbackMethod_GetServerStats<v1::Admin::CallbackService> {
 public:
  explicit AdminService(ServiceState* state) : state_(state) {}
  grpc::ServerUnaryReactor* GetServerStats(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;

 private:
  ServiceState* state_;
};

}  // namespace para::server
