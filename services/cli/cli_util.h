// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the `verdict` subcommands: loading a model with a one-line error, reporting
// errors, parsing id lists. Single-threaded (the CLI's main thread).
#ifndef VERDICT_SERVICES_CLI_CLI_UTIL_H_
#define VERDICT_SERVICES_CLI_CLI_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/model_loader.h"

namespace verdict::cli {

// Prints "verdict: <message>" on one line to stderr and returns the process exit code (1).
int ReportError(const absl::Status& status);

// 0 for OK, otherwise ReportError(status): the exit code of a subcommand.
inline int ExitCode(const absl::Status& status) { return status.ok() ? 0 : ReportError(status); }

// A loaded whole model on a backend ("cpu", "cuda" or "cuda:N").
struct ReadyModel {
  engine::LoadedModel loaded;
  std::unique_ptr<engine::Backend> backend;
  std::unique_ptr<engine::ModelSlice> model;
};
// `fp8`: quantize the layers' projections to FP8 at load (see kFp8FlagHelp).
absl::StatusOr<ReadyModel> OpenModel(const std::string& path, int threads,
                                     const std::string& device = "cpu", bool fp8 = false);

// The help text of the commands' --fp8 flag.
inline constexpr const char* kFp8FlagHelp =
    "Quantize the layers' linear projections of a 16/32-bit checkpoint to FP8 E4M3 at load (one "
    "f32 scale per 128 values of a row; embeddings and the LM head keep their precision): half the "
    "weight bytes of bf16. FP8 checkpoints load as FP8 without it";

// "1,2, 3" -> {1, 2, 3}. Errors: kInvalidArgument naming the bad entry.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_CLI_UTIL_H_
