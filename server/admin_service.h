// para.v1.Admin on gRPC's callback API: server stats and adapter management (load, replace,
// unload, list) for operators. Admin keys only (PERMISSION_DENIED for a tenant key,
// UNAUTHENTICATED without a valid key). LoadAdapter finishes from the store's loader thread when
// the load is done; no handler blocks. Thread-safe.
#pragma once

#include "para/v1/admin.grpc.pb.h"
#include "server/service_state.h"

namespace para::server {

using AdminBase = v1::Admin::WithRawCallbackMethod_GetServerStats<
    v1::Admin::WithRawCallbackMethod_LoadAdapter<v1::Admin::WithRawCallbackMethod_UnloadAdapter<
        v1::Admin::WithRawCallbackMethod_ListAdapters<
            v1::Admin::WithRawCallbackMethod_GetAdapter<v1::Admin::CallbackService>>>>>;

class AdminService final : public AdminBase {
 public:
  explicit AdminService(ServiceState* state) : state_(state) {}
  grpc::ServerUnaryReactor* GetServerStats(grpc::CallbackServerContext* ctx,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* LoadAdapter(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* UnloadAdapter(grpc::CallbackServerContext* ctx,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListAdapters(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetAdapter(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;

 private:
  ServiceState* state_;
};

}  // namespace para::server
