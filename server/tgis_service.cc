#include "server/tgis_service.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "server/cancel_link.h"
#include "server/metrics.h"
#include "server/stream_action.h"
#include "server/tgis_convert.h"

namespace para::server {
namespace {

void RecordError(ServiceState* state, const absl::Status& s) {
  if (state->metrics != nullptr) state->metrics->RecordError("grpc", s);
}

uint64_t RandomSeed() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return rng() >> 1;  // fits the int64 range clients may print it in
}

// Authenticates a generation call: a tenant's key, not while loading or draining.
absl::StatusOr<Principal> AdmitGenerator(ServiceState* state, grpc::CallbackServerContext* ctx) {
  absl::StatusOr<Principal> who = state->Admit(ctx);
  if (who.ok() && who->admin)
    return absl::PermissionDeniedError(
        "an admin key is for the Admin API; generate with a tenant's key");
  return who;
}

// ---- Generate (a batch) -----------------------------------------------------------------------

// Lives until gRPC is done with it and every submitted request has ended (refs_).
class BatchCall final : public grpc::ServerUnaryReactor {
 public:
  BatchCall(ServiceState* state, fmaas::BatchedGenerationResponse* out)
      : state_(state), out_(out) {}

  void Fail(const absl::Status& s) {
    RecordError(state_, s);
    Finish(ToGrpc(s));
  }
  void OnCancel() override { CancelAll(); }
  void OnDone() override { Unref(); }

  // Submits every converted prompt; the call finishes when all are done or one fails.
  void Start(std::vector<tgis::Converted> items, const Principal& who,
             std::optional<sched::TimeUs> deadline);
  void Ended(size_t i, const absl::Status& status, const sched::RequestResult* result);

 private:
  class Observer final : public sched::RequestObserver {
   public:
    Observer(BatchCall* call, size_t i) : call_(call), i_(i) {}
    void OnToken(const sched::TokenEvent&) override {}
    void OnDone(const sched::DoneEvent& e) override { call_->Ended(i_, e.status, &e.result); }

   private:
    BatchCall* call_;
    size_t i_;
  };

  void CancelAll() {
    for (auto& l : links_) l->Cancel();
  }
  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  ServiceState* state_;
  fmaas::BatchedGenerationResponse* out_;
  std::vector<tgis::Converted> items_;
  std::vector<std::shared_ptr<CancelLink>> links_;
  std::vector<sched::RequestResult> results_;
  std::atomic<int> refs_{1};  // gRPC's, plus one per submitted request
  std::mutex mu_;
  size_t remaining_ = 0;
  bool finished_ = false;
};

void BatchCall::Start(std::vector<tgis::Converted> items, const Principal& who,
                      std::optional<sched::TimeUs> deadline) {
  refs_.fetch_add(1);  // held while submitting: an early refusal may finish the call meanwhile
  items_ = std::move(items);
  results_.resize(items_.size());
  remaining_ = items_.size();
  for (size_t i = 0; i < items_.size(); ++i) links_.push_back(std::make_shared<CancelLink>());
  for (size_t i = 0; i < items_.size(); ++i) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) break;  // an earlier prompt was refused: the call has its answer
    }
    refs_.fetch_add(1);
    StartGeneration(state_, who, items_[i].request, deadline, std::make_shared<Observer>(this, i),
                    links_[i], [this, i](const absl::Status& s) { Ended(i, s, nullptr); });
  }
  Unref();
}

void BatchCall::Ended(size_t i, const absl::Status& status, const sched::RequestResult* result) {
  bool finish = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_) {
      if (!status.ok()) {
        finished_ = finish = true;
      } else {
        results_[i] = *result;
        finished_ = finish = --remaining_ == 0;
      }
    }
  }
  if (finish && !status.ok()) {
    CancelAll();
    Fail(status);
  } else if (finish) {
    const Model& model = state_->engine->model();
    for (size_t k = 0; k < items_.size(); ++k)
      *out_->add_responses() = tgis::Response(items_[k], results_[k], model);
    Finish(grpc::Status::OK);
  }
  Unref();
}

// ---- GenerateStream ---------------------------------------------------------------------------

class StreamCall final : public grpc::ServerWriteReactor<fmaas::GenerationResponse> {
 public:
  StreamCall(ServiceState* state, tgis::Converted c) : state_(state), c_(std::move(c)) {}

  // Before submission (no engine events will come).
  void Fail(const absl::Status& s) {
    RecordError(state_, s);
    Finish(ToGrpc(s));
  }
  void OnCancel() override { link_->Cancel(); }
  void OnDone() override { delete this; }
  void OnWriteDone(bool ok) override {
    if (!ok) link_->Cancel();  // the client is gone; the engine's end finishes the call
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
  const tgis::Converted& converted() const { return c_; }

  // Engine thread: one message per token, coalesced while a write is in flight.
  void AddToken(const sched::TokenEvent& e) {
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Head();
      fmaas::GenerationResponse m = tgis::StreamToken(c_, e, ++generated_, state_->engine->model());
      if (pending_.size() > 1) {  // the back is an unsent token message: merge into it
        fmaas::GenerationResponse& back = pending_.back();
        back.mutable_text()->append(m.text());
        back.set_generated_token_count(m.generated_token_count());
        for (auto& t : *m.mutable_tokens()) *back.add_tokens() = std::move(t);
      } else {
        pending_.push_back(std::move(m));
      }
      a = Next();
    }
    if (a.kind != Kind::kNone) Run(a);  // kNone: another thread may have finished `this`
  }
  // The end (from the engine, or a refusal after submission started).
  void Ended(const absl::Status& status, const sched::RequestResult* r) {
    Action a;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      status_ = ToGrpc(status);
      RecordError(state_, status);
      if (status.ok()) {
        Head();
        pending_.push_back(tgis::StreamTail(c_, *r, state_->engine->model()));
      }
      a = Next();
    }
    if (a.kind != Kind::kNone) Run(a);  // kNone: another thread may have finished `this`
  }

 private:
  using Kind = StreamStep;
  using Action = StreamAction;

  // The first message goes out with the first token (a refused request sends none). mu_ held.
  void Head() {
    if (head_sent_) return;
    head_sent_ = true;
    pending_.push_front(tgis::StreamHead(c_));
  }

  // The next gRPC operation (one write in flight at a time). mu_ held; Run does it unlocked.
  Action Next() {
    if (writing_ || finished_) return {};
    if (client_gone_) {
      if (!done_) return {};
      finished_ = true;
      return {Kind::kFinish, status_.ok() ? grpc::Status::CANCELLED : status_};
    }
    if (!pending_.empty()) {
      out_ = std::move(pending_.front());
      pending_.pop_front();
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
  tgis::Converted c_;
  std::shared_ptr<CancelLink> link_ = std::make_shared<CancelLink>();
  std::mutex mu_;
  std::deque<fmaas::GenerationResponse> pending_;
  fmaas::GenerationResponse out_;  // the message being written; untouched while writing_
  uint32_t generated_ = 0;
  bool head_sent_ = false, writing_ = false, done_ = false, finished_ = false;
  bool client_gone_ = false;
  grpc::Status status_;
};

class StreamObserver final : public sched::RequestObserver {
 public:
  explicit StreamObserver(StreamCall* call) : call_(call) {}
  void OnToken(const sched::TokenEvent& e) override { call_->AddToken(e); }
  void OnDone(const sched::DoneEvent& e) override { call_->Ended(e.status, &e.result); }

 private:
  StreamCall* call_;
};

}  // namespace

grpc::ServerUnaryReactor* TgisService::Generate(grpc::CallbackServerContext* ctx,
                                                const fmaas::BatchedGenerationRequest* request,
                                                fmaas::BatchedGenerationResponse* response) {
  auto* call = new BatchCall(state_, response);
  absl::StatusOr<Principal> who = AdmitGenerator(state_, ctx);
  if (!who.ok()) {
    call->Fail(who.status());
    return call;
  }
  if (request->requests().empty()) {
    call->Fail(absl::InvalidArgumentError("requests is empty: give at least one prompt"));
    return call;
  }
  std::vector<tgis::Converted> items;
  for (int i = 0; i < request->requests_size(); ++i) {
    absl::StatusOr<tgis::Converted> c = tgis::Convert(
        request->requests(i), request->params(), tgis::AdapterOf(*request), state_->engine->model(),
        state_->limits.max_prompt_bytes, RandomSeed(), false);
    if (!c.ok()) {
      call->Fail(absl::Status(c.status().code(),
                              request->requests_size() == 1
                                  ? std::string(c.status().message())
                                  : absl::StrCat("requests[", i, "]: ", c.status().message())));
      return call;
    }
    items.push_back(*std::move(c));
  }
  call->Start(std::move(items), *who, state_->DeadlineOf(ctx));
  return call;
}

grpc::ServerWriteReactor<fmaas::GenerationResponse>* TgisService::GenerateStream(
    grpc::CallbackServerContext* ctx, const fmaas::SingleGenerationRequest* request) {
  absl::StatusOr<Principal> who = AdmitGenerator(state_, ctx);
  absl::StatusOr<tgis::Converted> c =
      who.ok() ? tgis::Convert(request->request(), request->params(), tgis::AdapterOf(*request),
                               state_->engine->model(), state_->limits.max_prompt_bytes,
                               RandomSeed(), true)
               : absl::StatusOr<tgis::Converted>(who.status());
  if (!c.ok()) {
    auto* call = new StreamCall(state_, tgis::Converted());
    call->Fail(c.status());
    return call;
  }
  auto* call = new StreamCall(state_, *std::move(c));
  StartGeneration(state_, *who, call->converted().request, state_->DeadlineOf(ctx),
                  std::make_shared<StreamObserver>(call), call->link(),
                  [call](const absl::Status& s) { call->Ended(s, nullptr); });
  return call;
}

grpc::ServerUnaryReactor* TgisService::Tokenize(grpc::CallbackServerContext* ctx,
                                                const fmaas::BatchedTokenizeRequest* request,
                                                fmaas::BatchedTokenizeResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  absl::StatusOr<Principal> who = state_->Admit(ctx, /*allow_when_draining=*/true);
  absl::StatusOr<fmaas::BatchedTokenizeResponse> out =
      who.ok() ? tgis::Tokenize(*request, state_->engine->model(), state_->limits.max_prompt_bytes)
               : absl::StatusOr<fmaas::BatchedTokenizeResponse>(who.status());
  if (out.ok()) *response = *std::move(out);
  reactor->Finish(ToGrpc(out.status()));
  return reactor;
}

grpc::ServerUnaryReactor* TgisService::ModelInfo(grpc::CallbackServerContext* ctx,
                                                 const fmaas::ModelInfoRequest*,
                                                 fmaas::ModelInfoResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  absl::StatusOr<Principal> who = state_->Admit(ctx, /*allow_when_draining=*/true);
  if (who.ok()) {
    const auto max_len = static_cast<uint32_t>(state_->engine->max_model_len());
    response->set_model_kind(fmaas::ModelInfoResponse::DECODER_ONLY);
    response->set_max_sequence_length(max_len);
    response->set_max_new_tokens(max_len);
  }
  reactor->Finish(ToGrpc(who.status()));
  return reactor;
}

}  // namespace para::server
