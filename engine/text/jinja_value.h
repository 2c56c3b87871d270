// Values of the Jinja engine (internal to para_chat_template): what Python objects a chat
// template sees, with Python's semantics for truth, equality, ordering, str() and repr().
//
// A Value is a small handle: scalars inline, everything else behind a shared_ptr, so copies are
// cheap. Strings, lists and dicts are immutable once built (the sandbox is immutable); only a
// Namespace is mutable, and only by `{% set ns.attr = ... %}`. Undefined carries the message
// that jinja2's Undefined raises when it is misused. Values are confined to one render (one
// thread); the immutable parts may be shared read-only between threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace para::text::jinja {

class Renderer;
class Value;
struct CallArgs;
struct LoopState;

// kGenerator and kIterator are what jinja2's lazy filters (map, select, unique, ...) and
// reverse return: iterable, always true, without len() or indexing. They are built eagerly here.
enum class ListFlavor : uint8_t {
  kList,
  kTuple,
  kDictKeys,
  kDictValues,
  kDictItems,
  kGenerator,
  kIterator,
};

struct ListData {
  std::vector<Value> items;
  ListFlavor flavor = ListFlavor::kList;
  uint32_t depth = 1;  // nesting depth of lists and dicts, bounded at construction
};

// An insertion-ordered dict; keys are hashable scalars (Python's 1 == 1.0 == True share a key).
class DictData {
 public:
  const Value* Find(const Value& key) const;
  void Set(Value key, Value value);  // throws for an unhashable key
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }
  size_t size() const;  // defined after Value (complete there, as clang requires)
  uint32_t depth = 1;

 private:
  std::vector<std::pair<Value, Value>> items_;
  absl::flat_hash_map<std::string, size_t> index_;
};

struct NamespaceData {
  DictData attrs;
};

using NativeFn = std::function<Value(Renderer&, CallArgs&)>;

struct FunctionData {
  std::string name;
  std::string repr;  // what str() shows, e.g. <Macro 'm'>
  NativeFn call;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kFunction,
    kLoop,
  };

  Value() : kind_(Kind::kUndefined) {}  // an Undefined with a generic message
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value StringShared(std::shared_ptr<const std::string> s);
  static Value Undefined(std::string message);
  static Value List(std::vector<Value> items, ListFlavor flavor = ListFlavor::kList);
  static Value Dict(std::shared_ptr<const DictData> dict);
  static Value Namespace(std::shared_ptr<NamespaceData> ns);
  static Value Function(std::shared_ptr<const FunctionData> fn);
  static Value Loop(std::shared_ptr<LoopState> loop);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python's Number
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_function() const { return kind_ == Kind::kFunction; }
  bool is_loop() const { return kind_ == Kind::kLoop; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return is_bool() ? (b_ ? 1 : 0) : i_; }  // bool is an int in Python
  double as_float() const { return is_float() ? f_ : static_cast<double>(as_int()); }
  const std::string& str() const { return *static_cast<const std::string*>(ptr_.get()); }
  std::shared_ptr<const std::string> str_shared() const;
  const ListData& list() const { return *static_cast<const ListData*>(ptr_.get()); }
  const std::vector<Value>& items() const { return list().items; }
  const DictData& dict() const { return *static_cast<const DictData*>(ptr_.get()); }
  NamespaceData& ns() const { return *static_cast<NamespaceData*>(ptr_.get()); }
  const FunctionData& fn() const { return *static_cast<const FunctionData*>(ptr_.get()); }
  LoopState& loop() const { return *static_cast<LoopState*>(ptr_.get()); }
  std::shared_ptr<NamespaceData> ns_shared() const;
  // The message of an Undefined.
  std::string undefined_message() const;
  // Nesting depth of lists/dicts (scalars and namespaces count 0).
  uint32_t depth() const;

 private:
  Kind kind_;
  union {
    bool b_;
    int64_t i_;
    double f_;
  };
  std::shared_ptr<void> ptr_;
};

inline size_t DictData::size() const { return items_.size(); }

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

// Python's type name: 'int', 'str', 'list', 'NoneType', 'Undefined', ...
std::string TypeName(const Value& v);
// jinja2's object_type_repr: "dict object", "None", ...
std::string ObjectTypeRepr(const Value& v);

inline constexpr int kMaxPrintDepth = 256;
inline constexpr size_t kMaxPrintBytes = 64u << 20;

bool Truthy(const Value& v);
bool Equals(const Value& a, const Value& b);
// Python's a < b (throws TypeError-like runtime errors for incomparable types). `op` names the
// operator for the message.
bool LessThan(const Value& a, const Value& b, std::string_view op = "<");

// str(v) and repr(v), as Python prints them (floats as repr, containers with repr'd items).
// Printing a value nested deeper than kMaxPrintDepth (through namespaces) is a limit error.
// Printing more than `max_bytes` is a limit error (a list can repeat one big string many times).
std::string ToStr(const Value& v, size_t max_bytes = kMaxPrintBytes);
std::string Repr(const Value& v, size_t max_bytes = kMaxPrintBytes);

// The canonical hash key of a hashable value, or nullopt for an unhashable one.
std::optional<std::string> HashKey(const Value& v);

}  // namespace para::text::jinja
