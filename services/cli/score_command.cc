// SPDX-License-Identifier: Apache-2.0
// verdict score: prompt log-probabilities. One forward pass over the whole text; for each position
// i > 0 the log-probability of token i given tokens [0, i) and the top-N alternatives, as JSON.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>

#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "engine/ready_model.h"
#include "services/cli/cli_util.h"
#include "services/cli/commands.h"
#include "services/cli/npy.h"

namespace verdict::cli {
namespace {

struct ScoreFlags {
  std::string model;
  std::string text;
  std::string token_ids;
  int top_logprobs = 0;
  std::string dump_logits;
  bool add_bos = true;
  PlacementFlags placement;
};

// log_softmax of one row, in double for accuracy.
std::vector<double> LogSoftmax(const float* logits, int64_t n) {
  const double max_logit = *std::max_element(logits, logits + n);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += std::exp(logits[i] - max_logit);
  const double log_total = std::log(total) + max_logit;
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - log_total;
  return out;
}

nlohmann::json TokenJson(const engine::Tokenizer* tokenizer, int32_t id, double logprob) {
  nlohmann::json j = {{"id", id}, {"logprob", logprob}};
  if (tokenizer != nullptr) {
    auto bytes = tokenizer->TokenBytes(id);
    // Token bytes may be partial UTF-8: dump() below replaces invalid sequences with U+FFFD.
    if (bytes.ok()) j["text"] = *bytes;
  }
  return j;
}

absl::Status RunScore(const ScoreFlags& flags) {
  if (flags.text.empty() == flags.token_ids.empty()) {
    return absl::InvalidArgumentError("give exactly one of --text and --token-ids");
  }
  if (flags.top_logprobs < 0) return absl::InvalidArgumentError("--top-logprobs must be >= 0");
  VERDICT_ASSIGN_OR_RETURN(engine::ReadyModel ready, OpenModel(flags.model, flags.placement));
  const engine::Tokenizer* tokenizer = ready.loaded.tokenizer.get();
  std::vector<int32_t> ids;
  if (!flags.token_ids.empty()) {
    VERDICT_ASSIGN_OR_RETURN(ids, ParseTokenIds(flags.token_ids));
  } else {
    if (tokenizer == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--text needs a tokenizer: ", ready.loaded.tokenizer_error, "; use --token-ids"));
    }
    VERDICT_ASSIGN_OR_RETURN(ids, tokenizer->Encode(flags.text, {flags.add_bos, false}));
  }
  const engine::LlamaConfig& config = ready.model->config();
  VERDICT_ASSIGN_OR_RETURN(auto cache, ready.model->NewKvCache(std::min<int64_t>(
                                           config.max_position_embeddings,
                                           std::max<int64_t>(1, ids.size()))));
  engine::ForwardBatch batch;
  batch.sequences = {{cache.get(), static_cast<int64_t>(ids.size())}};
  batch.token_ids = ids;
  engine::ForwardResult result;
  VERDICT_RETURN_IF_ERROR(ready.model->Forward(batch, &result));

  const int64_t vocab = config.vocab_size;
  if (!flags.dump_logits.empty()) {
    VERDICT_RETURN_IF_ERROR(WriteNpyFloat32(flags.dump_logits, result.logits,
                                            {static_cast<int64_t>(ids.size()), vocab}));
  }
  nlohmann::json out;
  out["model"] = ready.loaded.path;
  out["tokens"] = ids;
  nlohmann::json positions = nlohmann::json::array();
  double total_logprob = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    nlohmann::json entry;
    entry["position"] = i;
    entry["token"] = TokenJson(tokenizer, ids[i], 0.0);
    if (i == 0) {
      entry["token"]["logprob"] = nullptr;  // nothing predicts the first token
    } else {
      const std::vector<double> lp = LogSoftmax(result.logits.data() + (i - 1) * vocab, vocab);
      entry["token"]["logprob"] = lp[ids[i]];
      total_logprob += lp[ids[i]];
      if (flags.top_logprobs > 0) {
        std::vector<int32_t> order(vocab);
        std::iota(order.begin(), order.end(), 0);
        const int64_t k = std::min<int64_t>(flags.top_logprobs, vocab);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [&](int32_t a, int32_t b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
        nlohmann::json top = nlohmann::json::array();
        for (int64_t j = 0; j < k; ++j) top.push_back(TokenJson(tokenizer, order[j], lp[order[j]]));
        entry["top_logprobs"] = top;
      }
    }
    positions.push_back(entry);
  }
  out["positions"] = positions;
  out["sum_logprob"] = total_logprob;
  if (ids.size() > 1) out["perplexity"] = std::exp(-total_logprob / (ids.size() - 1));
  const std::string text = out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  std::printf("%s\n", text.c_str());
  return absl::OkStatus();
}

}  // namespace

void AddScoreCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ScoreFlags>();
  CLI::App* cmd = app.add_subcommand("score", "Log-probabilities of a text under a model (JSON)");
  cmd->add_option("--model", flags->model, "Hugging Face model directory or .gguf file")->required();
  cmd->add_option("--text", flags->text, "Text to score (tokenized with the model's tokenizer)");
  cmd->add_option("--token-ids", flags->token_ids, "Comma-separated token ids to score");
  cmd->add_option("--top-logprobs", flags->top_logprobs, "Alternatives to list per position");
  cmd->add_option("--dump-logits", flags->dump_logits, "Write [positions x vocab] float32 logits (.npy)");
  cmd->add_option("--add-bos", flags->add_bos, "Prepend BOS when tokenizing --text")->capture_default_str();
  AddPlacementFlags(cmd, &flags->placement);
  cmd->callback([flags, exit_code] {
    *exit_code = ExitCode(RunScore(*flags));
  });
}

}  // namespace verdict::cli
