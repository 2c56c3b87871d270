// Expressions: names, literals, attribute and item access, calls, filters, tests, operators.
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_builtins.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_operators.h"
#include "engine/text/jinja_renderer.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {

Value Renderer::Eval(const Expr& e) {
  Step();
  DepthGuard guard(this);
  try {
    return EvalNode(e);
  } catch (Error& err) {
    if (err.line() == 0) err.set_line(e.line);
    throw;
  }
}

Value Renderer::Lookup(const std::string& name) {
  for (const Scope* s = scope_.get(); s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return it->second;
  }
  if (auto global = FindGlobal(name)) return *global;
  return Value::Undefined(absl::StrCat("'", name, "' is undefined"));
}

Value Renderer::EvalNode(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kConst:
      return e.value;
    case ExprKind::kName:
      return Lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      items.reserve(e.children.size());
      for (const auto& c : e.children) items.push_back(Eval(*c));
      return MakeList(std::move(items),
                      e.kind == ExprKind::kTuple ? ListFlavor::kTuple : ListFlavor::kList);
    }
    case ExprKind::kDict:
      return EvalDict(e);
    case ExprKind::kGetAttr:
      return GetAttr(Eval(*e.children[0]), e.name);
    case ExprKind::kGetItem: {
      const Value obj = Eval(*e.children[0]);
      if (e.children[1]->kind == ExprKind::kSlice) return EvalSlice(obj, *e.children[1]);
      return GetItem(obj, Eval(*e.children[1]));
    }
    case ExprKind::kSlice:
      ThrowRuntime("a slice outside a subscript");
    case ExprKind::kCall:
      return EvalCall(e);
    case ExprKind::kFilter:
      return EvalFilter(e);
    case ExprKind::kTest:
      return EvalTest(e);
    case ExprKind::kNeg:
    case ExprKind::kPos:
      return UnaryOp(Eval(*e.children[0]), e.kind == ExprKind::kNeg);
    case ExprKind::kNot:
      return Value::Bool(!Truthy(Eval(*e.children[0])));
    case ExprKind::kBinary: {
      const Value left = Eval(*e.children[0]);  // left before right, as Python
      return BinaryOp(*this, e.name, left, Eval(*e.children[1]));
    }
    case ExprKind::kAnd: {
      Value left = Eval(*e.children[0]);
      return Truthy(left) ? Eval(*e.children[1]) : left;
    }
    case ExprKind::kOr: {
      Value left = Eval(*e.children[0]);
      return Truthy(left) ? left : Eval(*e.children[1]);
    }
    case ExprKind::kCompare:
      return EvalCompare(e);
    case ExprKind::kCondExpr:
      if (Truthy(Eval(*e.children[0]))) return Eval(*e.children[1]);
      if (e.children[2]) return Eval(*e.children[2]);
      return Value::Undefined(absl::StrCat("the inline if-expression on line ", e.line,
                                           " evaluated to false and no else section was "
                                           "defined."));
  }
  ThrowRuntime("unknown expression");
}

Value Renderer::EvalDict(const Expr& e) {
  auto dict = std::make_shared<DictData>();
  for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
    Value key = Eval(*e.children[i]);
    dict->Set(std::move(key), Eval(*e.children[i + 1]));
  }
  return MakeDict(std::move(dict));
}

Value Renderer::EvalCompare(const Expr& e) {
  Value left = Eval(*e.children[0]);
  for (size_t i = 0; i < e.ops.size(); ++i) {
    Value right = Eval(*e.children[i + 1]);
    if (!CompareOp(e.ops[i], left, right)) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

CallArgs Renderer::EvalArgs(const Expr& e, size_t first_arg) {
  CallArgs args;
  for (size_t i = first_arg; i < e.children.size(); ++i) args.pos.push_back(Eval(*e.children[i]));
  for (const auto& [key, expr] : e.kwargs) args.kw.emplace_back(key, Eval(*expr));
  if (e.dyn_args) {
    for (Value& v : Iterate(Eval(*e.dyn_args))) args.pos.push_back(std::move(v));
  }
  if (e.dyn_kwargs) {
    const Value kw = Eval(*e.dyn_kwargs);
    if (!kw.is_dict()) ThrowRuntime("argument after ** must be a mapping");
    for (const auto& [k, v] : kw.dict().items()) {
      if (!k.is_string()) ThrowRuntime("keywords must be strings");
      args.kw.emplace_back(k.str(), v);
    }
  }
  return args;
}

Value Renderer::EvalCall(const Expr& e) {
  const Value callee = Eval(*e.children[0]);
  CallArgs args = EvalArgs(e, 1);
  return CallValue(callee, args);
}

Value Renderer::CallValue(const Value& callee, CallArgs& args) {
  DepthGuard guard(this);
  switch (callee.kind()) {
    case Value::Kind::kFunction:
      return callee.fn().call(*this, args);
    case Value::Kind::kLoop:
      return CallLoop(callee.loop(), args);
    case Value::Kind::kUndefined:
      ThrowRuntime(callee.undefined_message());
    default:
      ThrowRuntime(absl::StrCat("'", TypeName(callee), "' object is not callable"));
  }
}

Value Renderer::EvalFilter(const Expr& e) {
  Value input;
  if (e.children[0]) {
    input = Eval(*e.children[0]);
  } else if (filter_block_input_) {
    input = *filter_block_input_;
  }
  CallArgs args = EvalArgs(e, 1);
  if (!e.filter) ThrowRuntime(absl::StrCat("No filter named '", e.name, "' found."));
  return e.filter(*this, input, args);
}

Value Renderer::EvalTest(const Expr& e) {
  const Value input = Eval(*e.children[0]);
  CallArgs args = EvalArgs(e, 1);
  if (!e.test) ThrowRuntime(absl::StrCat("No test named '", e.name, "' found."));
  return Value::Bool(e.test(*this, input, args));
}

std::vector<Value> Renderer::Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.items();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      keys.reserve(v.dict().size());
      for (const auto& [k, val] : v.dict().items()) keys.push_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      const std::string& s = v.str();
      std::vector<Value> chars;
      for (size_t pos = 0; pos < s.size();) {
        char32_t cp;
        const size_t n = DecodeUtf8(s, pos, &cp);
        chars.push_back(Value::String(s.substr(pos, n)));
        pos += n;
      }
      ChargeBytes(chars.size() * (sizeof(Value) + 32));
      return chars;
    }
    default:
      ThrowRuntime(absl::StrCat("'", TypeName(v), "' object is not iterable"));
  }
}

}  // namespace para::text::jinja
