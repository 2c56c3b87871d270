// Global functions: range, dict, namespace, joiner, raise_exception, strftime_now.
#include "engine/text/jinja_builtins.h"

#include <ctime>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_renderer.h"

namespace para::text::jinja {
namespace {

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

Value Range(Renderer& r, CallArgs& call) {
  if (!call.kw.empty()) ThrowRuntime("range() takes no keyword arguments");
  if (call.pos.empty() || call.pos.size() > 3) {
    ThrowRuntime(absl::StrCat("range expected at most 3 arguments, got ", call.pos.size()));
  }
  for (const Value& v : call.pos) {
    if (!v.is_int() && !v.is_bool()) {
      ThrowRuntime(absl::StrCat("'", TypeName(v), "' object cannot be interpreted as an integer"));
    }
  }
  int64_t start = 0, stop = 0, step = 1;
  if (call.pos.size() == 1) {
    stop = call.pos[0].as_int();
  } else {
    start = call.pos[0].as_int();
    stop = call.pos[1].as_int();
    if (call.pos.size() == 3) step = call.pos[2].as_int();
  }
  if (step == 0) ThrowRuntime("range() arg 3 must not be zero");
  // Count in double-free integer math without overflow for any int64 inputs.
  const __int128 span =
      step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  const __int128 abs_step = step > 0 ? step : -static_cast<__int128>(step);
  const __int128 count = span <= 0 ? 0 : (span + abs_step - 1) / abs_step;
  if (count > kMaxRange) {
    throw Error(ErrorKind::kLimit, absl::StrCat("Range too big. The sandbox blocks ranges larger "
                                                "than MAX_RANGE (",
                                                kMaxRange, ")."));
  }
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (__int128 i = 0; i < count; ++i)
    items.push_back(Value::Int(start + static_cast<int64_t>(i) * step));
  return r.MakeList(std::move(items));
}

// dict(*args, **kwargs) semantics: an optional mapping or iterable of pairs, then keywords.
std::shared_ptr<DictData> DictFromArgs(Renderer& r, CallArgs& call, std::string_view fn) {
  auto dict = std::make_shared<DictData>();
  if (call.pos.size() > 1) {
    ThrowRuntime(absl::StrCat(AV(fn), " expected at most 1 argument, got ", call.pos.size()));
  }
  if (call.pos.size() == 1) {
    const Value& src = call.pos[0];
    if (src.is_dict() || src.is_namespace()) {
      const DictData& d = src.is_dict() ? src.dict() : src.ns().attrs;
      for (const auto& [k, v] : d.items()) dict->Set(k, v);
    } else {
      for (const Value& pair : r.Iterate(src)) {
        const std::vector<Value> kv = r.Iterate(pair);
        if (kv.size() != 2) {
          ThrowRuntime("dictionary update sequence element has the wrong length; 2 is required");
        }
        dict->Set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : call.kw) dict->Set(Value::String(k), v);
  return dict;
}

Value Joiner(Renderer&, CallArgs& call) {
  const Args args(call, "joiner", {"sep"});
  const std::string sep = ToStr(args.get(0, Value::String(", ")));
  auto used = std::make_shared<bool>(false);
  auto fn = std::make_shared<FunctionData>();
  fn->name = "joiner";
  fn->repr = "<jinja2.utils.Joiner object>";
  fn->call = [sep, used](Renderer& r, CallArgs&) {
    if (!*used) {
      *used = true;
      return Value::String("");
    }
    return r.MakeString(sep);
  };
  return Value::Function(std::move(fn));
}

Value StrftimeNow(Renderer& r, CallArgs& call) {
  const Args args(call, "strftime_now", {"format"});
  const Value& format = args.required(0, "strftime_now", "format");
  if (!format.is_string()) {
    ThrowRuntime(absl::StrCat("strftime() argument 1 must be str, not ", TypeName(format)));
  }
  const std::time_t t = std::chrono::system_clock::to_time_t(r.now());
  std::tm tm{};
  localtime_r(&t, &tm);
  if (format.str().empty()) return Value::String("");
  // A marker character keeps an empty expansion apart from a too-small buffer.
  const std::string fmt = format.str() + "\x01";
  for (size_t size = 256; size <= (1u << 20); size *= 4) {
    std::string buf(size, '\0');
    const size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
    if (n > 0) {
      buf.resize(n - 1);
      return r.MakeString(std::move(buf));
    }
  }
  ThrowLimit("strftime_now() result too long");
}

Value Refused(std::string_view name) {
  auto fn = std::make_shared<FunctionData>();
  fn->name = std::string(name);
  fn->repr = absl::StrCat("<function ", AV(name), ">");
  fn->call = [name = std::string(name)](Renderer&, CallArgs&) -> Value {
    ThrowUnsupported(absl::StrCat("the global function '", name, "' is not supported"));
  };
  return Value::Function(std::move(fn));
}

Value Native(std::string_view name, NativeFn call) {
  auto fn = std::make_shared<FunctionData>();
  fn->name = std::string(name);
  fn->repr = absl::StrCat("<function ", AV(name), ">");
  fn->call = std::move(call);
  return Value::Function(std::move(fn));
}

const absl::flat_hash_map<std::string, Value>& Globals() {
  static const auto* globals = new absl::flat_hash_map<std::string, Value>{
      {"range", Native("range", Range)},
      {"dict",
       Native("dict", [](Renderer& r,
                         CallArgs& call) { return r.MakeDict(DictFromArgs(r, call, "dict")); })},
      {"namespace", Native("namespace",
                           [](Renderer& r, CallArgs& call) {
                             auto ns = std::make_shared<NamespaceData>();
                             auto dict = DictFromArgs(r, call, "namespace");
                             for (const auto& [k, v] : dict->items()) ns->attrs.Set(k, v);
                             return r.MakeNamespace(std::move(ns));
                           })},
      {"joiner", Native("joiner", Joiner)},
      {"raise_exception", Native("raise_exception",
                                 [](Renderer&, CallArgs& call) -> Value {
                                   const Args args(call, "raise_exception", {"message"});
                                   const Value& msg =
                                       args.required(0, "raise_exception", "message");
                                   throw Error(ErrorKind::kRaised, ToStr(msg));
                                 })},
      {"strftime_now", Native("strftime_now", StrftimeNow)},
      {"cycler", Refused("cycler")},
      {"lipsum", Refused("lipsum")},
  };
  return *globals;
}

}  // namespace

std::optional<Value> FindGlobal(const std::string& name) {
  const auto& globals = Globals();
  auto it = globals.find(name);
  if (it == globals.end()) return std::nullopt;
  return it->second;
}

}  // namespace para::text::jinja
