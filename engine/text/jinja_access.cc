// Attribute access (`a.b`), subscripts (`a[b]`) and slices (`a[i:j:k]`) as jinja2's immutable
// sandbox resolves them: data first, then safe methods, else an Undefined naming what is missing.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_builtins.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_renderer.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {
namespace {

Value NoAttribute(const Value& obj, const std::string& name) {
  return Value::Undefined(
      absl::StrCat("'", ObjectTypeRepr(obj), "' has no attribute '", name, "'"));
}

Value NoElement(const Value& obj, const Value& key) {
  if (key.is_string()) return NoAttribute(obj, key.str());
  return Value::Undefined(absl::StrCat(ObjectTypeRepr(obj), " has no element ", Repr(key)));
}

Value LoopAttribute(const Value& loop_value, const std::string& name) {
  LoopState& loop = loop_value.loop();
  const int64_t n = static_cast<int64_t>(loop.items.size());
  const int64_t i = static_cast<int64_t>(loop.index0);
  if (name == "index") return Value::Int(i + 1);
  if (name == "index0") return Value::Int(i);
  if (name == "revindex") return Value::Int(n - i);
  if (name == "revindex0") return Value::Int(n - i - 1);
  if (name == "first") return Value::Bool(i == 0);
  if (name == "last") return Value::Bool(i == n - 1);
  if (name == "length") return Value::Int(n);
  if (name == "depth") return Value::Int(loop.depth);
  if (name == "depth0") return Value::Int(loop.depth - 1);
  if (name == "previtem") {
    return i > 0 ? loop.items[i - 1] : Value::Undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return i + 1 < n ? loop.items[i + 1] : Value::Undefined("there is no next item");
  }
  auto fn = std::make_shared<FunctionData>();
  fn->name = name;
  fn->repr = absl::StrCat("<bound method LoopContext.", name, ">");
  if (name == "cycle") {
    fn->call = [loop_value](Renderer&, CallArgs& args) -> Value {
      if (args.pos.empty()) ThrowRuntime("no items for cycling given");
      return args.pos[loop_value.loop().index0 % args.pos.size()];
    };
    return Value::Function(std::move(fn));
  }
  if (name == "changed") {
    fn->call = [loop_value](Renderer&, CallArgs& args) -> Value {
      LoopState& l = loop_value.loop();
      bool same = l.changed_called && l.last_changed.size() == args.pos.size();
      for (size_t k = 0; same && k < args.pos.size(); ++k) {
        same = Equals(l.last_changed[k], args.pos[k]);
      }
      l.changed_called = true;
      l.last_changed = args.pos;
      return Value::Bool(!same);
    };
    return Value::Function(std::move(fn));
  }
  return NoAttribute(loop_value, name);
}

// Python's slice.indices(length) applied to a sequence of `length` items.
std::vector<size_t> SliceIndices(int64_t length, const Value& start_v, const Value& stop_v,
                                 const Value& step_v) {
  auto as_index = [](const Value& v) {
    if (!v.is_int() && !v.is_bool()) {
      ThrowRuntime("slice indices must be integers or None or have an __index__ method");
    }
    return v.as_int();
  };
  const int64_t step = step_v.is_none() ? 1 : as_index(step_v);
  if (step == 0) ThrowRuntime("slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t x = as_index(v);
    if (x < 0) x += length;
    if (step > 0) return std::clamp<int64_t>(x, 0, length);
    return std::clamp<int64_t>(x, -1, length - 1);
  };
  const int64_t start = clamp(start_v, step > 0 ? 0 : length - 1);
  const int64_t stop = clamp(stop_v, step > 0 ? length : -1);
  std::vector<size_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    out.push_back(static_cast<size_t>(i));
  }
  return out;
}

}  // namespace

Value Renderer::GetAttr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      ThrowRuntime(obj.undefined_message());
    case Value::Kind::kDict: {
      if (auto method = FindMethod(obj, name)) return *method;
      const Value* v = obj.dict().Find(Value::String(name));
      return v ? *v : NoAttribute(obj, name);
    }
    case Value::Kind::kNamespace: {
      const Value* v = obj.ns().attrs.Find(Value::String(name));
      return v ? *v : NoAttribute(obj, name);
    }
    case Value::Kind::kLoop:
      return LoopAttribute(obj, name);
    case Value::Kind::kString:
    case Value::Kind::kList: {
      if (auto method = FindMethod(obj, name)) return *method;
      return NoAttribute(obj, name);
    }
    default:
      return NoAttribute(obj, name);
  }
}

Value Renderer::GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      ThrowRuntime(obj.undefined_message());
    case Value::Kind::kDict: {
      if (const Value* v = obj.dict().Find(key)) return *v;
      break;
    }
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (!key.is_int() && !key.is_bool()) break;
      if (obj.is_list() && obj.list().flavor >= ListFlavor::kGenerator) break;
      int64_t i = key.as_int();
      if (obj.is_list()) {
        const int64_t n = static_cast<int64_t>(obj.items().size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return obj.items()[i];
        return NoElement(obj, key);
      }
      const std::string& s = obj.str();
      if (IsAscii(s)) {
        const int64_t n = static_cast<int64_t>(s.size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return Value::String(std::string(1, s[i]));
        return NoElement(obj, key);
      }
      const std::u32string u = ToU32(s);
      const int64_t n = static_cast<int64_t>(u.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value::String(FromU32(u.substr(i, 1)));
      return NoElement(obj, key);
    }
    default:
      break;
  }
  // jinja2 falls back to the attribute of that name (methods, namespace and loop attributes).
  if (key.is_string() && !obj.is_dict()) return GetAttr(obj, key.str());
  if (key.is_string()) {
    if (auto method = FindMethod(obj, key.str())) return *method;
  }
  return NoElement(obj, key);
}

Value Renderer::EvalSlice(const Value& obj, const Expr& slice) {
  Value parts[3] = {Value::None(), Value::None(), Value::None()};
  for (int i = 0; i < 3; ++i) {
    if (slice.children[i]) parts[i] = Eval(*slice.children[i]);
  }
  if (obj.is_undefined()) ThrowRuntime(obj.undefined_message());
  if (obj.is_list() && obj.list().flavor < ListFlavor::kGenerator) {
    const auto& items = obj.items();
    std::vector<Value> out;
    for (size_t i :
         SliceIndices(static_cast<int64_t>(items.size()), parts[0], parts[1], parts[2])) {
      out.push_back(items[i]);
    }
    const ListFlavor flavor =
        obj.list().flavor == ListFlavor::kTuple ? ListFlavor::kTuple : ListFlavor::kList;
    return MakeList(std::move(out), flavor);
  }
  if (obj.is_string()) {
    const std::string& s = obj.str();
    std::string out;
    if (IsAscii(s)) {
      for (size_t i : SliceIndices(static_cast<int64_t>(s.size()), parts[0], parts[1], parts[2])) {
        out += s[i];
      }
    } else {
      const std::u32string u = ToU32(s);
      for (size_t i : SliceIndices(static_cast<int64_t>(u.size()), parts[0], parts[1], parts[2])) {
        AppendUtf8(out, u[i]);
      }
    }
    return MakeString(std::move(out));
  }
  // jinja2 compiles slices to Python's own subscript, so its errors are Python's.
  if (obj.is_dict()) ThrowRuntime("unhashable type: 'slice'");
  ThrowRuntime(absl::StrCat("'", TypeName(obj), "' object is not subscriptable"));
}

}  // namespace para::text::jinja
