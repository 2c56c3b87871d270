// Filters on sequences and mappings: length, first, last, list, join, sort, unique, min, max,
// sum, map, select, reject, selectattr, rejectattr, items, dictsort, batch, slice, reverse.
#include <functional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_filters.h"
#include "engine/text/jinja_operators.h"
#include "engine/text/jinja_renderer.h"
#include "engine/text/jinja_tests.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {
namespace {

// jinja2's make_attrgetter: "a.b.0" looks up item a, then b, then index 0.
Value GetPath(Renderer& r, Value item, const Value& attribute) {
  if (!attribute.is_string()) return r.GetItem(item, attribute);
  for (absl::string_view part : absl::StrSplit(attribute.str(), '.')) {
    const bool digits = !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
    item = r.GetItem(item, digits ? Value::Int(std::stoll(std::string(part)))
                                  : Value::String(std::string(part)));
  }
  return item;
}

Value LowerIfString(const Value& v, bool case_sensitive) {
  if (case_sensitive || !v.is_string()) return v;
  return Value::String(PyLower(v.str()));
}

// The sort key of an item: the attribute(s) named (comma-separated) or the item itself.
Value SortKey(Renderer& r, const Value& item, const Value& attribute, bool case_sensitive) {
  if (attribute.is_none()) return LowerIfString(item, case_sensitive);
  if (attribute.is_string() && attribute.str().find(',') != std::string::npos) {
    std::vector<Value> keys;
    for (absl::string_view part : absl::StrSplit(attribute.str(), ',')) {
      keys.push_back(
          LowerIfString(GetPath(r, item, Value::String(std::string(part))), case_sensitive));
    }
    return Value::List(std::move(keys));
  }
  return LowerIfString(GetPath(r, item, attribute), case_sensitive);
}

// A stable merge sort that stays memory-safe whatever the comparison does (Python's sort
// tolerates inconsistent orderings such as NaN; std::sort does not).
void MergeSort(std::vector<size_t>& idx, const std::function<bool(size_t, size_t)>& less) {
  std::vector<size_t> buf(idx.size());
  for (size_t width = 1; width < idx.size(); width *= 2) {
    for (size_t lo = 0; lo < idx.size(); lo += 2 * width) {
      const size_t mid = std::min(lo + width, idx.size());
      const size_t hi = std::min(lo + 2 * width, idx.size());
      size_t a = lo, b = mid, o = lo;
      while (a < mid && b < hi) buf[o++] = less(idx[b], idx[a]) ? idx[b++] : idx[a++];
      while (a < mid) buf[o++] = idx[a++];
      while (b < hi) buf[o++] = idx[b++];
    }
    idx.swap(buf);
  }
}

std::vector<Value> SortedBy(std::vector<Value> items, const std::vector<Value>& keys,
                            bool reverse) {
  std::vector<size_t> idx(items.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  MergeSort(idx, [&](size_t a, size_t b) {
    return reverse ? CompareOp("<", keys[b], keys[a]) : CompareOp("<", keys[a], keys[b]);
  });
  std::vector<Value> out;
  out.reserve(items.size());
  for (size_t i : idx) out.push_back(std::move(items[i]));
  return out;
}

Value Length(Renderer&, const Value& v, CallArgs& call) {
  Args(call, "length", {});
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(static_cast<int64_t>(CodePointCount(v.str())));
    case Value::Kind::kList:
      if (v.list().flavor >= ListFlavor::kGenerator) break;
      return Value::Int(static_cast<int64_t>(v.items().size()));
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(v.dict().size()));
    case Value::Kind::kLoop:
      return Value::Int(static_cast<int64_t>(v.loop().items.size()));
    default:
      break;
  }
  ThrowRuntime(absl::StrCat("object of type '", TypeName(v), "' has no len()"));
}

Value First(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "first", {});
  if (v.is_string() && !v.str().empty()) {
    char32_t cp;
    return Value::String(v.str().substr(0, DecodeUtf8(v.str(), 0, &cp)));
  }
  if (v.is_list() && !v.items().empty()) return v.items().front();
  if (v.is_dict() && v.dict().size() > 0) return v.dict().items().front().first;
  if (!r.Iterate(v).empty()) return r.Iterate(v).front();
  return Value::Undefined("No first item, sequence was empty.");
}

Value Last(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "last", {});
  if ((!v.is_string() && !v.is_list() && !v.is_dict() && !v.is_undefined()) ||
      (v.is_list() && v.list().flavor >= ListFlavor::kGenerator)) {
    ThrowRuntime(absl::StrCat("'", TypeName(v), "' object is not reversible"));
  }
  const std::vector<Value> items = r.Iterate(v);
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

Value ToList(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "list", {});
  return r.MakeList(r.Iterate(v));
}

Value Join(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "join", {"d", "attribute"});
  const std::string sep = ToStr(args.get(0, Value::String("")));
  const Value attribute = args.get(1, Value::None());
  std::string out;
  bool first = true;
  for (const Value& item : r.Iterate(v)) {
    if (!first) out += sep;
    first = false;
    out += ToStr(attribute.is_none() ? item : GetPath(r, item, attribute),
                 r.limits().max_output_bytes);
    if (out.size() > r.limits().max_output_bytes) break;
  }
  return r.MakeString(std::move(out));
}

Value Sort(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "sort", {"reverse", "case_sensitive", "attribute"});
  const bool reverse = Truthy(args.get(0, Value::Bool(false)));
  const bool case_sensitive = Truthy(args.get(1, Value::Bool(false)));
  const Value attribute = args.get(2, Value::None());
  std::vector<Value> items = r.Iterate(v);
  std::vector<Value> keys;
  for (const Value& item : items) keys.push_back(SortKey(r, item, attribute, case_sensitive));
  return r.MakeList(SortedBy(std::move(items), keys, reverse));
}

Value Unique(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "unique", {"case_sensitive", "attribute"});
  const bool case_sensitive = Truthy(args.get(0, Value::Bool(false)));
  const Value attribute = args.get(1, Value::None());
  absl::flat_hash_set<std::string> seen;
  std::vector<Value> out;
  for (const Value& item : r.Iterate(v)) {
    const auto key = HashKey(SortKey(r, item, attribute, case_sensitive));
    if (!key) ThrowRuntime(absl::StrCat("unhashable type: '", TypeName(item), "'"));
    if (seen.insert(*key).second) out.push_back(item);
  }
  return r.MakeList(std::move(out), ListFlavor::kGenerator);
}

Value MinMax(Renderer& r, const Value& v, CallArgs& call, bool max) {
  const Args args(call, max ? "max" : "min", {"case_sensitive", "attribute"});
  const bool case_sensitive = Truthy(args.get(0, Value::Bool(false)));
  const Value attribute = args.get(1, Value::None());
  const std::vector<Value> items = r.Iterate(v);
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = SortKey(r, items[0], attribute, case_sensitive);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = SortKey(r, items[i], attribute, case_sensitive);
    if (max ? CompareOp("<", best_key, key) : CompareOp("<", key, best_key)) {
      best = i;
      best_key = std::move(key);
    }
  }
  return items[best];
}

Value Sum(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "sum", {"attribute", "start"});
  const Value attribute = args.get(0, Value::None());
  Value total = args.get(1, Value::Int(0));
  for (const Value& item : r.Iterate(v)) {
    total = BinaryOp(r, "+", total, attribute.is_none() ? item : GetPath(r, item, attribute));
  }
  return total;
}

Value Map(Renderer& r, const Value& v, CallArgs& call) {
  std::vector<Value> out;
  const std::vector<Value> items = r.Iterate(v);
  const Value* attribute = nullptr;
  const Value* dflt = nullptr;
  for (const auto& [k, val] : call.kw) {
    if (k == "attribute") attribute = &val;
    if (k == "default") dflt = &val;
  }
  if (attribute) {
    for (const Value& item : items) {
      Value x = GetPath(r, item, *attribute);
      out.push_back(dflt && x.is_undefined() ? *dflt : x);
    }
    return r.MakeList(std::move(out), ListFlavor::kGenerator);
  }
  if (call.pos.empty()) ThrowRuntime("map requires a filter argument");
  const std::string name = ToStr(call.pos[0]);
  const FilterFn filter = FindFilter(name);
  if (!filter) ThrowRuntime(absl::StrCat("No filter named '", name, "'."));
  for (const Value& item : items) {
    CallArgs args{{call.pos.begin() + 1, call.pos.end()}, call.kw};
    out.push_back(filter(r, item, args));
  }
  return r.MakeList(std::move(out), ListFlavor::kGenerator);
}

// select / reject / selectattr / rejectattr.
Value SelectOrReject(Renderer& r, const Value& v, CallArgs& call, bool select, bool by_attr) {
  size_t off = 0;
  Value attribute;
  if (by_attr) {
    if (call.pos.empty()) ThrowRuntime("Missing parameter for attribute name");
    attribute = call.pos[0];
    off = 1;
  }
  TestFn test = nullptr;
  CallArgs test_args;
  if (call.pos.size() > off) {
    const std::string name = ToStr(call.pos[off]);
    test = FindTest(name);
    if (!test) ThrowRuntime(absl::StrCat("No test named '", name, "'."));
    test_args.pos.assign(call.pos.begin() + off + 1, call.pos.end());
    test_args.kw = call.kw;
  }
  std::vector<Value> out;
  for (const Value& item : r.Iterate(v)) {
    const Value x = by_attr ? GetPath(r, item, attribute) : item;
    CallArgs args = test_args;
    const bool passed = test ? test(r, x, args) : Truthy(x);
    if (passed == select) out.push_back(item);
  }
  return r.MakeList(std::move(out), ListFlavor::kGenerator);
}

Value Items(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "items", {});
  if (v.is_undefined()) return r.MakeList({}, ListFlavor::kGenerator);
  if (!v.is_dict()) ThrowRuntime("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, val] : v.dict().items())
    out.push_back(r.MakeList({k, val}, ListFlavor::kTuple));
  return r.MakeList(std::move(out), ListFlavor::kGenerator);
}

Value DictSort(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "dictsort", {"case_sensitive", "by", "reverse"});
  const bool case_sensitive = Truthy(args.get(0, Value::Bool(false)));
  const std::string by = ToStr(args.get(1, Value::String("key")));
  const bool reverse = Truthy(args.get(2, Value::Bool(false)));
  if (by != "key" && by != "value") {
    ThrowRuntime("You can only sort by either \"key\" or \"value\"");
  }
  if (v.is_undefined()) ThrowRuntime(v.undefined_message());
  if (!v.is_dict()) {
    ThrowRuntime(absl::StrCat("'", TypeName(v), "' object has no attribute 'items'"));
  }
  std::vector<Value> items;
  std::vector<Value> keys;
  for (const auto& [k, val] : v.dict().items()) {
    items.push_back(r.MakeList({k, val}, ListFlavor::kTuple));
    keys.push_back(LowerIfString(by == "key" ? k : val, case_sensitive));
  }
  return r.MakeList(SortedBy(std::move(items), keys, reverse));
}

Value Batch(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "batch", {"linecount", "fill_with"});
  const Value count = args.required(0, "batch", "linecount");
  if (!count.is_int() || count.as_int() < 1) ThrowRuntime("batch size must be a positive integer");
  const Value fill = args.get(1, Value::None());
  const size_t n = static_cast<size_t>(count.as_int());
  std::vector<Value> out;
  std::vector<Value> row;
  for (const Value& item : r.Iterate(v)) {
    if (row.size() == n) out.push_back(r.MakeList(std::exchange(row, {})));
    row.push_back(item);
  }
  if (!row.empty()) {
    if (!fill.is_none()) row.resize(n, fill);
    out.push_back(r.MakeList(std::move(row)));
  }
  return r.MakeList(std::move(out), ListFlavor::kGenerator);
}

Value Slice(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "slice", {"slices", "fill_with"});
  const Value slices_v = args.required(0, "slice", "slices");
  if (!slices_v.is_int() || slices_v.as_int() < 1)
    ThrowRuntime("slices must be a positive integer");
  r.CheckItems(static_cast<size_t>(slices_v.as_int()));
  const Value fill = args.get(1, Value::None());
  const std::vector<Value> seq = r.Iterate(v);
  const size_t slices = static_cast<size_t>(slices_v.as_int());
  const size_t per = seq.size() / slices;
  const size_t extra = seq.size() % slices;
  std::vector<Value> out;
  size_t offset = 0;
  for (size_t i = 0; i < slices; ++i) {
    const size_t start = offset + i * per;
    if (i < extra) ++offset;
    const size_t end = offset + (i + 1) * per;
    std::vector<Value> part(seq.begin() + start, seq.begin() + end);
    if (!fill.is_none() && i >= extra) part.push_back(fill);
    out.push_back(r.MakeList(std::move(part)));
  }
  return r.MakeList(std::move(out), ListFlavor::kGenerator);
}

Value Reverse(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "reverse", {});
  if (v.is_string()) {
    std::u32string u = ToU32(v.str());
    std::reverse(u.begin(), u.end());
    return r.MakeString(FromU32(u));
  }
  if (!v.is_list() && !v.is_dict() && !v.is_undefined()) ThrowRuntime("argument must be iterable");
  std::vector<Value> items = r.Iterate(v);
  std::reverse(items.begin(), items.end());
  // reversed() of a list or dict is an iterator; anything else becomes a reversed list.
  const bool iterator = v.is_dict() || (v.is_list() && v.list().flavor < ListFlavor::kGenerator);
  return r.MakeList(std::move(items), iterator ? ListFlavor::kIterator : ListFlavor::kList);
}

}  // namespace

namespace filters_internal {

void AddSequenceFilters(FilterTable& t) {
  t["length"] = Length;
  t["count"] = Length;
  t["first"] = First;
  t["last"] = Last;
  t["list"] = ToList;
  t["join"] = Join;
  t["sort"] = Sort;
  t["unique"] = Unique;
  t["min"] = [](Renderer& r, const Value& v, CallArgs& c) { return MinMax(r, v, c, false); };
  t["max"] = [](Renderer& r, const Value& v, CallArgs& c) { return MinMax(r, v, c, true); };
  t["sum"] = Sum;
  t["map"] = Map;
  t["select"] = [](Renderer& r, const Value& v, CallArgs& c) {
    return SelectOrReject(r, v, c, true, false);
  };
  t["reject"] = [](Renderer& r, const Value& v, CallArgs& c) {
    return SelectOrReject(r, v, c, false, false);
  };
  t["selectattr"] = [](Renderer& r, const Value& v, CallArgs& c) {
    return SelectOrReject(r, v, c, true, true);
  };
  t["rejectattr"] = [](Renderer& r, const Value& v, CallArgs& c) {
    return SelectOrReject(r, v, c, false, true);
  };
  t["items"] = Items;
  t["dictsort"] = DictSort;
  t["batch"] = Batch;
  t["slice"] = Slice;
  t["reverse"] = Reverse;
}

}  // namespace filters_internal
}  // namespace para::text::jinja
