#include "server/http_session.h"

#include <array>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/metrics.h"

namespace para::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

void HttpShared::Register(HttpSession* s, std::weak_ptr<HttpSession> w) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[s] = std::move(w);
}

void HttpShared::Unregister(HttpSession* s) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(s);
}

std::vector<std::shared_ptr<HttpSession>> HttpShared::Sessions() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<HttpSession>> out;
  for (auto& [p, w] : sessions_)
    if (auto s = w.lock()) out.push_back(std::move(s));
  return out;
}

HttpSession::HttpSession(net::ip::tcp::socket socket, HttpShared* shared, bool over_limit)
    : shared_(shared),
      stream_(std::move(socket)),
      write_timer_(stream_.get_executor()),
      read_timer_(stream_.get_executor()),
      buffer_(64 << 10),
      over_limit_(over_limit) {
  shared_->connections.fetch_add(1);
  // Tokens go out as small writes: without this, Nagle's algorithm holds each one until the
  // client's delayed ACK (~40 ms).
  beast::error_code ec;
  stream_.socket().set_option(net::ip::tcp::no_delay(true), ec);
}

HttpSession::~HttpSession() {
  if (job_) shared_->busy.fetch_sub(1);
  shared_->Unregister(this);
  shared_->connections.fetch_sub(1);
}

void HttpSession::Run() {
  shared_->Register(this, weak_from_this());
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    if (self->over_limit_) {
      self->keep_alive_ = false;
      self->RespondError(absl::UnavailableError("too many open connections; try again later"));
      return;
    }
    self->ReadRequest();
  });
}

void HttpSession::Close() {
  net::post(stream_.get_executor(), [self = shared_from_this()] {
    self->CancelJob();
    self->Shutdown();
  });
}

// ---- Reading ------------------------------------------------------------------------------

void HttpSession::ReadRequest() {
  if (closed_) return;
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(shared_->options.max_header_bytes));
  parser_->body_limit(static_cast<uint64_t>(shared_->options.max_body_bytes));
  // Our own timer rather than the stream's timeout (which closes the socket): a client that
  // started a request and did not finish it in time gets a 408 before the connection closes.
  read_timed_out_ = false;
  read_timer_.expires_after(std::chrono::milliseconds(shared_->options.read_timeout_ms));
  read_timer_.async_wait([self = shared_from_this(), gen = ++read_gen_](beast::error_code ec) {
    if (ec || gen != self->read_gen_) return;  // cancelled: the request arrived
    self->read_timed_out_ = true;
    beast::error_code ignored;
    self->stream_.socket().cancel(ignored);
  });
  header_bytes_ = 0;
  ReadHeaderPart();
}

// Beast's header limit bounds only the bytes not yet parsed (one long line), not the header as a
// whole: many short lines would pass it. So the header is read part by part here, and the bytes
// the parser has taken are counted against max_header_bytes.
void HttpSession::ReadHeaderPart() {
  http::async_read_some(stream_, buffer_, *parser_,
                        [self = shared_from_this()](beast::error_code ec, size_t parsed) {
                          self->header_bytes_ += static_cast<int64_t>(parsed);
                          if (!ec && self->header_bytes_ > self->shared_->options.max_header_bytes)
                            ec = http::error::header_limit;
                          if (!ec && !self->read_timed_out_ && !self->parser_->is_header_done())
                            return self->ReadHeaderPart();
                          self->OnHeader(ec);
                        });
}

// Maps a failed read to its answer: nothing for a client that left or idled out without
// starting a request; 408/413/431/400 otherwise (and the connection closes).
void HttpSession::OnHeader(beast::error_code ec) {
  // The deadline may have passed between the read's end and this handler: no read is pending
  // then for the timer to cancel, so it is checked here before the next one starts.
  if (!ec && read_timed_out_) ec = beast::error::timeout;
  if (!ec && beast::iequals(parser_->get()[http::field::expect], "100-continue") &&
      !parser_->is_done()) {
    // curl and others wait for this before sending a large body.
    auto interim = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
    net::async_write(stream_, net::buffer(*interim),
                     [self = shared_from_this(), interim](beast::error_code ec2, size_t) {
                       if (ec2) return self->Shutdown();
                       if (self->read_timed_out_) return self->OnRequest(beast::error::timeout);
                       http::async_read(
                           self->stream_, self->buffer_, *self->parser_,
                           [self](beast::error_code ec3, size_t) { self->OnRequest(ec3); });
                     });
    return;
  }
  if (!ec && !parser_->is_done()) {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec2, size_t) { self->OnRequest(ec2); });
    return;
  }
  OnRequest(ec);
}

void HttpSession::OnRequest(beast::error_code ec) {
  read_timer_.cancel();
  ++read_gen_;
  if (ec && read_timed_out_) ec = beast::error::timeout;
  if (ec) {
    keep_alive_ = false;
    const bool started = parser_->got_some() || buffer_.size() > 0;  // bytes of a request came
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        (ec == beast::error::timeout && !started))
      return Shutdown();
    if (ec == beast::error::timeout)
      return Respond(408, "application/json",
                     openai::Dump(openai::ErrorJson(408, "the request did not arrive in time")));
    if (ec == http::error::header_limit)
      return Respond(431, "application/json",
                     openai::Dump(openai::ErrorJson(
                         431, absl::StrCat("request headers exceed ",
                                           shared_->options.max_header_bytes, " bytes"))));
    if (ec == http::error::body_limit)
      return Respond(413, "application/json",
                     openai::Dump(openai::ErrorJson(
                         413, absl::StrCat("the request body exceeds ",
                                           shared_->options.max_body_bytes, " bytes"))));
    return RespondError(
        absl::InvalidArgumentError(absl::StrCat("malformed HTTP request: ", ec.message())));
  }
  const Request& req = parser_->get();
  keep_alive_ = req.keep_alive() && !shared_->state->draining.load();
  Route(req);
}

// ---- Routing ------------------------------------------------------------------------------

void HttpSession::Route(const Request& req) {
  std::string path(req.target());
  if (const size_t q = path.find('?'); q != std::string::npos) path.resize(q);
  const http::verb verb = req.method();
  auto allow = [&](const char* methods) {
    Respond(405, "application/json",
            openai::Dump(openai::ErrorJson(
                405, absl::StrCat(std::string(req.method_string()), " is not allowed on ", path,
                                  "; use ", methods))),
            {{"Allow", methods}});
  };
  const bool get = verb == http::verb::get || verb == http::verb::head;
  const bool post = verb == http::verb::post;
  if (path == "/healthz") return get ? ServeLiveness() : allow("GET, HEAD");
  if (path == "/health") return get ? ServeHealth() : allow("GET, HEAD");
  if (path == "/ping") return get || post ? ServeHealth() : allow("GET, HEAD, POST");
  if (path == "/version") return get ? ServeVersion() : allow("GET, HEAD");
  if (path == "/tokenize") return post ? ServeTokenize(req) : allow("POST");
  if (path == "/detokenize") return post ? ServeDetokenize(req) : allow("POST");
  if (path == "/v1/load_lora_adapter") return post ? LoadAdapter(req) : allow("POST");
  if (path == "/v1/unload_lora_adapter") return post ? UnloadAdapter(req) : allow("POST");
  if (path.rfind("/v1/models/", 0) == 0 && path.size() > 11)
    return get ? ServeModel(req, path.substr(11)) : allow("GET, HEAD");
  if (path == "/readyz") {
    if (!get) return allow("GET, HEAD");
    const ServiceState& st = *shared_->state;
    if (st.draining.load()) return Respond(503, "text/plain", "draining\n");
    if (!st.ready.load()) return Respond(503, "text/plain", "loading\n");
    return Respond(200, "text/plain", "ready\n");
  }
  using Routes = HttpOptions::Routes;
  const Routes routes = shared_->options.routes;
  if (path == "/metrics") {
    if (routes == Routes::kPublic)
      return RespondError(absl::NotFoundError(
          "no such endpoint: /metrics (this server serves metrics on a listener of its own)"));
    return get ? ServeMetrics() : allow("GET, HEAD");
  }
  if (routes == Routes::kMetricsOnly)
    return RespondError(absl::NotFoundError(
        absl::StrCat("no such endpoint: ", path.substr(0, 256),
                     " (this listener serves only /metrics, /healthz and /readyz)")));
  if (path == "/v1/models") return get ? ServeModels(req) : allow("GET, HEAD");
  if (path == "/v1/completions")
    return verb == http::verb::post ? StartCompletion(req, openai::Api::kCompletions)
                                    : allow("POST");
  if (path == "/v1/chat/completions")
    return verb == http::verb::post ? StartCompletion(req, openai::Api::kChat) : allow("POST");
  RespondError(absl::NotFoundError(absl::StrCat("no such endpoint: ", path.substr(0, 256))));
}

void HttpSession::ServeMetrics() {
  ServerMetrics* m = shared_->state->metrics;
  if (m == nullptr) return RespondError(absl::NotFoundError("metrics are off"));
  Respond(200, "text/plain; version=0.0.4; charset=utf-8", m->Scrape(*shared_->state));
}

// ---- Responses ----------------------------------------------------------------------------

void HttpSession::Respond(int status, const std::string& content_type, std::string body,
                          const std::vector<std::pair<std::string, std::string>>& headers) {
  if (closed_) return;
  auto res = std::make_shared<Response>(static_cast<http::status>(status), 11);
  res->set(http::field::server, "para-server");
  res->set(http::field::content_type, content_type);
  for (const auto& [k, v] : headers) res->set(k, v);
  const bool head =
      parser_ && parser_->is_header_done() && parser_->get().method() == http::verb::head;
  res->keep_alive(keep_alive_);
  if (head) {  // the length GET would send, without the body
    res->content_length(body.size());
  } else {
    res->body() = std::move(body);
    res->prepare_payload();
  }
  response_ = res;
  const bool close = !keep_alive_;
  writing_ = true;
  stream_.expires_after(std::chrono::milliseconds(shared_->options.write_timeout_ms));
  http::async_write(stream_, *res,
                    [self = shared_from_this(), res, close](beast::error_code ec, size_t) {
                      self->OnResponseWritten(close, ec);
                    });
}

void HttpSession::RespondError(const absl::Status& status, bool count) {
  if (count && shared_->state->metrics != nullptr)
    shared_->state->metrics->RecordError("http", status);
  std::vector<std::pair<std::string, std::string>> headers;
  if (status.code() == absl::StatusCode::kUnauthenticated)
    headers.emplace_back("WWW-Authenticate", "Bearer");
  Respond(openai::HttpStatusOf(status.code()), "application/json",
          openai::Dump(openai::ErrorJson(status)), headers);
}

void HttpSession::OnResponseWritten(bool close, beast::error_code ec) {
  writing_ = false;
  response_.reset();
  stream_.expires_never();
  if (ec) {
    CancelJob();
    return Shutdown();
  }
  if (close && !closed_ && !job_) return LingeringClose();
  AfterResponse(close);
}

// After a response that ends the connection while request bytes may still be unread (a body
// over the limit, a refused connection): closing at once would make the kernel send RST, and
// the client could lose the response. So: send FIN, drain what comes for up to 1 s, then close.
void HttpSession::LingeringClose() {
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
  if (ec) return Shutdown();
  read_timer_.expires_after(std::chrono::seconds(1));
  read_timer_.async_wait([self = shared_from_this()](beast::error_code e) {
    if (!e) self->Shutdown();
  });
  Drain();
}

void HttpSession::Drain() {
  auto sink = std::make_shared<std::array<char, 4096>>();
  stream_.socket().async_read_some(net::buffer(*sink),
                                   [self = shared_from_this(), sink](beast::error_code ec, size_t) {
                                     if (ec || self->closed_) return self->Shutdown();
                                     self->Drain();
                                   });
}

// The response is out: the next request is read (after the disconnect watch, if any, stops).
void HttpSession::AfterResponse(bool close) {
  EndJob();
  if (close || closed_) return Shutdown();
  if (watching_) {
    resume_after_watch_ = true;
    beast::error_code ec;
    stream_.socket().cancel(ec);
    return;
  }
  ReadRequest();
}

void HttpSession::Shutdown() {
  if (closed_) return;
  closed_ = true;
  write_timer_.cancel();
  read_timer_.cancel();
  beast::error_code ec;
  stream_.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  stream_.socket().close(ec);
}

// ---- Disconnect watch ---------------------------------------------------------------------

// While a completion runs, a read is kept pending on the socket: the client closing the
// connection cancels the completion at once (bytes of a pipelined next request are kept).
void HttpSession::Watch() {
  if (watching_ || closed_ || buffer_.size() >= buffer_.max_size() / 2) return;
  watching_ = true;
  stream_.socket().async_read_some(
      buffer_.prepare(4096),
      [self = shared_from_this()](beast::error_code ec, size_t n) { self->OnWatch(ec, n); });
}

void HttpSession::OnWatch(beast::error_code ec, size_t n) {
  watching_ = false;
  buffer_.commit(n);
  if (resume_after_watch_) {
    resume_after_watch_ = false;
    if (!ec || ec == net::error::operation_aborted) return ReadRequest();
    return Shutdown();
  }
  if (ec) {  // the client went away
    CancelJob();
    return Shutdown();
  }
  if (job_) Watch();
}

}  // namespace para::server
