#include "engine/text/jinja_value.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_pyformat.h"

namespace para::text::jinja {

std::string LoopRepr(const LoopState& loop);  // jinja_renderer.cc

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}

Value Value::Float(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}

Value Value::String(std::string s) {
  return StringShared(std::make_shared<const std::string>(std::move(s)));
}

Value Value::StringShared(std::shared_ptr<const std::string> s) {
  Value v;
  v.kind_ = Kind::kString;
  v.ptr_ = std::const_pointer_cast<std::string>(std::move(s));
  return v;
}

Value Value::Undefined(std::string message) {
  Value v;
  v.ptr_ = std::make_shared<std::string>(std::move(message));
  return v;
}

Value Value::List(std::vector<Value> items, ListFlavor flavor) {
  auto data = std::make_shared<ListData>();
  uint32_t depth = 0;
  for (const Value& item : items) depth = std::max(depth, item.depth());
  data->items = std::move(items);
  data->flavor = flavor;
  data->depth = depth + 1;
  Value v;
  v.kind_ = Kind::kList;
  v.ptr_ = std::move(data);
  return v;
}

Value Value::Dict(std::shared_ptr<const DictData> dict) {
  Value v;
  v.kind_ = Kind::kDict;
  v.ptr_ = std::const_pointer_cast<DictData>(std::move(dict));
  return v;
}

Value Value::Namespace(std::shared_ptr<NamespaceData> ns) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.ptr_ = std::move(ns);
  return v;
}

Value Value::Function(std::shared_ptr<const FunctionData> fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.ptr_ = std::const_pointer_cast<FunctionData>(std::move(fn));
  return v;
}

Value Value::Loop(std::shared_ptr<LoopState> loop) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.ptr_ = std::move(loop);
  return v;
}

std::shared_ptr<const std::string> Value::str_shared() const {
  return std::static_pointer_cast<const std::string>(ptr_);
}

std::shared_ptr<NamespaceData> Value::ns_shared() const {
  return std::static_pointer_cast<NamespaceData>(ptr_);
}

std::string Value::undefined_message() const {
  if (!ptr_) return "undefined value";
  return *static_cast<const std::string*>(ptr_.get());
}

uint32_t Value::depth() const {
  if (is_list()) return list().depth;
  if (is_dict()) return dict().depth;
  return 0;
}

std::optional<std::string> HashKey(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kString:
      return absl::StrCat("s", v.str());
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return absl::StrCat("n", v.as_int());
    case Value::Kind::kFloat: {
      const double f = v.as_float();
      if (std::floor(f) == f && std::fabs(f) < 9.2e18) {
        return absl::StrCat("n", static_cast<int64_t>(f));
      }
      return absl::StrCat("f", FloatRepr(f));
    }
    case Value::Kind::kNone:
      return "N";
    case Value::Kind::kUndefined:
      return "U";
    case Value::Kind::kList: {
      if (v.list().flavor != ListFlavor::kTuple) return std::nullopt;
      std::string key = "t(";
      for (const Value& item : v.items()) {
        auto k = HashKey(item);
        if (!k) return std::nullopt;
        absl::StrAppend(&key, k->size(), ":", *k);
      }
      return key + ")";
    }
    case Value::Kind::kFunction:
    case Value::Kind::kLoop:
      return absl::StrCat("p", reinterpret_cast<uintptr_t>(&v.fn()));
    default:
      return std::nullopt;
  }
}

const Value* DictData::Find(const Value& key) const {
  auto k = HashKey(key);
  if (!k) return nullptr;
  auto it = index_.find(*k);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

void DictData::Set(Value key, Value value) {
  auto k = HashKey(key);
  if (!k) ThrowRuntime(absl::StrCat("unhashable type: '", TypeName(key), "'"));
  depth = std::max(depth, value.depth() + 1);
  auto [it, inserted] = index_.try_emplace(*k, items_.size());
  if (inserted) {
    items_.emplace_back(std::move(key), std::move(value));
  } else {
    items_[it->second].second = std::move(value);
  }
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      switch (v.list().flavor) {
        case ListFlavor::kTuple:
          return "tuple";
        case ListFlavor::kDictKeys:
          return "dict_keys";
        case ListFlavor::kDictValues:
          return "dict_values";
        case ListFlavor::kDictItems:
          return "dict_items";
        case ListFlavor::kGenerator:
          return "generator";
        case ListFlavor::kIterator:
          return "list_reverseiterator";
        default:
          return "list";
      }
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kFunction:
      return "function";
    case Value::Kind::kLoop:
      return "LoopContext";
  }
  return "object";
}

std::string ObjectTypeRepr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.is_namespace()) return "jinja2.utils.Namespace object";
  if (v.is_loop()) return "jinja2.runtime.LoopContext object";
  if (v.is_undefined()) return "jinja2.runtime.Undefined object";
  return TypeName(v) + " object";
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      if (v.list().flavor >= ListFlavor::kGenerator) return true;  // always, as in Python
      return !v.items().empty();
    case Value::Kind::kDict:
      return v.dict().size() > 0;
    default:
      return true;
  }
}

namespace {

void CheckDepth(int depth) {
  if (depth > kMaxPrintDepth) ThrowLimit("value nested too deeply");
}

bool EqualsAt(const Value& a, const Value& b, int depth) {
  CheckDepth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.list().flavor >= ListFlavor::kGenerator || b.list().flavor >= ListFlavor::kGenerator) {
        return &a.list() == &b.list();
      }
      const bool a_tuple = a.list().flavor == ListFlavor::kTuple;
      if (a_tuple != (b.list().flavor == ListFlavor::kTuple)) return false;
      const auto& x = a.items();
      const auto& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!EqualsAt(x[i], y[i], depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict().items()) {
        const Value* other = b.dict().Find(k);
        if (!other || !EqualsAt(v, *other, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace:
      return &a.ns() == &b.ns();
    case Value::Kind::kFunction:
      return &a.fn() == &b.fn();
    case Value::Kind::kLoop:
      return &a.loop() == &b.loop();
    default:
      return false;
  }
}

[[noreturn]] void ThrowNotOrderable(const Value& a, const Value& b, std::string_view op) {
  ThrowRuntime(absl::StrCat("'", AV(op), "' not supported between instances of '", TypeName(a),
                            "' and '", TypeName(b), "'"));
}

bool LessAt(const Value& a, const Value& b, std::string_view op, int depth) {
  CheckDepth(depth);
  if (a.is_undefined()) ThrowRuntime(a.undefined_message());
  if (b.is_undefined()) ThrowRuntime(b.undefined_message());
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() < b.as_float();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.list().flavor == b.list().flavor &&
      (a.list().flavor == ListFlavor::kList || a.list().flavor == ListFlavor::kTuple)) {
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (EqualsAt(x[i], y[i], depth + 1)) continue;
      return LessAt(x[i], y[i], "<", depth + 1);
    }
    return x.size() < y.size();
  }
  ThrowNotOrderable(a, b, op);
}

struct Printer {
  std::string& out;
  size_t max_bytes;
  void Check() const {
    if (out.size() > max_bytes) ThrowLimit("printed value longer than the output limit");
  }
};

void AppendRepr(Printer& p, const Value& v, int depth);

void AppendItems(Printer& p, const std::vector<Value>& items, int depth) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) p.out += ", ";
    AppendRepr(p, items[i], depth + 1);
    p.Check();
  }
}

void AppendDict(Printer& p, const DictData& dict, int depth) {
  p.out += '{';
  bool first = true;
  for (const auto& [k, v] : dict.items()) {
    if (!first) p.out += ", ";
    first = false;
    AppendRepr(p, k, depth + 1);
    p.out += ": ";
    AppendRepr(p, v, depth + 1);
    p.Check();
  }
  p.out += '}';
}

void AppendList(Printer& p, const ListData& list, int depth) {
  std::string& out = p.out;
  if (list.flavor == ListFlavor::kGenerator) {
    out += "<generator object>";
    return;
  }
  if (list.flavor == ListFlavor::kIterator) {
    out += "<list_reverseiterator object>";
    return;
  }
  switch (list.flavor) {
    case ListFlavor::kTuple:
      out += '(';
      AppendItems(p, list.items, depth);
      if (list.items.size() == 1) out += ',';
      out += ')';
      return;
    case ListFlavor::kDictKeys:
      out += "dict_keys(";
      break;
    case ListFlavor::kDictValues:
      out += "dict_values(";
      break;
    case ListFlavor::kDictItems:
      out += "dict_items(";
      break;
    default:
      break;
  }
  out += '[';
  AppendItems(p, list.items, depth);
  out += ']';
  if (list.flavor != ListFlavor::kList) out += ')';
}

void AppendStr(Printer& p, const Value& v, int depth) {
  CheckDepth(depth);
  std::string& out = p.out;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return;
    case Value::Kind::kNone:
      out += "None";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "True" : "False";
      return;
    case Value::Kind::kInt:
      absl::StrAppend(&out, v.as_int());
      return;
    case Value::Kind::kFloat:
      out += FloatRepr(v.as_float());
      return;
    case Value::Kind::kString:
      out += v.str();
      p.Check();
      return;
    case Value::Kind::kList:
      AppendList(p, v.list(), depth);
      return;
    case Value::Kind::kDict:
      AppendDict(p, v.dict(), depth);
      return;
    case Value::Kind::kNamespace:
      out += "<Namespace ";
      AppendDict(p, v.ns().attrs, depth);
      out += '>';
      return;
    case Value::Kind::kFunction:
      out += v.fn().repr;
      return;
    case Value::Kind::kLoop:
      out += LoopRepr(v.loop());
      return;
  }
}

void AppendRepr(Printer& p, const Value& v, int depth) {
  if (v.is_string()) {
    p.out += StrRepr(v.str());
    p.Check();
  } else if (v.is_undefined()) {
    p.out += "Undefined";
  } else {
    AppendStr(p, v, depth);
  }
}

}  // namespace

bool Equals(const Value& a, const Value& b) { return EqualsAt(a, b, 0); }

bool LessThan(const Value& a, const Value& b, std::string_view op) { return LessAt(a, b, op, 0); }

std::string ToStr(const Value& v, size_t max_bytes) {
  if (v.is_string()) return v.str();
  std::string out;
  Printer p{out, max_bytes};
  AppendStr(p, v, 0);
  return out;
}

std::string Repr(const Value& v, size_t max_bytes) {
  std::string out;
  Printer p{out, max_bytes};
  AppendRepr(p, v, 0);
  return out;
}

}  // namespace para::text::jinja
