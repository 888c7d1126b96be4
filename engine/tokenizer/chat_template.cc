// SPDX-License-Identifier: Apache-2.0
#include "engine/tokenizer/chat_template.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace verdict::engine {
namespace chat_template_internal {

// ---- values ------------------------------------------------------------------------------------

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python dicts

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kNamespace, kFunction };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::string taint;  // strings: per byte, 1 = from message content; empty = none
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // dicts and namespaces (shared: a namespace is mutable)
  std::string name;            // undefined: the missing name; function: which

  static Value None() { return Value{Kind::kNone}; }
  static Value Bool(bool v) { Value x{Kind::kBool}; x.b = v; return x; }
  static Value Int(int64_t v) { Value x{Kind::kInt}; x.i = v; return x; }
  static Value Float(double v) { Value x{Kind::kFloat}; x.f = v; return x; }
  static Value Str(std::string v, std::string taint = {}) {
    Value x{Kind::kString};
    x.s = std::move(v);
    x.taint = std::move(taint);
    return x;
  }
  static Value Tainted(std::string v) {
    std::string t(v.size(), '\1');
    return Str(std::move(v), std::move(t));
  }
  static Value ListOf(List v) { Value x{Kind::kList}; x.list = std::make_shared<List>(std::move(v)); return x; }
  static Value DictOf(Dict v) { Value x{Kind::kDict}; x.dict = std::make_shared<Dict>(std::move(v)); return x; }
  static Value Undefined(std::string missing) { Value x{Kind::kUndefined}; x.name = std::move(missing); return x; }
  static Value Function(std::string fn) { Value x{Kind::kFunction}; x.name = std::move(fn); return x; }

  bool is_string() const { return kind == Kind::kString; }
  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat || kind == Kind::kBool; }
  double number() const { return kind == Kind::kFloat ? f : kind == Kind::kBool ? (b ? 1 : 0) : static_cast<double>(i); }
  char taint_at(size_t k) const { return taint.empty() ? '\0' : taint[k]; }
};

const Value* DictGet(const Dict& d, absl::string_view key) {
  for (const auto& [k, v] : d) {
    if (k == key) return &v;
  }
  return nullptr;
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return false;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i != 0;
    case Value::Kind::kFloat: return v.f != 0;
    case Value::Kind::kString: return !v.s.empty();
    case Value::Kind::kList: return !v.list->empty();
    case Value::Kind::kDict:
    case Value::Kind::kNamespace: return !v.dict->empty();
    case Value::Kind::kFunction: return true;
  }
  return false;
}

std::string FormatFloat(double f) {
  // Python's repr of a float: the shortest text that reads back the same, with ".0" for integers.
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  if (std::isnan(f)) return "nan";
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, f);
    if (std::strtod(buf, nullptr) == f) break;
  }
  std::string out = buf;
  if (out.find_first_of(".en") == std::string::npos) out += ".0";
  return out;
}

std::string PyRepr(const Value& v);

// str(v) as Jinja renders a value, with provenance.
Value ToStr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined: return Value::Str("");
    case Value::Kind::kNone: return Value::Str("None");
    case Value::Kind::kBool: return Value::Str(v.b ? "True" : "False");
    case Value::Kind::kInt: return Value::Str(absl::StrCat(v.i));
    case Value::Kind::kFloat: return Value::Str(FormatFloat(v.f));
    case Value::Kind::kString: return v;
    default: return Value::Str(PyRepr(v));
  }
}

std::string PyQuote(const std::string& s) {
  const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    if (c == quote || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += quote;
  return out;
}

std::string PyRepr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kString: return PyQuote(v.s);
    case Value::Kind::kList: {
      std::vector<std::string> parts;
      for (const Value& e : *v.list) parts.push_back(PyRepr(e));
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
    case Value::Kind::kDict: {
      std::vector<std::string> parts;
      for (const auto& [k, e] : *v.dict) parts.push_back(absl::StrCat(PyQuote(k), ": ", PyRepr(e)));
      return absl::StrCat("{", absl::StrJoin(parts, ", "), "}");
    }
    case Value::Kind::kNamespace: return "<Namespace>";
    case Value::Kind::kFunction: return absl::StrCat("<function ", v.name, ">");
    default: return ToStr(v).s;
  }
}

void Append(Value& to, const Value& piece) {
  if (!piece.taint.empty() || !to.taint.empty()) {
    to.taint.resize(to.s.size(), '\0');
    if (piece.taint.empty()) {
      to.taint.append(piece.s.size(), '\0');
    } else {
      to.taint += piece.taint;
    }
  }
  to.s += piece.s;
}

Value Substr(const Value& v, size_t begin, size_t length) {
  return Value::Str(v.s.substr(begin, length), v.taint.empty() ? std::string() : v.taint.substr(begin, length));
}

bool IsPySpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python's str.isspace() of one character: White_Space plus the separators U+001C..U+001F.
bool IsPythonSpace(const unicode::Char& c) {
  return c.cls == unicode::CharClass::kWhitespace || (c.cp >= 0x1C && c.cp <= 0x1F);
}

// str.strip() / lstrip() / rstrip(): Unicode whitespace, or the given (ASCII) characters.
Value Strip(const Value& v, bool left, bool right, const std::optional<std::string>& chars = std::nullopt) {
  if (chars.has_value()) {
    auto strip = [&](char c) { return chars->find(c) != std::string::npos; };
    size_t b = 0, e = v.s.size();
    while (left && b < e && strip(v.s[b])) ++b;
    while (right && e > b && strip(v.s[e - 1])) --e;
    return Substr(v, b, e - b);
  }
  const std::vector<unicode::Char> cs = unicode::DecodeChars(v.s);
  size_t first = 0, last = cs.size();
  while (left && first < last && IsPythonSpace(cs[first])) ++first;
  while (right && last > first && IsPythonSpace(cs[last - 1])) --last;
  if (first == last) return Value::Str("");
  return Substr(v, cs[first].begin, cs[last - 1].end - cs[first].begin);
}

Value MapChars(const Value& v, const std::function<char(char, bool word_start)>& fn) {
  Value out = v;
  bool word_start = true;
  for (char& c : out.s) {
    const bool alpha = absl::ascii_isalpha(static_cast<unsigned char>(c));
    c = fn(c, word_start);
    word_start = !alpha;
  }
  return out;
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.s == b.s;
    case Value::Kind::kList: {
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k) {
        if (!Equal((*a.list)[k], (*b.list)[k])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* other = DictGet(*b.dict, k);
        if (other == nullptr || !Equal(v, *other)) return false;
      }
      return true;
    }
    default: return a.dict == b.dict && a.name == b.name;
  }
}

nlohmann::ordered_json ToJson(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone: return nullptr;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kInt: return v.i;
    case Value::Kind::kFloat: return v.f;
    case Value::Kind::kString: return v.s;
    case Value::Kind::kList: {
      nlohmann::ordered_json a = nlohmann::ordered_json::array();
      for (const Value& e : *v.list) a.push_back(ToJson(e));
      return a;
    }
    default: {
      nlohmann::ordered_json o = nlohmann::ordered_json::object();
      for (const auto& [k, e] : *v.dict) o[k] = ToJson(e);
      return o;
    }
  }
}

// Jinja's tojson: json.dumps(sort_keys=True) with <, >, & and ' escaped for HTML.
std::string JinjaJson(const Value& v, int indent) {
  nlohmann::json sorted = nlohmann::json::parse(ToJson(v).dump());  // std::map keys: sorted
  std::string text = indent > 0 ? sorted.dump(indent) : sorted.dump();
  if (indent <= 0) {
    // Python's separators: ", " and ": " without indent.
    std::string spaced;
    bool in_string = false;
    for (size_t k = 0; k < text.size(); ++k) {
      const char c = text[k];
      spaced += c;
      if (c == '"' && (k == 0 || text[k - 1] != '\\')) in_string = !in_string;
      if (!in_string && (c == ',' || c == ':')) spaced += ' ';
    }
    text = std::move(spaced);
  }
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "\\u003c"; break;
      case '>': out += "\\u003e"; break;
      case '&': out += "\\u0026"; break;
      case '\'': out += "\\u0027"; break;
      default: out += c;
    }
  }
  return out;
}

// ---- expressions -------------------------------------------------------------------------------

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;
struct Arg {
  std::string keyword;  // empty: positional
  ExprPtr value;
};

struct Expr {
  enum class Kind { kLiteral, kName, kAttr, kItem, kSlice, kCall, kFilter, kTest, kNot, kNeg, kBinary, kCond, kList, kDict };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;  // name, attribute, filter, test, binary operator
  ExprPtr a, b, c;   // operands: object/left/then, index/right/cond, else / slice parts
  std::vector<Arg> args;
  std::vector<std::pair<ExprPtr, ExprPtr>> items;  // list (first only) and dict literals
  bool negated = false;                            // `is not`
};

struct Token {
  enum class Kind { kName, kNumber, kString, kOp, kEnd };
  Kind kind;
  std::string text;
  Value value;  // numbers and strings
};

absl::Status SyntaxError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", what));
}

absl::StatusOr<std::vector<Token>> LexExpression(absl::string_view src, int line) {
  std::vector<Token> out;
  size_t k = 0;
  while (k < src.size()) {
    const char c = src[k];
    if (IsPySpace(c)) {
      ++k;
      continue;
    }
    if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = k;
      while (e < src.size() && (absl::ascii_isalnum(static_cast<unsigned char>(src[e])) || src[e] == '_')) ++e;
      out.push_back({Token::Kind::kName, std::string(src.substr(k, e - k))});
      k = e;
      continue;
    }
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      size_t e = k;
      bool is_float = false;
      while (e < src.size() && (absl::ascii_isdigit(static_cast<unsigned char>(src[e])) || src[e] == '_' ||
                                (src[e] == '.' && !is_float && e + 1 < src.size() &&
                                 absl::ascii_isdigit(static_cast<unsigned char>(src[e + 1]))))) {
        if (src[e] == '.') is_float = true;
        ++e;
      }
      std::string digits(src.substr(k, e - k));
      digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
      Token t{Token::Kind::kNumber, digits};
      if (is_float) {
        t.value = Value::Float(std::strtod(digits.c_str(), nullptr));
      } else {
        int64_t v = 0;
        if (!absl::SimpleAtoi(digits, &v)) return SyntaxError(line, absl::StrCat("bad number ", digits));
        t.value = Value::Int(v);
      }
      out.push_back(std::move(t));
      k = e;
      continue;
    }
    if (c == '\'' || c == '"') {
      std::string s;
      size_t e = k + 1;
      for (; e < src.size() && src[e] != c; ++e) {
        if (src[e] == '\\' && e + 1 < src.size()) {
          const char n = src[++e];
          switch (n) {
            case 'n': s += '\n'; break;
            case 't': s += '\t'; break;
            case 'r': s += '\r'; break;
            case '\\': s += '\\'; break;
            case '\'': s += '\''; break;
            case '"': s += '"'; break;
            default: s += '\\'; s += n;
          }
          continue;
        }
        s += src[e];
      }
      if (e >= src.size()) return SyntaxError(line, "unterminated string");
      Token t{Token::Kind::kString, s};
      t.value = Value::Str(std::move(s));
      out.push_back(std::move(t));
      k = e + 1;
      continue;
    }
    static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">",
                                 "|", ".", "[", "]", "(", ")", "{", "}", ",", ":", "="};
    bool matched = false;
    for (const char* op : kOps) {
      if (absl::StartsWith(src.substr(k), op)) {
        out.push_back({Token::Kind::kOp, op});
        k += std::strlen(op);
        matched = true;
        break;
      }
    }
    if (!matched) return SyntaxError(line, absl::StrCat("unexpected character '", std::string(1, c), "'"));
  }
  out.push_back({Token::Kind::kEnd, ""});
  return out;
}

const std::vector<std::string>& KnownFilters() {
  static const auto* k = new std::vector<std::string>{
      "trim", "length", "count", "upper", "lower", "capitalize", "title", "default", "d", "string", "join",
      "first", "last", "list", "items", "reverse", "replace", "tojson", "safe", "int", "float", "abs", "round",
      "select", "reject", "selectattr", "rejectattr", "map"};
  return *k;
}
const std::vector<std::string>& KnownTests() {
  static const auto* k = new std::vector<std::string>{
      "defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable", "sequence",
      "boolean", "true", "false", "even", "odd", "eq", "equalto", "==", "ne", "!=", "in", "lower", "upper"};
  return *k;
}

class ExprParser {
 public:
  ExprParser(std::vector<Token> tokens, int line) : t_(std::move(tokens)), line_(line) {}

  absl::StatusOr<ExprPtr> ParseExpression() { return ParseConditional(); }
  absl::StatusOr<ExprPtr> ParseWithoutConditional() { return ParseOr(); }
  bool AtEnd() const { return Peek().kind == Token::Kind::kEnd; }
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(pos_ + ahead, t_.size() - 1)]; }
  bool IsName(absl::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == name;
  }
  bool IsOp(absl::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kOp && Peek(ahead).text == op;
  }
  Token Next() { return t_[std::min(pos_++, t_.size() - 1)]; }
  absl::Status Expect(absl::string_view op) {
    if (!IsOp(op)) return Error(absl::StrCat("expected '", op, "'"));
    ++pos_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().kind != Token::Kind::kName) return Error("expected a name");
    return Next().text;
  }
  absl::Status Error(absl::string_view what) const {
    return SyntaxError(line_, absl::StrCat(what, Peek().kind == Token::Kind::kEnd ? " at the end of the tag"
                                                                                  : absl::StrCat(" near '", Peek().text, "'")));
  }

 private:
  ExprPtr Make(Expr::Kind kind) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line_;
    return e;
  }
  ExprPtr Binary(std::string op, ExprPtr l, ExprPtr r) {
    ExprPtr e = Make(Expr::Kind::kBinary);
    e->name = std::move(op);
    e->a = std::move(l);
    e->b = std::move(r);
    return e;
  }

  absl::StatusOr<ExprPtr> ParseConditional() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr then, ParseOr());
    while (IsName("if")) {
      ++pos_;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr e = Make(Expr::Kind::kCond);
      e->a = std::move(then);
      e->b = std::move(cond);
      if (IsName("else")) {
        ++pos_;
        VERDICT_ASSIGN_OR_RETURN(e->c, ParseConditional());
      }
      then = std::move(e);
    }
    return then;
  }
  absl::StatusOr<ExprPtr> ParseOr() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParseAnd());
    while (IsName("or")) {
      ++pos_;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParseAnd());
      l = Binary("or", std::move(l), std::move(r));
    }
    return l;
  }
  absl::StatusOr<ExprPtr> ParseAnd() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParseNot());
    while (IsName("and")) {
      ++pos_;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParseNot());
      l = Binary("and", std::move(l), std::move(r));
    }
    return l;
  }
  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      ++pos_;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr inner, ParseNot());
      ExprPtr e = Make(Expr::Kind::kNot);
      e->a = std::move(inner);
      return e;
    }
    return ParseCompare();
  }
  absl::StatusOr<ExprPtr> ParseCompare() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParseConcat());
    while (true) {
      std::string op;
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
        op = Next().text;
      } else if (IsName("in")) {
        ++pos_;
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        pos_ += 2;
        op = "not in";
      } else {
        return l;
      }
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParseConcat());
      l = Binary(op, std::move(l), std::move(r));
    }
  }
  absl::StatusOr<ExprPtr> ParseConcat() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParseAdd());
    while (IsOp("~")) {
      ++pos_;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParseAdd());
      l = Binary("~", std::move(l), std::move(r));
    }
    return l;
  }
  absl::StatusOr<ExprPtr> ParseAdd() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParseMul());
    while (IsOp("+") || IsOp("-")) {
      const std::string op = Next().text;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParseMul());
      l = Binary(op, std::move(l), std::move(r));
    }
    return l;
  }
  absl::StatusOr<ExprPtr> ParseMul() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParsePow());
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const std::string op = Next().text;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParsePow());
      l = Binary(op, std::move(l), std::move(r));
    }
    return l;
  }
  absl::StatusOr<ExprPtr> ParsePow() {
    VERDICT_ASSIGN_OR_RETURN(ExprPtr l, ParseUnary());
    while (IsOp("**")) {
      ++pos_;
      VERDICT_ASSIGN_OR_RETURN(ExprPtr r, ParseUnary());
      l = Binary("**", std::move(l), std::move(r));
    }
    return l;
  }
  absl::StatusOr<ExprPtr> ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      const bool neg = Next().text == "-";
      VERDICT_ASSIGN_OR_RETURN(ExprPtr inner, ParseUnary());
      if (!neg) return inner;
      ExprPtr e = Make(Expr::Kind::kNeg);
      e->a = std::move(inner);
      return e;
    }
    VERDICT_ASSIGN_OR_RETURN(ExprPtr e, ParsePrimary());
    return ParsePostfix(std::move(e));
  }
  absl::StatusOr<std::vector<Arg>> ParseArgs() {  // after '('
    std::vector<Arg> args;
    while (!IsOp(")")) {
      Arg arg;
      if (Peek().kind == Token::Kind::kName && IsOp("=", 1)) {
        arg.keyword = Next().text;
        ++pos_;
      }
      VERDICT_ASSIGN_OR_RETURN(arg.value, ParseExpression());
      args.push_back(std::move(arg));
      if (!IsOp(",")) break;
      ++pos_;
    }
    VERDICT_RETURN_IF_ERROR(Expect(")"));
    return args;
  }
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr e) {
    while (true) {
      if (IsOp(".")) {
        ++pos_;
        ExprPtr attr = Make(Expr::Kind::kAttr);
        VERDICT_ASSIGN_OR_RETURN(attr->name, ExpectName());
        attr->a = std::move(e);
        e = std::move(attr);
      } else if (IsOp("[")) {
        ++pos_;
        ExprPtr start, stop;
        if (!IsOp(":")) {
          VERDICT_ASSIGN_OR_RETURN(start, ParseExpression());
        }
        if (IsOp(":")) {
          ++pos_;
          ExprPtr slice = Make(Expr::Kind::kSlice);
          if (!IsOp("]") && !IsOp(":")) {
            VERDICT_ASSIGN_OR_RETURN(stop, ParseExpression());
          }
          if (IsOp(":")) {
            ++pos_;
            if (!IsOp("]")) {
              VERDICT_ASSIGN_OR_RETURN(slice->c, ParseExpression());
            }
          }
          slice->a = std::move(e);
          slice->b = std::move(start);
          slice->items.emplace_back(std::move(stop), nullptr);
          e = std::move(slice);
        } else {
          ExprPtr item = Make(Expr::Kind::kItem);
          item->a = std::move(e);
          item->b = std::move(start);
          e = std::move(item);
        }
        VERDICT_RETURN_IF_ERROR(Expect("]"));
      } else if (IsOp("(")) {
        ++pos_;
        ExprPtr call = Make(Expr::Kind::kCall);
        call->a = std::move(e);
        VERDICT_ASSIGN_OR_RETURN(call->args, ParseArgs());
        e = std::move(call);
      } else if (IsOp("|")) {
        ++pos_;
        ExprPtr filter = Make(Expr::Kind::kFilter);
        VERDICT_ASSIGN_OR_RETURN(filter->name, ExpectName());
        const auto& known = KnownFilters();
        if (std::find(known.begin(), known.end(), filter->name) == known.end()) {
          return SyntaxError(line_, absl::StrCat("the filter '", filter->name, "' is not supported"));
        }
        filter->a = std::move(e);
        if (IsOp("(")) {
          ++pos_;
          VERDICT_ASSIGN_OR_RETURN(filter->args, ParseArgs());
        }
        e = std::move(filter);
      } else if (IsName("is")) {
        ++pos_;
        ExprPtr test = Make(Expr::Kind::kTest);
        if (IsName("not")) {
          ++pos_;
          test->negated = true;
        }
        if (Peek().kind == Token::Kind::kOp && (IsOp("==") || IsOp("!="))) {
          test->name = Next().text;
        } else {
          VERDICT_ASSIGN_OR_RETURN(test->name, ExpectName());
        }
        const auto& known = KnownTests();
        if (std::find(known.begin(), known.end(), test->name) == known.end()) {
          return SyntaxError(line_, absl::StrCat("the test '", test->name, "' is not supported"));
        }
        test->a = std::move(e);
        if (IsOp("(")) {
          ++pos_;
          VERDICT_ASSIGN_OR_RETURN(test->args, ParseArgs());
        } else if (Peek().kind == Token::Kind::kString || Peek().kind == Token::Kind::kNumber ||
                   (Peek().kind == Token::Kind::kName && !IsName("and") && !IsName("or") && !IsName("else") &&
                    !IsName("if"))) {
          Arg arg;  // `x is divisibleby 3` form: one argument without parentheses
          VERDICT_ASSIGN_OR_RETURN(ExprPtr value, ParsePrimary());
          arg.value = std::move(value);
          test->args.push_back(std::move(arg));
        }
        e = std::move(test);
      } else {
        return e;
      }
    }
  }
  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token t = Next();
    switch (t.kind) {
      case Token::Kind::kNumber:
      case Token::Kind::kString: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        e->literal = t.value;
        // Adjacent string literals concatenate, as in Python.
        while (t.kind == Token::Kind::kString && Peek().kind == Token::Kind::kString) e->literal.s += Next().text;
        return e;
      }
      case Token::Kind::kName: {
        ExprPtr e = Make(Expr::Kind::kLiteral);
        if (t.text == "true" || t.text == "True") {
          e->literal = Value::Bool(true);
        } else if (t.text == "false" || t.text == "False") {
          e->literal = Value::Bool(false);
        } else if (t.text == "none" || t.text == "None") {
          e->literal = Value::None();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case Token::Kind::kOp: {
        if (t.text == "(") {
          VERDICT_ASSIGN_OR_RETURN(ExprPtr inner, ParseExpression());
          if (IsOp(",")) return SyntaxError(line_, "tuples are not supported");
          VERDICT_RETURN_IF_ERROR(Expect(")"));
          return inner;
        }
        if (t.text == "[") {
          ExprPtr e = Make(Expr::Kind::kList);
          while (!IsOp("]")) {
            VERDICT_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
            e->items.emplace_back(std::move(item), nullptr);
            if (!IsOp(",")) break;
            ++pos_;
          }
          VERDICT_RETURN_IF_ERROR(Expect("]"));
          return e;
        }
        if (t.text == "{") {
          ExprPtr e = Make(Expr::Kind::kDict);
          while (!IsOp("}")) {
            VERDICT_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
            VERDICT_RETURN_IF_ERROR(Expect(":"));
            VERDICT_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
            e->items.emplace_back(std::move(key), std::move(value));
            if (!IsOp(",")) break;
            ++pos_;
          }
          VERDICT_RETURN_IF_ERROR(Expect("}"));
          return e;
        }
        break;
      }
      case Token::Kind::kEnd:
        break;
    }
    --pos_;
    return Error("expected an expression");
  }

  std::vector<Token> t_;
  size_t pos_ = 0;
  int line_;
};

// ---- statements --------------------------------------------------------------------------------

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kBreak, kContinue, kGroup };
  Kind kind;
  int line = 0;
  std::string text;                                          // kText
  ExprPtr expr;                                              // kOutput, kFor (iterable), kSet (value)
  std::vector<std::pair<ExprPtr, std::vector<std::unique_ptr<Node>>>> branches;  // kIf (null cond: else)
  std::vector<std::string> targets;                          // kFor loop variables; kSet: name [, attr]
  ExprPtr filter;                                            // kFor inline `if`
  std::vector<std::unique_ptr<Node>> body, else_body;        // kFor; kGroup (body)
};
using Body = std::vector<std::unique_ptr<Node>>;

// The template split into text and tags, with Jinja's whitespace rules (trim_blocks and
// lstrip_blocks, as transformers sets them; '-' and '+' modifiers) already applied to the text.
struct Piece {
  enum class Kind { kText, kOutput, kBlock };
  Kind kind;
  std::string content;
  int line;
};

absl::StatusOr<std::vector<Piece>> Split(absl::string_view src) {
  std::vector<Piece> pieces;
  size_t k = 0;
  int line = 1;
  bool strip_next = false;     // '-' on the previous tag's end
  bool trim_newline = false;   // trim_blocks after a block or comment tag
  while (k <= src.size()) {
    size_t open = src.find('{', k);
    while (open != absl::string_view::npos && open + 1 < src.size() && src[open + 1] != '{' &&
           src[open + 1] != '%' && src[open + 1] != '#') {
      open = src.find('{', open + 1);
    }
    if (open != absl::string_view::npos && open + 1 >= src.size()) open = absl::string_view::npos;
    std::string text(src.substr(k, open == absl::string_view::npos ? absl::string_view::npos : open - k));
    if (strip_next) {
      size_t b = 0;
      while (b < text.size() && IsPySpace(text[b])) ++b;
      text.erase(0, b);
    } else if (trim_newline && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
    }
    strip_next = trim_newline = false;
    const int text_line = line;
    line += static_cast<int>(std::count(src.begin() + k, src.begin() + (open == absl::string_view::npos ? src.size() : open), '\n'));
    if (open == absl::string_view::npos) {
      if (!text.empty()) pieces.push_back({Piece::Kind::kText, std::move(text), text_line});
      break;
    }
    const char type = src[open + 1];
    const absl::string_view close_tag = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    size_t inner = open + 2;
    bool strip_before = false, keep_before = false;
    if (inner < src.size() && src[inner] == '-') {
      strip_before = true;
      ++inner;
    } else if (inner < src.size() && src[inner] == '+') {
      keep_before = true;
      ++inner;
    }
    const size_t close = src.find(close_tag, inner);
    if (close == absl::string_view::npos) {
      return SyntaxError(line, absl::StrCat("unclosed '", std::string(src.substr(open, 2)), "'"));
    }
    size_t inner_end = close;
    bool strip_after = false;
    if (inner_end > inner && src[inner_end - 1] == '-') {
      strip_after = true;
      --inner_end;
    }
    if (strip_before) {
      size_t e = text.size();
      while (e > 0 && IsPySpace(text[e - 1])) --e;
      text.erase(e);
    } else if (type != '{' && !keep_before) {
      // lstrip_blocks: spaces and tabs before a block or comment tag that starts its line (in the
      // source: a newline removed by trim_blocks still counts).
      size_t e = open;
      while (e > k && (src[e - 1] == ' ' || src[e - 1] == '\t')) --e;
      if (e == 0 || src[e - 1] == '\n') {
        const size_t blanks = std::min(open - e, text.size());
        text.erase(text.size() - blanks);
      }
    }
    if (!text.empty()) pieces.push_back({Piece::Kind::kText, std::move(text), text_line});
    const std::string content(src.substr(inner, inner_end - inner));
    line += static_cast<int>(std::count(src.begin() + open, src.begin() + close, '\n'));
    if (type == '{') {
      pieces.push_back({Piece::Kind::kOutput, content, line});
    } else if (type == '%') {
      pieces.push_back({Piece::Kind::kBlock, content, line});
    }
    strip_next = strip_after;
    trim_newline = type != '{';
    k = close + 2;
  }
  return pieces;
}

class StatementParser {
 public:
  explicit StatementParser(std::vector<Piece> pieces) : p_(std::move(pieces)) {}

  absl::StatusOr<Body> ParseAll() {
    Body body;
    std::string end;
    VERDICT_RETURN_IF_ERROR(ParseBody(&body, {}, &end));
    return body;
  }

 private:
  // Parses nodes until a block tag whose first word is in `ends` (stored in *end) or the input's
  // end (only allowed when `ends` is empty).
  absl::Status ParseBody(Body* body, const std::vector<std::string>& ends, std::string* end) {
    while (pos_ < p_.size()) {
      Piece& piece = p_[pos_++];
      if (piece.kind == Piece::Kind::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->text = std::move(piece.content);
        body->push_back(std::move(n));
        continue;
      }
      VERDICT_ASSIGN_OR_RETURN(std::vector<Token> tokens, LexExpression(piece.content, piece.line));
      ExprParser parser(std::move(tokens), piece.line);
      if (piece.kind == Piece::Kind::kOutput) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->line = piece.line;
        VERDICT_ASSIGN_OR_RETURN(n->expr, parser.ParseExpression());
        if (!parser.AtEnd()) return parser.Error("unexpected text");
        body->push_back(std::move(n));
        continue;
      }
      VERDICT_ASSIGN_OR_RETURN(std::string keyword, parser.ExpectName());
      if (std::find(ends.begin(), ends.end(), keyword) != ends.end()) {
        *end = keyword;
        --pos_;  // the caller reads the tag's expression (elif) itself
        return absl::OkStatus();
      }
      if (keyword == "if") {
        VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<Node> n, ParseIf(parser, piece.line));
        body->push_back(std::move(n));
      } else if (keyword == "for") {
        VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<Node> n, ParseFor(parser, piece.line));
        body->push_back(std::move(n));
      } else if (keyword == "break" || keyword == "continue") {
        // jinja2.ext.loopcontrols, which transformers enables.
        if (loop_depth_ == 0) return SyntaxError(piece.line, absl::StrCat("'", keyword, "' outside a loop"));
        if (!parser.AtEnd()) return parser.Error("unexpected text");
        auto n = std::make_unique<Node>();
        n->kind = keyword == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
        n->line = piece.line;
        body->push_back(std::move(n));
      } else if (keyword == "generation") {
        // transformers' {% generation %} marks the assistant's tokens for training masks; rendering
        // is its body unchanged.
        if (!parser.AtEnd()) return parser.Error("unexpected text");
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kGroup;
        n->line = piece.line;
        std::string end_tag;
        VERDICT_RETURN_IF_ERROR(ParseBody(&n->body, {"endgeneration"}, &end_tag));
        VERDICT_ASSIGN_OR_RETURN(auto endgeneration, TagAt());
        body->push_back(std::move(n));
      } else if (keyword == "set") {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kSet;
        n->line = piece.line;
        VERDICT_ASSIGN_OR_RETURN(std::string target, parser.ExpectName());
        n->targets.push_back(target);
        if (parser.IsOp(".")) {
          parser.Next();
          VERDICT_ASSIGN_OR_RETURN(std::string attr, parser.ExpectName());
          n->targets.push_back(attr);
        }
        if (!parser.IsOp("=")) {
          return SyntaxError(piece.line, "block assignments ({% set x %}...{% endset %}) are not supported");
        }
        parser.Next();
        VERDICT_ASSIGN_OR_RETURN(n->expr, parser.ParseExpression());
        if (!parser.AtEnd()) return parser.Error("unexpected text");
        body->push_back(std::move(n));
      } else {
        return SyntaxError(piece.line, absl::StrCat("the statement '", keyword, "' is not supported"));
      }
    }
    if (!ends.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("chat template: missing '{% ", ends.back(), " %}'"));
    }
    return absl::OkStatus();
  }

  // Reads the keyword of the tag at pos_ (left there by ParseBody) and returns a parser after it.
  absl::StatusOr<std::pair<std::string, ExprParser>> TagAt() {
    Piece& piece = p_[pos_++];
    VERDICT_ASSIGN_OR_RETURN(std::vector<Token> tokens, LexExpression(piece.content, piece.line));
    ExprParser parser(std::move(tokens), piece.line);
    VERDICT_ASSIGN_OR_RETURN(std::string keyword, parser.ExpectName());
    return std::make_pair(keyword, std::move(parser));
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseIf(ExprParser& parser, int line) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kIf;
    n->line = line;
    VERDICT_ASSIGN_OR_RETURN(ExprPtr cond, parser.ParseExpression());
    if (!parser.AtEnd()) return parser.Error("unexpected text");
    while (true) {
      Body body;
      std::string end;
      VERDICT_RETURN_IF_ERROR(ParseBody(&body, {"elif", "else", "endif"}, &end));
      n->branches.emplace_back(std::move(cond), std::move(body));
      VERDICT_ASSIGN_OR_RETURN(auto tag, TagAt());
      if (tag.first == "endif") {
        if (!tag.second.AtEnd()) return tag.second.Error("unexpected text");
        return n;
      }
      if (tag.first == "elif") {
        VERDICT_ASSIGN_OR_RETURN(cond, tag.second.ParseExpression());
        if (!tag.second.AtEnd()) return tag.second.Error("unexpected text");
        continue;
      }
      // else
      Body else_body;
      VERDICT_RETURN_IF_ERROR(ParseBody(&else_body, {"endif"}, &end));
      VERDICT_ASSIGN_OR_RETURN(auto endif, TagAt());
      n->branches.emplace_back(nullptr, std::move(else_body));
      return n;
    }
  }

  absl::StatusOr<std::unique_ptr<Node>> ParseFor(ExprParser& parser, int line) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kFor;
    n->line = line;
    while (true) {
      VERDICT_ASSIGN_OR_RETURN(std::string target, parser.ExpectName());
      n->targets.push_back(target);
      if (!parser.IsOp(",")) break;
      parser.Next();
    }
    if (!parser.IsName("in")) return parser.Error("expected 'in'");
    parser.Next();
    // The iterable stops before an inline `if` (a filter of the loop, not a conditional expression).
    VERDICT_ASSIGN_OR_RETURN(n->expr, ParseLoopIterable(parser));
    if (parser.IsName("if")) {
      parser.Next();
      VERDICT_ASSIGN_OR_RETURN(n->filter, parser.ParseExpression());
    }
    if (parser.IsName("recursive")) return SyntaxError(line, "recursive loops are not supported");
    if (!parser.AtEnd()) return parser.Error("unexpected text");
    std::string end;
    ++loop_depth_;
    absl::Status body_status = ParseBody(&n->body, {"else", "endfor"}, &end);
    --loop_depth_;
    VERDICT_RETURN_IF_ERROR(body_status);
    VERDICT_ASSIGN_OR_RETURN(auto tag, TagAt());
    if (tag.first == "else") {
      VERDICT_RETURN_IF_ERROR(ParseBody(&n->else_body, {"endfor"}, &end));
      VERDICT_ASSIGN_OR_RETURN(auto endfor, TagAt());
    }
    return n;
  }

  // `for x in <expr> if <cond>`: the iterable is an expression without a conditional part.
  static absl::StatusOr<ExprPtr> ParseLoopIterable(ExprParser& parser) { return parser.ParseWithoutConditional(); }

  std::vector<Piece> p_;
  size_t pos_ = 0;
  int loop_depth_ = 0;
};

// ---- rendering ---------------------------------------------------------------------------------

class RenderError {
 public:
  static absl::Status At(int line, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("chat template line ", line, ": ", what));
  }
};

class Renderer {
 public:
  explicit Renderer(std::map<std::string, Value> globals) { scopes_.push_back(std::move(globals)); }

  absl::Status RenderBody(const Body& body, Value* out) {
    for (const auto& node : body) {
      VERDICT_RETURN_IF_ERROR(RenderNode(*node, out));
      if (flow_ != Flow::kNormal) break;  // a break or continue leaves every block up to its loop
    }
    return absl::OkStatus();
  }

 private:
  absl::Status RenderNode(const Node& n, Value* out) {
    switch (n.kind) {
      case Node::Kind::kText:
        Append(*out, Value::Str(n.text));
        return absl::OkStatus();
      case Node::Kind::kOutput: {
        VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        Append(*out, ToStr(v));
        return absl::OkStatus();
      }
      case Node::Kind::kIf:
        for (const auto& [cond, body] : n.branches) {
          bool take = cond == nullptr;
          if (!take) {
            VERDICT_ASSIGN_OR_RETURN(Value c, Eval(*cond));
            take = Truthy(c);
          }
          if (take) return RenderBody(body, out);
        }
        return absl::OkStatus();
      case Node::Kind::kSet: {
        VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*n.expr));
        if (n.targets.size() == 1) {
          scopes_.back()[n.targets[0]] = std::move(v);
          return absl::OkStatus();
        }
        const Value* ns = Lookup(n.targets[0]);
        if (ns == nullptr || ns->kind != Value::Kind::kNamespace) {
          return RenderError::At(n.line, absl::StrCat("'", n.targets[0], "' is not a namespace: only namespace "
                                                      "attributes can be assigned"));
        }
        for (auto& [k, old] : *ns->dict) {
          if (k == n.targets[1]) {
            old = std::move(v);
            return absl::OkStatus();
          }
        }
        ns->dict->emplace_back(n.targets[1], std::move(v));
        return absl::OkStatus();
      }
      case Node::Kind::kFor:
        return RenderFor(n, out);
      case Node::Kind::kBreak:
        flow_ = Flow::kBreak;
        return absl::OkStatus();
      case Node::Kind::kContinue:
        flow_ = Flow::kContinue;
        return absl::OkStatus();
      case Node::Kind::kGroup:
        return RenderBody(n.body, out);
    }
    return absl::OkStatus();
  }

  absl::Status RenderFor(const Node& n, Value* out) {
    VERDICT_ASSIGN_OR_RETURN(Value iterable, Eval(*n.expr));
    List items;
    if (iterable.kind == Value::Kind::kList) {
      items = *iterable.list;
    } else if (iterable.kind == Value::Kind::kDict) {
      for (const auto& [k, v] : *iterable.dict) items.push_back(Value::Str(k));
    } else if (iterable.kind == Value::Kind::kString) {
      for (size_t k = 0; k < iterable.s.size(); ++k) items.push_back(Substr(iterable, k, 1));
    } else if (iterable.kind != Value::Kind::kUndefined && iterable.kind != Value::Kind::kNone) {
      return RenderError::At(n.line, "the loop's value is not iterable");
    } else if (iterable.kind == Value::Kind::kNone) {
      return RenderError::At(n.line, "'NoneType' object is not iterable");
    }
    // The inline filter runs first, so loop.length and loop.last count the kept items only.
    List kept;
    for (const Value& item : items) {
      if (n.filter != nullptr) {
        scopes_.emplace_back();
        VERDICT_RETURN_IF_ERROR(Bind(n, item));
        absl::StatusOr<Value> keep = Eval(*n.filter);
        scopes_.pop_back();
        if (!keep.ok()) return keep.status();
        if (!Truthy(*keep)) continue;
      }
      kept.push_back(item);
    }
    if (kept.empty()) return RenderBody(n.else_body, out);
    const int64_t length = static_cast<int64_t>(kept.size());
    for (int64_t k = 0; k < length; ++k) {
      scopes_.emplace_back();
      VERDICT_RETURN_IF_ERROR(Bind(n, kept[k]));
      Dict loop = {{"index", Value::Int(k + 1)},
                   {"index0", Value::Int(k)},
                   {"revindex", Value::Int(length - k)},
                   {"revindex0", Value::Int(length - k - 1)},
                   {"first", Value::Bool(k == 0)},
                   {"last", Value::Bool(k + 1 == length)},
                   {"length", Value::Int(length)},
                   {"previtem", k > 0 ? kept[k - 1] : Value::Undefined("loop.previtem")},
                   {"nextitem", k + 1 < length ? kept[k + 1] : Value::Undefined("loop.nextitem")}};
      scopes_.back()["loop"] = Value::DictOf(std::move(loop));
      absl::Status s = RenderBody(n.body, out);
      // Assignments inside a loop do not leave it (Jinja scoping); namespaces are shared objects.
      scopes_.pop_back();
      VERDICT_RETURN_IF_ERROR(s);
      const Flow flow = flow_;
      flow_ = Flow::kNormal;
      if (flow == Flow::kBreak) break;
    }
    return absl::OkStatus();
  }

  absl::Status Bind(const Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      scopes_.back()[n.targets[0]] = item;
      return absl::OkStatus();
    }
    if (item.kind != Value::Kind::kList || item.list->size() != n.targets.size()) {
      return RenderError::At(n.line, absl::StrCat("cannot unpack into ", n.targets.size(), " loop variables"));
    }
    for (size_t k = 0; k < n.targets.size(); ++k) scopes_.back()[n.targets[k]] = (*item.list)[k];
    return absl::OkStatus();
  }

  const Value* Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return &found->second;
    }
    return nullptr;
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return e.literal;
      case Expr::Kind::kName: {
        const Value* v = Lookup(e.name);
        return v != nullptr ? *v : Value::Undefined(e.name);
      }
      case Expr::Kind::kAttr: {
        VERDICT_ASSIGN_OR_RETURN(Value obj, Eval(*e.a));
        return GetAttr(obj, e.name, e.line);
      }
      case Expr::Kind::kItem: {
        VERDICT_ASSIGN_OR_RETURN(Value obj, Eval(*e.a));
        VERDICT_ASSIGN_OR_RETURN(Value index, Eval(*e.b));
        return GetItem(obj, index, e.line);
      }
      case Expr::Kind::kSlice: return EvalSlice(e);
      case Expr::Kind::kCall: return EvalCall(e);
      case Expr::Kind::kFilter: return EvalFilter(e);
      case Expr::Kind::kTest: {
        VERDICT_ASSIGN_OR_RETURN(bool r, EvalTest(e));
        return Value::Bool(r != e.negated);
      }
      case Expr::Kind::kNot: {
        VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*e.a));
        return Value::Bool(!Truthy(v));
      }
      case Expr::Kind::kNeg: {
        VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*e.a));
        if (v.kind == Value::Kind::kInt) return Value::Int(-v.i);
        if (v.kind == Value::Kind::kFloat) return Value::Float(-v.f);
        return RenderError::At(e.line, "unary minus of a value that is not a number");
      }
      case Expr::Kind::kCond: {
        VERDICT_ASSIGN_OR_RETURN(Value c, Eval(*e.b));
        if (Truthy(c)) return Eval(*e.a);
        if (e.c != nullptr) return Eval(*e.c);
        return Value::Undefined("");
      }
      case Expr::Kind::kList: {
        List items;
        for (const auto& [item, unused] : e.items) {
          VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*item));
          items.push_back(std::move(v));
        }
        return Value::ListOf(std::move(items));
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (const auto& [key, value] : e.items) {
          VERDICT_ASSIGN_OR_RETURN(Value k, Eval(*key));
          if (!k.is_string()) return RenderError::At(e.line, "dict keys must be strings");
          VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*value));
          d.emplace_back(k.s, std::move(v));
        }
        return Value::DictOf(std::move(d));
      }
      case Expr::Kind::kBinary: return EvalBinary(e);
    }
    return RenderError::At(e.line, "unknown expression");
  }

  absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name, int line) {
    if (obj.kind == Value::Kind::kUndefined) {
      return RenderError::At(line, absl::StrCat("'", obj.name.empty() ? "undefined" : obj.name,
                                                "' is undefined (reading .", name, ")"));
    }
    if (obj.kind == Value::Kind::kDict || obj.kind == Value::Kind::kNamespace) {
      if (const Value* v = DictGet(*obj.dict, name)) return *v;
      if (obj.kind == Value::Kind::kDict && (name == "items" || name == "keys" || name == "values" || name == "get")) {
        return Method(obj, name);
      }
      return Value::Undefined(absl::StrCat(obj.name, ".", name));
    }
    if (obj.kind == Value::Kind::kString) {
      static const char* kStringMethods[] = {"strip", "lstrip", "rstrip", "upper", "lower", "startswith",
                                             "endswith", "split", "replace", "title", "capitalize"};
      for (const char* m : kStringMethods) {
        if (name == m) return Method(obj, name);
      }
      return RenderError::At(line, absl::StrCat("the string method '", name, "' is not supported"));
    }
    return Value::Undefined(name);
  }

  static Value Method(const Value& obj, const std::string& name) {
    Value m = Value::Function(absl::StrCat("method:", name));
    m.list = std::make_shared<List>(List{obj});  // the bound object
    return m;
  }

  absl::StatusOr<Value> GetItem(const Value& obj, const Value& index, int line) {
    if (obj.kind == Value::Kind::kUndefined) {
      return RenderError::At(line, absl::StrCat("'", obj.name, "' is undefined (subscripted)"));
    }
    if (obj.kind == Value::Kind::kDict || obj.kind == Value::Kind::kNamespace) {
      if (!index.is_string()) return Value::Undefined("");
      if (const Value* v = DictGet(*obj.dict, index.s)) return *v;
      return Value::Undefined(index.s);
    }
    if (obj.kind == Value::Kind::kList || obj.kind == Value::Kind::kString) {
      if (index.kind != Value::Kind::kInt) return RenderError::At(line, "list indices must be integers");
      const int64_t size = obj.kind == Value::Kind::kList ? static_cast<int64_t>(obj.list->size())
                                                          : static_cast<int64_t>(obj.s.size());
      const int64_t k = index.i < 0 ? index.i + size : index.i;
      if (k < 0 || k >= size) return Value::Undefined("");
      return obj.kind == Value::Kind::kList ? (*obj.list)[k] : Substr(obj, k, 1);
    }
    return RenderError::At(line, "the value is not subscriptable");
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    VERDICT_ASSIGN_OR_RETURN(Value obj, Eval(*e.a));
    std::optional<int64_t> bounds[3];
    const Expr* parts[3] = {e.b.get(), e.items[0].first.get(), e.c.get()};
    for (int k = 0; k < 3; ++k) {
      if (parts[k] == nullptr) continue;
      VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*parts[k]));
      if (v.kind == Value::Kind::kNone) continue;
      if (v.kind != Value::Kind::kInt) return RenderError::At(e.line, "slice bounds must be integers");
      bounds[k] = v.i;
    }
    const int64_t step = bounds[2].value_or(1);
    if (step == 0) return RenderError::At(e.line, "slice step cannot be zero");
    const bool is_list = obj.kind == Value::Kind::kList;
    if (!is_list && obj.kind != Value::Kind::kString) return RenderError::At(e.line, "the value cannot be sliced");
    const int64_t size = is_list ? static_cast<int64_t>(obj.list->size()) : static_cast<int64_t>(obj.s.size());
    auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
      if (!v.has_value()) return fallback;
      int64_t x = *v < 0 ? *v + size : *v;
      return step > 0 ? std::clamp<int64_t>(x, 0, size) : std::clamp<int64_t>(x, -1, size - 1);
    };
    const int64_t start = clamp(bounds[0], step > 0 ? 0 : size - 1);
    const int64_t stop = clamp(bounds[1], step > 0 ? size : -1);
    List items;
    Value text = Value::Str("");
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (is_list) {
        items.push_back((*obj.list)[k]);
      } else {
        Append(text, Substr(obj, k, 1));
      }
    }
    return is_list ? Value::ListOf(std::move(items)) : text;
  }

  absl::StatusOr<std::vector<Value>> Positional(const Expr& e) {
    std::vector<Value> args;
    for (const Arg& a : e.args) {
      if (!a.keyword.empty()) continue;
      VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*a.value));
      args.push_back(std::move(v));
    }
    return args;
  }
  absl::StatusOr<std::optional<Value>> Keyword(const Expr& e, absl::string_view name) {
    for (const Arg& a : e.args) {
      if (a.keyword == name) {
        VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*a.value));
        return std::optional<Value>(std::move(v));
      }
    }
    return std::optional<Value>();
  }

  absl::StatusOr<Value> EvalCall(const Expr& e) {
    VERDICT_ASSIGN_OR_RETURN(Value fn, Eval(*e.a));
    VERDICT_ASSIGN_OR_RETURN(std::vector<Value> args, Positional(e));
    if (fn.kind == Value::Kind::kUndefined) {
      return RenderError::At(e.line, absl::StrCat("the function '", fn.name, "' is not supported"));
    }
    if (fn.kind != Value::Kind::kFunction) return RenderError::At(e.line, "the value is not callable");
    if (fn.name == "raise_exception") {
      return absl::FailedPreconditionError(args.empty() ? "the chat template raised an exception"
                                                        : ToStr(args[0]).s);
    }
    if (fn.name == "strftime_now") {
      // transformers' global: datetime.now().strftime(format).
      if (args.empty() || !args[0].is_string()) return RenderError::At(e.line, "strftime_now needs a format");
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buf[256];
      const size_t n = std::strftime(buf, sizeof(buf), args[0].s.c_str(), &local);
      return Value::Str(std::string(buf, n));
    }
    if (fn.name == "namespace") {
      Value ns{Value::Kind::kNamespace};
      ns.dict = std::make_shared<Dict>();
      for (const Arg& a : e.args) {
        if (a.keyword.empty()) continue;
        VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*a.value));
        ns.dict->emplace_back(a.keyword, std::move(v));
      }
      return ns;
    }
    const std::string method = fn.name.substr(std::string("method:").size());
    const Value& self = (*fn.list)[0];
    auto arg_string = [&](size_t k) -> std::optional<std::string> {
      if (k < args.size() && args[k].is_string()) return args[k].s;
      return std::nullopt;
    };
    if (self.kind == Value::Kind::kDict) {
      if (method == "items") {
        List items;
        for (const auto& [k, v] : *self.dict) items.push_back(Value::ListOf({Value::Str(k), v}));
        return Value::ListOf(std::move(items));
      }
      if (method == "keys" || method == "values") {
        List items;
        for (const auto& [k, v] : *self.dict) items.push_back(method == "keys" ? Value::Str(k) : v);
        return Value::ListOf(std::move(items));
      }
      // get
      if (args.empty() || !args[0].is_string()) return RenderError::At(e.line, "dict.get needs a string key");
      if (const Value* v = DictGet(*self.dict, args[0].s)) return *v;
      return args.size() > 1 ? args[1] : Value::None();
    }
    if (method == "strip" || method == "lstrip" || method == "rstrip") {
      return Strip(self, method != "rstrip", method != "lstrip", arg_string(0));
    }
    if (method == "upper") return MapChars(self, [](char c, bool) { return absl::ascii_toupper(c); });
    if (method == "lower") return MapChars(self, [](char c, bool) { return absl::ascii_tolower(c); });
    if (method == "title") {
      return MapChars(self, [](char c, bool start) { return start ? absl::ascii_toupper(c) : absl::ascii_tolower(c); });
    }
    if (method == "capitalize") {
      Value out = MapChars(self, [](char c, bool) { return absl::ascii_tolower(c); });
      if (!out.s.empty()) out.s[0] = absl::ascii_toupper(out.s[0]);
      return out;
    }
    if (method == "startswith" || method == "endswith") {
      const std::optional<std::string> what = arg_string(0);
      if (!what.has_value()) return RenderError::At(e.line, absl::StrCat(method, " needs a string"));
      return Value::Bool(method == "startswith" ? absl::StartsWith(self.s, *what) : absl::EndsWith(self.s, *what));
    }
    if (method == "split") {
      List parts;
      const std::optional<std::string> sep = arg_string(0);
      if (sep.has_value() && !sep->empty()) {
        size_t b = 0;
        while (true) {
          const size_t at = self.s.find(*sep, b);
          parts.push_back(Substr(self, b, at == std::string::npos ? std::string::npos : at - b));
          if (at == std::string::npos) break;
          b = at + sep->size();
        }
      } else {
        size_t b = 0;
        while (b < self.s.size()) {
          while (b < self.s.size() && IsPySpace(self.s[b])) ++b;
          size_t end = b;
          while (end < self.s.size() && !IsPySpace(self.s[end])) ++end;
          if (end > b) parts.push_back(Substr(self, b, end - b));
          b = end;
        }
      }
      return Value::ListOf(std::move(parts));
    }
    if (method == "replace") return Replace(self, args, e.line);
    return RenderError::At(e.line, absl::StrCat("the method '", method, "' is not supported"));
  }

  static absl::StatusOr<Value> Replace(const Value& self, const std::vector<Value>& args, int line) {
    if (args.size() < 2 || !args[0].is_string() || !args[1].is_string() || args[0].s.empty()) {
      return RenderError::At(line, "replace needs two strings (the first not empty)");
    }
    Value out = Value::Str("");
    size_t b = 0;
    while (true) {
      const size_t at = self.s.find(args[0].s, b);
      if (at == std::string::npos) break;
      Append(out, Substr(self, b, at - b));
      // The replacement's bytes count as content where the text it replaces did.
      Value with = args[1];
      if (self.taint_at(at) != 0) with = Value::Tainted(with.s);
      Append(out, with);
      b = at + args[0].s.size();
    }
    Append(out, Substr(self, b, std::string::npos));
    return out;
  }

  absl::StatusOr<std::map<std::string, Value>> Keywords(const Expr& e) {
    std::map<std::string, Value> kwargs;
    for (const Arg& a : e.args) {
      if (a.keyword.empty()) continue;
      VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*a.value));
      kwargs[a.keyword] = std::move(v);
    }
    return kwargs;
  }

  absl::StatusOr<Value> EvalFilter(const Expr& e) {
    VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*e.a));
    VERDICT_ASSIGN_OR_RETURN(std::vector<Value> args, Positional(e));
    VERDICT_ASSIGN_OR_RETURN(auto kwargs, Keywords(e));
    return ApplyFilter(e.line, e.name, v, args, kwargs);
  }

  // The filter `f` of `v` (also what map() and the select family apply to each item).
  absl::StatusOr<Value> ApplyFilter(int line, const std::string& f, const Value& v, const std::vector<Value>& args,
                                    const std::map<std::string, Value>& kwargs) {
    auto keyword = [&kwargs](const char* name) -> std::optional<Value> {
      auto it = kwargs.find(name);
      return it == kwargs.end() ? std::nullopt : std::optional<Value>(it->second);
    };
    if (f == "trim") return Strip(ToStr(v), true, true);
    if (f == "safe") return v;
    if (f == "string") return ToStr(v);
    if (f == "upper" || f == "lower" || f == "title" || f == "capitalize") {
      return EvalCall(MethodCallOf(line, ToStr(v), f));
    }
    if (f == "length" || f == "count") {
      if (v.kind == Value::Kind::kList) return Value::Int(static_cast<int64_t>(v.list->size()));
      if (v.kind == Value::Kind::kDict) return Value::Int(static_cast<int64_t>(v.dict->size()));
      if (v.kind == Value::Kind::kString) return Value::Int(static_cast<int64_t>(v.s.size()));
      if (v.kind == Value::Kind::kUndefined) return Value::Int(0);
      return RenderError::At(line, "length of a value that has none");
    }
    if (f == "default" || f == "d") {
      const std::optional<Value> boolean = keyword("boolean");
      const bool use_falsy = (args.size() > 1 && Truthy(args[1])) || (boolean.has_value() && Truthy(*boolean));
      const bool missing = v.kind == Value::Kind::kUndefined || (use_falsy && !Truthy(v));
      return missing ? (args.empty() ? Value::Str("") : args[0]) : v;
    }
    if (f == "join") {
      if (v.kind != Value::Kind::kList) return RenderError::At(line, "join of a value that is not a list");
      Value out = Value::Str("");
      const Value sep = args.empty() ? Value::Str("") : ToStr(args[0]);
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k > 0) Append(out, sep);
        Append(out, ToStr((*v.list)[k]));
      }
      return out;
    }
    if (f == "first" || f == "last") {
      if (v.kind == Value::Kind::kList) {
        if (v.list->empty()) return Value::Undefined("");
        return f == "first" ? v.list->front() : v.list->back();
      }
      if (v.kind == Value::Kind::kString) {
        if (v.s.empty()) return Value::Undefined("");
        return f == "first" ? Substr(v, 0, 1) : Substr(v, v.s.size() - 1, 1);
      }
      return RenderError::At(line, absl::StrCat(f, " of a value that is not a sequence"));
    }
    if (f == "list") {
      if (v.kind == Value::Kind::kList) return v;
      List items;
      if (v.kind == Value::Kind::kString) {
        for (size_t k = 0; k < v.s.size(); ++k) items.push_back(Substr(v, k, 1));
      } else if (v.kind == Value::Kind::kDict) {
        for (const auto& [k, unused] : *v.dict) items.push_back(Value::Str(k));
      }
      return Value::ListOf(std::move(items));
    }
    if (f == "items") {
      if (v.kind != Value::Kind::kDict) return RenderError::At(line, "items of a value that is not a dict");
      return EvalCall(MethodCallOf(line, v, "items"));
    }
    if (f == "reverse") {
      if (v.kind == Value::Kind::kList) {
        List items(v.list->rbegin(), v.list->rend());
        return Value::ListOf(std::move(items));
      }
      Value out = Value::Str("");
      for (size_t k = v.s.size(); k > 0; --k) Append(out, Substr(v, k - 1, 1));
      return out;
    }
    if (f == "replace") return Replace(ToStr(v), args, line);
    if (f == "tojson") {
      std::optional<Value> indent = keyword("indent");
      if (!indent.has_value() && !args.empty()) indent = args[0];
      return Value::Str(JinjaJson(v, indent.has_value() && indent->kind == Value::Kind::kInt ? indent->i : 0));
    }
    if (f == "int") {
      if (v.kind == Value::Kind::kInt) return v;
      if (v.kind == Value::Kind::kFloat) return Value::Int(static_cast<int64_t>(v.f));
      int64_t x = 0;
      return Value::Int(v.is_string() && absl::SimpleAtoi(absl::StripAsciiWhitespace(v.s), &x) ? x : 0);
    }
    if (f == "float") {
      if (v.is_number()) return Value::Float(v.number());
      double x = 0;
      return Value::Float(v.is_string() && absl::SimpleAtod(absl::StripAsciiWhitespace(v.s), &x) ? x : 0.0);
    }
    if (f == "abs") {
      if (v.kind == Value::Kind::kInt) return Value::Int(v.i < 0 ? -v.i : v.i);
      return Value::Float(std::fabs(v.number()));
    }
    if (f == "round") {
      const int64_t digits = !args.empty() && args[0].kind == Value::Kind::kInt ? args[0].i : 0;
      const double scale = std::pow(10.0, static_cast<double>(digits));
      return Value::Float(std::nearbyint(v.number() * scale) / scale);
    }
    if (f == "select" || f == "reject" || f == "selectattr" || f == "rejectattr") {
      // select(test, args...) / selectattr(attribute, test, args...): items whose test (or, with no
      // test, truthiness) holds; reject* keep the others.
      const bool by_attr = f == "selectattr" || f == "rejectattr";
      const bool keep_when = f == "select" || f == "selectattr";
      if (v.kind != Value::Kind::kList) return RenderError::At(line, absl::StrCat(f, " of a value that is not a list"));
      size_t next = 0;
      std::string attr;
      if (by_attr) {
        if (args.empty() || !args[0].is_string()) return RenderError::At(line, absl::StrCat(f, " needs an attribute name"));
        attr = args[0].s;
        next = 1;
      }
      std::optional<std::string> test;
      if (next < args.size()) {
        if (!args[next].is_string()) return RenderError::At(line, absl::StrCat(f, " needs a test name"));
        test = args[next].s;
        ++next;
      }
      const std::vector<Value> test_args(args.begin() + static_cast<std::ptrdiff_t>(std::min(next, args.size())), args.end());
      List kept;
      for (const Value& item : *v.list) {
        Value subject = item;
        if (by_attr) {
          VERDICT_ASSIGN_OR_RETURN(subject, GetAttr(item, attr, line));
        }
        bool holds = false;
        if (test.has_value()) {
          VERDICT_ASSIGN_OR_RETURN(holds, ApplyTest(line, *test, subject, test_args));
        } else {
          holds = Truthy(subject);
        }
        if (holds == keep_when) kept.push_back(item);
      }
      return Value::ListOf(std::move(kept));
    }
    if (f == "map") {
      // map(attribute='x') or map('filter', args...).
      if (v.kind != Value::Kind::kList) return RenderError::At(line, "map of a value that is not a list");
      List mapped;
      const std::optional<Value> attribute = keyword("attribute");
      for (const Value& item : *v.list) {
        if (attribute.has_value()) {
          VERDICT_ASSIGN_OR_RETURN(Value x, GetAttr(item, ToStr(*attribute).s, line));
          if (x.kind == Value::Kind::kUndefined) {
            if (const std::optional<Value> fallback = keyword("default")) x = *fallback;
          }
          mapped.push_back(std::move(x));
          continue;
        }
        if (args.empty() || !args[0].is_string()) return RenderError::At(line, "map needs a filter name or attribute=");
        const auto& known = KnownFilters();
        if (std::find(known.begin(), known.end(), args[0].s) == known.end()) {
          return RenderError::At(line, absl::StrCat("the filter '", args[0].s, "' is not supported"));
        }
        VERDICT_ASSIGN_OR_RETURN(Value x, ApplyFilter(line, args[0].s, item,
                                                      std::vector<Value>(args.begin() + 1, args.end()), {}));
        mapped.push_back(std::move(x));
      }
      return Value::ListOf(std::move(mapped));
    }
    return RenderError::At(line, absl::StrCat("the filter '", f, "' is not supported"));
  }

  // A call of `method` bound to `self` (filters that are string or dict methods).
  Expr MethodCallOf(int line, const Value& self, const std::string& method) {
    Expr call;
    call.kind = Expr::Kind::kCall;
    call.line = line;
    call.a = std::make_unique<Expr>();
    call.a->kind = Expr::Kind::kLiteral;
    call.a->literal = Method(self, method);
    return call;
  }

  absl::StatusOr<bool> EvalTest(const Expr& e) {
    VERDICT_ASSIGN_OR_RETURN(Value v, Eval(*e.a));
    VERDICT_ASSIGN_OR_RETURN(std::vector<Value> args, Positional(e));
    return ApplyTest(e.line, e.name, v, args);
  }

  // The test `t` of `v` (also what the select family applies to each item).
  absl::StatusOr<bool> ApplyTest(int line, const std::string& t, const Value& v, const std::vector<Value>& args) {
    const auto& known = KnownTests();
    if (std::find(known.begin(), known.end(), t) == known.end()) {
      return RenderError::At(line, absl::StrCat("the test '", t, "' is not supported"));
    }
    if (t == "defined") return v.kind != Value::Kind::kUndefined;
    if (t == "undefined") return v.kind == Value::Kind::kUndefined;
    if (t == "none") return v.kind == Value::Kind::kNone;
    if (t == "string") return v.kind == Value::Kind::kString;
    if (t == "number") return v.kind == Value::Kind::kInt || v.kind == Value::Kind::kFloat;
    if (t == "integer") return v.kind == Value::Kind::kInt;
    if (t == "float") return v.kind == Value::Kind::kFloat;
    if (t == "boolean") return v.kind == Value::Kind::kBool;
    if (t == "true") return v.kind == Value::Kind::kBool && v.b;
    if (t == "false") return v.kind == Value::Kind::kBool && !v.b;
    if (t == "mapping") return v.kind == Value::Kind::kDict;
    if (t == "iterable") return v.kind == Value::Kind::kList || v.kind == Value::Kind::kDict || v.kind == Value::Kind::kString;
    if (t == "sequence") return v.kind == Value::Kind::kList || v.kind == Value::Kind::kDict || v.kind == Value::Kind::kString;
    if (t == "lower") return v.is_string() && absl::AsciiStrToLower(v.s) == v.s;
    if (t == "upper") return v.is_string() && absl::AsciiStrToUpper(v.s) == v.s;
    if (t == "even" || t == "odd") {
      if (v.kind != Value::Kind::kInt) return RenderError::At(line, absl::StrCat("'", t, "' of a value that is not an integer"));
      return (v.i % 2 == 0) == (t == "even");
    }
    if (args.empty()) return RenderError::At(line, absl::StrCat("the test '", t, "' needs an argument"));
    if (t == "eq" || t == "equalto" || t == "==") return Equal(v, args[0]);
    if (t == "ne" || t == "!=") return !Equal(v, args[0]);
    // in
    VERDICT_ASSIGN_OR_RETURN(Value r, Contains(args[0], v, line));
    return r.b;
  }

  absl::StatusOr<Value> Contains(const Value& container, const Value& item, int line) {
    if (container.kind == Value::Kind::kString) {
      if (!item.is_string()) return RenderError::At(line, "'in <string>' needs a string on the left");
      return Value::Bool(container.s.find(item.s) != std::string::npos);
    }
    if (container.kind == Value::Kind::kList) {
      for (const Value& v : *container.list) {
        if (Equal(v, item)) return Value::Bool(true);
      }
      return Value::Bool(false);
    }
    if (container.kind == Value::Kind::kDict) {
      return Value::Bool(item.is_string() && DictGet(*container.dict, item.s) != nullptr);
    }
    if (container.kind == Value::Kind::kUndefined) {
      return RenderError::At(line, absl::StrCat("'", container.name, "' is undefined (tested with 'in')"));
    }
    return RenderError::At(line, "'in' of a value that is not a container");
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e) {
    const std::string& op = e.name;
    VERDICT_ASSIGN_OR_RETURN(Value l, Eval(*e.a));
    if (op == "and") return Truthy(l) ? Eval(*e.b) : absl::StatusOr<Value>(l);
    if (op == "or") return Truthy(l) ? absl::StatusOr<Value>(l) : Eval(*e.b);
    VERDICT_ASSIGN_OR_RETURN(Value r, Eval(*e.b));
    if (op == "~") {
      Value out = ToStr(l);
      Append(out, ToStr(r));
      return out;
    }
    if (op == "==") return Value::Bool(Equal(l, r));
    if (op == "!=") return Value::Bool(!Equal(l, r));
    if (op == "in" || op == "not in") {
      VERDICT_ASSIGN_OR_RETURN(Value in, Contains(r, l, e.line));
      return Value::Bool(in.b == (op == "in"));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp = 0;
      if (l.is_number() && r.is_number()) {
        cmp = l.number() < r.number() ? -1 : l.number() > r.number() ? 1 : 0;
      } else if (l.is_string() && r.is_string()) {
        cmp = l.s.compare(r.s);
      } else {
        return RenderError::At(e.line, absl::StrCat("'", op, "' between values that do not compare"));
      }
      return Value::Bool(op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0);
    }
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        Value out = l;
        Append(out, r);
        return out;
      }
      if (l.kind == Value::Kind::kList && r.kind == Value::Kind::kList) {
        List items = *l.list;
        items.insert(items.end(), r.list->begin(), r.list->end());
        return Value::ListOf(std::move(items));
      }
    }
    if (op == "*" && l.is_string() && r.kind == Value::Kind::kInt) {
      Value out = Value::Str("");
      for (int64_t k = 0; k < r.i; ++k) Append(out, l);
      return out;
    }
    if (!l.is_number() || !r.is_number() || l.kind == Value::Kind::kBool || r.kind == Value::Kind::kBool) {
      if (!(l.is_number() && r.is_number())) {
        return RenderError::At(e.line, absl::StrCat("'", op, "' between values of unsupported types"));
      }
    }
    const bool ints = l.kind != Value::Kind::kFloat && r.kind != Value::Kind::kFloat;
    const double a = l.number(), b = r.number();
    if (op == "+") return ints ? Value::Int(static_cast<int64_t>(a) + static_cast<int64_t>(b)) : Value::Float(a + b);
    if (op == "-") return ints ? Value::Int(static_cast<int64_t>(a) - static_cast<int64_t>(b)) : Value::Float(a - b);
    if (op == "*") return ints ? Value::Int(static_cast<int64_t>(a) * static_cast<int64_t>(b)) : Value::Float(a * b);
    if (op == "**") return ints && b >= 0 ? Value::Int(static_cast<int64_t>(std::pow(a, b))) : Value::Float(std::pow(a, b));
    if (b == 0) return RenderError::At(e.line, "division by zero");
    if (op == "/") return Value::Float(a / b);
    if (op == "//") {
      if (ints) {
        const int64_t x = static_cast<int64_t>(a), y = static_cast<int64_t>(b);
        return Value::Int(x / y - ((x % y != 0) && ((x < 0) != (y < 0))));
      }
      return Value::Float(std::floor(a / b));
    }
    // %: Python's modulo (the sign of the divisor)
    if (ints) {
      const int64_t x = static_cast<int64_t>(a), y = static_cast<int64_t>(b);
      const int64_t m = x % y;
      return Value::Int(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
    }
    const double m = std::fmod(a, b);
    return Value::Float(m != 0 && ((m < 0) != (b < 0)) ? m + b : m);
  }

  enum class Flow { kNormal, kBreak, kContinue };
  std::vector<std::map<std::string, Value>> scopes_;
  Flow flow_ = Flow::kNormal;
};

}  // namespace chat_template_internal

std::string TrimPythonWhitespace(absl::string_view text) {
  return chat_template_internal::Strip(chat_template_internal::Value::Str(std::string(text)), true, true).s;
}

using chat_template_internal::Body;
using chat_template_internal::Value;

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(absl::string_view source) {
  // Jinja's keep_trailing_newline=False: the template's last newline is not output.
  if (absl::EndsWith(source, "\r\n")) {
    source.remove_suffix(2);
  } else if (absl::EndsWith(source, "\n")) {
    source.remove_suffix(1);
  }
  VERDICT_ASSIGN_OR_RETURN(std::vector<chat_template_internal::Piece> pieces, chat_template_internal::Split(source));
  chat_template_internal::StatementParser parser(std::move(pieces));
  VERDICT_ASSIGN_OR_RETURN(Body body, parser.ParseAll());
  ChatTemplate t;
  t.body_ = std::make_shared<const Body>(std::move(body));
  return t;
}

absl::StatusOr<RenderedChat> ChatTemplate::Render(const ChatTemplateInputs& inputs) const {
  chat_template_internal::List messages;
  for (const ChatMessage& m : inputs.messages) {
    messages.push_back(Value::DictOf({{"role", Value::Str(m.role)}, {"content", Value::Tainted(m.content)}}));
  }
  std::map<std::string, Value> globals;
  globals["messages"] = Value::ListOf(std::move(messages));
  globals["add_generation_prompt"] = Value::Bool(inputs.add_generation_prompt);
  globals["bos_token"] = Value::Str(inputs.bos_token);
  globals["eos_token"] = Value::Str(inputs.eos_token);
  globals["raise_exception"] = Value::Function("raise_exception");
  globals["namespace"] = Value::Function("namespace");
  globals["strftime_now"] = Value::Function("strftime_now");
  chat_template_internal::Renderer renderer(std::move(globals));
  Value out = Value::Str("");
  VERDICT_RETURN_IF_ERROR(renderer.RenderBody(*body_, &out));
  RenderedChat rendered;
  rendered.from_content = out.taint.empty() ? std::string(out.s.size(), '\0') : std::move(out.taint);
  rendered.text = std::move(out.s);
  return rendered;
}

absl::StatusOr<std::vector<int32_t>> ChatPromptFormat::Encode(const Tokenizer& tokenizer,
                                                              absl::Span<const ChatMessage> messages,
                                                              bool add_generation_prompt) const {
  ChatTemplateInputs inputs;
  inputs.messages.assign(messages.begin(), messages.end());
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.bos_token = bos_token;
  inputs.eos_token = eos_token;
  VERDICT_ASSIGN_OR_RETURN(RenderedChat rendered, chat_template.Render(inputs));
  if (special_tokens != nullptr) return EncodeRenderedChat(tokenizer, *special_tokens, rendered);
  return EncodeRenderedChat(tokenizer, rendered);
}

absl::string_view BuiltinLlama3ChatTemplate() {
  return "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
         "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
         "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";
}

SpecialTokenTexts SpecialTokenTexts::Of(const Tokenizer& tokenizer) {
  SpecialTokenTexts out;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (!tokenizer.IsSpecial(id)) continue;
    absl::StatusOr<std::string> text = tokenizer.TokenBytes(id);
    if (text.ok() && !text->empty()) out.longest_first.emplace_back(*std::move(text), id);
  }
  std::stable_sort(out.longest_first.begin(), out.longest_first.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return out;
}

absl::StatusOr<std::vector<int32_t>> EncodeRenderedChat(const Tokenizer& tokenizer, const RenderedChat& rendered) {
  return EncodeRenderedChat(tokenizer, SpecialTokenTexts::Of(tokenizer), rendered);
}

absl::StatusOr<std::vector<int32_t>> EncodeRenderedChat(const Tokenizer& tokenizer,
                                                        const SpecialTokenTexts& special_tokens,
                                                        const RenderedChat& rendered) {
  const std::vector<std::pair<std::string, int32_t>>& specials = special_tokens.longest_first;
  const std::string& text = rendered.text;
  std::vector<int32_t> ids;
  size_t piece_begin = 0;
  auto flush = [&](size_t end) -> absl::Status {
    if (end > piece_begin) {
      VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> piece,
                               tokenizer.Encode(absl::string_view(text).substr(piece_begin, end - piece_begin),
                                                {/*add_bos=*/false, /*parse_special=*/false}));
      ids.insert(ids.end(), piece.begin(), piece.end());
    }
    return absl::OkStatus();
  };
  for (size_t k = 0; k < text.size();) {
    bool matched = false;
    for (const auto& [special, id] : specials) {
      if (text.compare(k, special.size(), special) != 0) continue;
      // Only the template's own special tokens count; text a user typed stays text.
      if (rendered.from_content.find('\1', k) < k + special.size()) continue;
      VERDICT_RETURN_IF_ERROR(flush(k));
      ids.push_back(id);
      k += special.size();
      piece_begin = k;
      matched = true;
      break;
    }
    if (!matched) ++k;
  }
  VERDICT_RETURN_IF_ERROR(flush(text.size()));
  return ids;
}

}  // namespace verdict::engine
