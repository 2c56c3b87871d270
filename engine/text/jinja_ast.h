// The syntax tree of a compiled Jinja template (internal to para_chat_template).
//
// Built once by the parser, immutable afterwards, and read concurrently by any number of renders.
// Nodes own their children (unique_ptr); filters and tests are resolved to function pointers at
// compile time (an unknown one inside an `if` or a conditional expression is kept as a name and
// fails only when evaluated, as jinja2 does).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/text/jinja_value.h"

namespace para::text::jinja {

using FilterFn = Value (*)(Renderer&, const Value& input, CallArgs& args);
using TestFn = bool (*)(Renderer&, const Value& input, CallArgs& args);

enum class ExprKind {
  kConst,     // value
  kName,      // name
  kList,      // children
  kTuple,     // children
  kDict,      // children: key0, value0, key1, value1, ...
  kGetAttr,   // children[0].name
  kGetItem,   // children[0][children[1]]
  kSlice,     // children[0..2]: start, stop, step (each may be null); only as a subscript
  kCall,      // children[0](children[1..], kwargs, *dyn_args, **dyn_kwargs)
  kFilter,    // children[0] | name(children[1..], kwargs); children[0] null in filter blocks
  kTest,      // children[0] is name(children[1..], kwargs)
  kNeg,       // -children[0]
  kPos,       // +children[0]
  kNot,       // not children[0]
  kBinary,    // children[0] op children[1]; op in + - * / // % ** ~
  kAnd,       // children[0] and children[1]
  kOr,        // children[0] or children[1]
  kCompare,   // children[0] ops[0] children[1] ops[1] children[2] ...
  kCondExpr,  // children[1] if children[0] else children[2] (may be null)
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0;
  std::string name;  // Name, attribute, filter, test or binary operator
  Value value;       // kConst
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "notin"
  ExprPtr dyn_args;              // kCall: *args
  ExprPtr dyn_kwargs;            // kCall: **kwargs
  FilterFn filter = nullptr;     // kFilter, when known
  TestFn test = nullptr;         // kTest, when known
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// What `for` and `set` assign to: a name, a tuple of names, or a namespace attribute.
struct AssignTarget {
  std::vector<std::string> names;  // one name, or the names of a tuple
  bool is_tuple = false;
  std::string ns_attr;  // non-empty: names[0].ns_attr
};

struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null where there is no default
  Body body;
  bool uses_caller = false;
  bool uses_varargs = false;
  bool uses_kwargs = false;
};

enum class StmtKind {
  kText,         // text
  kPrint,        // {{ expr }}
  kIf,           // branches: (condition, body); a null condition is the else
  kFor,          // for target in expr [if filter] [recursive]: body [else: else_body]
  kSet,          // set target = expr
  kSetBlock,     // set target [| filters(expr)] %} body {% endset
  kMacro,        // macro
  kCallBlock,    // call(macro params) expr %} macro.body {% endcall
  kFilterBlock,  // filter expr (a kFilter chain whose innermost input is null) %} body
  kWith,         // with targets = values %} body
  kBreak,
  kContinue,
  kGeneration,  // generation %} body {% endgeneration: renders the body
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr loop_filter;
  bool recursive = false;
  AssignTarget target;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body;
  Body else_body;
  std::shared_ptr<MacroDef> macro;
  std::vector<std::pair<AssignTarget, ExprPtr>> with_vars;
};

}  // namespace para::text::jinja
