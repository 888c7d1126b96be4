// SPDX-License-Identifier: Apache-2.0
#include "judge/tasks/answer_checker.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace verdict::judge {
namespace {

bool IsDigit(char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }
bool IsAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }

// A number as ExtractFinalNumber writes it, in a canonical spelling: no leading zeros in the
// integer part, no trailing zeros in the decimal part, no "-" for zero ("-0.0" -> "0").
std::string CanonicalNumber(absl::string_view number) {
  bool negative = false;
  if (!number.empty() && number.front() == '-') {
    negative = true;
    number.remove_prefix(1);
  }
  absl::string_view integer = number;
  absl::string_view fraction;
  if (const size_t dot = number.find('.'); dot != absl::string_view::npos) {
    integer = number.substr(0, dot);
    fraction = number.substr(dot + 1);
  }
  while (!integer.empty() && integer.front() == '0') integer.remove_prefix(1);
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (integer.empty()) integer = "0";
  if (integer == "0" && fraction.empty()) negative = false;
  return absl::StrCat(negative ? "-" : "", integer, fraction.empty() ? "" : ".", fraction);
}

}  // namespace

absl::StatusOr<CheckMode> ParseCheckMode(absl::string_view name) {
  if (name == "final-answer") return CheckMode::kFinalAnswer;
  if (name == "reference") return CheckMode::kReference;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown check mode \"", name, "\": expected \"final-answer\" or \"reference\""));
}

absl::string_view CheckModeName(CheckMode mode) {
  switch (mode) {
    case CheckMode::kFinalAnswer:
      return "final-answer";
    case CheckMode::kReference:
      return "reference";
  }
  return "unknown";
}

std::optional<std::string> ExtractFinalNumber(absl::string_view text) {
  const size_t n = text.size();
  auto digit_at = [&](size_t i) { return i < n && IsDigit(text[i]); };
  std::optional<std::string> last;
  size_t i = 0;
  while (i < n) {
    const bool after_alnum = i > 0 && IsAlnum(text[i - 1]);
    const bool after_digit = i > 0 && IsDigit(text[i - 1]);
    const bool starts_digit = IsDigit(text[i]);
    const bool starts_dot = text[i] == '.' && digit_at(i + 1) && !after_digit;
    const bool starts_minus = text[i] == '-' && !after_alnum &&
                              (digit_at(i + 1) || (i + 1 < n && text[i + 1] == '.' &&
                                                   digit_at(i + 2)));
    if (!starts_digit && !starts_dot && !starts_minus) {
      ++i;
      continue;
    }
    std::string number;
    if (starts_minus) {
      number.push_back('-');
      ++i;
    }
    if (digit_at(i)) {
      while (digit_at(i)) number.push_back(text[i++]);
      // Thousands groups: ",ddd" not followed by another digit.
      while (i < n && text[i] == ',' && digit_at(i + 1) && digit_at(i + 2) && digit_at(i + 3) &&
             !digit_at(i + 4)) {
        number.append(text.data() + i + 1, 3);
        i += 4;
      }
    } else {
      number.push_back('0');  // ".5"
    }
    if (i < n && text[i] == '.' && digit_at(i + 1)) {
      number.push_back('.');
      ++i;
      while (digit_at(i)) number.push_back(text[i++]);
    }
    last = std::move(number);
  }
  return last;
}

bool CheckAnswer(const TaskExample& example, absl::string_view output, CheckMode mode) {
  switch (mode) {
    case CheckMode::kReference: {
      const absl::string_view got = absl::StripTrailingAsciiWhitespace(output);
      for (const std::string& answer : example.answers) {
        if (absl::StripTrailingAsciiWhitespace(answer) == got) return true;
      }
      return false;
    }
    case CheckMode::kFinalAnswer: {
      std::optional<std::string> expected;
      if (example.final_answer.has_value()) {
        expected = ExtractFinalNumber(*example.final_answer);
      } else if (!example.answers.empty()) {
        expected = ExtractFinalNumber(example.answers.front());
      }
      if (!expected.has_value()) return false;
      const std::optional<std::string> got = ExtractFinalNumber(output);
      return got.has_value() && CanonicalNumber(*got) == CanonicalNumber(*expected);
    }
  }
  return false;
}

}  // namespace verdict::judge
