// One HTTP connection of the HTTP front door (internal to server/http_*.cc). Reads requests one
// after another (keep-alive), routes them, and runs at most one completion at a time, whose
// events arrive from the engine thread and are posted onto the connection's strand.
// Ownership: shared; held by pending I/O handlers and by the observers of its running
// completion, so it lives until both are done. Everything runs on its strand.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "server/cancel_link.h"
#include "server/http_server.h"
#include "server/openai_api.h"
#include "server/service_state.h"

namespace para::server {

class HttpSession;

// What every connection shares with the server.
struct HttpShared {
  ServiceState* state = nullptr;
  HttpOptions options;
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> busy{0};  // completions in progress

  void Register(HttpSession* s, std::weak_ptr<HttpSession> w);
  void Unregister(HttpSession* s);
  std::vector<std::shared_ptr<HttpSession>> Sessions();

 private:
  std::mutex mu_;
  std::map<HttpSession*, std::weak_ptr<HttpSession>> sessions_;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, HttpShared* shared, bool over_limit);
  ~HttpSession();

  void Run();
  // Closes the connection (any thread); a running completion is cancelled.
  void Close();

  // Engine thread (through the completion's observers): posted onto the strand.
  void PostToken(uint64_t job, size_t index, const sched::TokenEvent& e);
  void PostDone(uint64_t job, size_t index, const sched::DoneEvent& e);

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  struct Job {
    uint64_t id = 0;
    openai::CompletionRequest request;
    std::string response_id;
    int64_t created = 0;
    std::vector<openai::ChoiceResult> choices;
    std::vector<std::shared_ptr<CancelLink>> links;
    std::vector<bool> started;    // streaming: a token of this choice was sent
    std::vector<size_t> offsets;  // streaming: text bytes sent per choice (logprobs offsets)
    size_t remaining = 0;
    bool headers_sent = false;  // streaming: the 200 and SSE headers are out
    bool finished = false;      // streaming: [DONE] queued
    std::string pending;        // streaming: SSE events not yet written
  };

  // Reading and routing.
  void ReadRequest();
  void ReadHeaderPart();
  void OnHeader(boost::beast::error_code ec);
  void OnRequest(boost::beast::error_code ec);
  void Route(const Request& req);
  void ServeMetrics();

  // Management and utility endpoints (http_manage.cc).
  void ServeHealth();    // /health, /ping: 200 when ready and the engine is not stalled
  void ServeLiveness();  // /healthz: 200 unless the engine is stalled
  void ServeVersion();
  void ServeModels(const Request& req);
  void ServeModel(const Request& req, const std::string& escaped_id);
  void ServeTokenize(const Request& req);
  void ServeDetokenize(const Request& req);
  absl::Status AdmitAdmin(const Request& req);
  void LoadAdapter(const Request& req);
  void UnloadAdapter(const Request& req);

  // Plain responses.
  void Respond(int status, const std::string& content_type, std::string body,
               const std::vector<std::pair<std::string, std::string>>& headers = {});
  void RespondError(const absl::Status& status, bool count = false);
  void OnResponseWritten(bool close, boost::beast::error_code ec);
  void AfterResponse(bool close);
  void LingeringClose();
  void Drain();
  void Shutdown();

  // Completions and chat completions (http_completion.cc).
  void StartCompletion(const Request& req, openai::Api api);
  void OnToken(uint64_t job, size_t prompt, int32_t branch, int32_t token, const std::string& text,
               const std::optional<LogprobEntry>& logprobs);
  void OnDone(uint64_t job, size_t prompt, const sched::DoneEvent& done);
  void FailJob(const absl::Status& status);
  void EndJob();
  void CancelJob();
  void QueueEvent(const nlohmann::json& event);
  void QueueChunk(size_t index, const std::string& text, const nlohmann::json& logprobs,
                  const char* finish_reason, nlohmann::json prompt_logprobs = nullptr);
  void Flush();
  void OnStreamWritten(boost::beast::error_code ec);
  void Watch();
  void OnWatch(boost::beast::error_code ec, size_t n);

  HttpShared* shared_;
  boost::beast::tcp_stream stream_;
  boost::asio::steady_timer write_timer_;
  boost::asio::steady_timer read_timer_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::shared_ptr<Response> response_;  // the one being written
  std::string out_;                     // streaming: the bytes being written
  std::unique_ptr<Job> job_;
  uint64_t next_job_ = 1;
  bool over_limit_;
  bool keep_alive_ = true;
  bool writing_ = false, watching_ = false, resume_after_watch_ = false, closed_ = false;
  bool read_timed_out_ = false;
  int64_t header_bytes_ = 0;  // of the request being read, as parsed so far
  uint64_t read_gen_ = 0;     // a read deadline applies only to the read it was set for
  uint64_t write_gen_ = 0;    // likewise for a streaming write's deadline
};

}  // namespace para::server
