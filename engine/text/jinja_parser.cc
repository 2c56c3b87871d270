#include "engine/text/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_filters.h"
#include "engine/text/jinja_tests.h"

namespace para::text::jinja {
namespace {

// Tags that jinja2 knows but this engine refuses (they load other templates, or are not used by
// chat templates).
constexpr std::string_view kUnsupportedTags[] = {"include", "import",     "from",  "extends",
                                                 "block",   "autoescape", "trans", "pluralize"};

ExprPtr NewExpr(ExprKind kind, int line) {
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
  bool AtEndTag(const std::vector<std::string_view>& end_tags) const {
    return Cur().type == TokenType::kName &&
           std::find(end_tags.begin(), end_tags.end(), Cur().value) != end_tags.end();
  }

  // Parses until `{% <one of end_tags>` (left at the tag name) or the end of the template.
  Body ParseBody(const std::vector<std::string_view>& end_tags) {
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
  [[noreturn]] void FailUnknownTagOrEof(const std::string& name) const {
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
  Body ParseStatements(const std::vector<std::string_view>& end_tags, bool drop_needle) {
    SkipOp(":");
    ExpectBlockEnd();
    Body body = ParseBody(end_tags);
    if (drop_needle) Next();
    return body;
  }

  StmtPtr NewStmt(StmtKind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  StmtPtr ParseStatement() {
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

  StmtPtr ParseFor() {
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

  StmtPtr ParseIf() {
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

  StmtPtr ParseSet() {
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
  AssignTarget ParseAssignTargetNames(const std::vector<std::string_view>& extra_end) {
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

  void ParseSignature(MacroDef& macro) {
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

  void ParseMacroBody(MacroDef& macro, std::string_view end_tag) {
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    macros_.push_back(&macro);
    macro.body = ParseStatements({end_tag}, true);
    macros_.pop_back();
    loop_depth_ = saved_loops;
  }

  StmtPtr ParseMacro() {
    auto s = NewStmt(StmtKind::kMacro, Cur().line);
    Next();
    s->macro = std::make_shared<MacroDef>();
    s->macro->name = ExpectName();
    ParseSignature(*s->macro);
    ParseMacroBody(*s->macro, "endmacro");
    return s;
  }

  StmtPtr ParseCallBlock() {
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

  StmtPtr ParseFilterBlock() {
    auto s = NewStmt(StmtKind::kFilterBlock, Cur().line);
    Next();
    s->expr = ParseFilter(nullptr, true);
    s->body = ParseStatements({"endfilter"}, true);
    return s;
  }

  StmtPtr ParseWith() {
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

  // ---- expressions ----
  bool IsTupleEnd(const std::vector<std::string_view>& extra_end) const {
    const TokenType t = Cur().type;
    if (t == TokenType::kVarEnd || t == TokenType::kBlockEnd || IsOp(")")) return true;
    return AtEndTag(extra_end);
  }

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

  ExprPtr ParseExpression(bool with_condexpr) {
    DepthGuard guard(this);
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  ExprPtr ParseCondExpr() {
    ExprPtr expr = ParseOr();
    ChainGuard chain(this);
    while (IsName("if")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      auto cond = NewExpr(ExprKind::kCondExpr, line);
      cond->children.push_back(ParseOr());
      cond->children.push_back(std::move(expr));
      cond->children.push_back(SkipName("else") ? ParseCondExpr() : nullptr);
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    ChainGuard chain(this);
    while (IsName("or")) {
      chain.Add();
      auto e = NewExpr(ExprKind::kOr, Cur().line);
      Next();
      e->children.push_back(std::move(left));
      e->children.push_back(ParseAnd());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    ChainGuard chain(this);
    while (IsName("and")) {
      chain.Add();
      auto e = NewExpr(ExprKind::kAnd, Cur().line);
      Next();
      e->children.push_back(std::move(left));
      e->children.push_back(ParseNot());
      left = std::move(e);
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(this);
      auto e = NewExpr(ExprKind::kNot, Cur().line);
      Next();
      e->children.push_back(ParseNot());
      return e;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const int line = Cur().line;
    ExprPtr first = ParseMath1();
    auto cmp = NewExpr(ExprKind::kCompare, line);
    while (true) {
      static constexpr std::string_view kOps[] = {"==", "!=", "<", "<=", ">", ">="};
      std::string op;
      if (Cur().type == TokenType::kOp &&
          std::find(std::begin(kOps), std::end(kOps), Cur().value) != std::end(kOps)) {
        op = Cur().value;
        Next();
      } else if (IsName("in")) {
        op = "in";
        Next();
      } else if (IsName("not") && Look().type == TokenType::kName && Look().value == "in") {
        op = "notin";
        Next();
        Next();
      } else {
        break;
      }
      cmp->ops.push_back(op);
      cmp->children.push_back(ParseMath1());
    }
    if (cmp->ops.empty()) return first;
    cmp->children.insert(cmp->children.begin(), std::move(first));
    return cmp;
  }

  ExprPtr Binary(std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = NewExpr(ExprKind::kBinary, line);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    ChainGuard chain(this);
    while (IsOp("+") || IsOp("-")) {
      chain.Add();
      const std::string op = Cur().value;
      const int line = Cur().line;
      Next();
      left = Binary(op, std::move(left), ParseConcat(), line);
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    ChainGuard chain(this);
    while (IsOp("~")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      left = Binary("~", std::move(left), ParseMath2(), line);
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    ChainGuard chain(this);
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      chain.Add();
      const std::string op = Cur().value;
      const int line = Cur().line;
      Next();
      left = Binary(op, std::move(left), ParsePow(), line);
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    ChainGuard chain(this);
    while (IsOp("**")) {
      chain.Add();
      const int line = Cur().line;
      Next();
      left = Binary("**", std::move(left), ParseUnary(true), line);
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      DepthGuard guard(this);
      node = NewExpr(IsOp("-") ? ExprKind::kNeg : ExprKind::kPos, Cur().line);
      Next();
      node->children.push_back(ParseUnary(false));
    } else {
      node = ParsePrimary();
    }
    node = ParsePostfix(std::move(node));
    if (with_filter) node = ParseFilterExpr(std::move(node));
    return node;
  }

  ExprPtr ParsePrimary() {
    const Token& tok = Cur();
    const int line = tok.line;
    if (tok.type == TokenType::kName) {
      auto e = NewExpr(ExprKind::kConst, line);
      const std::string& v = tok.value;
      if (v == "true" || v == "True") {
        e->value = Value::Bool(true);
      } else if (v == "false" || v == "False") {
        e->value = Value::Bool(false);
      } else if (v == "none" || v == "None") {
        e->value = Value::None();
      } else {
        e->kind = ExprKind::kName;
        e->name = v;
        NoteName(v);
      }
      Next();
      return e;
    }
    if (tok.type == TokenType::kString) {
      std::string s;
      while (Cur().type == TokenType::kString) {
        s += Cur().value;
        Next();
      }
      auto e = NewExpr(ExprKind::kConst, line);
      e->value = Value::String(std::move(s));
      return e;
    }
    if (tok.type == TokenType::kInt || tok.type == TokenType::kFloat) {
      auto e = NewExpr(ExprKind::kConst, line);
      e->value =
          tok.type == TokenType::kInt ? Value::Int(tok.int_value) : Value::Float(tok.float_value);
      Next();
      return e;
    }
    if (IsOp("(")) {
      Next();
      ExprPtr e = ParseTuple(false, true, {}, true);
      ExpectOp(")");
      return e;
    }
    if (IsOp("[")) return ParseList();
    if (IsOp("{")) return ParseDict();
    Fail(absl::StrCat("unexpected '", DescribeToken(tok), "'"));
  }

  void NoteName(const std::string& name) {
    if (macros_.empty()) return;
    if (name == "caller") macros_.back()->uses_caller = true;
    if (name == "varargs") macros_.back()->uses_varargs = true;
    if (name == "kwargs") macros_.back()->uses_kwargs = true;
  }

  ExprPtr ParseList() {
    auto e = NewExpr(ExprKind::kList, Cur().line);
    ExpectOp("[");
    while (!IsOp("]")) {
      if (!e->children.empty()) ExpectOp(",");
      if (IsOp("]")) break;
      e->children.push_back(ParseExpression(true));
    }
    ExpectOp("]");
    return e;
  }

  ExprPtr ParseDict() {
    auto e = NewExpr(ExprKind::kDict, Cur().line);
    ExpectOp("{");
    while (!IsOp("}")) {
      if (!e->children.empty()) ExpectOp(",");
      if (IsOp("}")) break;
      e->children.push_back(ParseExpression(true));
      ExpectOp(":");
      e->children.push_back(ParseExpression(true));
    }
    ExpectOp("}");
    return e;
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    ChainGuard chain(this);
    while (true) {
      chain.Add();
      if (IsOp(".") || IsOp("[")) {
        node = ParseSubscript(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    ChainGuard chain(this);
    while (true) {
      chain.Add();
      if (IsOp("|")) {
        node = ParseFilter(std::move(node), false);
      } else if (IsName("is")) {
        node = ParseTest(std::move(node));
      } else if (IsOp("(")) {
        node = ParseCall(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseSubscript(ExprPtr node) {
    const int line = Cur().line;
    if (SkipOp(".")) {
      const Token& attr = Cur();
      if (attr.type == TokenType::kName) {
        auto e = NewExpr(ExprKind::kGetAttr, line);
        e->name = attr.value;
        e->children.push_back(std::move(node));
        Next();
        return e;
      }
      if (attr.type != TokenType::kInt) Fail("expected name or number", attr.line);
      auto e = NewExpr(ExprKind::kGetItem, line);
      e->children.push_back(std::move(node));
      auto idx = NewExpr(ExprKind::kConst, line);
      idx->value = Value::Int(attr.int_value);
      e->children.push_back(std::move(idx));
      Next();
      return e;
    }
    ExpectOp("[");
    std::vector<ExprPtr> args;
    while (!IsOp("]")) {
      if (!args.empty()) ExpectOp(",");
      args.push_back(ParseSubscribed());
    }
    ExpectOp("]");
    auto e = NewExpr(ExprKind::kGetItem, line);
    e->children.push_back(std::move(node));
    if (args.size() == 1) {
      e->children.push_back(std::move(args[0]));
    } else {
      auto t = NewExpr(ExprKind::kTuple, line);
      t->children = std::move(args);
      e->children.push_back(std::move(t));
    }
    return e;
  }

  ExprPtr ParseSubscribed() {
    const int line = Cur().line;
    std::vector<ExprPtr> parts;
    if (SkipOp(":")) {
      parts.push_back(nullptr);
    } else {
      ExprPtr node = ParseExpression(true);
      if (!SkipOp(":")) return node;
      parts.push_back(std::move(node));
    }
    auto slice_part = [&]() -> ExprPtr {
      if (IsOp("]") || IsOp(",")) return nullptr;
      return ParseExpression(true);
    };
    parts.push_back(IsOp(":") ? nullptr : slice_part());
    parts.push_back(SkipOp(":") ? slice_part() : nullptr);
    auto e = NewExpr(ExprKind::kSlice, line);
    e->children = std::move(parts);
    return e;
  }

  // Parses `(args)` into e's children (after `first` children already there) and kwargs.
  void ParseCallArgs(Expr& e) {
    const int line = Cur().line;
    ExpectOp("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) Fail("invalid syntax for function call expression", line);
    };
    while (!IsOp(")")) {
      if (require_comma) {
        ExpectOp(",");
        if (IsOp(")")) break;
      }
      if (IsOp("*")) {
        ensure(!e.dyn_args && !e.dyn_kwargs);
        Next();
        e.dyn_args = ParseExpression(true);
      } else if (IsOp("**")) {
        ensure(!e.dyn_kwargs);
        Next();
        e.dyn_kwargs = ParseExpression(true);
      } else if (Cur().type == TokenType::kName && Look().type == TokenType::kOp &&
                 Look().value == "=") {
        ensure(!e.dyn_kwargs);
        std::string key = Cur().value;
        Next();
        Next();
        e.kwargs.emplace_back(std::move(key), ParseExpression(true));
      } else {
        ensure(!e.dyn_args && !e.dyn_kwargs && e.kwargs.empty());
        e.children.push_back(ParseExpression(true));
      }
      require_comma = true;
    }
    ExpectOp(")");
  }

  ExprPtr ParseCall(ExprPtr node) {
    auto e = NewExpr(ExprKind::kCall, Cur().line);
    e->children.push_back(std::move(node));
    ParseCallArgs(*e);
    return e;
  }

  std::string ParseDottedName() {
    std::string name = ExpectName();
    while (SkipOp(".")) absl::StrAppend(&name, ".", ExpectName());
    return name;
  }

  ExprPtr ParseFilter(ExprPtr node, bool start_inline) {
    ChainGuard chain(this);
    while (IsOp("|") || start_inline) {
      chain.Add();
      if (!start_inline) Next();
      start_inline = false;
      auto e = NewExpr(ExprKind::kFilter, Cur().line);
      e->name = ParseDottedName();
      e->filter = FindFilter(e->name);
      if (!e->filter && IsUnsupportedFilter(e->name)) {
        throw Error(ErrorKind::kUnsupported,
                    absl::StrCat("the '", e->name, "' filter is not supported"), e->line);
      }
      e->children.push_back(std::move(node));
      if (IsOp("(")) ParseCallArgs(*e);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr ParseTest(ExprPtr node) {
    const int line = Cur().line;
    Next();  // is
    const bool negated = SkipName("not");
    auto e = NewExpr(ExprKind::kTest, line);
    e->name = ParseDottedName();
    e->test = FindTest(e->name);
    e->children.push_back(std::move(node));
    const Token& cur = Cur();
    if (IsOp("(")) {
      ParseCallArgs(*e);
    } else if ((cur.type == TokenType::kName || cur.type == TokenType::kString ||
                cur.type == TokenType::kInt || cur.type == TokenType::kFloat || IsOp("[") ||
                IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) Fail("You cannot chain multiple tests with is");
      e->children.push_back(ParsePostfix(ParsePrimary()));
    }
    if (!negated) return e;
    auto n = NewExpr(ExprKind::kNot, line);
    n->children.push_back(std::move(e));
    return n;
  }

  const std::vector<Token>& toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int max_depth_;
  int loop_depth_ = 0;
  std::vector<MacroDef*> macros_;
  std::vector<std::vector<std::string_view>> end_stack_;  // end tags of the open blocks
  std::vector<std::string> tag_stack_;                    // names of the open statements
};

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
