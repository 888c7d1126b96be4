// SPDX-License-Identifier: Apache-2.0
// Checking a model's output against a task example, for `verdict judge eval`.
//   kReference:   the output equals one of the reference answers, trailing ASCII whitespace
//                 stripped on both sides.
//   kFinalAnswer: the last number in the output equals the expected number, compared as
//                 decimal numbers ("28" == "28.0" == "028"). The expected number is the last
//                 number of final_answer, or, without final_answer, of answers[0].
// Pure functions: thread-safe.
#ifndef VERDICT_JUDGE_TASKS_ANSWER_CHECKER_H_
#define VERDICT_JUDGE_TASKS_ANSWER_CHECKER_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "judge/tasks/task_file.h"

namespace verdict::judge {

enum class CheckMode { kFinalAnswer, kReference };

// "final-answer" -> kFinalAnswer, "reference" -> kReference.
// Errors: InvalidArgument naming the accepted values for anything else.
absl::StatusOr<CheckMode> ParseCheckMode(absl::string_view name);

// "final-answer" or "reference".
absl::string_view CheckModeName(CheckMode mode);

// The last number in `text`, or nullopt if there is none. A number is: an optional minus sign,
// digits (optionally grouped in thousands with commas: "1,234"), and an optional decimal part
// ("3.5"; a decimal part without leading digits, ".5", is read as "0.5"). The minus sign counts
// only when it does not follow a letter or digit ("10-4" ends with the number 4, "x=-4" with -4).
// A trailing dot ("is 28.") is not part of the number. The result is the number as written,
// without thousands commas, e.g. "-1234.50".
std::optional<std::string> ExtractFinalNumber(absl::string_view text);

// True iff `output` is correct for `example` under `mode` (see the file comment). kFinalAnswer
// is false when the output or the expected answer holds no number; kReference is false when the
// example has no answers.
bool CheckAnswer(const TaskExample& example, absl::string_view output, CheckMode mode);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_TASKS_ANSWER_CHECKER_H_
