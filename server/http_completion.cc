// /v1/completions on an HttpSession: one engine request per prompt, results collected into one
// JSON response or streamed as server-sent events.
#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "server/http_session.h"
#include "server/metrics.h"
#include "server/openai_chat.h"

namespace para::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// Forwards one choice's events to its session (engine thread; never blocks).
class ChoiceObserver final : public sched::RequestObserver {
 public:
  ChoiceObserver(std::shared_ptr<HttpSession> session, uint64_t job, size_t index, bool stream)
      : session_(std::move(session)), job_(job), index_(index), stream_(stream) {}
  void OnToken(const sched::TokenEvent& e) override {
    if (stream_) session_->PostToken(job_, index_, e);
  }
  void OnDone(const sched::DoneEvent& e) override { session_->PostDone(job_, index_, e); }

 private:
  std::shared_ptr<HttpSession> session_;
  uint64_t job_;
  size_t index_;
  bool stream_;
};

// The request id inside a response id ("cmpl-ID" or "chatcmpl-ID").
std::string RequestIdOf(const std::string& response_id) {
  return response_id.substr(response_id.find('-') + 1);
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A generation the server cut short (its shutdown, or a cancel the client did not ask for over
// this connection) is an error, never a normal end: OpenAI's finish reasons have no "cancelled",
// and "stop" would make a cut-off text look complete. UNAVAILABLE (503) on shutdown, so that a
// client retries elsewhere; CANCELLED (499) otherwise.
absl::Status Interrupted(const sched::DoneEvent& done, bool draining) {
  const std::vector<sched::RequestResult> one = {done.result};
  for (const sched::RequestResult& r : done.choices.empty() ? one : done.choices) {
    if (r.finish_reason != FinishReason::kCancelled) continue;
    const std::string made = absl::StrCat(r.token_ids.size(), " tokens were generated before");
    if (draining)
      return absl::UnavailableError(
          absl::StrCat("the server shut down before the generation finished (", made,
                       " it was cancelled); the result is incomplete: retry the request"));
    return absl::CancelledError(absl::StrCat("the generation was cancelled before it finished (",
                                             made, " it was cancelled)"));
  }
  return absl::OkStatus();
}

}  // namespace

void HttpSession::PostToken(uint64_t job, size_t index, const sched::TokenEvent& e) {
  std::optional<LogprobEntry> lp;
  if (e.logprobs != nullptr) lp = *e.logprobs;
  net::post(stream_.get_executor(), [self = shared_from_this(), job, index, branch = e.index,
                                     token = e.token, text = e.text_delta, lp = std::move(lp)] {
    self->OnToken(job, index, branch, token, text, lp);
  });
}

void HttpSession::PostDone(uint64_t job, size_t index, const sched::DoneEvent& e) {
  net::post(stream_.get_executor(),
            [self = shared_from_this(), job, index, done = e] { self->OnDone(job, index, done); });
}

void HttpSession::StartCompletion(const Request& req, openai::Api api) {
  ServiceState& st = *shared_->state;
  absl::StatusOr<Principal> who = st.AdmitKey(std::string(req[http::field::authorization]));
  absl::Status status = who.status();
  if (status.ok() && who->admin)
    status = absl::PermissionDeniedError(
        "an admin key is for the Admin API; generate with a tenant's key");
  absl::StatusOr<openai::CompletionRequest> parsed =
      !status.ok()                ? absl::StatusOr<openai::CompletionRequest>(status)
      : api == openai::Api::kChat ? openai::ParseChatRequest(req.body(), st.model_names)
                                  : openai::ParseCompletionRequest(req.body(), st.model_names);
  const Model& model = st.engine->model();
  if (parsed.ok() && parsed->echo && model.tokenizer() == nullptr)
    parsed = absl::FailedPreconditionError(
        "'echo' needs the model's tokenizer to turn the prompt into text, and this model has "
        "none: send the request without 'echo'");
  if (!parsed.ok()) return RespondError(parsed.status(), /*count=*/true);

  auto job = std::make_unique<Job>();
  job->id = next_job_++;
  const std::string request_id = st.NewRequestId(std::string(req["X-Request-Id"]));
  job->response_id = absl::StrCat(api == openai::Api::kChat ? "chatcmpl-" : "cmpl-", request_id);
  job->created = UnixSeconds();
  job->request = *std::move(parsed);
  const size_t n = job->request.prompts.size();
  const size_t per = static_cast<size_t>(job->request.n);  // choices per prompt
  job->choices.resize(n * per);
  job->started.assign(n * per, false);
  job->offsets.assign(n * per, 0);
  job->remaining = n;
  for (size_t i = 0; i < n; ++i) {
    v1::GenerateRequest& r = job->request.prompts[i];
    r.set_request_id(n == 1 ? request_id : absl::StrCat(request_id, "-", i));
    if (job->request.echo) {
      openai::ChoiceResult c;
      if (r.has_token_ids()) {
        c.prompt_ids.assign(r.token_ids().ids().begin(), r.token_ids().ids().end());
        // Without special tokens' text, as a sentencepiece decode and the echo offsets have it.
        c.prompt_text = model.tokenizer()->Decode(c.prompt_ids, /*skip_special_tokens=*/true);
      } else {
        c.prompt_text = r.text();
        // (Text that cannot fit is refused untokenized when the generation starts.)
        const bool fits = CheckTextFits(static_cast<int64_t>(r.text().size()), "", *st.engine).ok();
        absl::StatusOr<std::vector<int32_t>> ids;
        if (fits) ids = model.EncodePrompt(r.text());
        if (fits && ids.ok()) c.prompt_ids = *std::move(ids);
      }
      for (size_t k = 0; k < per; ++k) {
        job->choices[i * per + k] = c;
        job->offsets[i * per + k] = c.prompt_text.size();
      }
    }
    job->links.push_back(std::make_shared<CancelLink>());
  }
  job_ = std::move(job);
  shared_->busy.fetch_add(1);
  Watch();
  const uint64_t id = job_->id;
  const bool stream = job_->request.stream;
  for (size_t i = 0; i < n; ++i) {
    auto self = shared_from_this();
    StartGeneration(&st, *who, job_->request.prompts[i], std::nullopt,
                    std::make_shared<ChoiceObserver>(self, id, i, stream), job_->links[i],
                    [self, id, i](const absl::Status& s) {
                      net::post(self->stream_.get_executor(), [self, id, i, s] {
                        self->OnDone(id, i, sched::DoneEvent{0, s, {}});
                      });
                    });
  }
}

void HttpSession::OnToken(uint64_t job, size_t prompt, int32_t branch, int32_t token,
                          const std::string& text, const std::optional<LogprobEntry>& lp) {
  if (!job_ || job_->id != job || job_->finished || closed_) return;
  Job& j = *job_;
  const size_t index = prompt * static_cast<size_t>(j.request.n) + static_cast<size_t>(branch);
  const Tokenizer* tok = shared_->state->engine->model().tokenizer();
  std::string out = text;
  if (!j.started[index] && j.request.echo) out = j.choices[index].prompt_text + text;
  nlohmann::json logprobs = nullptr;
  if (j.request.logprobs && lp) {
    if (j.request.api == openai::Api::kChat) {
      logprobs = openai::ChatLogprobsJson(tok, {*lp});
    } else {
      logprobs = openai::LogprobsJson(tok, {*lp}, j.offsets[index]);
      j.offsets[index] += openai::TokenByteCount(tok, token);
    }
  }
  if (out.empty() && logprobs.is_null()) return;  // part of a UTF-8 character: wait for the rest
  QueueChunk(index, out, logprobs, nullptr);
  Flush();
}

// One streamed chunk of a choice, in its API's shape. A chat choice's first chunk names the
// assistant role, as OpenAI's do. `prompt_logprobs` (vLLM's field) goes on a choice's last chunk.
void HttpSession::QueueChunk(size_t index, const std::string& text, const nlohmann::json& logprobs,
                             const char* finish_reason, nlohmann::json prompt_logprobs) {
  Job& j = *job_;
  const bool first = !j.started[index];
  j.started[index] = true;
  nlohmann::json chunk;
  if (j.request.api == openai::Api::kCompletions) {
    chunk = openai::ChunkJson(j.response_id, j.created, j.request.model, index, text, logprobs,
                              finish_reason, j.request.include_usage);
    if (!prompt_logprobs.is_null())
      chunk["choices"][0]["prompt_logprobs"] = std::move(prompt_logprobs);
    return QueueEvent(chunk);
  }
  if (first)
    QueueEvent(openai::ChatChunkJson(j.response_id, j.created, j.request.model, index,
                                     {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr,
                                     j.request.include_usage));
  nlohmann::json delta = nlohmann::json::object();
  if (!text.empty() || finish_reason == nullptr) delta["content"] = text;
  chunk = openai::ChatChunkJson(j.response_id, j.created, j.request.model, index, std::move(delta),
                                logprobs, finish_reason, j.request.include_usage);
  if (!prompt_logprobs.is_null()) chunk["prompt_logprobs"] = std::move(prompt_logprobs);
  QueueEvent(chunk);
}

void HttpSession::OnDone(uint64_t job, size_t prompt, const sched::DoneEvent& done) {
  if (!job_ || job_->id != job || job_->finished || closed_) return;
  if (!done.status.ok()) return FailJob(done.status);
  if (absl::Status cut = Interrupted(done, shared_->state->draining.load()); !cut.ok())
    return FailJob(cut);
  Job& j = *job_;
  const size_t per = static_cast<size_t>(j.request.n);
  for (size_t k = 0; k < per; ++k)
    j.choices[prompt * per + k].result = done.choices.empty() ? done.result : done.choices[k];
  --j.remaining;
  if (j.request.stream) {
    const Tokenizer* tok = shared_->state->engine->model().tokenizer();
    for (size_t k = 0; k < per; ++k) {
      const size_t index = prompt * per + k;
      const sched::RequestResult& result = j.choices[index].result;
      if (!done.streamed)  // beam search: the text comes with the end
        QueueChunk(index, result.text, nullptr, nullptr);
      QueueChunk(index, "", nullptr, openai::OpenAiFinishReason(result.finish_reason),
                 j.request.prompt_logprobs && k + 1 == per
                     ? openai::PromptLogprobsJson(tok, result.prompt_logprobs)
                     : nlohmann::json());
    }
    if (j.remaining == 0) {
      if (j.request.include_usage) {
        int64_t prompt_tokens = 0, completion = 0;
        for (size_t c = 0; c < j.choices.size(); ++c) {
          if (c % per == 0) prompt_tokens += j.choices[c].result.prompt_tokens;
          completion += static_cast<int64_t>(j.choices[c].result.token_ids.size());
        }
        const auto usage = j.request.api == openai::Api::kChat ? openai::ChatUsageChunkJson
                                                               : openai::UsageChunkJson;
        QueueEvent(usage(j.response_id, j.created, j.request.model, prompt_tokens, completion));
      }
      j.pending += "data: [DONE]\n\n";
      j.finished = true;
    }
    return Flush();
  }
  if (j.remaining > 0) return;
  j.finished = true;
  const Tokenizer* tok = shared_->state->engine->model().tokenizer();
  const auto body =
      j.request.api == openai::Api::kChat ? openai::ChatCompletionJson : openai::CompletionJson;
  Respond(200, "application/json",
          openai::Dump(body(tok, j.request, j.response_id, j.created, j.choices)),
          {{"X-Request-Id", RequestIdOf(j.response_id)}});
}

// A choice failed: the others are cancelled, and the client gets the error (as the HTTP status
// when nothing was sent yet, else as an SSE error event before [DONE]).
void HttpSession::FailJob(const absl::Status& status) {
  Job& j = *job_;
  if (shared_->state->metrics != nullptr) shared_->state->metrics->RecordError("http", status);
  for (const auto& link : j.links) link->Cancel();
  j.finished = true;
  if (j.request.stream && j.headers_sent) {
    QueueEvent(openai::ErrorJson(status));
    j.pending += "data: [DONE]\n\n";
    return Flush();
  }
  RespondError(status);
}

void HttpSession::EndJob() {
  if (!job_) return;
  job_.reset();
  shared_->busy.fetch_sub(1);
}

void HttpSession::CancelJob() {
  if (!job_) return;
  for (const auto& link : job_->links) link->Cancel();
}

void HttpSession::QueueEvent(const nlohmann::json& event) {
  job_->pending += "data: ";
  job_->pending += openai::Dump(event);
  job_->pending += "\n\n";
}

// Writes the queued events as one HTTP chunk (one write in flight; later events wait for the
// next). The SSE headers go out with the first.
void HttpSession::Flush() {
  if (!job_ || writing_ || closed_ || job_->pending.empty()) return;
  Job& j = *job_;
  out_.clear();
  if (!j.headers_sent) {
    out_ = absl::StrCat(
        "HTTP/1.1 200 OK\r\nServer: para-server\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nX-Request-Id: ",
        RequestIdOf(j.response_id), "\r\nTransfer-Encoding: chunked\r\n",
        keep_alive_ ? "" : "Connection: close\r\n", "\r\n");
    j.headers_sent = true;
  }
  char size[20];
  std::snprintf(size, sizeof size, "%zx\r\n", j.pending.size());
  absl::StrAppend(&out_, size, j.pending, "\r\n", j.finished ? "0\r\n\r\n" : "");
  j.pending.clear();
  writing_ = true;
  write_timer_.expires_after(std::chrono::milliseconds(shared_->options.write_timeout_ms));
  write_timer_.async_wait([self = shared_from_this(), gen = ++write_gen_](beast::error_code ec) {
    if (!ec && self->writing_ && gen == self->write_gen_) {  // the client stopped reading
      self->CancelJob();
      self->Shutdown();
    }
  });
  net::async_write(
      stream_, net::buffer(out_),
      [self = shared_from_this()](beast::error_code ec, size_t) { self->OnStreamWritten(ec); });
}

void HttpSession::OnStreamWritten(beast::error_code ec) {
  writing_ = false;
  ++write_gen_;
  write_timer_.cancel();
  if (ec || closed_) {
    CancelJob();
    return Shutdown();
  }
  if (!job_) return;
  if (!job_->pending.empty()) return Flush();
  if (job_->finished) AfterResponse(!keep_alive_);
}

}  // namespace para::server
