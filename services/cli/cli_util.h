// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the `verdict` subcommands: reporting errors, parsing id lists (models are
// opened with engine::OpenModel). Single-threaded (the CLI's main thread).
#ifndef VERDICT_SERVICES_CLI_CLI_UTIL_H_
#define VERDICT_SERVICES_CLI_CLI_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace verdict::cli {

// Prints "verdict: <message>" on one line to stderr and returns the process exit code (1).
int ReportError(const absl::Status& status);

// 0 for OK, otherwise ReportError(status): the exit code of a subcommand.
inline int ExitCode(const absl::Status& status) { return status.ok() ? 0 : ReportError(status); }

// "1,2, 3" -> {1, 2, 3}. Errors: kInvalidArgument naming the bad entry.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_CLI_UTIL_H_
