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

void AddPlacementFlags(CLI::App* cmd, PlacementFlags* flags) {
  cmd->add_option("--threads", flags->threads, "CPU threads (0 = all)")->capture_default_str();
  cmd->add_option("--device", flags->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_flag("--fp8", flags->fp8, engine::kFp8FlagHelp);
  cmd->add_option("--kv-cache", flags->kv_cache, engine::kKvCacheFlagHelp)
      ->check(CLI::IsMember(verdict::engine::KvCacheTypeNameList()))
      ->capture_default_str();
}

absl::StatusOr<engine::ReadyModel> OpenModel(const std::string& path, const PlacementFlags& placement) {
  VERDICT_ASSIGN_OR_RETURN(engine::KvCacheType kv_cache, engine::ParseKvCacheType(placement.kv_cache));
  return engine::OpenModel(path, placement.threads, placement.device, placement.fp8, kv_cache);
}

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
