// Unit tests of the chat-template engine: each construct with an expected output written by
// hand (from Python's and jinja2's documented behaviour), every error, every limit, hostile
// templates and inputs, and the public API. Conformance against jinja2 itself is in
// test_chat_template_conformance.py.
#include "engine/text/chat_template.h"

#include <pthread.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace para::text {
namespace {

using nlohmann::ordered_json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Renders `source` with `vars` (null: no variables); any failure fails the test and returns a
// marker.
std::string Render(std::string_view source, const ordered_json& vars = ordered_json::object(),
                   const TemplateLimits& limits = {}) {
  auto tmpl = ChatTemplate::Compile(source, limits);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status() << "\n  template: " << source;
  if (!tmpl.ok()) return "<compile error>";
  auto out = tmpl->Render(vars.is_null() ? ordered_json::object() : vars);
  EXPECT_TRUE(out.ok()) << out.status() << "\n  template: " << source;
  return out.ok() ? *out : "<render error>";
}

// The error of compiling or rendering `source`; fails the test when it succeeds.
absl::Status Failure(std::string_view source, const ordered_json& vars = ordered_json::object(),
                     const TemplateLimits& limits = {}) {
  auto tmpl = ChatTemplate::Compile(source, limits);
  if (!tmpl.ok()) return tmpl.status();
  auto out = tmpl->Render(vars.is_null() ? ordered_json::object() : vars);
  EXPECT_FALSE(out.ok()) << "rendered: " << *out << "\n  template: " << source;
  return out.ok() ? absl::OkStatus() : out.status();
}

std::string Message(std::string_view source, const ordered_json& vars = ordered_json::object(),
                    const TemplateLimits& limits = {}) {
  return std::string(Failure(source, vars, limits).message());
}

const ordered_json kThree = {{"messages",
                              {{{"role", "user"}, {"content", "a"}},
                               {{"role", "assistant"}, {"content", "b"}},
                               {{"role", "user"}, {"content", "c"}}}}};

// ---------------------------------------------------------------------------------------------
// Whitespace

TEST(ChatTemplateWhitespace, TrimBlocksRemovesTheNewlineAfterATag) {
  EXPECT_EQ(Render("{% if true %}\nx\n{% endif %}\ny"), "x\ny");
}

TEST(ChatTemplateWhitespace, LstripBlocksRemovesIndentationBeforeATag) {
  EXPECT_EQ(Render("a\n  {% if true %}\n  b\n  {% endif %}\nc\n"), "a\n  b\nc");
  EXPECT_EQ(Render("a\n  {# comment #}\nb"), "a\nb");
}

TEST(ChatTemplateWhitespace, LstripDoesNotTouchTextBeforeATagOnTheSameLine) {
  EXPECT_EQ(Render("x  {% if true %}y{% endif %}"), "x  y");
}

TEST(ChatTemplateWhitespace, PrintTagsAreNeitherTrimmedNorStripped) {
  EXPECT_EQ(Render("a\n    {{ 1 }}\nb"), "a\n    1\nb");
}

TEST(ChatTemplateWhitespace, MinusStripsAllWhitespaceOnItsSide) {
  EXPECT_EQ(Render("x {{- ' y' -}}  \n z"), "x yz");
  EXPECT_EQ(Render("a  \n  {%- if true -%}  \n  b  {%- endif %}"), "ab");
  EXPECT_EQ(Render("a {#- c -#} b"), "ab");
}

TEST(ChatTemplateWhitespace, PlusDisablesLstripAndTrim) {
  EXPECT_EQ(Render("a\n  {%+ if true %}b{% endif %}"), "a\n  b");
  EXPECT_EQ(Render("{% if true +%}\nb{% endif %}"), "\nb");
}

TEST(ChatTemplateWhitespace, OneTrailingNewlineIsDroppedAndLineEndingsNormalised) {
  EXPECT_EQ(Render("x\n"), "x");
  EXPECT_EQ(Render("x\n\n"), "x\n");
  EXPECT_EQ(Render("a\r\nb\rc\r\n"), "a\nb\nc");
}

TEST(ChatTemplateWhitespace, RawBlocksAreLiteral) {
  EXPECT_EQ(Render("{% raw %}{{ x }}{% if %}{% endraw %}"), "{{ x }}{% if %}");
  EXPECT_EQ(Render("{% raw %}\n  a{% endraw %}\nafter"), "\n  aafter");
}

TEST(ChatTemplateWhitespace, BracesInsideTagsDoNotEndThem) {
  EXPECT_EQ(Render("{{ {'a': {'b': 1}} }}"), "{'a': {'b': 1}}");
}

// ---------------------------------------------------------------------------------------------
// Values and how they print

TEST(ChatTemplatePrinting, ScalarsPrintAsPython) {
  EXPECT_EQ(Render("{{ none }} {{ None }} {{ true }} {{ False }} {{ 42 }} {{ -7 }}"),
            "None None True False 42 -7");
}

TEST(ChatTemplatePrinting, FloatsPrintAsPythonRepr) {
  EXPECT_EQ(Render("{{ 1.0 }} {{ 0.1 }} {{ 1e-05 }} {{ 0.0001 }} {{ 1e16 }} {{ 1e15 }}"),
            "1.0 0.1 1e-05 0.0001 1e+16 1000000000000000.0");
  EXPECT_EQ(Render("{{ 0.1 + 0.2 }} {{ -0.0 }} {{ 2.5e-7 }} {{ 123456789.125 }} {{ 1e100 }}"),
            "0.30000000000000004 -0.0 2.5e-07 123456789.125 1e+100");
  EXPECT_EQ(Render("{{ 7 / 2 }} {{ 4 / 2 }} {{ 1.5 * 2 }}"), "3.5 2.0 3.0");
}

TEST(ChatTemplatePrinting, ContainersPrintAsPythonRepr) {
  EXPECT_EQ(Render("{{ [1, 'a', none, true, 1.5] }}"), "[1, 'a', None, True, 1.5]");
  EXPECT_EQ(Render("{{ {'k': 'v', 1: [2]} }}"), "{'k': 'v', 1: [2]}");
  EXPECT_EQ(Render("{{ (1,) }} {{ (1, 2) }} {{ () }} {{ [] }} {{ {} }}"), "(1,) (1, 2) () [] {}");
}

TEST(ChatTemplatePrinting, StringsInsideContainersAreQuotedAsPythonRepr) {
  EXPECT_EQ(Render("{{ [\"it's\"] }}"), "[\"it's\"]");
  EXPECT_EQ(Render("{{ ['say \"hi\"'] }}"), "['say \"hi\"']");
  EXPECT_EQ(Render("{{ ['both \\' \"'] }}"), "['both \\' \"']");
  EXPECT_EQ(Render("{{ ['a\\nb\\tc\\\\'] }}"), "['a\\nb\\tc\\\\']");
  EXPECT_EQ(Render("{{ ['\\x01\\u00a0é\\u200b'] }}"), "['\\x01\\xa0é\\u200b']");
}

TEST(ChatTemplatePrinting, StringLiteralEscapes) {
  EXPECT_EQ(Render("{{ 'a\\tb\\\\c\\x41\\u00e9\\101\\q' }}"), "a\tb\\cAéA\\q");
  EXPECT_EQ(Render("{{ \"x\" 'y' }}"), "xy");
}

TEST(ChatTemplatePrinting, NumberLiterals) {
  EXPECT_EQ(Render("{{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 2.5e3 }} {{ 1E2 }}"),
            "1000 31 15 5 2500.0 100.0");
}

TEST(ChatTemplatePrinting, UndefinedPrintsNothing) {
  EXPECT_EQ(Render("[{{ x }}][{{ m.y }}]", {{"m", {}}}), "[][]");
}

TEST(ChatTemplatePrinting, DictViewsAndNamespaces) {
  EXPECT_EQ(Render("{{ {'a': 1}.items() }} {{ {'a': 1}.keys() }} {{ {'a': 1}.values() }}"),
            "dict_items([('a', 1)]) dict_keys(['a']) dict_values([1])");
  EXPECT_EQ(Render("{{ namespace(a=1) }}"), "<Namespace {'a': 1}>");
}

// ---------------------------------------------------------------------------------------------
// Operators

TEST(ChatTemplateOperators, Arithmetic) {
  EXPECT_EQ(Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }}"),
            "3 -4 2 -2 1024");
  EXPECT_EQ(Render("{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** -1 }} {{ 10 - 2 - 3 }}"),
            "3.0 0.5 0.5 5");
  EXPECT_EQ(Render("{{ true + 1 }} {{ 1 + 2.0 }}"), "2 3.0");
}

TEST(ChatTemplateOperators, JinjaPrecedenceQuirks) {
  EXPECT_EQ(Render("{{ 2 ** 3 ** 2 }}"), "64");        // left-associative
  EXPECT_EQ(Render("{{ -2 ** 2 }}"), "4");             // unary minus binds tighter
  EXPECT_EQ(Render("{{ -x|abs }}", {{"x", 3}}), "3");  // filters bind tighter than minus
  EXPECT_EQ(Render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}"), "7 9");
  EXPECT_EQ(Render("{{ 'a' ~ 2 * 3 }}"), "a6");  // * binds tighter than ~
  EXPECT_THAT(Message("{{ 'a' ~ 1 + 2 }}"), HasSubstr("can only concatenate str"));  // ~ than +
}

TEST(ChatTemplateOperators, StringsAndLists) {
  EXPECT_EQ(Render("{{ 'ab' + 'cd' }} {{ 'x' * 3 }} {{ 2 * 'y' }} {{ 'a' ~ 1 ~ none ~ [1] }}"),
            "abcd xxx yy a1None[1]");
  EXPECT_EQ(Render("{{ [1] + [2] }} {{ [0] * 3 }} {{ (1,) + (2,) }}"), "[1, 2] [0, 0, 0] (1, 2)");
  EXPECT_EQ(Render("{{ 'x' ~ y ~ 'z' }}"), "xz");
}

TEST(ChatTemplateOperators, Comparisons) {
  EXPECT_EQ(Render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ 2 >= 2 }}"),
            "True False True True True");
  EXPECT_EQ(Render("{{ [1, 2] < [1, 3] }} {{ 'b' > 'a' }} {{ none == none }} {{ x == y }}"),
            "True True True True");
  EXPECT_EQ(Render("{{ {'a': 1} == {'a': 1} }} {{ [1] == (1,) }} {{ 1 == '1' }}"),
            "True False False");
}

TEST(ChatTemplateOperators, Membership) {
  EXPECT_EQ(Render("{{ 'ab' in 'cabd' }} {{ 1 in [1] }} {{ 'a' in {'a': 1} }} {{ 3 not in [1] }}"),
            "True True True True");
  EXPECT_EQ(Render("{{ 'x' in y }}"), "False");
}

TEST(ChatTemplateOperators, AndOrReturnOperands) {
  EXPECT_EQ(Render("{{ 1 and 2 }} {{ 0 or 'z' }} {{ none or [] }} {{ not 0 }} {{ not 'a' }}"),
            "2 z [] True False");
}

TEST(ChatTemplateOperators, ConditionalExpression) {
  EXPECT_EQ(Render("{{ 'a' if true else 'b' }}{{ 'c' if false else 'd' }}[{{ 'e' if false }}]"),
            "ad[]");
}

// ---------------------------------------------------------------------------------------------
// Attribute and item access

TEST(ChatTemplateAccess, AttributesAndSubscriptsReachDictKeys) {
  const ordered_json vars = {{"m", {{"role", "user"}, {"items", 7}}}};
  EXPECT_EQ(Render("{{ m.role }} {{ m['role'] }} [{{ m.missing }}] [{{ m['missing'] }}]", vars),
            "user user [] []");
  EXPECT_EQ(Render("{{ m['items'] }}", vars), "7");  // subscript: the key first
  EXPECT_THAT(Render("{{ m.items() }}", vars),
              StartsWith("dict_items("));  // attribute: method first
}

TEST(ChatTemplateAccess, Indexes) {
  EXPECT_EQ(
      Render("{{ messages[0].content }}{{ messages[-1]['content'] }}{{ messages.1.role }}", kThree),
      "acassistant");
  EXPECT_EQ(Render("[{{ messages[5] }}]", kThree), "[]");
  EXPECT_EQ(Render("{{ 'héllo'[1] }}{{ 'abc'[-1] }}"), "éc");
}

TEST(ChatTemplateAccess, Slices) {
  EXPECT_EQ(Render("{{ 'abc'[::-1] }} {{ [1, 2, 3][1:] }} {{ [1, 2, 3][::2] }} {{ 'hello'[1:3] }}"),
            "cba [2, 3] [1, 3] el");
  EXPECT_EQ(Render("{{ 'hello'[-2:] }} {{ [1, 2, 3][5:] }} {{ 'abc'[:-1] }} {{ 'héllo'[::-1] }}"),
            "lo [] ab olléh");
  EXPECT_EQ(Render("{{ messages[1:]|length }}", kThree), "2");
}

// ---------------------------------------------------------------------------------------------
// Statements

TEST(ChatTemplateFor, LoopVariables) {
  EXPECT_EQ(
      Render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
             "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
      "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  EXPECT_EQ(Render("{% for a in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}"),
            "-2;1-3;2-;");
  EXPECT_EQ(Render("{% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b') }}{% endfor %}"), "aba");
  EXPECT_EQ(Render("{% for a in [1, 1, 2] %}{{ loop.changed(a) }}{% endfor %}"), "TrueFalseTrue");
}

TEST(ChatTemplateFor, ElseFilterAndUnpacking) {
  EXPECT_EQ(Render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}/{{ loop.length }}:"
                   "{{ x }};{% endfor %}"),
            "1/2:2;2/2:4;");
  EXPECT_EQ(Render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  EXPECT_EQ(Render("{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"), "xy");
  EXPECT_EQ(Render("{% for x in undefined_name %}a{% endfor %}"), "");
}

TEST(ChatTemplateFor, BreakAndContinue) {
  EXPECT_EQ(Render("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}"
                   "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "13");
}

TEST(ChatTemplateFor, Recursive) {
  EXPECT_EQ(Render("{% for x in [[1, [2]], [3]] recursive %}<{{ x if x is number else loop(x) }}>"
                   "{% endfor %}"),
            "<<1><<2>>><<3>>");
  EXPECT_EQ(Render("{% for x in [1, [2]] recursive %}{{ loop.depth }}{% if x is iterable %}"
                   "{{ loop(x) }}{% endif %}{% endfor %}"),
            "112");
}

TEST(ChatTemplateFor, ScopingFollowsJinja) {
  // A set inside a loop body lives for one iteration and does not leak out.
  EXPECT_EQ(Render("{% for x in [1, 2] %}{% if loop.first %}{% set y = 1 %}{% endif %}[{{ y }}]"
                   "{% endfor %}"),
            "[1][]");
  EXPECT_EQ(Render("{% set y = 5 %}{% for x in [1, 2] %}{{ y }}{% set y = x %}{{ y }};"
                   "{% endfor %}{{ y }}"),
            "51;52;5");
  // Sets inside an if do reach the enclosing scope.
  EXPECT_EQ(Render("{% if true %}{% set z = 3 %}{% endif %}{{ z }}"), "3");
  // Inner loops shadow the outer loop variable.
  EXPECT_EQ(Render("{% for a in [1, 2] %}{% for b in 'xyz' %}{% endfor %}{{ loop.length }}"
                   "{% endfor %}"),
            "22");
}

TEST(ChatTemplateIf, ElifElse) {
  const char* t = "{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %}";
  EXPECT_EQ(Render(t, {{"n", 1}}), "one");
  EXPECT_EQ(Render(t, {{"n", 2}}), "two");
  EXPECT_EQ(Render(t, {{"n", 9}}), "many");
}

TEST(ChatTemplateSet, TuplesBlocksAndNamespaces) {
  EXPECT_EQ(
      Render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set (c, d) = ['x', 'y'] %}{{ c }}{{ d }}"),
      "12xy");
  EXPECT_EQ(Render("{% set x %}  hi {{ 1 }}\n{% endset %}[{{ x }}]"), "[  hi 1\n]");
  EXPECT_EQ(Render("{% set x | upper %}abc{% endset %}{{ x }}"), "ABC");
  EXPECT_EQ(Render("{% set ns = namespace(a=1) %}{% for x in [1, 2] %}{% set ns.a = ns.a + x %}"
                   "{% endfor %}{{ ns.a }}"),
            "4");
  EXPECT_EQ(Render("{% set messages = messages[1:] %}{{ messages|length }}", kThree), "2");
}

TEST(ChatTemplateMacro, DefaultsVarargsKwargsAndClosure) {
  EXPECT_EQ(Render("{% macro m(a, b=2) %}{{ a }}{{ b }}{{ z }}{% endmacro %}{% set z = 9 %}"
                   "{{ m(1) }}{{ m(1, b=3) }}{{ m }}"),
            "129139<Macro 'm'>");
  EXPECT_EQ(Render("{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}"),
            "(1, 2){'k': 3}");
  EXPECT_EQ(Render("{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}"), "[]");
  EXPECT_EQ(Render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                   "{{ f(3) }}"),
            "321");
}

TEST(ChatTemplateMacro, CallBlocks) {
  EXPECT_EQ(Render("{% macro m(x) %}<{{ caller(x) }}>{% endmacro %}"
                   "{% call(y) m(5) %}c{{ y }}{% endcall %}"),
            "<c5>");
  EXPECT_EQ(Render("{% macro m() %}[{{ caller() }}]{% endmacro %}{% call m() %}body{% endcall %}"),
            "[body]");
}

TEST(ChatTemplateBlocks, FilterWithAndGeneration) {
  EXPECT_EQ(Render("{% filter upper %}abc{{ 'd' }}{% endfilter %}"), "ABCD");
  EXPECT_EQ(Render("{% filter trim|title %}  a b  {% endfilter %}"), "A B");
  EXPECT_EQ(Render("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]"), "3[]");
  EXPECT_EQ(Render("{% generation %}{{ 'gen' }}{% endgeneration %}"), "gen");
}

// ---------------------------------------------------------------------------------------------
// Filters

TEST(ChatTemplateFilters, Strings) {
  EXPECT_EQ(Render("{{ '  x '|trim }}|{{ 'xax'|trim('x') }}|{{ 'aB'|upper }}|{{ 'aB'|lower }}"),
            "x|a|AB|ab");
  EXPECT_EQ(Render("{{ 'hello wORLD-foo(bar'|title }}|{{ 'hELLO'|capitalize }}"),
            "Hello World-Foo(Bar|Hello");
  EXPECT_EQ(Render("{{ 'a.b.c'|replace('.', '-') }}|{{ 'a.b.c'|replace('.', '-', 1) }}"),
            "a-b-c|a-b.c");
  EXPECT_EQ(Render("{{ 'abc'|center(7) }}|{{ 'The quick-brown fox'|wordcount }}"), "  abc  |4");
  EXPECT_EQ(Render("{{ 'hello world foo'|truncate(9) }}|{{ 'hello world foo'|truncate(9, true) }}"),
            "hello...|hello ...");
  EXPECT_EQ(Render("{{ '<a href=\"x\">&\\'</a>'|e }}"),
            "&lt;a href=&#34;x&#34;&gt;&amp;&#39;&lt;/a&gt;");
  EXPECT_EQ(Render("{{ '<b>'|safe }}{{ 5|string }}{{ '%s-%d'|format('a', 3) }}"), "<b>5a-3");
  EXPECT_EQ(Render("{{ 'straße'|upper }} {{ 'ÉCOLE'|lower }} {{ 'ΑΒΓ'|lower }}"),
            "STRASSE école αβγ");
}

TEST(ChatTemplateFilters, Indent) {
  EXPECT_EQ(Render("{{ 'a\\nb\\n\\nc'|indent(2) }}"), "a\n  b\n\n  c");
  EXPECT_EQ(Render("{{ 'a\\nb'|indent(2, true) }}"), "  a\n  b");
  EXPECT_EQ(Render("{{ 'a\\n\\nb'|indent(2, blank=true) }}"), "a\n  \n  b");
  EXPECT_EQ(Render("{{ 'a\\nb'|indent('>>') }}"), "a\n>>b");
}

TEST(ChatTemplateFilters, Numbers) {
  EXPECT_EQ(Render("{{ '42.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ '0x1f'|int(base=16) }} "
                   "{{ 3.9|int }} {{ ' 12 '|int }} {{ none|int }}"),
            "42 0 7 31 3 12 0");
  EXPECT_EQ(Render("{{ '3'|float }} {{ 'x'|float }} {{ ' 2.5 '|float }} {{ 2|float }}"),
            "3.0 0.0 2.5 2.0");
  EXPECT_EQ(Render("{{ -1|abs }} {{ -1.5|abs }}"), "1 1.5");
  EXPECT_EQ(Render("{{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2.675|round(2) }} "
                   "{{ 2.5|round(method='floor') }} {{ 2.1|round(method='ceil') }} {{ 5|round }}"),
            "2.0 4.0 2.57 2.67 2.0 3.0 5");
}

TEST(ChatTemplateFilters, Sequences) {
  EXPECT_EQ(
      Render("{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a']|sort }} {{ [3, 1]|sort(reverse=true) }}"),
      "[1, 2, 3] ['A', 'a', 'b'] [3, 1]");
  EXPECT_EQ(Render("{{ ['b', 'A', 'a', 'B']|sort(case_sensitive=true) }}"), "['A', 'B', 'a', 'b']");
  EXPECT_EQ(Render("{{ [{'a': 2}, {'a': 1}]|sort(attribute='a') }}"), "[{'a': 1}, {'a': 2}]");
  EXPECT_EQ(Render("{{ ['b', 'A', 'a']|unique|list }} {{ [1, 2, 1]|unique|list }}"),
            "['b', 'A'] [1, 2]");
  EXPECT_EQ(Render("{{ [1, 2, 3]|sum }} {{ [1, 2]|sum(start=10) }} {{ [1, 2, 3]|max }} "
                   "{{ [1, 2, 3]|min }} {{ ['a', 'B']|max }}"),
            "6 13 3 1 B");
  EXPECT_EQ(Render("{{ [1, 2]|first }} {{ [1, 2]|last }} {{ 'ab'|first }} {{ 'ab'|last }} "
                   "{{ {'x': 1}|first }} [{{ []|first }}]"),
            "1 2 a b x []");
  EXPECT_EQ(Render("{{ 'abc'|length }} {{ [1]|count }} {{ {'a': 1}|length }} {{ x|length }}"),
            "3 1 1 0");
  EXPECT_EQ(
      Render("{{ 'abc'|list }} {{ {'a': 1}|list }} {{ 'abc'|reverse }} {{ [1, 2]|reverse|list }}"),
      "['a', 'b', 'c'] ['a'] cba [2, 1]");
  EXPECT_EQ(
      Render("{{ [1, 2]|join(', ') }} {{ [{'n': 'a'}, {'n': 'b'}]|join('|', attribute='n') }}"),
      "1, 2 a|b");
  EXPECT_EQ(Render("{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3]|batch(2, 'x')|list }}"),
            "[[1, 2], [3, 4], [5]] [[1, 2], [3, 'x']]");
  EXPECT_EQ(Render("{{ [1, 2, 3, 4, 5, 6, 7]|slice(3, 0)|list }}"),
            "[[1, 2, 3], [4, 5, 0], [6, 7, 0]]");
}

// map, select, unique, ... return generators in jinja2: always true, no len(), no indexing.
TEST(ChatTemplateFilters, LazyResultsBehaveAsGenerators) {
  EXPECT_EQ(Render("{% if [1]|select('even') %}true{% endif %} {{ [1]|map('string') is sequence }} "
                   "[{{ ([1]|map('string'))[0] }}] {{ [1, 2]|select('odd')|list|length }}"),
            "true False [] 1");
  EXPECT_THAT(Message("{{ [1, 2]|select('odd')|length }}"),
              HasSubstr("object of type 'generator' has no len()"));
  EXPECT_THAT(Message("{{ [1]|map('string')|tojson }}"),
              HasSubstr("Object of type generator is not JSON serializable"));
}

TEST(ChatTemplateFilters, MapSelectReject) {
  EXPECT_EQ(Render("{{ [{'a': {'b': 2}}, {'a': {'b': 1}}]|map(attribute='a.b')|list }}"), "[2, 1]");
  EXPECT_EQ(Render("{{ [{'a': 1}, {}]|map(attribute='a', default=0)|list }}"), "[1, 0]");
  EXPECT_EQ(Render("{{ [1, 2]|map('string')|list }} {{ ['a']|map('upper')|list }}"),
            "['1', '2'] ['A']");
  EXPECT_EQ(Render("{{ [1, 2, 3]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list }} "
                   "{{ [1, none, 0]|select|list }} {{ [1, 5]|select('gt', 2)|list }}"),
            "[1, 3] [2] [1] [5]");
  EXPECT_EQ(Render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')"
                   "|join(',') }}",
                   kThree),
            "a,c");
  EXPECT_EQ(Render("{{ [{'a': 1}, {'b': 2}]|selectattr('a')|list }} "
                   "{{ [{'a': 1}, {'b': 2}]|rejectattr('a', 'defined')|list }}"),
            "[{'a': 1}] [{'b': 2}]");
}

TEST(ChatTemplateFilters, Mappings) {
  EXPECT_EQ(Render("{{ {'b': 1, 'A': 2, 'a': 0}|dictsort }}"), "[('A', 2), ('a', 0), ('b', 1)]");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': 2}|dictsort(by='value') }} "
                   "{{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}"),
            "[('b', 1), ('a', 2)] [('b', 1), ('a', 2)]");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': 2}|items|list }} {{ x|items|list }}"),
            "[('b', 1), ('a', 2)] []");
}

TEST(ChatTemplateFilters, DefaultAndAttr) {
  EXPECT_EQ(Render("{{ x|default('d') }} [{{ ''|default('d') }}] {{ ''|default('d', true) }} "
                   "{{ none|d('n') }} {{ false|d('y', boolean=true) }}"),
            "d [] d None y");
  EXPECT_EQ(Render("[{{ {'a': 1}|attr('a') }}] {{ 'x'|attr('upper') is callable }}"), "[] True");
}

TEST(ChatTemplateFilters, ToJsonAsTransformersDefinesIt) {
  EXPECT_EQ(Render("{{ {'a': [1, 2.0, none, true], 'é': 'ü\"\\n'}|tojson }}"),
            "{\"a\": [1, 2.0, null, true], \"é\": \"ü\\\"\\n\"}");
  EXPECT_EQ(Render("{{ {'a': 1, 'b': [1, 2]}|tojson(indent=2) }}"),
            "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ]\n}");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}"),
            "{\"a\":2,\"b\":1}");
  EXPECT_EQ(Render("{{ 'é😀'|tojson(ensure_ascii=true) }}"), "\"\\u00e9\\ud83d\\ude00\"");
  EXPECT_EQ(Render("{{ [1, [], {}]|tojson(indent=1) }}"), "[\n 1,\n [],\n {}\n]");
  EXPECT_EQ(Render("{{ {1: 2, none: 3, 1.5: 5}|tojson }} {{ (1, 2)|tojson }} {{ 1e20|tojson }}"),
            "{\"1\": 2, \"null\": 3, \"1.5\": 5} [1, 2] 1e+20");
  EXPECT_EQ(Render("{{ '\\x01\\x7f'|tojson }}"), "\"\\u0001\x7f\"");
}

TEST(ChatTemplateFilters, ToJsonKeepsTheCallersKeyOrder) {
  const ordered_json vars = ordered_json::parse(R"({"tool": {"name": "f", "z": 1, "a": 2}})");
  EXPECT_EQ(Render("{{ tool|tojson }}", vars), "{\"name\": \"f\", \"z\": 1, \"a\": 2}");
}

// ---------------------------------------------------------------------------------------------
// Tests (`is`)

TEST(ChatTemplateTests, Types) {
  EXPECT_EQ(Render("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 1 is number }}"
                   "{{ true is number }}{{ true is integer }}{{ 1 is integer }}{{ 1.5 is float }}"),
            "FalseTrueTrueTrueTrueFalseTrueTrue");
  EXPECT_EQ(
      Render("{{ 'a' is string }}{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is iterable }}"
             "{{ 1 is iterable }}{{ true is boolean }}{{ false is false }}{{ true is true }}"),
      "TrueTrueTrueTrueFalseTrueTrueTrue");
  EXPECT_EQ(Render("{{ range is callable }}{{ 'upper' is filter }}{{ 'odd' is test }}"),
            "TrueTrueTrue");
}

TEST(ChatTemplateTests, Values) {
  EXPECT_EQ(Render("{{ 1 is odd }}{{ 2 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}"
                   "{{ 'ab' is lower }}{{ 'AB' is upper }}"),
            "TrueTrueTrueFalseTrueTrue");
  EXPECT_EQ(
      Render("{{ 'a' is in 'abc' }}{{ 2 is gt 1 }}{{ 1 is eq 1 }}{{ 1 is ne 1 }}{{ 1 is lt 2 }}"
             "{{ 2 is ge 2 }}{{ 1 is le 0 }}{{ 1 is sameas 1 }}{{ x is not defined }}"),
      "TrueTrueTrueFalseTrueTrueFalseTrueTrue");
}

// ---------------------------------------------------------------------------------------------
// Methods and globals

TEST(ChatTemplateMethods, Strings) {
  EXPECT_EQ(Render("{{ 'abc'.upper() }} {{ ' a '.strip() }} {{ 'xax'.lstrip('x') }} "
                   "{{ 'xax'.rstrip('x') }} {{ 'Hi There'.lower() }} {{ 'hi there'.title() }}"),
            "ABC a ax xa hi there Hi There");
  EXPECT_EQ(Render("{{ 'a,b'.split(',') }} {{ 'a b  c'.split() }} {{ 'a,b,,c'.split(',', 1) }} "
                   "{{ 'a-b-c'.rsplit('-', 1) }}"),
            "['a', 'b'] ['a', 'b', 'c'] ['a', 'b,,c'] ['a-b', 'c']");
  EXPECT_EQ(Render("{{ 'abc'.startswith('a') }} {{ 'abc'.startswith(('x', 'a')) }} "
                   "{{ 'abc'.endswith('bc') }} {{ 'abc'.find('c') }} {{ 'aXbX'.count('X') }}"),
            "True True True 2 2");
  EXPECT_EQ(
      Render("{{ 'Hello {}'.format('w') }} {{ '{0}-{1}-{0}'.format('x', 'y') }} "
             "{{ '{a}'.format(a=1) }} {{ ', '.join(['a', 'b']) }} {{ 'a'.replace('a', 'b') }}"),
      "Hello w x-y-x 1 a, b b");
  EXPECT_EQ(
      Render("{{ 'a\\nb\\r\\nc'.splitlines() }} {{ '12'.isdigit() }} {{ 'x'.center(5, '*') }} "
             "{{ 'a=b=c'.partition('=') }}"),
      "['a', 'b', 'c'] True **x** ('a', '=', 'b=c')");
  EXPECT_EQ(Render("[{{ '\\u3000x\\u00a0 '.strip() }}]"), "[x]");
}

TEST(ChatTemplateMethods, DictsAndLists) {
  EXPECT_EQ(Render("{{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b') }} {{ {'a': 1}.get('b', 2) }} "
                   "{{ [3, 4].index(4) }} {{ [1, 1].count(1) }}"),
            "1 None 2 1 2");
}

TEST(ChatTemplateGlobals, RangeDictNamespaceJoiner) {
  EXPECT_EQ(Render("{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}"),
            "[0, 1, 2] [1, 4, 7] [5, 3, 1]");
  EXPECT_EQ(Render("{{ dict(a=1, b=[2]) }} {{ namespace(x=1).x }}"), "{'a': 1, 'b': [2]} 1");
  EXPECT_EQ(Render("{% set j = joiner('|') %}{% for x in [1, 2, 3] %}{{ j() }}{{ x }}{% endfor %}"),
            "1|2|3");
}

TEST(ChatTemplateGlobals, RaiseExceptionKeepsTheTemplatesMessage) {
  const absl::Status status =
      Failure("{% if true %}{{ raise_exception('Roles must alternate: ' ~ 42) }}{% endif %}");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "Roles must alternate: 42");
  EXPECT_TRUE(ChatTemplate::IsRaisedByTemplate(status));
  EXPECT_FALSE(ChatTemplate::IsRaisedByTemplate(Failure("{{ 1 / 0 }}")));
}

TEST(ChatTemplateGlobals, StrftimeNowUsesTheRenderTime) {
  setenv("TZ", "UTC", 1);
  tzset();
  auto tmpl = ChatTemplate::Compile("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('') }}|");
  ASSERT_TRUE(tmpl.ok());
  const auto when = std::chrono::system_clock::from_time_t(1721952000);  // 2024-07-26 UTC
  auto out = tmpl->Render(ordered_json::object(), when);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "26 Jul 2024||");
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(ChatTemplateErrors, UndefinedMisuseNamesWhatIsUndefined) {
  EXPECT_THAT(Message("{{ x.y }}"), HasSubstr("'x' is undefined"));
  EXPECT_THAT(Message("{{ m.foo.bar }}", {{"m", ordered_json::object()}}),
              HasSubstr("'dict object' has no attribute 'foo'"));
  EXPECT_THAT(Message("{{ messages[5].x }}", {{"messages", ordered_json::array()}}),
              HasSubstr("list object has no element 5"));
  EXPECT_THAT(Message("{{ x + 1 }}"), HasSubstr("'x' is undefined"));
  EXPECT_THAT(Message("{{ foo(1) }}"), HasSubstr("'foo' is undefined"));
  EXPECT_THAT(Message("{{ x|tojson }}"),
              HasSubstr("Object of type Undefined is not JSON serializable"));
}

TEST(ChatTemplateErrors, TypeErrorsAsPythonWords) {
  EXPECT_THAT(Message("{{ 'a' + 1 }}"), HasSubstr("can only concatenate str (not \"int\") to str"));
  EXPECT_THAT(Message("{{ 1 + 'a' }}"),
              HasSubstr("unsupported operand type(s) for +: 'int' and 'str'"));
  EXPECT_THAT(Message("{{ 1 < 'a' }}"),
              HasSubstr("'<' not supported between instances of 'int' and 'str'"));
  EXPECT_THAT(Message("{{ 1 / 0 }}"), HasSubstr("division by zero"));
  EXPECT_THAT(Message("{% for x in none %}{% endfor %}"),
              HasSubstr("'NoneType' object is not iterable"));
  EXPECT_THAT(Message("{{ 5|length }}"), HasSubstr("object of type 'int' has no len()"));
  EXPECT_THAT(Message("{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
              HasSubstr("too many values to unpack (expected 2)"));
  EXPECT_THAT(Message("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"),
              HasSubstr("macro 'm' takes not more than 1 argument(s)"));
  EXPECT_THAT(Message("{% set d = {} %}{% set d.a = 1 %}"),
              HasSubstr("cannot assign attribute on non-namespace object"));
}

TEST(ChatTemplateErrors, MutatingMethodsAreUnsafe) {
  EXPECT_THAT(Message("{% set l = [1] %}{{ l.append(2) }}"),
              HasSubstr("access to attribute 'append' of 'list' object is unsafe."));
  EXPECT_THAT(Message("{{ {}.update({}) }}"),
              HasSubstr("access to attribute 'update' of 'dict' object is unsafe."));
  EXPECT_THAT(Message("{{ ''.__class__ }}{{ ''.__class__() }}"),
              HasSubstr("'str object' has no attribute '__class__'"));
}

TEST(ChatTemplateErrors, SyntaxErrorsGiveTheLine) {
  EXPECT_EQ(Message("line 1\n{{ 'ok' }}\n{{ 1 + }}"),
            "chat template syntax error (line 3): unexpected 'end of print statement'");
  EXPECT_THAT(
      Message("{% for x in y %}"),
      HasSubstr("Unexpected end of template. Jinja was looking for the following tags: "
                "'endfor' or 'else'. The innermost block that needs to be closed is 'for'."));
  EXPECT_THAT(Message("\n\n{% if x %}{% endfor %}"),
              HasSubstr("(line 3): Encountered unknown tag 'endfor'"));
  EXPECT_THAT(Message("{{ 'unterminated }}"), HasSubstr("unexpected char"));
  EXPECT_THAT(Message("{% break %}"), HasSubstr("'break' outside loop"));
  EXPECT_THAT(Message("{% macro m(a=1, b) %}{% endmacro %}"),
              HasSubstr("non-default argument follows default argument"));
  EXPECT_THAT(Message("{% do x %}"), HasSubstr("Encountered unknown tag 'do'."));
}

TEST(ChatTemplateErrors, UnknownFiltersAndTestsFailAtCompileUnlessInsideAnIf) {
  EXPECT_THAT(Message("{{ x|nosuch }}"), HasSubstr("No filter named 'nosuch'."));
  EXPECT_THAT(Message("{{ x is nosuch }}"), HasSubstr("No test named 'nosuch'."));
  EXPECT_EQ(Render("{% if false %}{{ x|nosuch }}{% endif %}ok"), "ok");
  EXPECT_THAT(Message("{% if true %}{{ x|nosuch }}{% endif %}"),
              HasSubstr("No filter named 'nosuch' found."));
  EXPECT_THAT(Message("{% if true %}{% for i in x %}{{ i|nosuch }}{% endfor %}{% endif %}"),
              HasSubstr("No filter named 'nosuch'."));
}

TEST(ChatTemplateErrors, FileAccessAndUnimplementedFeaturesAreRefused) {
  for (const char* t :
       {"{% include 'x.jinja' %}", "{% import 'x' as y %}", "{% from 'x' import y %}",
        "{% extends 'base' %}", "{% block b %}{% endblock %}"}) {
    EXPECT_THAT(Message(t), HasSubstr("tag is not supported")) << t;
  }
  EXPECT_THAT(Message("{{ 'a b'|wordwrap(1) }}"),
              HasSubstr("the 'wordwrap' filter is not supported"));
  EXPECT_THAT(Message("{{ cycler(1, 2) }}"), HasSubstr("'cycler' is not supported"));
  EXPECT_THAT(Message("{{ '\\N{EM DASH}' }}"), HasSubstr("not supported"));
  EXPECT_THAT(Message("{{ 2 ** 70 }}"), HasSubstr("beyond 64 bits"));
}

TEST(ChatTemplateErrors, RenderNeedsAnObject) {
  auto tmpl = ChatTemplate::Compile("x");
  ASSERT_TRUE(tmpl.ok());
  EXPECT_FALSE(tmpl->Render(ordered_json::array()).ok());
}

// ---------------------------------------------------------------------------------------------
// Limits

TEST(ChatTemplateLimits, TemplateSize) {
  TemplateLimits limits;
  limits.max_template_bytes = 10;
  EXPECT_THAT(
      std::string(ChatTemplate::Compile("{{ 'long template' }}", limits).status().message()),
      HasSubstr("more than the limit of 10"));
}

TEST(ChatTemplateLimits, NestingInTheSource) {
  const std::string parens = std::string(200, '(') + "1" + std::string(200, ')');
  EXPECT_THAT(Message("{{ " + parens + " }}"), HasSubstr("nested too deeply"));
  std::string ifs;
  for (int i = 0; i < 200; ++i) ifs += "{% if true %}";
  for (int i = 0; i < 200; ++i) ifs += "{% endif %}";
  EXPECT_THAT(Message(ifs), HasSubstr("nested too deeply"));
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += "+1";
  EXPECT_THAT(Message(chain + " }}"), HasSubstr("nested too deeply"));
  std::string filters = "{{ x";
  for (int i = 0; i < 100000; ++i) filters += "|upper";
  EXPECT_THAT(Message(filters + " }}"), HasSubstr("nested too deeply"));
  std::string attrs = "{{ x";
  for (int i = 0; i < 100000; ++i) attrs += ".a";
  EXPECT_THAT(Message(attrs + " }}"), HasSubstr("nested too deeply"));
  EXPECT_THAT(Message("{{ " + std::string(100000, '[') + std::string(100000, ']') + " }}"),
              HasSubstr("nested too deeply"));
  EXPECT_THAT(Message("{{ " + std::string(100000, '-') + "1 }}"), HasSubstr("nested too deeply"));
  // Within the limit, deep nesting works.
  EXPECT_EQ(Render("{{ " + std::string(40, '(') + "7" + std::string(40, ')') + " }}"), "7");
}

TEST(ChatTemplateLimits, Output) {
  TemplateLimits limits;
  limits.max_output_bytes = 100;
  EXPECT_THAT(Message("{% for i in range(200) %}x{% endfor %}", {}, limits),
              HasSubstr("output longer than 100 bytes"));
  EXPECT_THAT(Message("{{ 'x' * 1000000000 }}"), HasSubstr("a string longer than 4194304 bytes"));
  EXPECT_THAT(Message("{% set ns = namespace(s='x') %}{% for i in range(100) %}"
                      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
              HasSubstr("a string longer than 4194304 bytes"));
}

TEST(ChatTemplateLimits, StepsLoopsAndCalls) {
  TemplateLimits limits;
  limits.max_steps = 1000;
  EXPECT_THAT(Message("{% for i in range(10000) %}{{ i }}{% endfor %}", {}, limits),
              HasSubstr("budget of 1000 steps"));
  EXPECT_THAT(Message("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                      "{% endfor %}"),
              HasSubstr("more than 1000000 iterations"));
  EXPECT_THAT(
      Message("{% for i in range(1000000000) %}{% endfor %}"),
      HasSubstr("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000)."));
  EXPECT_THAT(Message("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
              HasSubstr("macro calls nested deeper than 64"));
  EXPECT_THAT(Message("{% for x in [[[[[[[[1]]]]]]]] recursive %}{{ loop(x) if x is iterable }}"
                      "{% endfor %}",
                      {},
                      [] {
                        TemplateLimits l;
                        l.max_call_depth = 4;
                        return l;
                      }()),
              HasSubstr("recursive calls nested deeper than 4"));
  TemplateLimits shallow;
  shallow.max_render_depth = 10;
  EXPECT_THAT(Message("{{ [[[[[[[[[[[[1]]]]]]]]]]]] }}", {}, shallow),
              HasSubstr("template recursion deeper than 10 levels"));
}

TEST(ChatTemplateLimits, ValuesAndAllocation) {
  EXPECT_THAT(Message("{{ [0] * 1000000 }}"), HasSubstr("more than 100000 items"));
  EXPECT_THAT(Message("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}"
                      "{% set ns.x = [ns.x] %}{% endfor %}"),
              HasSubstr("nested deeper than 64"));
  EXPECT_THAT(Message("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
                      "{% set ns.l = ns.l + [i] %}{% endfor %}"),
              HasSubstr("bytes of values"));
  ordered_json deep = 1;
  for (int i = 0; i < 100; ++i) deep = ordered_json::array({deep});
  EXPECT_THAT(Message("{{ x }}", {{"x", deep}}), HasSubstr("variables nested deeper than 64"));
  // A namespace that contains itself prints as far as the print depth allows, then fails.
  EXPECT_THAT(Message("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"),
              HasSubstr("nested too deeply"));
}

// The deepest render the default limits allow (recursion stopped by max_render_depth, not by
// max_call_depth) runs in a thread with a 1 MiB stack (8 MiB under AddressSanitizer): the limits
// keep the C++ stack bounded.
TEST(ChatTemplateLimits, DeepestRenderFitsInAOneMegabyteStack) {
  struct Job {
    std::string message;
  } job;
  auto run = [](void* arg) -> void* {
    TemplateLimits limits;
    limits.max_call_depth = 100000;  // leave the stopping to max_render_depth
    static_cast<Job*>(arg)->message = Message(
        "{% macro f(n) %}{{ [[[n]]] }}{% for i in [n] %}{% if true %}{{ f(n + 1)|trim }}"
        "{% endif %}{% endfor %}{% endmacro %}{{ f(0) }}",
        {}, limits);
    return nullptr;
  };
  pthread_attr_t attr;
  pthread_attr_init(&attr);
#if defined(__SANITIZE_ADDRESS__)
  const size_t stack = 8 << 20;  // AddressSanitizer's frames are several times larger
#else
  const size_t stack = 1 << 20;
#endif
  pthread_attr_setstacksize(&attr, stack);
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr, run, &job), 0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  EXPECT_THAT(job.message, HasSubstr("template recursion deeper than 400 levels"));
}

// ---------------------------------------------------------------------------------------------
// Hostile templates and inputs end quickly with a clear error (or the right output).

#ifdef PARA_SANITIZED
constexpr double kSecondsPerCase = 60.0;  // -O1 with ASan + UBSan runs ~5x slower
#else
constexpr double kSecondsPerCase = 10.0;
#endif

TEST(ChatTemplateHostile, EveryCaseEndsBoundedInTime) {
  const std::string mb(1 << 20, 'm');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested deeper"},
      {"{% for i in range(10**9) %}{% endfor %}", "Range too big"},
      {"{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
       "limit exceeded"},
      {"{{ 'x' * 10**9 }}", "longer than"},
      {"{% set ns = namespace(s='') %}{% for i in range(100000) %}"
       "{% set ns.s = ns.s ~ 'abcdefghij' %}{% endfor %}",
       "bytes of values"},
      {"{{ [big] * 1000 }}", "longer than the output limit"},
      {"{% for i in range(100000) %}{{ range(100000)|sort|length }}{% endfor %}", "limit exceeded"},
      {"{% for c in big %}{{ c }}{{ c }}{{ c }}{{ c }}{{ c }}{% endfor %}", "output longer"},
  };
  for (const auto& [source, expected] : cases) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THAT(Message(source, {{"big", mb}}), HasSubstr(expected)) << source;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, kSecondsPerCase) << source;
  }
}

// ---------------------------------------------------------------------------------------------
// Real templates and the API

constexpr char kSmolLM2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplateRealTemplates, SmolLM2) {
  ordered_json vars = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                       {"add_generation_prompt", true}};
  EXPECT_EQ(Render(kSmolLM2, vars),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  vars["messages"] = {{{"role", "system"}, {"content", "S"}},
                      {{"role", "user"}, {"content", "{{ x }}"}}};
  vars["add_generation_prompt"] = false;
  EXPECT_EQ(Render(kSmolLM2, vars),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n{{ x }}<|im_end|>\n");
}

TEST(ChatTemplateRealTemplates, SmolLM2WithMegabyteMessages) {
  const std::string mb(1 << 20, 'z');
  ordered_json vars = {{"messages", ordered_json::array()}, {"add_generation_prompt", true}};
  for (int i = 0; i < 3; ++i) vars["messages"].push_back({{"role", "user"}, {"content", mb}});
  const std::string out = Render(kSmolLM2, vars);
  // 98 bytes of default system turn, 28 of markup per message, 22 of generation prompt.
  EXPECT_EQ(out.size(), 98 + 3 * (28 + mb.size()) + 22);
  for (int i = 0; i < 2; ++i) vars["messages"].push_back({{"role", "user"}, {"content", mb}});
  EXPECT_THAT(Message(kSmolLM2, vars), HasSubstr("output longer than 4194304 bytes"));
}

TEST(ChatTemplateApi, SelectChatTemplate) {
  EXPECT_EQ(*SelectChatTemplate(nlohmann::json::parse(R"({"chat_template": "T"})")), "T");
  const auto list = nlohmann::json::parse(
      R"({"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "U"}]})");
  EXPECT_EQ(*SelectChatTemplate(list), "D");
  EXPECT_EQ(*SelectChatTemplate(list, "tool_use"), "U");
  EXPECT_EQ(SelectChatTemplate(list, "rag").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SelectChatTemplate(nlohmann::json::object()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(SelectChatTemplate(nlohmann::json::parse(R"({"chat_template": 3})")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ChatTemplateApi, PlainJsonIsAcceptedWithSortedKeys) {
  auto tmpl = ChatTemplate::Compile("{{ d|tojson }}");
  ASSERT_TRUE(tmpl.ok());
  const nlohmann::json vars = nlohmann::json::parse(R"({"d": {"b": 1, "a": 2}})");
  EXPECT_EQ(*tmpl->Render(vars), "{\"a\": 2, \"b\": 1}");
}

TEST(ChatTemplateApi, CopiesShareAndRenderConcurrently) {
  auto tmpl = ChatTemplate::Compile(kSmolLM2);
  ASSERT_TRUE(tmpl.ok());
  const ChatTemplate copy = *tmpl;
  std::vector<std::thread> threads;
  std::vector<std::string> outputs(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      ordered_json vars = {{"messages", {{{"role", "user"}, {"content", std::to_string(t)}}}}};
      for (int i = 0; i < 200; ++i) outputs[t] = *copy.Render(vars);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) {
    EXPECT_THAT(outputs[t], HasSubstr("<|im_start|>user\n" + std::to_string(t) + "<|im_end|>"));
  }
}

}  // namespace
}  // namespace para::text
