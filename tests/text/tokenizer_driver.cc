// tokenizer_driver: runs a tokenizer.json through para_text for the conformance tests
// (test_hf_conformance.py), one JSON request per input line, one JSON answer per output line.
//
//   tokenizer_driver TOKENIZER_JSON < requests.jsonl > answers.jsonl
//
// {"text": "..."} -> {"ids": [...], "ids_with_special": [...], "decoded": "...",
//                     "decoded_skip_special": "...", "streamed": "..."}
//   ids: Encode(text); ids_with_special: the same after ApplyPostProcessor; decoded and
//   decoded_skip_special: Decode(ids_with_special, false / true); streamed: the text the
//   IncrementalDetokenizer makes of ids (TokenBytes, UTF-8 completion, Flush).
// {"ids": [...]}    -> {"decoded": "...", "decoded_skip_special": "...", "streamed": "..."}
// A load error is printed to stderr with exit status 2; a malformed request line, exit status 3.
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/text/detokenizer.h"
#include "engine/text/hf_tokenizer.h"

namespace {

using Json = nlohmann::json;

std::string Stream(const para::Tokenizer& tok, const std::vector<int32_t>& ids) {
  para::IncrementalDetokenizer detok(&tok);
  std::string out;
  for (int32_t id : ids) out += detok.Append(id);
  out += detok.Flush();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenizer_driver TOKENIZER_JSON < requests.jsonl\n";
    return 1;
  }
  auto tok = para::LoadHfTokenizer(argv[1]);
  if (!tok.ok()) {
    std::cerr << tok.status().message() << "\n";
    return 2;
  }
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    Json req;
    try {
      req = Json::parse(line);
    } catch (const Json::exception& e) {
      std::cerr << "malformed request: " << e.what() << "\n";
      return 3;
    }
    Json out;
    std::vector<int32_t> ids;
    if (req.contains("text")) {
      ids = (*tok)->Encode(req["text"].get<std::string>());
      out["ids"] = ids;
      std::vector<int32_t> with_special = ids;
      (*tok)->ApplyPostProcessor(&with_special);
      out["ids_with_special"] = with_special;
      out["decoded"] = (*tok)->Decode(with_special, false);
      out["decoded_skip_special"] = (*tok)->Decode(with_special, true);
    } else {
      ids = req["ids"].get<std::vector<int32_t>>();
      out["decoded"] = (*tok)->Decode(ids, false);
      out["decoded_skip_special"] = (*tok)->Decode(ids, true);
    }
    out["streamed"] = Stream(**tok, ids);
    std::cout << out.dump(-1, ' ', true, Json::error_handler_t::replace) << "\n";
  }
  return 0;
}
