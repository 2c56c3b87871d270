// The Jinja parser's class (internal to para_chat_template), shared by jinja_parser.cc
// (statements, checks, the entry point) and jinja_parser_expr.cc (expressions). Use Parse() from
// jinja_parser.h; nothing else includes this. One Parser parses one token list on one thread.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_ast.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_lexer.h"

namespace para::text::jinja::parser_internal {

inline ExprPtr NewExpr(ExprKind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, int max_depth) : toks_(tokens), max_depth_(max_depth) {}

  Body ParseTemplate() {
    Body body = ParseBody({});
    if (Cur().type != TokenType::kEof)
      Fail(absl::StrCat("unexpected '", DescribeToken(Cur()), "'"));
    return body;
  }

 private:
  // ---- token stream ----
  const Token& Cur() const { return toks_[pos_]; }
  const Token& Look() const { return toks_[std::min(pos_ + 1, toks_.size() - 1)]; }
  void Next() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool IsOp(std::string_view op) const { return Cur().type == TokenType::kOp && Cur().value == op; }
  bool IsName(std::string_view name) const {
    return Cur().type == TokenType::kName && Cur().value == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }

  [[noreturn]] void Fail(std::string message, int line = 0) const {
    throw Error(ErrorKind::kSyntax, std::move(message), line ? line : Cur().line);
  }
  [[noreturn]] void FailExpected(std::string_view what) const {
    if (Cur().type == TokenType::kEof) {
      Fail(absl::StrCat("unexpected end of template, expected '", AV(what), "'."));
    }
    Fail(absl::StrCat("expected token '", AV(what), "', got '", DescribeToken(Cur()), "'"));
  }
  void ExpectOp(std::string_view op) {
    if (!SkipOp(op)) FailExpected(op);
  }
  void ExpectBlockEnd() {
    if (Cur().type != TokenType::kBlockEnd) FailExpected("end of statement block");
    Next();
  }
  std::string ExpectName() {
    if (Cur().type != TokenType::kName) FailExpected("name");
    std::string name = Cur().value;
    Next();
    return name;
  }

  // ---- nesting bound ----
  // One level per expression or block opened in the source, per unary operator, and per link of
  // a left-associative chain (a + b + c, a.b.c, x|f|g): the depth of the tree, which bounds the
  // recursion of the parser, the checks, the renderer and the destructors.
  struct DepthGuard {
    explicit DepthGuard(Parser* p) : p(p) {
      if (++p->depth_ > p->max_depth_) {
        throw Error(ErrorKind::kLimit,
                    absl::StrCat("template nested too deeply (more than ", p->max_depth_,
                                 " levels of blocks or expressions)"),
                    p->Cur().line);
      }
    }
    ~DepthGuard() { --p->depth_; }
    Parser* p;
  };

  // Left-associative chains (a + b + c, a.b.c, x|f|g) nest the tree one level per link.
  struct ChainGuard {
    explicit ChainGuard(Parser* p) : p(p) {}
    void Add() {
      DepthGuard check(p);  // throws past the limit
      ++p->depth_;
      ++links;
    }
    ~ChainGuard() { p->depth_ -= links; }
    Parser* p;
    int links = 0;
  };

  // ---- statements ----
  bool AtEndTag(const std::vector<std::string_view>& end_tags) const;

  // Parses until `{% <one of end_tags>` (left at the tag name) or the end of the template.
  Body ParseBody(const std::vector<std::string_view>& end_tags);

  // jinja2's message for an unknown tag (`name`) or an unexpected end of the template ("").
  [[noreturn]] void FailUnknownTagOrEof(const std::string& name) const;

  // After a tag's header: `%}`, the body up to one of end_tags; consumes the end tag's name when
  // `drop_needle`.
  Body ParseStatements(const std::vector<std::string_view>& end_tags, bool drop_needle);

  StmtPtr NewStmt(StmtKind kind, int line);

  StmtPtr ParseStatement();

  StmtPtr ParseFor();

  StmtPtr ParseIf();

  StmtPtr ParseSet();

  // name | name, name, ... | (name, name): what for/set/with may assign to.
  AssignTarget ParseAssignTargetNames(const std::vector<std::string_view>& extra_end);

  void ParseSignature(MacroDef& macro);

  void ParseMacroBody(MacroDef& macro, std::string_view end_tag);

  StmtPtr ParseMacro();

  StmtPtr ParseCallBlock();

  StmtPtr ParseFilterBlock();

  StmtPtr ParseWith();

  // ---- expressions ----
  bool IsTupleEnd(const std::vector<std::string_view>& extra_end) const;

  // jinja2's parse_tuple: `a`, `a, b`, `a,`; `simplified` parses primaries only.
  ExprPtr ParseTuple(bool simplified, bool with_condexpr,
                     const std::vector<std::string_view>& extra_end, bool explicit_parens) {
    const int line = Cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) ExpectOp(",");
      if (IsTupleEnd(extra_end)) break;
      items.push_back(simplified ? ParsePrimary() : ParseExpression(with_condexpr));
      if (!IsOp(",")) break;
      is_tuple = true;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) {
        Fail(absl::StrCat("Expected an expression, got '", DescribeToken(Cur()), "'"));
      }
    }
    auto t = NewExpr(ExprKind::kTuple, line);
    t->children = std::move(items);
    return t;
  }

  ExprPtr ParseExpression(bool with_condexpr);

  ExprPtr ParseCondExpr();

  ExprPtr ParseOr();

  ExprPtr ParseAnd();

  ExprPtr ParseNot();

  ExprPtr ParseCompare();

  ExprPtr Binary(std::string op, ExprPtr left, ExprPtr right, int line);

  ExprPtr ParseMath1();

  ExprPtr ParseConcat();

  ExprPtr ParseMath2();

  ExprPtr ParsePow();

  ExprPtr ParseUnary(bool with_filter);

  ExprPtr ParsePrimary();

  void NoteName(const std::string& name);

  ExprPtr ParseList();

  ExprPtr ParseDict();

  ExprPtr ParsePostfix(ExprPtr node);

  ExprPtr ParseFilterExpr(ExprPtr node);

  ExprPtr ParseSubscript(ExprPtr node);

  ExprPtr ParseSubscribed();

  // Parses `(args)` into e's children (after `first` children already there) and kwargs.
  void ParseCallArgs(Expr& e);

  ExprPtr ParseCall(ExprPtr node);

  std::string ParseDottedName();

  ExprPtr ParseFilter(ExprPtr node, bool start_inline);

  ExprPtr ParseTest(ExprPtr node);

  const std::vector<Token>& toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int max_depth_;
  int loop_depth_ = 0;
  std::vector<MacroDef*> macros_;
  std::vector<std::vector<std::string_view>> end_stack_;  // end tags of the open blocks
  std::vector<std::string> tag_stack_;                    // names of the open statements
};

}  // namespace para::text::jinja::parser_internal
