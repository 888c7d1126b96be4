// SPDX-License-Identifier: Apache-2.0
#include "engine/generator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::engine {

absl::StatusOr<GenerateResult> Generate(ModelSlice& model, absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options) {
  if (!model.is_first() || !model.is_last()) {
    return absl::InvalidArgumentError("generation needs a whole model, not a slice");
  }
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  VERDICT_RETURN_IF_ERROR(ValidateSamplingParams(options.sampling));
  const int64_t context = model.config().max_position_embeddings;
  if (static_cast<int64_t>(prompt.size()) >= context) {
    return absl::InvalidArgumentError(absl::StrCat("prompt of ", prompt.size(),
                                                   " tokens does not fit the context length ", context));
  }
  const int64_t capacity =
      std::min<int64_t>(context, static_cast<int64_t>(prompt.size()) + std::max<int64_t>(options.max_new_tokens, 1));
  VERDICT_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache, model.NewKvCache(capacity));
  Sampler sampler(options.sampling);
  GenerateResult result;
  ForwardResult forward;

  absl::Time start = absl::Now();
  ForwardBatch batch;
  batch.sequences = {{cache.get(), static_cast<int64_t>(prompt.size())}};
  batch.token_ids = prompt;
  batch.outputs = ForwardBatch::Outputs::kLastOfEachSequence;
  // No logits row leaves the backend: greedy decoding needs only the row's argmax (the same
  // first-maximum rule as Argmax), sampling a token drawn by the backend with the sampler's next
  // uniform (Backend::DecideSampled; the same token Sampler::Sample draws from the row).
  const bool greedy = options.sampling.greedy();
  math::SampledRowRequest request = SampledRowRequestFor(options.sampling);
  batch.contents.logits = false;
  batch.contents.hidden = false;
  batch.contents.summaries = true;  // sampling: to refuse rows with NaN, as Sampler::Sample does
  auto next_draw = [&] {
    if (greedy) return;
    request.sample_uniform = sampler.Uniform();
    batch.contents.sampled_requests = absl::MakeConstSpan(&request, 1);
  };
  next_draw();
  VERDICT_RETURN_IF_ERROR(model.Forward(batch, &forward));
  result.prefill_time = absl::Now() - start;
  start = absl::Now();

  int32_t token = 0;
  while (static_cast<int64_t>(result.tokens.size()) < options.max_new_tokens) {
    if (greedy) {
      token = forward.summaries[0].argmax;
    } else {
      if (std::isnan(forward.summaries[0].log_sum_exp)) {
        return absl::InvalidArgumentError("logits contain NaN");
      }
      token = forward.sampled[0].replacement;
    }
    result.tokens.push_back(token);
    if (options.on_token && !options.on_token(token)) break;
    if (std::find(options.stop_token_ids.begin(), options.stop_token_ids.end(), token) !=
        options.stop_token_ids.end()) {
      result.stopped_by_token = true;
      break;
    }
    if (static_cast<int64_t>(result.tokens.size()) >= options.max_new_tokens) break;
    if (cache->length() >= cache->capacity()) break;  // context full
    batch.sequences = {{cache.get(), 1}};
    batch.token_ids = absl::MakeConstSpan(&token, 1);
    next_draw();
    VERDICT_RETURN_IF_ERROR(model.Forward(batch, &forward));
  }
  result.decode_time = absl::Now() - start;
  return result;
}

}  // namespace verdict::engine
