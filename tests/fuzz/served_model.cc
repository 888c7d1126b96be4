// SPDX-License-Identifier: Apache-2.0
#include "tests/fuzz/served_model.h"

#include <algorithm>
#include <string>

#include "engine/model_loader.h"
#include "spec/sampling_params.h"
#include "spec/speculation_params.h"
#include "tests/fuzz/fuzz_util.h"

namespace verdict::fuzz {

const ServedServices& Served() {
  static const ServedServices* served = [] {
    auto* s = new ServedServices;
    const std::string path = std::string(VERDICT_SOURCE_DIR) + "/assets/models/arith-target";
    absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer = engine::LoadTokenizerAt(path);
    FUZZ_CHECK(tokenizer.ok(), tokenizer.status().ToString());
    s->tokenizer = *std::move(tokenizer);
    absl::StatusOr<engine::ChatPromptFormat> chat = engine::LoadChatPromptFormat(path, *s->tokenizer, "");
    FUZZ_CHECK(chat.ok(), chat.status().ToString());
    services::ServedModel m;
    m.name = "arith-target";
    m.tokenizer = s->tokenizer.get();
    m.chat_format = std::make_shared<const engine::ChatPromptFormat>(*std::move(chat));
    m.vocab_size = s->tokenizer->vocab_size();
    m.context_length = 64;
    m.stop_token_ids = {0};
    m.draft_name = "arith-draft";
    m.default_max_tokens = 16;
    s->exact_only = std::make_unique<services::GenerationService>(nullptr, m);
    m.has_judge = true;
    m.allowed_policies = {spec::Policy::kJudge, spec::Policy::kJudgeShadow, spec::Policy::kLossyProb,
                          spec::Policy::kLossyTypical};
    s->everything = std::make_unique<services::GenerationService>(nullptr, m);
    return s;
  }();
  return *served;
}

void CheckPrepared(const coordinator::GenerationRequest& p, const services::ServedModel& m) {
  FUZZ_CHECK(!p.prompt.empty());
  for (int32_t id : p.prompt) FUZZ_CHECK(id >= 0 && id < m.vocab_size, "prompt token ", id);
  FUZZ_CHECK(static_cast<int64_t>(p.prompt.size()) < m.context_length);
  FUZZ_CHECK(p.max_new_tokens >= 1, "max_new_tokens ", p.max_new_tokens);
  FUZZ_CHECK(spec::ValidateSamplingParams(p.sampling).ok());
  FUZZ_CHECK(spec::ValidateSpeculationParams(p.speculation).ok());
  FUZZ_CHECK(p.speculation.window.k >= 1 && p.speculation.window.k <= spec::kMaxDraftTokens, "window ",
             p.speculation.window.k);
  for (int32_t id : p.stop_token_ids) FUZZ_CHECK(id >= 0 && id < m.vocab_size, "stop token ", id);
  const bool allowed = p.speculation.policy == spec::Policy::kExact ||
                       std::find(m.allowed_policies.begin(), m.allowed_policies.end(), p.speculation.policy) !=
                           m.allowed_policies.end();
  FUZZ_CHECK(allowed, "a policy the server does not allow");
  if (!p.sampling.greedy()) FUZZ_CHECK(p.sampling.seed != 0);
}

}  // namespace verdict::fuzz
