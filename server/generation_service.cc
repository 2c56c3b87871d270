#include "server/generation_service.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"

#include "absl/strings/str_cat.h"
#include "server/cancel_link.h"
#include "server/metrics.h"
#include "server/stream_action.h"

namespace para::server {
namespace {

void RecordGrpcError(ServiceState* state, const absl::Status& s) {
  if (state->metrics != nullptr) state->metrics->RecordError("grpc", s);
}

// ---- Unary ----------------------------------------------------------------------------------

// Parses raw request bytes; INVALID_ARGUMENT when they are not a GenerateRequest.
absl::StatusOr<v1::GenerateRequest> ParseRequest(const grpc::ByteBuffer* bytes) {
  v1::GenerateRequest request;
  if (absl::Status s = ParseRequestBytes(bytes, &request); !s.ok()) return s;
  return request;
}

class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  static constexpr bool kStreams = false;
  UnaryCall(ServiceState* state, grpc::ByteBuffer* response, std::string request_id)
      : state_(state), response_(response), request_id_(std::move(request_id)) {}
  void OnCancel() override { link_->Cancel(); }
  // Finishes with an error (counted in the metrics).
  void Fail(const absl::Status& s) {
    RecordGrpcError(state_, s);
    Finish(ToGrpc(s));
  }
  void OnDone() override { delete this; }
  const std::shared_ptr<CancelLink>& link() { return link_; }
  // Engine thread: the request's end.
  void Complete(const sched::DoneEvent& e) {
    if (!e.status.ok()) {
      Fail(e.status);
      return;
    }
    v1::GenerateResponse response;
    FillResponse(e, request_id_, &response);
    SerializeTo(response, response_);
    Finish(grpc::Status::OK);
  }

 private:
  ServiceState* state_;
  grpc::ByteBuffer* response_;
  std::string request_id_;
  std::shared_ptr<CancelLink> link_ = std::make_shared<CancelLink>();
};

class UnaryObserver final : public sched::RequestObserver {
 public:
  explicit UnaryObserver(UnaryCall* call) : call_(call) {}
  void OnToken(const sched::TokenEvent&) override {}
  void OnDone(const sched::DoneEvent& e) override { call_->Complete(e); }

 private:
  UnaryCall* call_;
};

// ---- Streaming ------------------------------------------------------------------------------

class StreamCall final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  static constexpr bool kStreams = true;
  StreamCall(ServiceState* state, std::string request_id)
      : state_(state), request_id_(std::move(request_id)) {}
  void Fail(const absl::Status& s) {
    RecordGrpcError(state_, s);
    Finish(ToGrpc(s));
  }

  void OnCancel() override { link_->Cancel(); }
  void OnDone() override { delete this; }
  void OnWriteDone(bool ok) override {
    if (!ok) link_->Cancel();  // the client is gone; the engine's end (OnDone) finishes the call
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) client_gone_ = true;
      a = Next();
    }
    if (a.kind != Kind::kNone) Run(a);  // kNone: another thread may have finished `this`
  }
  const std::shared_ptr<CancelLink>& link() { return link_; }

  // Engine thread. Tokens coalesce per sequence index until the next write.
  void AddToken(const sched::TokenEvent& e) {
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      v1::GenerateStreamResponse& m = pending_[e.index];
      m.set_index(e.index);
      m.mutable_text_delta()->append(e.text_delta);
      m.add_token_ids(e.token);
      if (e.logprobs != nullptr) FillTokenInfo(*e.logprobs, m.add_logprobs());
      a = Next();
    }
    if (a.kind != Kind::kNone) Run(a);  // kNone: another thread may have finished `this`
  }
  // The end: one last message per returned sequence (each with its finish reason; beam search's,
  // which stream nothing before, with all their text), usage and prompt logprobs on the last.
  void Complete(const sched::DoneEvent& e) {
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      status_ = ToGrpc(e.status);
      RecordGrpcError(state_, e.status);
      if (e.status.ok()) {
        const std::vector<sched::RequestResult> one = {e.result};
        const auto& choices = e.choices.empty() ? one : e.choices;
        int32_t completion = 0;
        for (const auto& c : choices) {
          v1::GenerateStreamResponse& m = pending_[c.index];
          m.set_index(c.index);
          if (!e.streamed) {
            m.set_text_delta(c.text);
            for (int32_t id : c.token_ids) m.add_token_ids(id);
          }
          m.set_finish_reason(ToProto(c.finish_reason));
          completion += static_cast<int32_t>(c.token_ids.size());
        }
        v1::GenerateStreamResponse& last = pending_[choices.back().index];
        FillUsage(e.result, last.mutable_usage());
        last.mutable_usage()->set_completion_tokens(completion);
        for (const auto& lp : e.result.prompt_logprobs)
          FillTokenInfo(lp, last.add_prompt_logprobs());
        final_index_ = choices.back().index;
      }
      a = Next();
    }
    if (a.kind != Kind::kNone) Run(a);  // kNone: another thread may have finished `this`
  }

 private:
  using Kind = StreamStep;
  using Action = StreamAction;

  // Decides the next gRPC operation (one write in flight at a time). Caller holds mu_; the
  // operation itself runs after the lock is released (Run), since gRPC may react inline.
  Action Next() {
    if (writing_ || finished_) return {};
    if (client_gone_) {
      if (!done_) return {};
      finished_ = true;
      return {Kind::kFinish, status_.ok() ? grpc::Status::CANCELLED : status_};
    }
    if (!pending_.empty()) {
      // In index order; at the end the last sequence's message (with usage) goes last.
      auto it = pending_.begin();
      if (done_ && it->first == final_index_ && pending_.size() > 1) ++it;
      it->second.set_request_id(request_id_);
      SerializeTo(it->second, &out_);
      pending_.erase(it);
      if (done_ && status_.ok() && pending_.empty()) {
        finished_ = true;
        return {Kind::kWriteAndFinish, grpc::Status::OK};
      }
      writing_ = true;
      return {Kind::kWrite, {}};
    }
    if (done_) {
      finished_ = true;
      return {Kind::kFinish, status_};
    }
    return {};
  }

  void Run(const Action& a) { RunStreamAction(this, &out_, a); }

  ServiceState* state_;
  std::string request_id_;
  std::shared_ptr<CancelLink> link_ = std::make_shared<CancelLink>();
  std::mutex mu_;
  std::map<int32_t, v1::GenerateStreamResponse> pending_;  // per sequence index
  int32_t final_index_ = 0;  // the message that carries usage goes last
  grpc::ByteBuffer out_;     // the message being written; untouched while writing_
  bool writing_ = false, done_ = false, finished_ = false, client_gone_ = false;
  grpc::Status status_;
};

class StreamObserver final : public sched::RequestObserver {
 public:
  explicit StreamObserver(StreamCall* call) : call_(call) {}
  void OnToken(const sched::TokenEvent& e) override { call_->AddToken(e); }
  void OnDone(const sched::DoneEvent& e) override { call_->Complete(e); }

 private:
  StreamCall* call_;
};

// Creates the call's reactor, then authenticates, resolves the adapter (through the store, which
// may first bring its weights back from disk on its own threads), validates and submits. A
// refusal at any point finishes the call with its status. Nothing here blocks.
template <typename Call, typename Observer, typename... CallArgs>
Call* Launch(ServiceState* state, grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* bytes,
             CallArgs... args) {
  absl::StatusOr<v1::GenerateRequest> request = ParseRequest(bytes);
  auto* call =
      new Call(state, args..., state->NewRequestId(request.ok() ? request->request_id() : ""));
  absl::StatusOr<Principal> who = state->Admit(ctx);
  absl::Status status = who.ok() ? request.status() : who.status();
  if (status.ok() && who->admin)
    status = absl::PermissionDeniedError(
        "an admin key is for the Admin API; generate with a tenant's key");
  if (status.ok() && Call::kStreams && request->best_of() > std::max(1, request->n()))
    status = absl::InvalidArgumentError(absl::StrCat(
        "best_of (", request->best_of(), ") above n (", std::max(1, request->n()),
        ") cannot stream: the best sequences are known only at the end; use Generate"));
  if (!status.ok()) {
    call->Fail(status);
    return call;
  }
  StartGeneration(state, *who, *std::move(request), state->DeadlineOf(ctx),
                  std::make_shared<Observer>(call), call->link(),
                  [call](const absl::Status& s) { call->Fail(s); });
  return call;
}

// Tokenizes `text` into `response` (serialized); the status says why not. A response over the
// message limit would fail in transport with no reason the caller can act on: it is refused here.
grpc::Status TokenizeInto(const ServiceState& state, const std::string& text,
                          grpc::ByteBuffer* response) {
  absl::StatusOr<std::vector<int32_t>> ids = state.engine->model().EncodePrompt(text);
  if (!ids.ok()) return ToGrpc(ids.status());
  v1::TokenizeResponse out;
  const Tokenizer* tok = state.engine->model().tokenizer();
  for (int32_t id : *ids) {
    out.add_ids(id);
    out.add_pieces(tok->IdToPiece(id));
  }
  if (const size_t bytes = out.ByteSizeLong();
      static_cast<int64_t>(bytes) > state.limits.max_message_bytes)
    return ToGrpc(absl::ResourceExhaustedError(absl::StrCat(
        "the text is ", ids->size(), " tokens; their TokenizeResponse would be ", bytes,
        " bytes, over the server's message limit of ", state.limits.max_message_bytes,
        " bytes: tokenize the text in smaller parts")));
  SerializeTo(out, response);
  return grpc::Status::OK;
}

}  // namespace

grpc::ServerUnaryReactor* GenerationService::Generate(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* bytes,
                                                      grpc::ByteBuffer* response) {
  return Launch<UnaryCall, UnaryObserver>(state_, ctx, bytes, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::GenerateStream(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* bytes) {
  return Launch<StreamCall, StreamObserver>(state_, ctx, bytes);
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* bytes,
                                                      grpc::ByteBuffer* response) {
  auto* reactor = ctx->DefaultReactor();
  v1::TokenizeRequest request;
  absl::StatusOr<Principal> who = state_->Admit(ctx, /*allow_when_draining=*/true);
  absl::Status s = who.ok() ? ParseRequestBytes(bytes, &request) : who.status();
  if (s.ok() && static_cast<int64_t>(request.text().size()) > state_->limits.max_prompt_bytes)
    s = absl::InvalidArgumentError(absl::StrCat("text is ", request.text().size(),
                                                " bytes; the limit is ",
                                                state_->limits.max_prompt_bytes));
  if (!s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  // A long text is tokenized on the prepare pool, off the threads other tenants' calls need.
  auto text = std::make_shared<std::string>(std::move(*request.mutable_text()));
  ServiceState* state = state_;
  auto work = [state, text, reactor, response] {
    reactor->Finish(TokenizeInto(*state, *text, response));
  };
  if (static_cast<int64_t>(text->size()) <= state_->limits.inline_prompt_bytes ||
      state_->prepare == nullptr) {
    work();
    return reactor;
  }
  if (absl::Status posted =
          state_->prepare->Post(who->tenant, static_cast<int64_t>(text->size()), work);
      !posted.ok())
    reactor->Finish(ToGrpc(posted));
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::ModelInfo(grpc::CallbackServerContext* ctx,
                                                       const grpc::ByteBuffer* bytes,
                                                       grpc::ByteBuffer* response) {
  auto* reactor = ctx->DefaultReactor();
  v1::ModelInfoRequest request;
  absl::StatusOr<Principal> who = state_->Admit(ctx, /*allow_when_draining=*/true);
  absl::Status s = who.ok() ? ParseRequestBytes(bytes, &request) : who.status();
  if (!s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  const ModelConfig& c = state_->engine->config();
  v1::ModelInfoResponse out;
  out.set_model(state_->model_name);
  out.set_vocab_size(static_cast<int32_t>(c.vocab_size));
  out.set_max_model_len(static_cast<int32_t>(state_->engine->max_model_len()));
  out.set_num_layers(static_cast<int32_t>(c.num_hidden_layers));
  out.set_hidden_size(static_cast<int32_t>(c.hidden_size));
  out.set_device(state_->engine->device_summary());
  for (const store::AdapterInfo& a : state_->adapters->List(who->tenant)) {
    if (a.state == store::State::kFailed) continue;  // not servable (as /v1/models shows)
    auto* summary = out.add_adapters();
    summary->set_name(a.name);
    summary->set_type(store::AdapterTypeName(a.type));
    summary->set_rank(static_cast<int32_t>(a.rank));
  }
  SerializeTo(out, response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace para::server
