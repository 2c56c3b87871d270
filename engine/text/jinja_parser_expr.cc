// The expression half of the Jinja parser: jinja2's grammar and precedence, including its
// quirks (left-associative `**`, unary minus binding tighter than `**`, filters binding tighter
// than unary minus, `is` tests taking one bare argument).
#include "engine/text/jinja_filters.h"
#include "engine/text/jinja_parser_impl.h"
#include "engine/text/jinja_tests.h"

namespace para::text::jinja::parser_internal {

// ---- expressions ----
bool Parser::IsTupleEnd(const std::vector<std::string_view>& extra_end) const {
  const TokenType t = Cur().type;
  if (t == TokenType::kVarEnd || t == TokenType::kBlockEnd || IsOp(")")) return true;
  return AtEndTag(extra_end);
}

ExprPtr Parser::ParseExpression(bool with_condexpr) {
  DepthGuard guard(this);
  return with_condexpr ? ParseCondExpr() : ParseOr();
}

ExprPtr Parser::ParseCondExpr() {
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

ExprPtr Parser::ParseOr() {
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

ExprPtr Parser::ParseAnd() {
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

ExprPtr Parser::ParseNot() {
  if (IsName("not")) {
    DepthGuard guard(this);
    auto e = NewExpr(ExprKind::kNot, Cur().line);
    Next();
    e->children.push_back(ParseNot());
    return e;
  }
  return ParseCompare();
}

ExprPtr Parser::ParseCompare() {
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

ExprPtr Parser::Binary(std::string op, ExprPtr left, ExprPtr right, int line) {
  auto e = NewExpr(ExprKind::kBinary, line);
  e->name = std::move(op);
  e->children.push_back(std::move(left));
  e->children.push_back(std::move(right));
  return e;
}

ExprPtr Parser::ParseMath1() {
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

ExprPtr Parser::ParseConcat() {
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

ExprPtr Parser::ParseMath2() {
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

ExprPtr Parser::ParsePow() {
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

ExprPtr Parser::ParseUnary(bool with_filter) {
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

ExprPtr Parser::ParsePrimary() {
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

void Parser::NoteName(const std::string& name) {
  if (macros_.empty()) return;
  if (name == "caller") macros_.back()->uses_caller = true;
  if (name == "varargs") macros_.back()->uses_varargs = true;
  if (name == "kwargs") macros_.back()->uses_kwargs = true;
}

ExprPtr Parser::ParseList() {
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

ExprPtr Parser::ParseDict() {
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

ExprPtr Parser::ParsePostfix(ExprPtr node) {
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

ExprPtr Parser::ParseFilterExpr(ExprPtr node) {
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

ExprPtr Parser::ParseSubscript(ExprPtr node) {
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

ExprPtr Parser::ParseSubscribed() {
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
void Parser::ParseCallArgs(Expr& e) {
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

ExprPtr Parser::ParseCall(ExprPtr node) {
  auto e = NewExpr(ExprKind::kCall, Cur().line);
  e->children.push_back(std::move(node));
  ParseCallArgs(*e);
  return e;
}

std::string Parser::ParseDottedName() {
  std::string name = ExpectName();
  while (SkipOp(".")) absl::StrAppend(&name, ".", ExpectName());
  return name;
}

ExprPtr Parser::ParseFilter(ExprPtr node, bool start_inline) {
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

ExprPtr Parser::ParseTest(ExprPtr node) {
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

}  // namespace para::text::jinja::parser_internal
