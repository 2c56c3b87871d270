// para.v1.Generation on gRPC's callback API. Handlers never block: they validate, submit to the
// engine loop and return a reactor; the engine thread then feeds the reactor tokens, and the
// reactor writes them (one write in flight, later tokens coalesced into the next message).
// Every method takes the raw request bytes and parses them here (ParseRequestBytes), so that a
// request gRPC could not decode gets INVALID_ARGUMENT with a reason.
// Client cancellation and deadlines cancel the request in the loop, which frees its blocks at the
// next step. Thread-safe: gRPC calls it from its threads.
#pragma once

#include "para/v1/generation.grpc.pb.h"
#include "server/service_state.h"

namespace para::server {

using GenerationBase = v1::Generation::WithRawCallbackMethod_Generate<
    v1::Generation::WithRawCallbackMethod_GenerateStream<
        v1::Generation::WithRawCallbackMethod_Tokenize<
            v1::Generation::WithRawCallbackMethod_ModelInfo<v1::Generation::CallbackService>>>>;

class GenerationService final : public GenerationBase {
 public:
  explicit GenerationService(ServiceState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(
      grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;

 private:
  ServiceState* state_;
};

}  // namespace para::server
