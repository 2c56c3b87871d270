// fmaas.GenerationService (the TGIS-compatible API, proto/fmaas/generation.proto) on gRPC's
// callback API, served on the same port as para.v1 with the same keys ("authorization: Bearer
// KEY"), the same refusals (an admin key cannot generate) and the same status codes. adapter_id
// (or prefix_id) names one of the caller's adapters; model_id is not checked. Requests go through
// StartGeneration like para.v1's, so adapters load from disk or lazily the same way. Handlers
// never block. Thread-safe.
#pragma once

#include "fmaas/generation.grpc.pb.h"
#include "server/service_state.h"

namespace para::server {

class TgisService final : public fmaas::GenerationService::CallbackService {
 public:
  explicit TgisService(ServiceState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* ctx,
                                     const fmaas::BatchedGenerationRequest* request,
                                     fmaas::BatchedGenerationResponse* response) override;
  grpc::ServerWriteReactor<fmaas::GenerationResponse>* GenerateStream(
      grpc::CallbackServerContext* ctx, const fmaas::SingleGenerationRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const fmaas::BatchedTokenizeRequest* request,
                                     fmaas::BatchedTokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* ctx,
                                      const fmaas::ModelInfoRequest* request,
                                      fmaas::ModelInfoResponse* response) override;

 private:
  ServiceState* state_;
};

}  // namespace para::server
