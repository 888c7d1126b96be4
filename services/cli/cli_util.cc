// SPDX-License-Identifier: Apache-2.0
#include "services/cli/cli_util.h"

#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/cuda/cuda_backend.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace verdict::cli {

int ReportError(const absl::Status& status) {
  std::string message(status.message());
  message = absl::StrReplaceAll(message, {{"\n", " "}});
  std::fprintf(stderr, "verdict: error: %s (%s)\n", message.c_str(),
               absl::StatusCodeToString(status.code()).c_str());
  return 1;
}

absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("'", part, "' is not a token id"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("no token ids given");
  return ids;
}

}  // namespace verdict::cli
