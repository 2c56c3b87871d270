// Binding of a call's positional and keyword arguments to a builtin's named parameters, with
// Python's errors for too many or unknown arguments (internal to para_chat_template).
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_value.h"

namespace para::text::jinja {

class Args {
 public:
  // `names`: the parameters after the input (for filters and tests) or all of them (functions).
  Args(const CallArgs& call, std::string_view fn, std::initializer_list<std::string_view> names)
      : slots_(names.size()) {
    if (call.pos.size() > names.size()) {
      ThrowRuntime(absl::StrCat(AV(fn), "() takes at most ", names.size(), " argument(s) (",
                                call.pos.size(), " given)"));
    }
    for (size_t i = 0; i < call.pos.size(); ++i) slots_[i] = call.pos[i];
    for (const auto& [key, value] : call.kw) {
      size_t i = 0;
      for (std::string_view n : names) {
        if (n == key) break;
        ++i;
      }
      if (i == names.size()) {
        ThrowRuntime(absl::StrCat(AV(fn), "() got an unexpected keyword argument '", key, "'"));
      }
      if (slots_[i])
        ThrowRuntime(absl::StrCat(AV(fn), "() got multiple values for argument '", key, "'"));
      slots_[i] = value;
    }
  }

  bool has(size_t i) const { return slots_[i].has_value(); }
  Value get(size_t i, Value fallback) const { return slots_[i] ? *slots_[i] : fallback; }
  const Value& required(size_t i, std::string_view fn, std::string_view name) const {
    if (!slots_[i]) {
      ThrowRuntime(absl::StrCat(AV(fn), "() missing required argument: '", AV(name), "'"));
    }
    return *slots_[i];
  }

 private:
  std::vector<std::optional<Value>> slots_;
};

}  // namespace para::text::jinja
