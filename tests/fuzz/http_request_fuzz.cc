// libFuzzer target: the HTTP front door's request parsing on arbitrary bytes, configured as the
// server configures it (Beast's request parser with the default header and body limits), then
// what the server reads from a parsed request: the bearer key, and the body through the OpenAI
// parser its path selects. Every input must end in a parsed request or an error, never a crash.
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/http_server.h"
#include "server/openai_api.h"
#include "server/openai_chat.h"
#include "server/tenants.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const para::server::HttpOptions options;
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<uint32_t>(options.max_header_bytes));
  parser.body_limit(static_cast<uint64_t>(options.max_body_bytes));
  boost::beast::error_code ec;
  size_t used = 0;
  // Fed in pieces, as bytes arrive from a socket.
  while (used < size && !parser.is_done()) {
    const size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) {
      ec = {};
      break;
    }
    if (ec || n == 0) break;
    used += n;
  }
  // The connection closes: as Beast's read does, only a started message is told so.
  if (!ec && !parser.is_done() && parser.got_some()) parser.put_eof(ec);
  if (ec || !parser.is_done()) return 0;
  const auto& req = parser.get();
  (void)para::server::BearerToken(std::string(req[http::field::authorization]));
  if (req.target() == "/v1/completions")
    (void)para::server::openai::ParseCompletionRequest(req.body(), "base");
  else if (req.target() == "/v1/chat/completions")
    (void)para::server::openai::ParseChatRequest(req.body(), "base");
  return 0;
}
