// SPDX-License-Identifier: Apache-2.0
// verdict tokenize: a model's tokenization of a text (ids and pieces as JSON), and the reverse.
#include <cstdio>
#include <memory>
#include <string>

#include "common/status_macros.h"
#include "engine/model_loader.h"
#include "nlohmann/json.hpp"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"

namespace verdict::cli {
namespace {

struct TokenizeFlags {
  std::string model;
  std::string text;
  std::string decode_ids;
  bool add_bos = false;
  bool parse_special = false;
};

absl::Status RunTokenize(const TokenizeFlags& flags) {
  VERDICT_ASSIGN_OR_RETURN(engine::LoadedModel loaded, engine::LoadModel(flags.model));
  if (loaded.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("no tokenizer: ", loaded.tokenizer_error));
  }
  nlohmann::json out;
  if (!flags.decode_ids.empty()) {
    VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseTokenIds(flags.decode_ids));
    VERDICT_ASSIGN_OR_RETURN(std::string text, loaded.tokenizer->Decode(ids, /*skip_special=*/false));
    out["ids"] = ids;
    out["text"] = text;
  } else {
    VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                             loaded.tokenizer->Encode(flags.text, {flags.add_bos, flags.parse_special}));
    out["ids"] = ids;
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) {
      VERDICT_ASSIGN_OR_RETURN(std::string bytes, loaded.tokenizer->TokenBytes(id));
      pieces.push_back(bytes);
    }
    out["pieces"] = pieces;
  }
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return absl::OkStatus();
}

}  // namespace

void AddTokenizeCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<TokenizeFlags>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Tokenize a text (or --decode ids) with a model's tokenizer");
  cmd->add_option("--model", flags->model, "Hugging Face model directory or .gguf file")->required();
  cmd->add_option("--text", flags->text, "Text to tokenize");
  cmd->add_option("--decode", flags->decode_ids, "Comma-separated ids to turn back into text");
  cmd->add_flag("--add-bos", flags->add_bos, "Prepend BOS");
  cmd->add_flag("--parse-special", flags->parse_special, "Recognize special tokens written in the text");
  cmd->callback([flags, exit_code] {
    *exit_code = ExitCode(RunTokenize(*flags));
  });
}

}  // namespace verdict::cli
