#include "engine/text/jinja_json.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_pyformat.h"

namespace para::text::jinja {
namespace {

class JsonWriter {
 public:
  JsonWriter(const JsonOptions& options, size_t max_bytes) : opt_(options), max_(max_bytes) {}

  void Write(const Value& v, int level) {
    if (level > kMaxPrintDepth) ThrowLimit("value nested too deeply");
    if (out_.size() > max_) ThrowLimit("JSON text longer than the output limit");
    switch (v.kind()) {
      case Value::Kind::kNone:
        out_ += "null";
        return;
      case Value::Kind::kBool:
        out_ += v.as_bool() ? "true" : "false";
        return;
      case Value::Kind::kInt:
        absl::StrAppend(&out_, v.as_int());
        return;
      case Value::Kind::kFloat:
        out_ += JsonFloat(v.as_float());
        return;
      case Value::Kind::kString:
        AppendJsonString(out_, v.str(), opt_.ensure_ascii);
        return;
      case Value::Kind::kList:
        if (v.list().flavor == ListFlavor::kList || v.list().flavor == ListFlavor::kTuple) {
          WriteList(v.items(), level);
          return;
        }
        break;
      case Value::Kind::kDict:
        WriteDict(v.dict(), level);
        return;
      default:
        break;
    }
    ThrowRuntime(absl::StrCat("Object of type ", TypeName(v), " is not JSON serializable"));
  }

  std::string Take() { return std::move(out_); }

 private:
  void Newline(int level) {
    if (!opt_.indent) return;
    out_ += '\n';
    for (int i = 0; i < level; ++i) out_ += *opt_.indent;
  }

  void WriteList(const std::vector<Value>& items, int level) {
    if (items.empty()) {
      out_ += "[]";
      return;
    }
    out_ += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out_ += opt_.item_separator;
      Newline(level + 1);
      Write(items[i], level + 1);
    }
    Newline(level);
    out_ += ']';
  }

  static std::string KeyText(const Value& k) {
    switch (k.kind()) {
      case Value::Kind::kString:
        return k.str();
      case Value::Kind::kNone:
        return "null";
      case Value::Kind::kBool:
        return k.as_bool() ? "true" : "false";
      case Value::Kind::kInt:
        return absl::StrCat(k.as_int());
      case Value::Kind::kFloat:
        return JsonFloat(k.as_float());
      default:
        ThrowRuntime(absl::StrCat("keys must be str, int, float, bool or None, not ", TypeName(k)));
    }
  }

  void WriteDict(const DictData& dict, int level) {
    if (dict.size() == 0) {
      out_ += "{}";
      return;
    }
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& e : dict.items()) entries.push_back(&e);
    if (opt_.sort_keys) {
      std::stable_sort(entries.begin(), entries.end(),
                       [](const auto* a, const auto* b) { return LessThan(a->first, b->first); });
    }
    out_ += '{';
    bool first = true;
    for (const auto* e : entries) {
      if (!first) out_ += opt_.item_separator;
      first = false;
      Newline(level + 1);
      AppendJsonString(out_, KeyText(e->first), opt_.ensure_ascii);
      out_ += opt_.key_separator;
      Write(e->second, level + 1);
    }
    Newline(level);
    out_ += '}';
  }

  const JsonOptions& opt_;
  size_t max_;
  std::string out_;
};

}  // namespace

std::string ToJson(const Value& v, const JsonOptions& options, size_t max_bytes) {
  JsonWriter writer(options, max_bytes);
  writer.Write(v, 0);
  std::string out = writer.Take();
  if (out.size() > max_bytes) ThrowLimit("JSON text longer than the output limit");
  return out;
}

}  // namespace para::text::jinja
