// SPDX-License-Identifier: Apache-2.0
// `verdict`: the command line of the Verdict runtime.
#include <cstdio>

#include "CLI/CLI.hpp"
#include "services/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Verdict: judge decoding for Llama-family models"};
  app.require_subcommand(1);
  int exit_code = 0;
  verdict::cli::AddGenerateCommand(app, &exit_code);
  verdict::cli::AddScoreCommand(app, &exit_code);
  verdict::cli::AddInspectCommand(app, &exit_code);
  verdict::cli::AddBenchCommand(app, &exit_code);
  verdict::cli::AddTokenizeCommand(app, &exit_code);
  verdict::cli::AddJudgeCommand(app, &exit_code);
  verdict::cli::AddClientCommand(app, &exit_code);
  verdict::cli::AddUpCommand(app, &exit_code);
  verdict::cli::AddSelftestCommand(app, &exit_code);
  verdict::cli::AddSecurityCommand(app, &exit_code);
  verdict::cli::AddConfigCommand(app, &exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
