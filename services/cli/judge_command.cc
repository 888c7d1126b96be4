// SPDX-License-Identifier: Apache-2.0
// verdict judge {data,train,eval}: build a judge head for a draft/target pair and measure it.
#include "services/cli/commands.h"

namespace verdict::cli {

void AddJudgeCommand(CLI::App& app, int* exit_code) {
  CLI::App* judge = app.add_subcommand(
      "judge", "Judge heads: collect training data, train a head, evaluate decoding policies");
  judge->require_subcommand(1);
  AddJudgeDataCommand(*judge, exit_code);
  AddJudgeTrainCommand(*judge, exit_code);
  AddJudgeEvalCommand(*judge, exit_code);
}

}  // namespace verdict::cli
