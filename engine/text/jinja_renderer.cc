// Statements: output, if, for (loop variable, filters, else, break/continue, recursion), set,
// macros and call blocks, filter blocks, with, generation; the render's limits.
#include "engine/text/jinja_renderer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_error.h"

namespace para::text::jinja {

std::string LoopRepr(const LoopState& loop) {
  return absl::StrCat("<LoopContext ", loop.index0 + 1, "/", loop.items.size(), ">");
}

DepthGuard::DepthGuard(Renderer* r) : r(r) {
  if (++r->depth_ > r->limits_.max_render_depth) {
    ThrowLimit(
        absl::StrCat("template recursion deeper than ", r->limits_.max_render_depth, " levels"));
  }
}

// Saves and restores the renderer's current scope.
class ScopeSwap {
 public:
  ScopeSwap(std::shared_ptr<Scope>& slot, std::shared_ptr<Scope> scope)
      : slot_(slot), saved_(std::move(slot)) {
    slot_ = std::move(scope);
  }
  ~ScopeSwap() { slot_ = std::move(saved_); }

 private:
  std::shared_ptr<Scope>& slot_;
  std::shared_ptr<Scope> saved_;
};

Renderer::Renderer(const TemplateLimits& limits, std::chrono::system_clock::time_point now)
    : limits_(limits), now_(now) {}

Renderer::~Renderer() {
  // Namespaces are the only mutable values, hence the only way to build a reference cycle.
  for (auto& weak : namespaces_) {
    if (auto ns = weak.lock()) ns->attrs = DictData();
  }
}

std::string Renderer::Run(const Body& body, std::shared_ptr<Scope> root) {
  std::string out;
  out_ = &out;
  root_ = root;
  ScopeSwap swap(scope_, std::move(root));
  ExecBody(body);
  return out;
}

void Renderer::Step() {
  if (++steps_ > limits_.max_steps) {
    ThrowLimit(absl::StrCat("template exceeded its budget of ", limits_.max_steps, " steps"));
  }
}

void Renderer::ChargeBytes(size_t bytes) {
  allocated_ += static_cast<int64_t>(bytes);
  if (allocated_ > limits_.max_allocated_bytes) {
    ThrowLimit(
        absl::StrCat("template built more than ", limits_.max_allocated_bytes, " bytes of values"));
  }
}

void Renderer::CheckItems(size_t count) {
  if (count > limits_.max_container_items) {
    ThrowLimit(absl::StrCat("a list or dict of more than ", limits_.max_container_items, " items"));
  }
}

Value Renderer::MakeString(std::string s) {
  if (s.size() > limits_.max_output_bytes) {
    ThrowLimit(absl::StrCat("a string longer than ", limits_.max_output_bytes, " bytes"));
  }
  ChargeBytes(s.size());
  return Value::String(std::move(s));
}

Value Renderer::MakeList(std::vector<Value> items, ListFlavor flavor) {
  CheckItems(items.size());
  ChargeBytes(items.size() * sizeof(Value));
  Value v = Value::List(std::move(items), flavor);
  if (v.depth() > static_cast<uint32_t>(limits_.max_value_depth)) {
    ThrowLimit(absl::StrCat("lists or dicts nested deeper than ", limits_.max_value_depth));
  }
  return v;
}

Value Renderer::MakeDict(std::shared_ptr<DictData> dict) {
  CheckItems(dict->size());
  ChargeBytes(dict->size() * 2 * sizeof(Value));
  if (dict->depth > static_cast<uint32_t>(limits_.max_value_depth)) {
    ThrowLimit(absl::StrCat("lists or dicts nested deeper than ", limits_.max_value_depth));
  }
  return Value::Dict(std::move(dict));
}

Value Renderer::MakeNamespace(std::shared_ptr<NamespaceData> ns) {
  namespaces_.push_back(ns);
  return Value::Namespace(std::move(ns));
}

void Renderer::Write(std::string_view text) {
  if (out_->size() + text.size() > limits_.max_output_bytes) {
    ThrowLimit(absl::StrCat("output longer than ", limits_.max_output_bytes, " bytes"));
  }
  out_->append(text);
}

std::string Renderer::Capture(const Body& body, std::shared_ptr<Scope> scope) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    ScopeSwap swap(scope_, std::move(scope));
    ExecBody(body);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  ChargeBytes(buffer.size());
  return buffer;
}

Renderer::Flow Renderer::ExecBody(const Body& body) {
  DepthGuard guard(this);
  for (const auto& s : body) {
    const Flow flow = Exec(*s);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Renderer::Flow Renderer::Exec(const Stmt& s) {
  Step();
  try {
    return ExecStmt(s);
  } catch (Error& e) {
    if (e.line() == 0) e.set_line(s.line);
    throw;
  }
}

Renderer::Flow Renderer::ExecStmt(const Stmt& s) {
  Flow flow = Flow::kNormal;
  switch (s.kind) {
    case StmtKind::kText:
      Write(s.text);
      break;
    case StmtKind::kPrint: {
      const Value v = Eval(*s.expr);
      if (v.is_string()) {
        Write(v.str());
      } else {
        Write(ToStr(v, limits_.max_output_bytes));
      }
      break;
    }
    case StmtKind::kIf:
      ExecIf(s, &flow);
      break;
    case StmtKind::kFor:
      ExecFor(s);
      break;
    case StmtKind::kSet:
      ExecSet(s);
      break;
    case StmtKind::kSetBlock:
      ExecSetBlock(s);
      break;
    case StmtKind::kMacro:
      ExecMacro(s);
      break;
    case StmtKind::kCallBlock:
      ExecCallBlock(s);
      break;
    case StmtKind::kFilterBlock:
      ExecFilterBlock(s);
      break;
    case StmtKind::kWith:
      ExecWith(s);
      break;
    case StmtKind::kBreak:
      flow = Flow::kBreak;
      break;
    case StmtKind::kContinue:
      flow = Flow::kContinue;
      break;
    case StmtKind::kGeneration:
      flow = ExecBody(s.body);
      break;
  }
  return flow;
}

void Renderer::ExecIf(const Stmt& s, Flow* flow) {
  for (const auto& [cond, body] : s.branches) {
    if (!cond || Truthy(Eval(*cond))) {
      *flow = ExecBody(body);
      return;
    }
  }
}

void Renderer::ExecFor(const Stmt& s) { RunLoop(s, Eval(*s.expr), 1, scope_); }

void Renderer::RunLoop(const Stmt& s, const Value& iterable, int depth,
                       std::shared_ptr<Scope> outer) {
  std::vector<Value> items = Iterate(iterable);
  if (s.loop_filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      ScopeSwap swap(scope_, std::make_shared<Scope>(outer));
      Assign(s.target, item);
      if (Truthy(Eval(*s.loop_filter))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (!s.else_body.empty()) {
      ScopeSwap swap(scope_, std::make_shared<Scope>(outer));
      ExecBody(s.else_body);
    }
    return;
  }
  auto state = std::make_shared<LoopState>();
  state->items = std::move(items);
  state->depth = depth;
  state->stmt = &s;
  state->outer = outer;
  const Value loop_value = Value::Loop(state);
  for (size_t i = 0; i < state->items.size(); ++i) {
    if (++loop_iterations_ > limits_.max_loop_iterations) {
      ThrowLimit(absl::StrCat("template loops ran more than ", limits_.max_loop_iterations,
                              " iterations"));
    }
    state->index0 = i;
    ScopeSwap swap(scope_, std::make_shared<Scope>(outer));
    scope_->vars["loop"] = loop_value;
    Assign(s.target, state->items[i]);
    if (ExecBody(s.body) == Flow::kBreak) break;
  }
}

Value Renderer::CallLoop(LoopState& loop, CallArgs& args) {
  if (!loop.stmt || !loop.stmt->recursive) {
    ThrowRuntime("The loop must be declared 'recursive' to be called");
  }
  if (args.pos.size() != 1 || !args.kw.empty()) {
    ThrowRuntime("a recursive loop call takes exactly one iterable");
  }
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    ThrowLimit(absl::StrCat("recursive calls nested deeper than ", limits_.max_call_depth));
  }
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  try {
    RunLoop(*loop.stmt, args.pos[0], loop.depth + 1, loop.outer);
  } catch (...) {
    out_ = saved;
    --call_depth_;
    throw;
  }
  out_ = saved;
  --call_depth_;
  return MakeString(std::move(buffer));
}

void Renderer::Assign(const AssignTarget& target, const Value& v) {
  if (!target.ns_attr.empty()) {
    const Value ns = Lookup(target.names[0]);
    if (!ns.is_namespace()) ThrowRuntime("cannot assign attribute on non-namespace object");
    if (v.depth() + 1 > static_cast<uint32_t>(limits_.max_value_depth)) {
      ThrowLimit(absl::StrCat("lists or dicts nested deeper than ", limits_.max_value_depth));
    }
    ns.ns().attrs.Set(Value::String(target.ns_attr), v);
    return;
  }
  if (!target.is_tuple) {
    scope_->vars[target.names[0]] = v;
    return;
  }
  if (!v.is_list() && !v.is_dict() && !v.is_string() && !v.is_undefined()) {
    ThrowRuntime(absl::StrCat("cannot unpack non-iterable ", TypeName(v), " object"));
  }
  const std::vector<Value> items = Iterate(v);
  const size_t want = target.names.size();
  if (items.size() < want) {
    ThrowRuntime(
        absl::StrCat("not enough values to unpack (expected ", want, ", got ", items.size(), ")"));
  }
  if (items.size() > want) {
    ThrowRuntime(absl::StrCat("too many values to unpack (expected ", want, ")"));
  }
  for (size_t i = 0; i < want; ++i) scope_->vars[target.names[i]] = items[i];
}

void Renderer::ExecSet(const Stmt& s) { Assign(s.target, Eval(*s.expr)); }

void Renderer::ExecSetBlock(const Stmt& s) {
  Value v = MakeString(Capture(s.body, std::make_shared<Scope>(scope_)));
  if (s.expr) {
    filter_block_input_ = &v;
    Value filtered = Eval(*s.expr);
    filter_block_input_ = nullptr;
    v = std::move(filtered);
  }
  Assign(s.target, v);
}

void Renderer::ExecFilterBlock(const Stmt& s) {
  const Value body = MakeString(Capture(s.body, std::make_shared<Scope>(scope_)));
  filter_block_input_ = &body;
  const Value v = Eval(*s.expr);
  filter_block_input_ = nullptr;
  Write(ToStr(v, limits_.max_output_bytes));
}

void Renderer::ExecWith(const Stmt& s) {
  std::vector<Value> values;
  for (const auto& [target, expr] : s.with_vars) values.push_back(Eval(*expr));
  ScopeSwap swap(scope_, std::make_shared<Scope>(scope_));
  for (size_t i = 0; i < values.size(); ++i) Assign(s.with_vars[i].first, values[i]);
  ExecBody(s.body);
}

Value Renderer::MakeMacro(std::shared_ptr<const MacroDef> def) {
  std::weak_ptr<Scope> closure = scope_;
  auto fn = std::make_shared<FunctionData>();
  fn->name = def->name;
  fn->repr = absl::StrCat("<Macro '", def->name, "'>");
  fn->call = [def, closure](Renderer& r, CallArgs& args) {
    std::shared_ptr<Scope> scope = closure.lock();
    return r.CallMacro(*def, scope ? scope : r.root_, args);
  };
  return Value::Function(std::move(fn));
}

void Renderer::ExecMacro(const Stmt& s) { scope_->vars[s.macro->name] = MakeMacro(s.macro); }

void Renderer::ExecCallBlock(const Stmt& s) {
  const Expr& call = *s.expr;
  const Value callee = Eval(*call.children[0]);
  CallArgs args = EvalArgs(call, 1);
  args.kw.emplace_back("caller", MakeMacro(s.macro));
  Write(ToStr(CallValue(callee, args), limits_.max_output_bytes));
}

namespace {

[[noreturn]] void ThrowMacroArgs(const MacroDef& def, std::string what) {
  ThrowRuntime(absl::StrCat("macro '", def.name, "' ", what));
}

}  // namespace

Value Renderer::CallMacro(const MacroDef& def, const std::shared_ptr<Scope>& closure,
                          CallArgs& args) {
  if (++call_depth_ > limits_.max_call_depth) {
    --call_depth_;
    ThrowLimit(absl::StrCat("macro calls nested deeper than ", limits_.max_call_depth));
  }
  struct CallDepth {
    int* depth;
    ~CallDepth() { --*depth; }
  } call_depth{&call_depth_};
  auto scope = std::make_shared<Scope>(closure);
  const size_t n = def.params.size();
  if (args.pos.size() > n && !def.uses_varargs) {
    ThrowMacroArgs(def, absl::StrCat("takes not more than ", n, " argument(s)"));
  }
  std::vector<bool> bound(n, false);
  for (size_t i = 0; i < n && i < args.pos.size(); ++i) {
    scope->vars[def.params[i]] = args.pos[i];
    bound[i] = true;
  }
  auto extra_kw = std::make_shared<DictData>();
  for (auto& [key, value] : args.kw) {
    size_t i = 0;
    while (i < n && def.params[i] != key) ++i;
    if (i < n) {
      if (bound[i])
        ThrowMacroArgs(def, absl::StrCat("got multiple values for argument '", key, "'"));
      scope->vars[key] = value;
      bound[i] = true;
    } else if (key == "caller" && def.uses_caller) {
      scope->vars["caller"] = value;
    } else if (def.uses_kwargs) {
      extra_kw->Set(Value::String(key), value);
    } else {
      ThrowMacroArgs(def, absl::StrCat("takes no keyword argument '", key, "'"));
    }
  }
  ScopeSwap swap(scope_, scope);
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) continue;
    scope->vars[def.params[i]] =
        def.defaults[i]
            ? Eval(*def.defaults[i])
            : Value::Undefined(absl::StrCat("parameter '", def.params[i], "' was not provided"));
  }
  if (def.uses_varargs) {
    std::vector<Value> extra;
    for (size_t i = n; i < args.pos.size(); ++i) extra.push_back(args.pos[i]);
    scope->vars["varargs"] = MakeList(std::move(extra), ListFlavor::kTuple);
  }
  if (def.uses_kwargs) scope->vars["kwargs"] = MakeDict(std::move(extra_kw));
  if (def.uses_caller && !scope->vars.contains("caller")) {
    scope->vars["caller"] = Value::Undefined("No caller defined");
  }
  return MakeString(Capture(def.body, scope));
}

}  // namespace para::text::jinja
