// SPDX-License-Identifier: Apache-2.0
// Judge training data: for each task example, the draft proposes answers block by block, every
// proposed token is labeled (correct iff the answer text up to and including it is still a prefix of a
// reference answer, or a label given in the task file), and the target's features for that token
// are recorded: its final hidden state after the final norm at the token's position (the judge's
// input, exactly as at inference), its log-probability and entropy at the position predicting the
// token, and the draft's log-probability.
//
// Which tokens are recorded mirrors inference: the judge only ever sees a draft token whose
// predecessors in the block were all accepted, so within a block tokens are recorded up to and
// including the first wrong one. The answer then continues along a correct path (the accepted
// tokens, then the target's own token if it is correct, otherwise the next token of a matching
// reference answer), so later blocks start from correct text as accepted runs do.
// Not thread-safe; one call at a time per pair of models.
#ifndef VERDICT_JUDGE_JUDGE_DATA_H_
#define VERDICT_JUDGE_JUDGE_DATA_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer/tokenizer.h"
#include "judge/dataset/judge_dataset.h"
#include "judge/tasks/task_file.h"

namespace verdict::judge {

// The extra features every dataset stores, in this order (see JudgeFeature).
std::vector<std::string> JudgeDataExtraFeatureNames();

// How drafted tokens are labeled:
//   kPrefix:  correct iff the answer text up to and including the token is a prefix of a reference
//             answer (exact, cheap);
//   kRollout: kPrefix AND the target, continuing greedily from just after the token, ends with the
//             correct final answer (CheckMode::kFinalAnswer): also marks as wrong the correct-looking
//             tokens from which the target cannot finish (dead ends prefix labels miss). Costs one
//             greedy target rollout per prefix-correct token.
enum class LabelMode { kPrefix, kRollout };

struct JudgeDataOptions {
  int64_t k = 16;                  // draft tokens per block
  LabelMode labels = LabelMode::kPrefix;
  int64_t max_new_tokens = 128;    // answer tokens per example
  engine::SamplingParams draft_sampling;  // greedy by default
  bool add_bos = true;
  // Called after each example (done, total).
  std::function<void(int64_t done, int64_t total)> progress;
};

struct JudgeDataStats {
  int64_t examples = 0;
  int64_t rows = 0;
  int64_t positives = 0;
  // Correct draft tokens the target would not have chosen (greedy): what the judge is for.
  int64_t correct_but_not_target = 0;
  // Wrong draft tokens the target's greedy choice agrees with (the target itself errs there).
  int64_t wrong_but_target = 0;
  int64_t draft_blocks = 0;
  int64_t completed_answers = 0;  // examples that reached a complete reference answer
  int64_t rollouts = 0;            // kRollout: greedy target rollouts run
  int64_t rollout_dead_ends = 0;   // kRollout: prefix-correct tokens relabeled wrong
};

// Runs every example and adds its rows to `writer` (the caller Finish()es it). `target` and
// `draft` are whole models sharing `tokenizer`'s vocabulary. Errors: kInvalidArgument for an
// example whose prompt does not fit the context or whose labeled tokens are out of range; those of
// the models and the writer.
absl::StatusOr<JudgeDataStats> CollectJudgeData(engine::ModelSlice& target, engine::ModelSlice& draft,
                                                const engine::Tokenizer& tokenizer,
                                                absl::Span<const TaskExample> examples,
                                                const JudgeDataOptions& options,
                                                JudgeDatasetWriter* writer);

}  // namespace verdict::judge

#endif  // VERDICT_JUDGE_JUDGE_DATA_H_
