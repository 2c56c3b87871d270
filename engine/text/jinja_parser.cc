// The statement half of the Jinja parser: tags, their bodies and jinja2's messages for malformed
// blocks; the compile-time check of filter and test names; the entry point Parse().
#include "engine/text/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_filters.h"
#include "engine/text/jinja_parser_impl.h"
#include "engine/text/jinja_tests.h"

namespace para::text::jinja {
namespace parser_internal {
namespace {

// Tags that jinja2 knows but this engine refuses (they load other templates, or are not used by
// chat templates).
constexpr std::string_view kUnsupportedTags[] = {"include", "import",     "from",  "extends",
                                                 "block",   "autoescape", "trans", "pluralize"};

}  // namespace

// ---- statements ----
bool Parser::AtEndTag(const std::vector<std::string_view>& end_tags) const {
  return Cur().type == TokenType::kName &&
         std::find(end_tags.begin(), end_tags.end(), Cur().value) != end_tags.end();
}

// Parses until `{% <one of end_tags>` (left at the tag name) or the end of the template.
Body Parser::ParseBody(const std::vector<std::string_view>& end_tags) {
  DepthGuard guard(this);
  if (!end_tags.empty()) end_stack_.push_back(end_tags);
  Body body;
  while (true) {
    const Token& tok = Cur();
    if (tok.type == TokenType::kEof) {
      if (!end_tags.empty()) FailUnknownTagOrEof("");
      return body;
    }
    if (tok.type == TokenType::kData) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kText;
      s->line = tok.line;
      s->text = tok.value;
      body.push_back(std::move(s));
      Next();
    } else if (tok.type == TokenType::kVarBegin) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kPrint;
      s->line = tok.line;
      Next();
      s->expr = ParseTuple(false, true, {}, false);
      if (Cur().type != TokenType::kVarEnd) FailExpected("end of print statement");
      Next();
      body.push_back(std::move(s));
    } else if (tok.type == TokenType::kBlockBegin) {
      Next();
      if (AtEndTag(end_tags)) {
        if (!end_tags.empty()) end_stack_.pop_back();
        return body;
      }
      tag_stack_.push_back(Cur().value);
      body.push_back(ParseStatement());
      tag_stack_.pop_back();
      ExpectBlockEnd();
    } else {
      Fail(absl::StrCat("unexpected '", DescribeToken(tok), "'"));
    }
  }
}

// jinja2's message for an unknown tag (`name`) or an unexpected end of the template ("").
void Parser::FailUnknownTagOrEof(const std::string& name) const {
  std::string message = name.empty() ? "Unexpected end of template."
                                     : absl::StrCat("Encountered unknown tag '", name, "'.");
  if (!end_stack_.empty()) {
    bool expected = false;
    for (const auto& tags : end_stack_) {
      for (auto t : tags) expected = expected || t == name;
    }
    std::vector<std::string> quoted;
    for (auto t : end_stack_.back()) quoted.push_back(absl::StrCat("'", AV(t), "'"));
    const std::string looking = absl::StrJoin(quoted, " or ");
    if (!name.empty() && expected) {
      absl::StrAppend(&message,
                      " You probably made a nesting mistake. Jinja is expecting this tag, but "
                      "currently looking for ",
                      looking, ".");
    } else {
      absl::StrAppend(&message, " Jinja was looking for the following tags: ", looking, ".");
    }
  }
  if (!tag_stack_.empty()) {
    absl::StrAppend(&message, " The innermost block that needs to be closed is '",
                    tag_stack_.back(), "'.");
  }
  Fail(message);
}

// After a tag's header: `%}`, the body up to one of end_tags; consumes the end tag's name when
// `drop_needle`.
Body Parser::ParseStatements(const std::vector<std::string_view>& end_tags, bool drop_needle) {
  SkipOp(":");
  ExpectBlockEnd();
  Body body = ParseBody(end_tags);
  if (drop_needle) Next();
  return body;
}

StmtPtr Parser::NewStmt(StmtKind kind, int line) {
  auto s = std::make_unique<Stmt>();
  s->kind = kind;
  s->line = line;
  return s;
}

StmtPtr Parser::ParseStatement() {
  const Token& tok = Cur();
  if (tok.type != TokenType::kName) Fail("tag name expected");
  const std::string name = tok.value;
  const int line = tok.line;
  if (name == "for") return ParseFor();
  if (name == "if") return ParseIf();
  if (name == "set") return ParseSet();
  if (name == "macro") return ParseMacro();
  if (name == "call") return ParseCallBlock();
  if (name == "filter") return ParseFilterBlock();
  if (name == "with") return ParseWith();
  if (name == "generation") {
    Next();
    auto s = NewStmt(StmtKind::kGeneration, line);
    s->body = ParseStatements({"endgeneration"}, true);
    return s;
  }
  if (name == "break" || name == "continue") {
    if (loop_depth_ == 0) Fail(absl::StrCat("'", name, "' outside loop"));
    Next();
    return NewStmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
  }
  for (auto unsupported : kUnsupportedTags) {
    if (name == unsupported) {
      throw Error(ErrorKind::kUnsupported,
                  absl::StrCat("the '", name,
                               "' tag is not supported (chat templates are rendered alone, "
                               "without loading other templates)"),
                  line);
    }
  }
  tag_stack_.pop_back();  // not a block: the message names the enclosing one
  FailUnknownTagOrEof(name);
}

StmtPtr Parser::ParseFor() {
  auto s = NewStmt(StmtKind::kFor, Cur().line);
  Next();
  s->target = ParseAssignTargetNames({"in"});
  if (!SkipName("in")) FailExpected("in");
  s->expr = ParseTuple(false, false, {"recursive"}, false);
  if (SkipName("if")) s->loop_filter = ParseExpression(true);
  s->recursive = SkipName("recursive");
  ++loop_depth_;
  s->body = ParseStatements({"endfor", "else"}, false);
  --loop_depth_;
  if (Cur().value == "else") {
    Next();
    s->else_body = ParseStatements({"endfor"}, true);
  } else {
    Next();
  }
  return s;
}

StmtPtr Parser::ParseIf() {
  auto s = NewStmt(StmtKind::kIf, Cur().line);
  Next();
  while (true) {
    ExprPtr cond = ParseTuple(false, false, {}, false);
    Body body = ParseStatements({"elif", "else", "endif"}, false);
    s->branches.emplace_back(std::move(cond), std::move(body));
    const std::string tag = Cur().value;
    Next();
    if (tag == "elif") continue;
    if (tag == "else") s->branches.emplace_back(nullptr, ParseStatements({"endif"}, true));
    break;
  }
  return s;
}

StmtPtr Parser::ParseSet() {
  const int line = Cur().line;
  Next();
  AssignTarget target;
  if (Cur().type == TokenType::kName && Look().type == TokenType::kOp && Look().value == ".") {
    target.names.push_back(ExpectName());
    Next();
    target.ns_attr = ExpectName();
  } else {
    target = ParseAssignTargetNames({});
  }
  if (SkipOp("=")) {
    auto s = NewStmt(StmtKind::kSet, line);
    s->target = std::move(target);
    s->expr = ParseTuple(false, true, {}, false);
    return s;
  }
  auto s = NewStmt(StmtKind::kSetBlock, line);
  s->target = std::move(target);
  if (IsOp("|")) s->expr = ParseFilter(nullptr, false);
  s->body = ParseStatements({"endset"}, true);
  return s;
}

// name | name, name, ... | (name, name): what for/set/with may assign to.
AssignTarget Parser::ParseAssignTargetNames(const std::vector<std::string_view>& extra_end) {
  AssignTarget target;
  if (Cur().type == TokenType::kBlockEnd || Cur().type == TokenType::kVarEnd) {
    Fail(absl::StrCat("Expected an expression, got '", DescribeToken(Cur()), "'"));
  }
  const bool parens = SkipOp("(");
  while (true) {
    if (Cur().type != TokenType::kName) {
      Fail(absl::StrCat("can't assign to '", DescribeToken(Cur()), "'"));
    }
    target.names.push_back(ExpectName());
    if (!IsOp(",")) break;
    target.is_tuple = true;
    Next();
    if (parens ? IsOp(")")
               : (Cur().type == TokenType::kBlockEnd || AtEndTag(extra_end) || IsOp("="))) {
      break;
    }
  }
  if (parens) {
    ExpectOp(")");
    if (target.names.size() > 1) target.is_tuple = true;
  }
  static constexpr std::string_view kReserved[] = {"true", "false", "none",
                                                   "True", "False", "None"};
  for (const auto& n : target.names) {
    for (auto r : kReserved) {
      if (n == r) Fail("can't assign to 'const'");
    }
  }
  return target;
}

void Parser::ParseSignature(MacroDef& macro) {
  ExpectOp("(");
  while (!IsOp(")")) {
    if (!macro.params.empty()) ExpectOp(",");
    if (IsOp(")")) break;
    macro.params.push_back(ExpectName());
    if (SkipOp("=")) {
      macro.defaults.push_back(ParseExpression(true));
    } else {
      if (std::any_of(macro.defaults.begin(), macro.defaults.end(),
                      [](const ExprPtr& d) { return d != nullptr; })) {
        Fail("non-default argument follows default argument");
      }
      macro.defaults.push_back(nullptr);
    }
  }
  ExpectOp(")");
}

void Parser::ParseMacroBody(MacroDef& macro, std::string_view end_tag) {
  const int saved_loops = loop_depth_;
  loop_depth_ = 0;
  macros_.push_back(&macro);
  macro.body = ParseStatements({end_tag}, true);
  macros_.pop_back();
  loop_depth_ = saved_loops;
}

StmtPtr Parser::ParseMacro() {
  auto s = NewStmt(StmtKind::kMacro, Cur().line);
  Next();
  s->macro = std::make_shared<MacroDef>();
  s->macro->name = ExpectName();
  ParseSignature(*s->macro);
  ParseMacroBody(*s->macro, "endmacro");
  return s;
}

StmtPtr Parser::ParseCallBlock() {
  auto s = NewStmt(StmtKind::kCallBlock, Cur().line);
  Next();
  s->macro = std::make_shared<MacroDef>();
  s->macro->name = "caller";
  if (IsOp("(")) ParseSignature(*s->macro);
  s->expr = ParseExpression(true);
  if (s->expr->kind != ExprKind::kCall) Fail("expected call", s->line);
  ParseMacroBody(*s->macro, "endcall");
  return s;
}

StmtPtr Parser::ParseFilterBlock() {
  auto s = NewStmt(StmtKind::kFilterBlock, Cur().line);
  Next();
  s->expr = ParseFilter(nullptr, true);
  s->body = ParseStatements({"endfilter"}, true);
  return s;
}

StmtPtr Parser::ParseWith() {
  auto s = NewStmt(StmtKind::kWith, Cur().line);
  Next();
  while (Cur().type != TokenType::kBlockEnd) {
    if (!s->with_vars.empty()) ExpectOp(",");
    AssignTarget target;
    target.names.push_back(ExpectName());
    ExpectOp("=");
    s->with_vars.emplace_back(std::move(target), ParseExpression(true));
  }
  s->body = ParseStatements({"endwith"}, true);
  return s;
}

}  // namespace parser_internal

namespace {

using parser_internal::Parser;

// Unknown filters and tests are compile errors, except in jinja2's "soft" frames (an if's
// condition and bodies, a conditional expression), where they fail only when evaluated.
void CheckExpr(const Expr* e, bool soft) {
  if (!e) return;
  const bool unknown =
      (e->kind == ExprKind::kFilter && !e->filter) || (e->kind == ExprKind::kTest && !e->test);
  if (unknown && !soft) {
    throw Error(ErrorKind::kSyntax,
                absl::StrCat("No ", e->kind == ExprKind::kFilter ? "filter" : "test", " named '",
                             e->name, "'."),
                e->line);
  }
  const bool child_soft = soft || e->kind == ExprKind::kCondExpr;
  for (const auto& c : e->children) CheckExpr(c.get(), child_soft);
  for (const auto& [k, v] : e->kwargs) CheckExpr(v.get(), child_soft);
  CheckExpr(e->dyn_args.get(), child_soft);
  CheckExpr(e->dyn_kwargs.get(), child_soft);
}

void CheckBody(const Body& body, bool soft);

void CheckStmt(const Stmt& s, bool soft) {
  CheckExpr(s.expr.get(), soft && s.kind != StmtKind::kFilterBlock);
  CheckExpr(s.loop_filter.get(), false);
  for (const auto& [cond, body] : s.branches) {
    CheckExpr(cond.get(), true);
    CheckBody(body, true);
  }
  CheckBody(s.body, false);
  CheckBody(s.else_body, false);
  if (s.macro) {
    for (const auto& d : s.macro->defaults) CheckExpr(d.get(), false);
    CheckBody(s.macro->body, false);
  }
  for (const auto& [target, value] : s.with_vars) CheckExpr(value.get(), false);
}

void CheckBody(const Body& body, bool soft) {
  for (const auto& s : body) CheckStmt(*s, soft);
}

}  // namespace

Body Parse(const std::vector<Token>& tokens, int max_nesting_depth) {
  Body body = Parser(tokens, max_nesting_depth).ParseTemplate();
  CheckBody(body, false);
  return body;
}

}  // namespace para::text::jinja
