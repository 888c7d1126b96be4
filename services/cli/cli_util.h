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
#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "engine/ready_model.h"

namespace verdict::cli {

// Where a command runs its models, declared once for every command that opens one: --threads,
// --device and --fp8.
struct PlacementFlags {
  int threads = 0;             // CPU threads (0: all cores)
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N"
  bool fp8 = false;            // quantize the layers' projections to FP8 at load
  std::string kv_cache = "auto";  // KV cache element type (engine::ParseKvCacheType)
};
void AddPlacementFlags(CLI::App* cmd, PlacementFlags* flags);
// engine::OpenModel with the placement's threads, device and FP8 choice.
absl::StatusOr<engine::ReadyModel> OpenModel(const std::string& path, const PlacementFlags& placement);

// Prints "verdict: <message>" on one line to stderr and returns the process exit code (1).
int ReportError(const absl::Status& status);

// 0 for OK, otherwise ReportError(status): the exit code of a subcommand.
inline int ExitCode(const absl::Status& status) { return status.ok() ? 0 : ReportError(status); }

// "1,2, 3" -> {1, 2, 3}. Errors: kInvalidArgument naming the bad entry.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_CLI_UTIL_H_
