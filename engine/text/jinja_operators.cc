#include "engine/text/jinja_operators.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_pyformat.h"
#include "engine/text/jinja_renderer.h"

namespace para::text::jinja {
namespace {

[[noreturn]] void Unsupported(std::string_view op, const Value& a, const Value& b) {
  ThrowRuntime(absl::StrCat("unsupported operand type(s) for ", AV(op), ": '", TypeName(a),
                            "' and '", TypeName(b), "'"));
}

[[noreturn]] void Overflow() {
  ThrowUnsupported("integer overflow (integers beyond 64 bits are not supported)");
}

bool IsSequence(const Value& v) {
  return v.is_string() || (v.is_list() && (v.list().flavor == ListFlavor::kList ||
                                           v.list().flavor == ListFlavor::kTuple));
}

Value Repeat(Renderer& r, const Value& seq, const Value& count) {
  if (!count.is_int() && !count.is_bool()) {
    ThrowRuntime(
        absl::StrCat("can't multiply sequence by non-int of type '", TypeName(count), "'"));
  }
  const int64_t n = std::max<int64_t>(0, count.as_int());
  if (seq.is_string()) {
    const std::string& s = seq.str();
    if (!s.empty() && static_cast<uint64_t>(n) > r.limits().max_output_bytes / s.size()) {
      ThrowLimit(absl::StrCat("a string longer than ", r.limits().max_output_bytes, " bytes"));
    }
    std::string out;
    out.reserve(s.size() * n);
    for (int64_t i = 0; i < n; ++i) out += s;
    return r.MakeString(std::move(out));
  }
  const auto& items = seq.items();
  if (!items.empty() && static_cast<uint64_t>(n) > r.limits().max_container_items / items.size()) {
    r.CheckItems(r.limits().max_container_items + 1);
  }
  std::vector<Value> out;
  out.reserve(items.size() * n);
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return r.MakeList(std::move(out), seq.list().flavor);
}

Value Add(Renderer& r, const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return Value::Float(a.as_float() + b.as_float());
    int64_t out;
    if (__builtin_add_overflow(a.as_int(), b.as_int(), &out)) Overflow();
    return Value::Int(out);
  }
  if (a.is_string()) {
    if (!b.is_string()) {
      ThrowRuntime(absl::StrCat("can only concatenate str (not \"", TypeName(b), "\") to str"));
    }
    return r.MakeString(a.str() + b.str());
  }
  if (a.is_list() && IsSequence(a)) {
    const char* name = a.list().flavor == ListFlavor::kTuple ? "tuple" : "list";
    if (!b.is_list() || b.list().flavor != a.list().flavor) {
      ThrowRuntime(
          absl::StrCat("can only concatenate ", name, " (not \"", TypeName(b), "\") to ", name));
    }
    std::vector<Value> out = a.items();
    out.insert(out.end(), b.items().begin(), b.items().end());
    return r.MakeList(std::move(out), a.list().flavor);
  }
  Unsupported("+", a, b);
}

Value Arith(std::string_view op, const Value& a, const Value& b) {
  if (!a.is_number() || !b.is_number()) Unsupported(op, a, b);
  const bool floats = a.is_float() || b.is_float();
  if (op == "/") {
    if (b.as_float() == 0) ThrowRuntime("division by zero");
    return Value::Float(a.as_float() / b.as_float());
  }
  if (floats) {
    const double x = a.as_float();
    const double y = b.as_float();
    if (op == "-") return Value::Float(x - y);
    if (op == "*") return Value::Float(x * y);
    if (y == 0) ThrowRuntime(op == "//" ? "float floor division by zero" : "float modulo");
    // CPython's float_divmod.
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0) {
      if ((y < 0) != (mod < 0)) {
        mod += y;
        div -= 1.0;
      }
    } else {
      mod = std::copysign(0.0, y);
    }
    if (op == "%") return Value::Float(mod);
    double floordiv;
    if (div != 0) {
      floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
      floordiv = std::copysign(0.0, x / y);
    }
    return Value::Float(floordiv);
  }
  const int64_t x = a.as_int();
  const int64_t y = b.as_int();
  int64_t out;
  if (op == "-") {
    if (__builtin_sub_overflow(x, y, &out)) Overflow();
    return Value::Int(out);
  }
  if (op == "*") {
    if (__builtin_mul_overflow(x, y, &out)) Overflow();
    return Value::Int(out);
  }
  if (y == 0)
    ThrowRuntime(op == "%" ? "integer modulo by zero" : "integer division or modulo by zero");
  if (x == INT64_MIN && y == -1) Overflow();
  int64_t q = x / y;
  int64_t m = x % y;
  if (m != 0 && ((m < 0) != (y < 0))) {
    --q;
    m += y;
  }
  return Value::Int(op == "//" ? q : m);
}

Value Power(const Value& a, const Value& b) {
  if (!a.is_number() || !b.is_number()) Unsupported("** or pow()", a, b);
  if (a.is_float() || b.is_float() || b.as_int() < 0) {
    if (a.as_float() == 0 && b.as_float() < 0) {
      ThrowRuntime("0.0 cannot be raised to a negative power");
    }
    return Value::Float(std::pow(a.as_float(), b.as_float()));
  }
  int64_t base = a.as_int();
  int64_t exp = b.as_int();
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) Overflow();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) Overflow();
  }
  return Value::Int(result);
}

// Python's message for an ordering of incomparable values names the operator and both types.
void CheckOrderable(const Value& a, const Value& b, std::string_view op) {
  const bool comparable = (a.is_number() && b.is_number()) || (a.is_string() && b.is_string()) ||
                          (IsSequence(a) && IsSequence(b) && a.kind() == b.kind() &&
                           a.list().flavor == b.list().flavor);
  if (a.is_undefined()) ThrowRuntime(a.undefined_message());
  if (b.is_undefined()) ThrowRuntime(b.undefined_message());
  if (!comparable) {
    ThrowRuntime(absl::StrCat("'", AV(op), "' not supported between instances of '", TypeName(a),
                              "' and '", TypeName(b), "'"));
  }
}

}  // namespace

Value BinaryOp(Renderer& r, std::string_view op, const Value& a, const Value& b) {
  if (op == "~")
    return r.MakeString(ToStr(a, r.limits().max_output_bytes) +
                        ToStr(b, r.limits().max_output_bytes));
  if (a.is_undefined()) ThrowRuntime(a.undefined_message());
  if (b.is_undefined()) ThrowRuntime(b.undefined_message());
  if (op == "+") return Add(r, a, b);
  if (op == "*") {
    if (IsSequence(a) && !b.is_list() && !b.is_string()) return Repeat(r, a, b);
    if (IsSequence(b) && !a.is_list() && !a.is_string()) return Repeat(r, b, a);
    if (IsSequence(a) || IsSequence(b)) {
      ThrowRuntime(absl::StrCat("can't multiply sequence by non-int of type '",
                                TypeName(IsSequence(a) ? b : a), "'"));
    }
  }
  if (op == "%" && a.is_string()) {
    const bool tuple = b.is_list() && b.list().flavor == ListFlavor::kTuple;
    return r.MakeString(PercentFormat(a.str(), tuple ? b.items() : std::vector<Value>{b}));
  }
  if (op == "**") return Power(a, b);
  return Arith(op, a, b);
}

bool Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        ThrowRuntime(
            absl::StrCat("'in <string>' requires string as left operand, not ", TypeName(item)));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.items()) {
        if (Equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (!HashKey(item)) ThrowRuntime(absl::StrCat("unhashable type: '", TypeName(item), "'"));
      return container.dict().Find(item) != nullptr;
    default:
      ThrowRuntime(absl::StrCat("argument of type '", TypeName(container), "' is not iterable"));
  }
}

bool CompareOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return Equals(a, b);
  if (op == "!=") return !Equals(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "notin") return !Contains(b, a);
  CheckOrderable(a, b, op);
  if (op == "<") return LessThan(a, b, op);
  if (op == ">") return LessThan(b, a, op);
  if (op == "<=") return LessThan(a, b, op) || Equals(a, b);
  if (op == ">=") return LessThan(b, a, op) || Equals(a, b);
  ThrowRuntime(absl::StrCat("unknown operator ", AV(op)));
}

Value UnaryOp(const Value& v, bool negate) {
  if (v.is_undefined()) ThrowRuntime(v.undefined_message());
  if (!v.is_number()) {
    ThrowRuntime(
        absl::StrCat("bad operand type for unary ", negate ? "-" : "+", ": '", TypeName(v), "'"));
  }
  if (v.is_float()) return Value::Float(negate ? -v.as_float() : v.as_float());
  if (!negate) return Value::Int(v.as_int());
  if (v.as_int() == INT64_MIN) Overflow();
  return Value::Int(-v.as_int());
}

}  // namespace para::text::jinja
