// SPDX-License-Identifier: Apache-2.0
// verdict judge data (being written in this session; replaced before it ends).
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"

namespace verdict::cli {

void AddJudgeDataCommand(CLI::App& judge, int* exit_code) {
  CLI::App* cmd = judge.add_subcommand("data", "not available yet");
  cmd->callback([exit_code] { *exit_code = ExitCode(absl::UnimplementedError("judge data")); });
}

}  // namespace verdict::cli
