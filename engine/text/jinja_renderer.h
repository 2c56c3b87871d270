// The Jinja renderer (internal to para_chat_template): executes a parsed template over a set of
// variables, with jinja2's semantics (scoping, Undefined, loops, macros) and the sandbox's
// limits (output size, steps, loop iterations, recursion, allocation, value nesting).
//
// One Renderer serves one render on one thread; it owns everything the render creates and breaks
// reference cycles (namespaces) when destroyed. Errors are thrown as jinja::Error; the caller
// (ChatTemplate::Render) turns them into absl::Status.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/text/chat_template.h"
#include "engine/text/jinja_ast.h"
#include "engine/text/jinja_value.h"

namespace para::text::jinja {

// A variable scope: the render's root (the caller's variables), a loop iteration, a macro call.
struct Scope {
  explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent(std::move(parent)) {}
  absl::flat_hash_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;
};

// The state behind a for loop's `loop` variable.
struct LoopState {
  std::vector<Value> items;
  size_t index0 = 0;
  int depth = 1;
  const Stmt* stmt = nullptr;    // the for statement (for recursive loops)
  std::shared_ptr<Scope> outer;  // the scope the loop runs in
  std::vector<Value> last_changed;
  bool changed_called = false;
};

class Renderer {
 public:
  Renderer(const TemplateLimits& limits, std::chrono::system_clock::time_point now);
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // Renders `body` with `root` as the outermost scope and returns the output.
  std::string Run(const Body& body, std::shared_ptr<Scope> root);

  // --- for operators, filters, tests and builtins ---
  Value Eval(const Expr& e);
  Value CallValue(const Value& callee, CallArgs& args);
  Value GetAttr(const Value& obj, const std::string& name);
  Value GetItem(const Value& obj, const Value& key);
  // The items a `for` loop or a filter sees: list items, dict keys, string characters; nothing
  // for Undefined. Throws for values that are not iterable.
  std::vector<Value> Iterate(const Value& v);
  // Builds values within the limits (allocation budget, string size, items, nesting).
  Value MakeString(std::string s);
  Value MakeList(std::vector<Value> items, ListFlavor flavor = ListFlavor::kList);
  Value MakeDict(std::shared_ptr<DictData> dict);
  Value MakeNamespace(std::shared_ptr<NamespaceData> ns);
  void ChargeBytes(size_t bytes);
  void CheckItems(size_t count);
  const TemplateLimits& limits() const { return limits_; }
  std::chrono::system_clock::time_point now() const { return now_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  friend struct DepthGuard;

  // statements (jinja_renderer.cc)
  Flow ExecBody(const Body& body);
  Flow Exec(const Stmt& s);
  Flow ExecStmt(const Stmt& s);
  void ExecIf(const Stmt& s, Flow* flow);
  void ExecFor(const Stmt& s);
  void RunLoop(const Stmt& s, const Value& iterable, int depth, std::shared_ptr<Scope> outer);
  void ExecSet(const Stmt& s);
  void ExecSetBlock(const Stmt& s);
  void ExecMacro(const Stmt& s);
  void ExecCallBlock(const Stmt& s);
  void ExecFilterBlock(const Stmt& s);
  void ExecWith(const Stmt& s);
  void Assign(const AssignTarget& target, const Value& v);
  std::string Capture(const Body& body, std::shared_ptr<Scope> scope);
  void Write(std::string_view text);
  Value MakeMacro(std::shared_ptr<const MacroDef> def);
  Value CallMacro(const MacroDef& def, const std::shared_ptr<Scope>& closure, CallArgs& args);
  Value CallLoop(LoopState& loop, CallArgs& args);

  // expressions (jinja_eval.cc)
  Value EvalNode(const Expr& e);
  Value Lookup(const std::string& name);
  Value EvalCall(const Expr& e);
  Value EvalFilter(const Expr& e);
  Value EvalTest(const Expr& e);
  Value EvalCompare(const Expr& e);
  Value EvalDict(const Expr& e);
  Value EvalSlice(const Value& obj, const Expr& slice);
  CallArgs EvalArgs(const Expr& e, size_t first_arg);
  void Step();

  const TemplateLimits& limits_;
  std::chrono::system_clock::time_point now_;
  std::string* out_ = nullptr;
  std::shared_ptr<Scope> scope_;
  std::shared_ptr<Scope> root_;
  const Value* filter_block_input_ = nullptr;
  int64_t steps_ = 0;
  int64_t loop_iterations_ = 0;
  int64_t allocated_ = 0;
  int depth_ = 0;
  int call_depth_ = 0;
  std::vector<std::weak_ptr<NamespaceData>> namespaces_;
};

// Bounds the nesting of evaluation (statements, expressions, calls) so that no template or input
// can exhaust the C++ stack.
struct DepthGuard {
  explicit DepthGuard(Renderer* r);
  ~DepthGuard() { --r->depth_; }
  Renderer* r;
};

}  // namespace para::text::jinja
