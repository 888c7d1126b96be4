// SPDX-License-Identifier: Apache-2.0
// The task file: the JSONL format users give to `verdict judge data` and `verdict judge eval`.
// One JSON object per line:
//   "prompt"        string, required, non-empty: the text the model continues.
//   "answers"       array of non-empty strings: the correct reference answers (continuations of
//                   the prompt); or "answer": one such string. At most one of the two keys.
//   "id"            optional, string or number; default: the line number (1-based) as a string.
//   "final_answer"  optional, string or number: the checkable final answer, e.g. "28".
//   "labels"        optional, {"tokens": [ids...], "labels": [0/1...]}: an explicit draft
//                   continuation of the prompt with per-token labels supplied by the user (1 =
//                   correct). Same length; ids are non-negative int32 (checked against a
//                   vocabulary only by the caller, which knows the tokenizer); labels are 0, 1,
//                   false or true.
// A line needs at least one answer or a non-empty labeled continuation. Unknown keys are
// ignored (forward compatibility). Blank (whitespace-only) lines are ignored; a trailing '\r'
// (CRLF files) is dropped.
// Everything here is a pure function of its input: thread-safe.
#ifndef VERDICT_JUDGE_TASKS_TASK_FILE_H_
#define VERDICT_JUDGE_TASKS_TASK_FILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace verdict::judge {

// One usable line of a task file.
struct TaskExample {
  std::string id;          // "id" as written (a number in its JSON spelling), else the line number
  int64_t line = 0;        // 1-based line number in the file
  std::string prompt;      // non-empty
  std::vector<std::string> answers;  // "answers" or ["answer"]; each non-empty; may be empty
                                     // only when labeled_tokens is not
  std::optional<std::string> final_answer;
  std::vector<int32_t> labeled_tokens;  // "labels.tokens"; empty if absent
  std::vector<uint8_t> token_labels;    // "labels.labels" as 0/1; same length as labeled_tokens
};

struct TaskFile {
  std::vector<TaskExample> examples;  // in file order
  int64_t skipped_lines = 0;          // malformed lines skipped (non-strict mode)
  // The first kMaxSkipReasons reasons, e.g. "line 7: missing \"prompt\"".
  std::vector<std::string> skip_reasons;
};

inline constexpr int kMaxSkipReasons = 10;

struct TaskReadOptions {
  // Fail on the first malformed line instead of skipping it.
  bool strict = false;
  // Stop after this many usable examples (later lines are not read); 0 reads them all.
  int64_t max_examples = 0;
  // A line longer than this (not counting the newline) is malformed; it is never held in memory
  // in full.
  int64_t max_line_bytes = int64_t{1} << 20;
};

// Parses one non-blank line (without its newline) of a task file; `line_number` (1-based) is
// used for the default id and in error messages.
// Errors: InvalidArgument "line N: <problem>" for bad JSON, a non-object, a missing or empty
// prompt, a field of the wrong type, both "answer" and "answers", an empty answer string, no
// answers and no labels, labels/tokens of different lengths, a label other than 0/1, or a token
// id outside [0, 2^31).
absl::StatusOr<TaskExample> ParseTaskLine(absl::string_view line, int64_t line_number);

// Reads the task file at `path`. Malformed lines (see ParseTaskLine; also lines longer than
// options.max_line_bytes) are skipped and counted, or, with options.strict, make the call fail.
// Errors: NotFound if the file cannot be opened or read; InvalidArgument "<path>: line N:
// <problem>" for the first malformed line in strict mode; InvalidArgument if the file holds no
// usable example at all (the message gives the number of skipped lines and the first reason).
absl::StatusOr<TaskFile> ReadTaskFile(const std::string& path,
                                      const TaskReadOptions& options = {});

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_TASKS_TASK_FILE_H_
