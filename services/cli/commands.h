// SPDX-License-Identifier: Apache-2.0
// The subcommands of the `verdict` command line. Each Add*Command registers its options on `app`
// and, when the subcommand is chosen, runs it and stores the process exit code in *exit_code.
#ifndef VERDICT_SERVICES_CLI_COMMANDS_H_
#define VERDICT_SERVICES_CLI_COMMANDS_H_

#include "CLI/CLI.hpp"

namespace verdict::cli {

void AddGenerateCommand(CLI::App& app, int* exit_code);
void AddScoreCommand(CLI::App& app, int* exit_code);
void AddInspectCommand(CLI::App& app, int* exit_code);
void AddBenchCommand(CLI::App& app, int* exit_code);
void AddTokenizeCommand(CLI::App& app, int* exit_code);
void AddJudgeCommand(CLI::App& app, int* exit_code);
void AddClientCommand(CLI::App& app, int* exit_code);
void AddUpCommand(CLI::App& app, int* exit_code);
void AddSelftestCommand(CLI::App& app, int* exit_code);
void AddSecurityCommand(CLI::App& app, int* exit_code);
void AddConfigCommand(CLI::App& app, int* exit_code);

// The subcommands of `verdict judge` (registered on the `judge` subcommand).
void AddJudgeDataCommand(CLI::App& judge, int* exit_code);
void AddJudgeTrainCommand(CLI::App& judge, int* exit_code);
void AddJudgeEvalCommand(CLI::App& judge, int* exit_code);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_COMMANDS_H_
