// Methods of str, dict and list that a sandboxed template may call; the mutating ones are unsafe.
#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_builtins.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_operators.h"
#include "engine/text/jinja_pyformat.h"
#include "engine/text/jinja_renderer.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {
namespace {

using Method = Value (*)(Renderer& r, const Value& self, CallArgs& call);

const std::string& StrArg(const Value& v, std::string_view fn) {
  if (!v.is_string()) {
    ThrowRuntime(absl::StrCat(AV(fn), "() argument must be str, not ", TypeName(v)));
  }
  return v.str();
}

// Optional `chars` argument of strip/lstrip/rstrip (None means whitespace).
Value Strip(Renderer& r, const Value& self, CallArgs& call, bool left, bool right) {
  const Args args(call, "strip", {"chars"});
  const Value chars = args.get(0, Value::None());
  const std::string* set = chars.is_none() ? nullptr : &StrArg(chars, "strip");
  return r.MakeString(std::string(PyStrip(self.str(), left, right, set)));
}

Value StringList(Renderer& r, std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::String(std::move(p)));
  return r.MakeList(std::move(items));
}

Value Split(Renderer& r, const Value& self, CallArgs& call, bool from_right) {
  const Args args(call, from_right ? "rsplit" : "split", {"sep", "maxsplit"});
  const Value sep = args.get(0, Value::None());
  const Value maxsplit = args.get(1, Value::Int(-1));
  if (!maxsplit.is_int()) ThrowRuntime("maxsplit must be an integer");
  const std::string* s = sep.is_none() ? nullptr : &StrArg(sep, "split");
  if (s && s->empty()) ThrowRuntime("empty separator");
  auto parts = from_right ? PyRSplit(self.str(), s, maxsplit.as_int())
                          : PySplit(self.str(), s, maxsplit.as_int());
  r.ChargeBytes(self.str().size());
  return StringList(r, std::move(parts));
}

// startswith/endswith: a str or a tuple of str.
Value AffixTest(const Value& self, CallArgs& call, bool prefix) {
  const char* fn = prefix ? "startswith" : "endswith";
  const Args args(call, fn, {"affix"});
  const Value& affix = args.required(0, fn, "prefix");
  std::vector<Value> options;
  if (affix.is_list() && affix.list().flavor == ListFlavor::kTuple) {
    options = affix.items();
  } else if (affix.is_string()) {
    options.push_back(affix);
  } else {
    ThrowRuntime(
        absl::StrCat(fn, " first arg must be str or a tuple of str, not ", TypeName(affix)));
  }
  const std::string& s = self.str();
  for (const Value& o : options) {
    const std::string& a = StrArg(o, fn);
    if (a.size() > s.size()) continue;
    if (prefix ? s.compare(0, a.size(), a) == 0
               : s.compare(s.size() - a.size(), a.size(), a) == 0) {
      return Value::Bool(true);
    }
  }
  return Value::Bool(false);
}

Value Replace(Renderer& r, const Value& self, CallArgs& call) {
  const Args args(call, "replace", {"old", "new", "count"});
  const std::string& from = StrArg(args.required(0, "replace", "old"), "replace");
  const std::string& to = StrArg(args.required(1, "replace", "new"), "replace");
  int64_t count = args.get(2, Value::Int(-1)).as_int();
  const std::string& s = self.str();
  std::string out;
  if (from.empty()) {
    // Python inserts `to` before every code point and at the end.
    size_t pos = 0;
    while (pos <= s.size()) {
      if (count-- == 0) {
        out.append(s, pos);
        break;
      }
      out += to;
      if (out.size() > r.limits().max_output_bytes) break;
      if (pos == s.size()) break;
      char32_t cp;
      const size_t n = DecodeUtf8(s, pos, &cp);
      out.append(s, pos, n);
      pos += n;
    }
    return r.MakeString(std::move(out));
  }
  size_t pos = 0;
  while (count != 0) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    --count;
    if (out.size() > r.limits().max_output_bytes) break;
  }
  out.append(s, pos);
  return r.MakeString(std::move(out));
}

// find/rfind/index/rindex/count; positions are in code points.
Value Search(const Value& self, CallArgs& call, std::string_view fn) {
  const Args args(call, fn, {"sub"});
  const std::string& sub = StrArg(args.required(0, fn, "sub"), fn);
  const std::string& s = self.str();
  if (fn == "count") {
    if (sub.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(s) + 1));
    int64_t n = 0;
    for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size()))
      ++n;
    return Value::Int(n);
  }
  const bool reverse = fn[0] == 'r';
  const size_t hit = reverse ? s.rfind(sub) : s.find(sub);
  if (hit == std::string::npos) {
    if (fn == "index" || fn == "rindex") ThrowRuntime("substring not found");
    return Value::Int(-1);
  }
  return Value::Int(static_cast<int64_t>(CodePointCount(std::string_view(s).substr(0, hit))));
}

Value Title(Renderer& r, const Value& self) {
  std::string out;
  bool prev_cased = false;
  const std::string& s = self.str();
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    const bool cased = IsUpperChar(cp) || IsLowerChar(cp);
    AppendUtf8(out, prev_cased ? ToLowerChar(cp) : ToUpperChar(cp));
    prev_cased = cased;
  }
  return r.MakeString(std::move(out));
}

Value Join(Renderer& r, const Value& self, CallArgs& call) {
  const Args args(call, "join", {"iterable"});
  std::string out;
  bool first = true;
  for (const Value& item : r.Iterate(args.required(0, "join", "iterable"))) {
    if (!item.is_string()) {
      ThrowRuntime(
          absl::StrCat("sequence item: expected str instance, ", TypeName(item), " found"));
    }
    if (!first) out += self.str();
    first = false;
    out += item.str();
    if (out.size() > r.limits().max_output_bytes) break;
  }
  return r.MakeString(std::move(out));
}

Value Justify(Renderer& r, const Value& self, CallArgs& call, char how) {
  const Args args(call, "justify", {"width", "fillchar"});
  const Value width = args.required(0, "justify", "width");
  if (!width.is_int()) ThrowRuntime("integer argument expected");
  const std::string fill = args.has(1) ? StrArg(args.get(1, Value()), "justify") : " ";
  if (CodePointCount(fill) != 1)
    ThrowRuntime("The fill character must be exactly one character long");
  const std::string& s = self.str();
  const int64_t len = static_cast<int64_t>(CodePointCount(s));
  const int64_t w = width.as_int();
  if (w <= len) return self;
  if (static_cast<size_t>(w) > r.limits().max_output_bytes) ThrowLimit("justify width too large");
  const int64_t pad = w - len;
  int64_t left = how == 'l' ? 0 : how == 'r' ? pad : pad / 2 + (pad & w & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < pad - left; ++i) out += fill;
  return r.MakeString(std::move(out));
}

Value Partition(Renderer& r, const Value& self, CallArgs& call, bool from_right) {
  const Args args(call, "partition", {"sep"});
  const std::string& sep = StrArg(args.required(0, "partition", "sep"), "partition");
  if (sep.empty()) ThrowRuntime("empty separator");
  const std::string& s = self.str();
  const size_t hit = from_right ? s.rfind(sep) : s.find(sep);
  std::vector<Value> parts;
  if (hit == std::string::npos) {
    parts = from_right ? std::vector<Value>{Value::String(""), Value::String(""), self}
                       : std::vector<Value>{self, Value::String(""), Value::String("")};
  } else {
    parts = {Value::String(s.substr(0, hit)), Value::String(sep),
             Value::String(s.substr(hit + sep.size()))};
  }
  return r.MakeList(std::move(parts), ListFlavor::kTuple);
}

template <typename Pred>
Value AllChars(const Value& self, Pred pred) {
  const std::string& s = self.str();
  if (s.empty()) return Value::Bool(false);
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    if (!pred(cp)) return Value::Bool(false);
  }
  return Value::Bool(true);
}

Value RemoveAffix(Renderer& r, const Value& self, CallArgs& call, bool prefix) {
  const Args args(call, "removeaffix", {"affix"});
  const std::string& a = StrArg(args.required(0, "removeprefix", "prefix"), "removeprefix");
  const std::string& s = self.str();
  if (a.size() > s.size()) return self;
  if (prefix && s.compare(0, a.size(), a) == 0) return r.MakeString(s.substr(a.size()));
  if (!prefix && s.compare(s.size() - a.size(), a.size(), a) == 0) {
    return r.MakeString(s.substr(0, s.size() - a.size()));
  }
  return self;
}

const absl::flat_hash_map<std::string_view, Method>& StrMethods() {
  static const auto* methods = new absl::flat_hash_map<std::string_view, Method>{
      {"upper", [](Renderer& r, const Value& s, CallArgs& c) {
         Args(c, "upper", {});
         return r.MakeString(PyUpper(s.str()));
       }},
      {"lower", [](Renderer& r, const Value& s, CallArgs& c) {
         Args(c, "lower", {});
         return r.MakeString(PyLower(s.str()));
       }},
      {"capitalize", [](Renderer& r, const Value& s, CallArgs& c) {
         Args(c, "capitalize", {});
         return r.MakeString(PyCapitalize(s.str()));
       }},
      {"title", [](Renderer& r, const Value& s, CallArgs& c) {
         Args(c, "title", {});
         return Title(r, s);
       }},
      {"strip", [](Renderer& r, const Value& s, CallArgs& c) { return Strip(r, s, c, true, true); }},
      {"lstrip", [](Renderer& r, const Value& s, CallArgs& c) { return Strip(r, s, c, true, false); }},
      {"rstrip", [](Renderer& r, const Value& s, CallArgs& c) { return Strip(r, s, c, false, true); }},
      {"split", [](Renderer& r, const Value& s, CallArgs& c) { return Split(r, s, c, false); }},
      {"rsplit", [](Renderer& r, const Value& s, CallArgs& c) { return Split(r, s, c, true); }},
      {"splitlines", [](Renderer& r, const Value& s, CallArgs& c) {
         Args(c, "splitlines", {});
         return StringList(r, PySplitLines(s.str()));
       }},
      {"startswith", [](Renderer&, const Value& s, CallArgs& c) { return AffixTest(s, c, true); }},
      {"endswith", [](Renderer&, const Value& s, CallArgs& c) { return AffixTest(s, c, false); }},
      {"replace", Replace},
      {"find", [](Renderer&, const Value& s, CallArgs& c) { return Search(s, c, "find"); }},
      {"rfind", [](Renderer&, const Value& s, CallArgs& c) { return Search(s, c, "rfind"); }},
      {"index", [](Renderer&, const Value& s, CallArgs& c) { return Search(s, c, "index"); }},
      {"rindex", [](Renderer&, const Value& s, CallArgs& c) { return Search(s, c, "rindex"); }},
      {"count", [](Renderer&, const Value& s, CallArgs& c) { return Search(s, c, "count"); }},
      {"join", Join},
      {"format", [](Renderer& r, const Value& s, CallArgs& c) {
         return r.MakeString(FormatMethod(s.str(), c));
       }},
      {"center", [](Renderer& r, const Value& s, CallArgs& c) { return Justify(r, s, c, 'c'); }},
      {"ljust", [](Renderer& r, const Value& s, CallArgs& c) { return Justify(r, s, c, 'l'); }},
      {"rjust", [](Renderer& r, const Value& s, CallArgs& c) { return Justify(r, s, c, 'r'); }},
      {"partition", [](Renderer& r, const Value& s, CallArgs& c) { return Partition(r, s, c, false); }},
      {"rpartition", [](Renderer& r, const Value& s, CallArgs& c) { return Partition(r, s, c, true); }},
      {"removeprefix", [](Renderer& r, const Value& s, CallArgs& c) { return RemoveAffix(r, s, c, true); }},
      {"removesuffix", [](Renderer& r, const Value& s, CallArgs& c) { return RemoveAffix(r, s, c, false); }},
      {"isdigit", [](Renderer&, const Value& s, CallArgs& c) {
         Args(c, "isdigit", {});
         return AllChars(s, IsDigitChar);
       }},
      {"isalpha", [](Renderer&, const Value& s, CallArgs& c) {
         Args(c, "isalpha", {});
         return AllChars(s, IsAlphaChar);
       }},
      {"isalnum", [](Renderer&, const Value& s, CallArgs& c) {
         Args(c, "isalnum", {});
         return AllChars(s, [](char32_t cp) { return IsAlphaChar(cp) || IsDigitChar(cp); });
       }},
      {"isspace", [](Renderer&, const Value& s, CallArgs& c) {
         Args(c, "isspace", {});
         return AllChars(s, IsPySpace);
       }},
      {"isupper", [](Renderer&, const Value& s, CallArgs& c) {
         Args(c, "isupper", {});
         return Value::Bool(PyIsUpper(s.str()));
       }},
      {"islower", [](Renderer&, const Value& s, CallArgs& c) {
         Args(c, "islower", {});
         return Value::Bool(PyIsLower(s.str()));
       }},
  };
  return *methods;
}

Value DictGet(Renderer&, const Value& self, CallArgs& call) {
  const Args args(call, "get", {"key", "default"});
  const Value& key = args.required(0, "get", "key");
  if (!HashKey(key)) ThrowRuntime(absl::StrCat("unhashable type: '", TypeName(key), "'"));
  const Value* v = self.dict().Find(key);
  return v ? *v : args.get(1, Value::None());
}

Value DictView(Renderer& r, const Value& self, CallArgs& call, ListFlavor flavor) {
  Args(call, "view", {});
  std::vector<Value> items;
  items.reserve(self.dict().size());
  for (const auto& [k, v] : self.dict().items()) {
    if (flavor == ListFlavor::kDictKeys) {
      items.push_back(k);
    } else if (flavor == ListFlavor::kDictValues) {
      items.push_back(v);
    } else {
      items.push_back(r.MakeList({k, v}, ListFlavor::kTuple));
    }
  }
  return r.MakeList(std::move(items), flavor);
}

const absl::flat_hash_map<std::string_view, Method>& DictMethods() {
  static const auto* methods = new absl::flat_hash_map<std::string_view, Method>{
      {"get", DictGet},
      {"keys", [](Renderer& r, const Value& d,
                  CallArgs& c) { return DictView(r, d, c, ListFlavor::kDictKeys); }},
      {"values", [](Renderer& r, const Value& d,
                    CallArgs& c) { return DictView(r, d, c, ListFlavor::kDictValues); }},
      {"items", [](Renderer& r, const Value& d,
                   CallArgs& c) { return DictView(r, d, c, ListFlavor::kDictItems); }},
      {"copy",
       [](Renderer&, const Value& d, CallArgs& c) {
         Args(c, "copy", {});
         return d;
       }},
  };
  return *methods;
}

const absl::flat_hash_map<std::string_view, Method>& ListMethods() {
  static const auto* methods = new absl::flat_hash_map<std::string_view, Method>{
      {"index",
       [](Renderer&, const Value& l, CallArgs& c) {
         const Args args(c, "index", {"value"});
         const Value& x = args.required(0, "index", "value");
         const auto& items = l.items();
         for (size_t i = 0; i < items.size(); ++i) {
           if (Equals(items[i], x)) return Value::Int(static_cast<int64_t>(i));
         }
         ThrowRuntime(absl::StrCat(Repr(x), " is not in list"));
       }},
      {"count",
       [](Renderer&, const Value& l, CallArgs& c) {
         const Args args(c, "count", {"value"});
         const Value& x = args.required(0, "count", "value");
         return Value::Int(std::count_if(l.items().begin(), l.items().end(),
                                         [&](const Value& v) { return Equals(v, x); }));
       }},
      {"copy",
       [](Renderer&, const Value& l, CallArgs& c) {
         Args(c, "copy", {});
         return l;
       }},
  };
  return *methods;
}

bool IsUnsafe(const Value& self, const std::string& name) {
  static constexpr std::string_view kList[] = {"append", "extend",  "insert", "pop",
                                               "remove", "reverse", "sort",   "clear"};
  static constexpr std::string_view kDict[] = {"update", "pop", "popitem", "setdefault", "clear"};
  if (self.is_list()) return std::find(std::begin(kList), std::end(kList), name) != std::end(kList);
  if (self.is_dict()) return std::find(std::begin(kDict), std::end(kDict), name) != std::end(kDict);
  return false;
}

}  // namespace

std::optional<Value> FindMethod(const Value& self, const std::string& name) {
  const absl::flat_hash_map<std::string_view, Method>* table = nullptr;
  if (self.is_string()) {
    table = &StrMethods();
  } else if (self.is_dict()) {
    table = &DictMethods();
  } else if (self.is_list() && self.list().flavor == ListFlavor::kList) {
    table = &ListMethods();
  } else if (self.is_list() && self.list().flavor == ListFlavor::kTuple) {
    table = &ListMethods();
  } else {
    return std::nullopt;
  }
  if (IsUnsafe(self, name)) {
    return Value::Undefined(absl::StrCat("access to attribute '", name, "' of '", TypeName(self),
                                         "' object is unsafe."));
  }
  auto it = table->find(name);
  if (it == table->end()) return std::nullopt;
  const Method method = it->second;
  auto fn = std::make_shared<FunctionData>();
  fn->name = name;
  fn->repr = absl::StrCat("<built-in method ", name, " of ", TypeName(self), " object>");
  fn->call = [method, self](Renderer& r, CallArgs& args) { return method(r, self, args); };
  return Value::Function(std::move(fn));
}

}  // namespace para::text::jinja
