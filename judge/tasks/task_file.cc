// SPDX-License-Identifier: Apache-2.0
#include "judge/tasks/task_file.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace verdict::judge {
namespace {

using Json = nlohmann::json;

absl::Status LineError(int64_t line_number, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", problem));
}

// A JSON number as written back by nlohmann (integers exactly, floats round-trip).
std::string NumberText(const Json& value) {
  if (value.is_number_unsigned()) return absl::StrCat(value.get<uint64_t>());
  if (value.is_number_integer()) return absl::StrCat(value.get<int64_t>());
  return value.dump();
}

absl::Status ParseLabels(const Json& labels, int64_t line_number, TaskExample& example) {
  if (!labels.is_object()) return LineError(line_number, "\"labels\" is not an object");
  const auto tokens_it = labels.find("tokens");
  const auto values_it = labels.find("labels");
  if (tokens_it == labels.end() || !tokens_it->is_array()) {
    return LineError(line_number, "\"labels.tokens\" is missing or not an array");
  }
  if (values_it == labels.end() || !values_it->is_array()) {
    return LineError(line_number, "\"labels.labels\" is missing or not an array");
  }
  if (tokens_it->size() != values_it->size()) {
    return LineError(line_number, absl::StrCat("\"labels.tokens\" has ", tokens_it->size(),
                                               " entries but \"labels.labels\" has ",
                                               values_it->size()));
  }
  example.labeled_tokens.reserve(tokens_it->size());
  example.token_labels.reserve(values_it->size());
  for (size_t i = 0; i < tokens_it->size(); ++i) {
    const Json& token = (*tokens_it)[i];
    bool in_range = false;
    int64_t id = -1;
    if (token.is_number_unsigned()) {
      const uint64_t value = token.get<uint64_t>();
      in_range = value <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
      id = in_range ? static_cast<int64_t>(value) : -1;
    } else if (token.is_number_integer()) {
      id = token.get<int64_t>();
      in_range = id >= 0 && id <= std::numeric_limits<int32_t>::max();
    } else {
      return LineError(line_number, absl::StrCat("\"labels.tokens\"[", i, "] is not an integer"));
    }
    if (!in_range) {
      return LineError(line_number, absl::StrCat("\"labels.tokens\"[", i, "] = ",
                                                 NumberText(token), " is not a token id"));
    }
    example.labeled_tokens.push_back(static_cast<int32_t>(id));

    const Json& label = (*values_it)[i];
    if (label.is_boolean()) {
      example.token_labels.push_back(label.get<bool>() ? 1 : 0);
    } else if (label.is_number_integer() &&
               (label.get<int64_t>() == 0 || label.get<int64_t>() == 1)) {
      example.token_labels.push_back(static_cast<uint8_t>(label.get<int64_t>()));
    } else {
      return LineError(line_number, absl::StrCat("\"labels.labels\"[", i, "] = ", label.dump(),
                                                 " is not 0 or 1"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TaskExample> ParseObject(const Json& root, int64_t line_number) {
  if (!root.is_object()) return LineError(line_number, "not a JSON object");
  TaskExample example;
  example.line = line_number;

  const auto prompt_it = root.find("prompt");
  if (prompt_it == root.end()) return LineError(line_number, "missing \"prompt\"");
  if (!prompt_it->is_string()) return LineError(line_number, "\"prompt\" is not a string");
  example.prompt = prompt_it->get<std::string>();
  if (example.prompt.empty()) return LineError(line_number, "empty \"prompt\"");

  const auto answers_it = root.find("answers");
  const auto answer_it = root.find("answer");
  if (answers_it != root.end() && answer_it != root.end()) {
    return LineError(line_number, "both \"answer\" and \"answers\"");
  }
  if (answers_it != root.end()) {
    if (!answers_it->is_array()) return LineError(line_number, "\"answers\" is not an array");
    for (size_t i = 0; i < answers_it->size(); ++i) {
      const Json& answer = (*answers_it)[i];
      if (!answer.is_string()) {
        return LineError(line_number, absl::StrCat("\"answers\"[", i, "] is not a string"));
      }
      example.answers.push_back(answer.get<std::string>());
      if (example.answers.back().empty()) {
        return LineError(line_number, absl::StrCat("\"answers\"[", i, "] is empty"));
      }
    }
  } else if (answer_it != root.end()) {
    if (!answer_it->is_string()) return LineError(line_number, "\"answer\" is not a string");
    example.answers.push_back(answer_it->get<std::string>());
    if (example.answers.back().empty()) return LineError(line_number, "empty \"answer\"");
  }

  const auto id_it = root.find("id");
  if (id_it == root.end()) {
    example.id = absl::StrCat(line_number);
  } else if (id_it->is_string()) {
    example.id = id_it->get<std::string>();
  } else if (id_it->is_number()) {
    example.id = NumberText(*id_it);
  } else {
    return LineError(line_number, "\"id\" is not a string or number");
  }

  const auto final_it = root.find("final_answer");
  if (final_it != root.end()) {
    if (final_it->is_string()) {
      example.final_answer = final_it->get<std::string>();
    } else if (final_it->is_number()) {
      example.final_answer = NumberText(*final_it);
    } else {
      return LineError(line_number, "\"final_answer\" is not a string or number");
    }
  }

  const auto labels_it = root.find("labels");
  if (labels_it != root.end()) {
    VERDICT_RETURN_IF_ERROR(ParseLabels(*labels_it, line_number, example));
  }

  if (example.answers.empty() && example.labeled_tokens.empty()) {
    return LineError(line_number, "no answers and no labels");
  }
  return example;
}

bool IsBlank(absl::string_view line) {
  for (const char c : line) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Reads a file line by line without ever holding more than max_line_bytes + 1 bytes of a line.
class LineReader {
 public:
  LineReader(std::FILE* file, int64_t max_line_bytes)
      : file_(file), max_line_bytes_(max_line_bytes) {}

  // Reads the next line into `line` (without '\n'). Sets `too_long` if the line was longer than
  // the limit (then `line` holds only its beginning). Returns false at the end of the file.
  bool Next(std::string& line, bool& too_long) {
    line.clear();
    too_long = false;
    bool any = false;
    while (true) {
      if (pos_ == len_) {
        len_ = std::fread(buffer_, 1, sizeof(buffer_), file_);
        pos_ = 0;
        if (len_ == 0) return any;
      }
      any = true;
      const char* start = buffer_ + pos_;
      const void* newline = std::memchr(start, '\n', len_ - pos_);
      const size_t n = newline != nullptr
                           ? static_cast<size_t>(static_cast<const char*>(newline) - start)
                           : len_ - pos_;
      const int64_t room = max_line_bytes_ + 1 - static_cast<int64_t>(line.size());
      if (room > 0) line.append(start, std::min<size_t>(n, static_cast<size_t>(room)));
      pos_ += n;
      if (newline != nullptr) {
        ++pos_;  // the '\n'
        break;
      }
    }
    if (!line.empty() && line.back() == '\r' &&
        static_cast<int64_t>(line.size()) <= max_line_bytes_ + 1) {
      line.pop_back();
    }
    too_long = static_cast<int64_t>(line.size()) > max_line_bytes_;
    return true;
  }

 private:
  std::FILE* file_;
  int64_t max_line_bytes_;
  char buffer_[1 << 16];
  size_t pos_ = 0;
  size_t len_ = 0;
};

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

}  // namespace

absl::StatusOr<TaskExample> ParseTaskLine(absl::string_view line, int64_t line_number) {
  const Json root = Json::parse(line.begin(), line.end(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) return LineError(line_number, "not valid JSON");
  try {
    return ParseObject(root, line_number);
  } catch (const Json::exception& e) {
    // Defensive: every access above is type-checked first.
    return LineError(line_number, e.what());
  }
}

absl::StatusOr<TaskFile> ReadTaskFile(const std::string& path, const TaskReadOptions& options) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open task file ", path));
  auto reader = std::make_unique<LineReader>(file.get(), options.max_line_bytes);

  TaskFile result;
  std::string line;
  bool too_long = false;
  int64_t line_number = 0;
  while (reader->Next(line, too_long)) {
    ++line_number;
    if (!too_long && IsBlank(line)) continue;
    absl::StatusOr<TaskExample> example =
        too_long ? absl::StatusOr<TaskExample>(LineError(
                       line_number, absl::StrCat("longer than ", options.max_line_bytes, " bytes")))
                 : ParseTaskLine(line, line_number);
    if (!example.ok()) {
      if (options.strict) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", example.status().message()));
      }
      ++result.skipped_lines;
      if (result.skip_reasons.size() < kMaxSkipReasons) {
        result.skip_reasons.emplace_back(example.status().message());
      }
      continue;
    }
    result.examples.push_back(*std::move(example));
    if (options.max_examples > 0 &&
        static_cast<int64_t>(result.examples.size()) >= options.max_examples) {
      break;
    }
  }
  if (std::ferror(file.get())) {
    return absl::NotFoundError(absl::StrCat("error reading task file ", path));
  }
  if (result.examples.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no usable example in task file ", path, " (", result.skipped_lines, " malformed lines",
        result.skip_reasons.empty() ? "" : "; first: ",
        result.skip_reasons.empty() ? "" : result.skip_reasons.front(), ")"));
  }
  return result;
}

}  // namespace verdict::judge
