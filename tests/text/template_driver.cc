// template_driver: renders a chat template over many variable sets, for the conformance tests.
//
//   template_driver TEMPLATE_FILE < variables.jsonl > results.jsonl
//
// Each input line is a JSON object of template variables; each output line is {"ok": text} or
// {"error": message, "raised": true|false} ("raised": the template's raise_exception). A
// template that does not compile gives {"error": message, "compile": true} for every line.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "engine/text/chat_template.h"
#include "nlohmann/json.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: template_driver TEMPLATE_FILE < variables.jsonl\n";
    return 2;
  }
  std::ifstream file(argv[1], std::ios::binary);
  if (!file) {
    std::cerr << "cannot read " << argv[1] << "\n";
    return 2;
  }
  std::stringstream source;
  source << file.rdbuf();
  const auto tmpl = para::text::ChatTemplate::Compile(source.str());
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    nlohmann::ordered_json result;
    if (!tmpl.ok()) {
      result["error"] = std::string(tmpl.status().message());
      result["compile"] = true;
    } else {
      const auto vars = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (vars.is_discarded()) {
        std::cerr << "invalid JSON input line\n";
        return 2;
      }
      const auto out = tmpl->Render(vars);
      if (out.ok()) {
        result["ok"] = *out;
      } else {
        result["error"] = std::string(out.status().message());
        result["raised"] = para::text::ChatTemplate::IsRaisedByTemplate(out.status());
      }
    }
    std::cout << result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  return 0;
}
