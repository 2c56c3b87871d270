#include "engine/text/jinja_tests.h"

#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_filters.h"
#include "engine/text/jinja_operators.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {
namespace {

Value OneArg(const CallArgs& call, std::string_view name) {
  const Args args(call, name, {"other"});
  return args.required(0, name, "other");
}

void NoArgs(const CallArgs& call, std::string_view name) { Args(call, name, {}); }

// value % n == want, with Python's `%` (so a string on the left is %-formatting, as in jinja2).
bool Remainder(Renderer& r, const Value& v, const Value& n, int64_t want) {
  return Equals(BinaryOp(r, "%", v, n), Value::Int(want));
}

bool Compare(const CallArgs& call, const Value& v, std::string_view op) {
  return CompareOp(op, v, OneArg(call, op));
}

#define PARA_TEST(body) [](Renderer& r, const Value& v, CallArgs& call) -> bool { body }

const absl::flat_hash_map<std::string_view, TestFn>& Tests() {
  static const auto* tests = new absl::flat_hash_map<std::string_view, TestFn>{
      {"defined", PARA_TEST(NoArgs(call, "defined"); return !v.is_undefined();)},
      {"undefined", PARA_TEST(NoArgs(call, "undefined"); return v.is_undefined();)},
      {"none", PARA_TEST(NoArgs(call, "none"); return v.is_none();)},
      {"boolean", PARA_TEST(NoArgs(call, "boolean"); return v.is_bool();)},
      {"true", PARA_TEST(NoArgs(call, "true"); return v.is_bool() && v.as_bool();)},
      {"false", PARA_TEST(NoArgs(call, "false"); return v.is_bool() && !v.as_bool();)},
      {"integer", PARA_TEST(NoArgs(call, "integer"); return v.is_int();)},
      {"float", PARA_TEST(NoArgs(call, "float"); return v.is_float();)},
      {"number", PARA_TEST(NoArgs(call, "number"); return v.is_number();)},
      {"string", PARA_TEST(NoArgs(call, "string"); return v.is_string();)},
      {"mapping", PARA_TEST(NoArgs(call, "mapping"); return v.is_dict();)},
      {"sequence", PARA_TEST(NoArgs(call, "sequence");
                             return v.is_string() || v.is_dict() || v.is_undefined() ||
                                    (v.is_list() && (v.list().flavor == ListFlavor::kList ||
                                                     v.list().flavor == ListFlavor::kTuple));)},
      {"iterable",
       PARA_TEST(NoArgs(call, "iterable"); return v.is_string() || v.is_list() || v.is_dict() ||
                                                  v.is_undefined() || v.is_loop();)},
      {"callable", PARA_TEST(NoArgs(call, "callable");
                             return v.is_function() || v.is_loop() || v.is_undefined();)},
      {"odd", PARA_TEST(NoArgs(call, "odd"); return Remainder(r, v, Value::Int(2), 1);)},
      {"even", PARA_TEST(NoArgs(call, "even"); return Remainder(r, v, Value::Int(2), 0);)},
      {"divisibleby", PARA_TEST(return Remainder(r, v, OneArg(call, "divisibleby"), 0);)},
      {"lower", PARA_TEST(NoArgs(call, "lower"); return PyIsLower(ToStr(v));)},
      {"upper", PARA_TEST(NoArgs(call, "upper"); return PyIsUpper(ToStr(v));)},
      {"escaped", PARA_TEST(NoArgs(call, "escaped"); return false;)},
      {"in", PARA_TEST(return Contains(OneArg(call, "in"), v);)},
      {"sameas", PARA_TEST({
         const Value& o = OneArg(call, "sameas");
         if (v.kind() != o.kind()) return false;
         if (v.is_list()) return &v.list() == &o.list();
         if (v.is_dict()) return &v.dict() == &o.dict();
         if (v.is_namespace()) return &v.ns() == &o.ns();
         return Equals(v, o);
       })},
      {"filter", PARA_TEST(NoArgs(call, "filter"); return v.is_string() && FindFilter(v.str());)},
      {"test", PARA_TEST(NoArgs(call, "test"); return v.is_string() && FindTest(v.str());)},
      {"eq", PARA_TEST(return Compare(call, v, "==");)},
      {"equalto", PARA_TEST(return Compare(call, v, "==");)},
      {"==", PARA_TEST(return Compare(call, v, "==");)},
      {"ne", PARA_TEST(return Compare(call, v, "!=");)},
      {"!=", PARA_TEST(return Compare(call, v, "!=");)},
      {"lt", PARA_TEST(return Compare(call, v, "<");)},
      {"lessthan", PARA_TEST(return Compare(call, v, "<");)},
      {"<", PARA_TEST(return Compare(call, v, "<");)},
      {"le", PARA_TEST(return Compare(call, v, "<=");)},
      {"<=", PARA_TEST(return Compare(call, v, "<=");)},
      {"gt", PARA_TEST(return Compare(call, v, ">");)},
      {"greaterthan", PARA_TEST(return Compare(call, v, ">");)},
      {">", PARA_TEST(return Compare(call, v, ">");)},
      {"ge", PARA_TEST(return Compare(call, v, ">=");)},
      {">=", PARA_TEST(return Compare(call, v, ">=");)},
  };
  return *tests;
}

#undef PARA_TEST

}  // namespace

TestFn FindTest(std::string_view name) {
  const auto& tests = Tests();
  auto it = tests.find(name);
  return it == tests.end() ? nullptr : it->second;
}

}  // namespace para::text::jinja
