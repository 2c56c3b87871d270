#include "server/http_server.h"

#include <chrono>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "boost/asio.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "server/http_session.h"

namespace para::server {

namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpServer::Impl : public HttpShared {
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;

  std::optional<net::steady_timer> backoff;

  // The acceptor lives on its own strand (Stop closes it there). A failed accept (out of file
  // descriptors, say) waits 50 ms before the next, rather than spinning.
  void Accept() {
    acceptor->async_accept(net::make_strand(ioc),
                           [this](boost::system::error_code ec, tcp::socket socket) {
                             if (ec == net::error::operation_aborted || !acceptor->is_open())
                               return;
                             if (ec) {
                               backoff->expires_after(std::chrono::milliseconds(50));
                               backoff->async_wait([this](boost::system::error_code e) {
                                 if (!e && acceptor->is_open()) Accept();
                               });
                               return;
                             }
                             const bool over = connections.load() >= options.max_connections;
                             std::make_shared<HttpSession>(std::move(socket), this, over)->Run();
                             Accept();
                           });
  }
};

HttpServer::HttpServer(ServiceState* state, HttpOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->state = state;
  impl_->options = std::move(options);
}

HttpServer::~HttpServer() { Stop(0); }

absl::StatusOr<int> HttpServer::Start() {
  Impl& s = *impl_;
  boost::system::error_code ec;
  const net::ip::address address = net::ip::make_address(s.options.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("bad HTTP host '", s.options.host, "'"));
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(s.options.port));
  auto strand = net::make_strand(s.ioc);
  s.acceptor.emplace(strand);
  s.backoff.emplace(strand);
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot listen for HTTP on ", s.options.host, ":",
                                               s.options.port, ": ", ec.message()));
  const int port = s.acceptor->local_endpoint().port();
  s.work.emplace(s.ioc.get_executor());
  s.Accept();
  for (int i = 0; i < std::max(1, s.options.threads); ++i)
    s.threads.emplace_back([&s] {
      pthread_setname_np(pthread_self(), "para-http");
      s.ioc.run();
    });
  return port;
}

void HttpServer::Stop(int grace_ms) {
  Impl& s = *impl_;
  if (s.threads.empty()) return;
  net::post(s.acceptor->get_executor(), [&s] {
    boost::system::error_code ec;
    s.acceptor->close(ec);
    s.backoff->cancel();
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (s.busy.load() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Every connection closes (its completion, if any, is cancelled). The engine loop must have
  // stopped before this (main does so): no observer may post to the sessions afterwards.
  for (const std::shared_ptr<HttpSession>& session : s.Sessions()) session->Close();
  s.work.reset();
  const auto closed_by = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (s.connections.load() > 0 && std::chrono::steady_clock::now() < closed_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s.ioc.stop();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
}

int64_t HttpServer::open_connections() const { return impl_->connections.load(); }

}  // namespace para::server
