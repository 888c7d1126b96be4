// SPDX-License-Identifier: Apache-2.0
#include "judge/judge_data.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "judge/judge_head.h"
#include "judge/speculative_session.h"
#include "judge/tasks/answer_checker.h"
#include "judge/tasks/prefix_labeler.h"
#include "judge/verification.h"

namespace verdict::judge {
namespace {

// Runs `tokens` on top of `cache` and returns all rows' logits and hidden states.
absl::Status ForwardAll(engine::ModelSlice& model, engine::KvCache* cache, absl::Span<const int32_t> tokens,
                        engine::ForwardResult* result) {
  engine::ForwardBatch batch;
  batch.sequences = {{cache, static_cast<int64_t>(tokens.size())}};
  batch.token_ids = tokens;
  batch.outputs = engine::ForwardBatch::Outputs::kAll;
  return model.Forward(batch, result);
}

class ExampleCollector {
 public:
  ExampleCollector(engine::ModelSlice& target, engine::ModelSlice& draft, const engine::Tokenizer& tokenizer,
                   const JudgeDataOptions& options, JudgeDatasetWriter* writer, JudgeDataStats* stats)
      : target_(target), draft_(draft), tokenizer_(tokenizer), options_(options), writer_(writer), stats_(stats) {}

  absl::Status Run(const TaskExample& example, int32_t group) {
    group_ = group;
    example_id_ = example.id;
    VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                             tokenizer_.Encode(example.prompt, {options_.add_bos, /*parse_special=*/false}));
    if (prompt.empty()) return absl::InvalidArgumentError(absl::StrCat("example ", example.id, ": empty prompt"));
    const int64_t context = std::min(target_.config().max_position_embeddings, draft_.config().max_position_embeddings);
    if (static_cast<int64_t>(prompt.size()) >= context) {
      return absl::InvalidArgumentError(absl::StrCat("example ", example.id, ": prompt of ", prompt.size(),
                                                     " tokens does not fit the context of ", context));
    }
    if (!example.labeled_tokens.empty()) return RunLabeled(example, prompt);
    return RunDrafted(example, prompt, context);
  }

 private:
  // Records draft token `d` whose target row (predicting it) is `logits_row`, hidden state
  // `hidden_row` (after reading it), and draft log-probability `draft_logprob`.
  absl::Status Record(int32_t d, absl::Span<const float> logits_row, absl::Span<const float> hidden_row,
                      float draft_logprob, bool label, int32_t position) {
    const TokenStats stats = ComputeTokenStats(logits_row, d);
    const float extras[3] = {stats.logprob, stats.entropy, draft_logprob};
    absl::StatusOr<std::string> text = tokenizer_.TokenBytes(d);
    RowInfo info;
    info.group = group_;
    info.example_id = example_id_;
    info.position = position;
    info.token_id = d;
    info.token_text = text.ok() ? *text : "";
    VERDICT_RETURN_IF_ERROR(writer_->Add(hidden_row, extras, label, info));
    ++stats_->rows;
    const bool target_agrees = engine::Argmax(logits_row) == d;
    if (label) ++stats_->positives;
    if (label && !target_agrees) ++stats_->correct_but_not_target;
    if (!label && target_agrees) ++stats_->wrong_but_target;
    return absl::OkStatus();
  }

  // Labels given in the task file: one target pass and one draft pass over prompt + tokens.
  absl::Status RunLabeled(const TaskExample& example, const std::vector<int32_t>& prompt) {
    const int64_t vocab = target_.config().vocab_size;
    for (int32_t t : example.labeled_tokens) {
      if (t < 0 || t >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat("example ", example.id, ": labeled token ", t,
                                                       " is outside the vocabulary of ", vocab));
      }
    }
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), example.labeled_tokens.begin(), example.labeled_tokens.end());
    const int64_t n = static_cast<int64_t>(all.size());
    VERDICT_ASSIGN_OR_RETURN(auto target_cache, target_.NewKvCache(n));
    VERDICT_ASSIGN_OR_RETURN(auto draft_cache, draft_.NewKvCache(n));
    engine::ForwardResult target_out, draft_out;
    VERDICT_RETURN_IF_ERROR(ForwardAll(target_, target_cache.get(), all, &target_out));
    VERDICT_RETURN_IF_ERROR(ForwardAll(draft_, draft_cache.get(), all, &draft_out));
    const int64_t hidden = target_.config().hidden_size;
    const int64_t p = static_cast<int64_t>(prompt.size());
    for (size_t i = 0; i < example.labeled_tokens.size(); ++i) {
      const int64_t row = p + static_cast<int64_t>(i);  // the token's own position
      const int32_t d = example.labeled_tokens[i];
      auto logits_row = absl::MakeConstSpan(target_out.logits).subspan((row - 1) * vocab, vocab);
      auto draft_row = absl::MakeConstSpan(draft_out.logits).subspan((row - 1) * vocab, vocab);
      VERDICT_RETURN_IF_ERROR(Record(d, logits_row, absl::MakeConstSpan(target_out.hidden).subspan(row * hidden, hidden),
                                     ComputeTokenStats(draft_row, d).logprob, example.token_labels[i] != 0,
                                     static_cast<int32_t>(i)));
    }
    return absl::OkStatus();
  }

  // The next token along a correct path after `text`: the target's choice when it is correct,
  // otherwise the first token of the rest of a reference answer that `text` is a prefix of (or a
  // stop token when `text` is complete). -1 when no answer continues `text`.
  absl::StatusOr<int32_t> CorrectNextToken(const PrefixLabeler& labeler, const std::string& text,
                                           int32_t target_choice) {
    VERDICT_ASSIGN_OR_RETURN(std::vector<uint8_t> ok, labeler.LabelTokenIds(tokenizer_, text, {target_choice}));
    if (ok[0]) return target_choice;
    if (labeler.IsCompleteAnswer(text)) {
      const std::vector<int32_t> eos = tokenizer_.eos_ids();
      return eos.empty() ? -1 : eos.front();
    }
    for (const std::string& answer : labeler.answers()) {
      if (answer.size() <= text.size() || answer.compare(0, text.size(), text) != 0) continue;
      VERDICT_ASSIGN_OR_RETURN(std::vector<int32_t> rest,
                               tokenizer_.Encode(absl::string_view(answer).substr(text.size()), {false, false}));
      if (!rest.empty()) return rest.front();
    }
    return -1;
  }

  // Does the target, continuing greedily after the first `length` positions of `cache` (whose next
  // token it predicts with `next_logits`), finish `answer_so_far` with the right final answer?
  absl::StatusOr<bool> RolloutCorrect(const TaskExample& example, const engine::KvCache& cache, int64_t length,
                                      absl::Span<const float> next_logits, const std::string& answer_so_far) {
    ++stats_->rollouts;
    if (rollout_cache_ == nullptr || rollout_cache_->capacity() < cache.capacity()) {
      VERDICT_ASSIGN_OR_RETURN(rollout_cache_, target_.NewKvCache(cache.capacity()));
    }
    VERDICT_RETURN_IF_ERROR(rollout_cache_->CopyPrefixFrom(cache, length));
    const std::vector<int32_t> eos = tokenizer_.eos_ids();
    std::string text = answer_so_far;
    int32_t token = engine::Argmax(next_logits);
    engine::ForwardResult out;
    for (int64_t step = 0; step < options_.max_new_tokens; ++step) {
      if (std::find(eos.begin(), eos.end(), token) != eos.end()) break;
      VERDICT_ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(token));
      text += bytes;
      if (rollout_cache_->length() >= rollout_cache_->capacity()) break;
      engine::ForwardBatch batch;
      batch.sequences = {{rollout_cache_.get(), 1}};
      batch.token_ids = absl::MakeConstSpan(&token, 1);
      batch.outputs = engine::ForwardBatch::Outputs::kLastOfEachSequence;
      VERDICT_RETURN_IF_ERROR(target_.Forward(batch, &out));
      token = engine::Argmax(absl::MakeConstSpan(out.logits).subspan(0, target_.config().vocab_size));
    }
    return CheckAnswer(example, text, CheckMode::kFinalAnswer);
  }

  absl::Status RunDrafted(const TaskExample& example, const std::vector<int32_t>& prompt, int64_t context) {
    const PrefixLabeler labeler(example.answers);
    const int64_t vocab = target_.config().vocab_size;
    const int64_t hidden = target_.config().hidden_size;
    const int64_t capacity =
        std::min<int64_t>(context, static_cast<int64_t>(prompt.size()) + options_.max_new_tokens + options_.k + 1);
    VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<DraftSession> drafter,
                             DraftSession::Create(&draft_, options_.draft_sampling, capacity));
    VERDICT_RETURN_IF_ERROR(drafter->Start(prompt));
    VERDICT_ASSIGN_OR_RETURN(auto target_cache, target_.NewKvCache(capacity));
    engine::ForwardResult out;
    if (prompt.size() > 1) {
      VERDICT_RETURN_IF_ERROR(ForwardAll(target_, target_cache.get(),
                                         absl::MakeConstSpan(prompt).subspan(0, prompt.size() - 1), &out));
    }
    std::vector<int32_t> committed = prompt;
    std::string text;  // the answer so far
    int64_t answer_tokens = 0;
    std::vector<int32_t> block;
    const std::vector<int32_t> eos = tokenizer_.eos_ids();
    while (answer_tokens < options_.max_new_tokens) {
      const int64_t n = static_cast<int64_t>(committed.size());
      const int64_t k = std::min({options_.k, options_.max_new_tokens - answer_tokens, capacity - n});
      if (k < 1) break;
      VERDICT_ASSIGN_OR_RETURN(spec::DraftBlock proposal, drafter->Propose(k));
      ++stats_->draft_blocks;
      VERDICT_ASSIGN_OR_RETURN(std::vector<uint8_t> labels,
                               labeler.LabelTokenIds(tokenizer_, text, proposal.tokens));
      block.assign(1, committed.back());
      block.insert(block.end(), proposal.tokens.begin(), proposal.tokens.end());
      VERDICT_RETURN_IF_ERROR(ForwardAll(target_, target_cache.get(), block, &out));
      if (options_.labels == LabelMode::kRollout) {
        // Relabel prefix-correct tokens from which the target cannot finish correctly. Rows before
        // the first wrong token only (later ones are wrong already); a stop token needs no rollout.
        std::string so_far = text;
        for (int64_t i = 0; i < k && labels[i]; ++i) {
          const int32_t d = proposal.tokens[i];
          if (std::find(eos.begin(), eos.end(), d) != eos.end()) break;
          VERDICT_ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(d));
          so_far += bytes;
          // The cache holds x[0..n-1) and the block [x_{n-1}, d_0..d_{k-1}]: d_i sits at position
          // n + i, so the positions up to it are the first n + i + 1; row i + 1 predicts what follows.
          VERDICT_ASSIGN_OR_RETURN(bool finishes,
                                   RolloutCorrect(example, *target_cache, n + i + 1,
                                                  absl::MakeConstSpan(out.logits).subspan((i + 1) * vocab, vocab),
                                                  so_far));
          if (!finishes) {
            labels[i] = 0;
            ++stats_->rollout_dead_ends;
            break;
          }
        }
      }
      int64_t accepted = 0;
      bool complete = false;
      for (int64_t i = 0; i < k; ++i) {
        const int32_t d = proposal.tokens[i];
        VERDICT_RETURN_IF_ERROR(Record(d, absl::MakeConstSpan(out.logits).subspan(i * vocab, vocab),
                                       absl::MakeConstSpan(out.hidden).subspan((i + 1) * hidden, hidden),
                                       proposal.logprobs[i], labels[i] != 0,
                                       static_cast<int32_t>(answer_tokens + i)));
        if (!labels[i]) break;
        ++accepted;
        if (std::find(eos.begin(), eos.end(), d) != eos.end()) {
          complete = true;  // a correct stop token: the answer is finished
          break;
        }
      }
      for (int64_t i = 0; i < accepted; ++i) {
        VERDICT_ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(proposal.tokens[i]));
        if (std::find(eos.begin(), eos.end(), proposal.tokens[i]) == eos.end()) text += bytes;
      }
      committed.insert(committed.end(), proposal.tokens.begin(), proposal.tokens.begin() + accepted);
      answer_tokens += accepted;
      if (complete) {
        ++stats_->completed_answers;
        return absl::OkStatus();
      }
      const int32_t target_choice =
          engine::Argmax(absl::MakeConstSpan(out.logits).subspan(accepted * vocab, vocab));
      VERDICT_ASSIGN_OR_RETURN(int32_t next, CorrectNextToken(labeler, text, target_choice));
      if (next < 0) return absl::OkStatus();  // no reference continues here (e.g. answers exhausted)
      VERDICT_RETURN_IF_ERROR(target_cache->Truncate(n + accepted));
      VERDICT_RETURN_IF_ERROR(drafter->Commit(accepted, next));
      committed.push_back(next);
      ++answer_tokens;
      if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
        ++stats_->completed_answers;
        return absl::OkStatus();
      }
      VERDICT_ASSIGN_OR_RETURN(std::string bytes, tokenizer_.TokenBytes(next));
      text += bytes;
    }
    return absl::OkStatus();
  }

  engine::ModelSlice& target_;
  engine::ModelSlice& draft_;
  const engine::Tokenizer& tokenizer_;
  const JudgeDataOptions& options_;
  JudgeDatasetWriter* writer_;
  JudgeDataStats* stats_;
  int32_t group_ = 0;
  std::string example_id_;
  std::unique_ptr<engine::KvCache> rollout_cache_;
};

}  // namespace

std::vector<std::string> JudgeDataExtraFeatureNames() {
  return {std::string(JudgeFeatureName(JudgeFeature::kTargetLogprob)),
          std::string(JudgeFeatureName(JudgeFeature::kTargetEntropy)),
          std::string(JudgeFeatureName(JudgeFeature::kDraftLogprob))};
}

absl::StatusOr<JudgeDataStats> CollectJudgeData(engine::ModelSlice& target, engine::ModelSlice& draft,
                                                const engine::Tokenizer& tokenizer,
                                                absl::Span<const TaskExample> examples,
                                                const JudgeDataOptions& options,
                                                JudgeDatasetWriter* writer) {
  VERDICT_RETURN_IF_ERROR(CheckCompatibleModels(target.config(), draft.config()));
  if (options.k < 1 || options.k > spec::kMaxDraftTokens) {
    return absl::InvalidArgumentError(absl::StrCat("k must be in [1, ", spec::kMaxDraftTokens, "], got ", options.k));
  }
  if (options.max_new_tokens < 1) return absl::InvalidArgumentError("max_new_tokens must be >= 1");
  JudgeDataStats stats;
  ExampleCollector collector(target, draft, tokenizer, options, writer, &stats);
  for (size_t i = 0; i < examples.size(); ++i) {
    VERDICT_RETURN_IF_ERROR(collector.Run(examples[i], static_cast<int32_t>(i)));
    ++stats.examples;
    if (options.progress) options.progress(static_cast<int64_t>(i + 1), static_cast<int64_t>(examples.size()));
  }
  return stats;
}

}  // namespace verdict::judge
