// SPDX-License-Identifier: Apache-2.0
#include "services/cli/decode_bench.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace verdict::cli {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

absl::StatusOr<DecodeBenchResult> RunDecodeBench(engine::ModelSlice& model,
                                                 const DecodeBenchOptions& options) {
  if (options.prompt_tokens < 1 || options.decode_tokens < 1 || options.repeats < 1 ||
      options.batches.empty()) {
    return absl::InvalidArgumentError("prompt tokens, decode tokens, repeats and batches must be >= 1");
  }
  const engine::LlamaConfig& config = model.config();
  const int64_t max_k = options.ks.empty() ? 0 : *std::max_element(options.ks.begin(), options.ks.end());
  const int64_t capacity = options.prompt_tokens + options.decode_tokens + max_k + 2;
  if (capacity > config.max_position_embeddings) {
    return absl::InvalidArgumentError("the benchmark does not fit the model's context length");
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  if (!options.full_outputs && !model.has_hidden_probe()) {
    // A judge-like probe: the verification passes below compute its dot products too.
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> probe(config.hidden_size);
    for (float& v : probe) v = normal(rng);
    VERDICT_RETURN_IF_ERROR(model.SetHiddenProbe(probe));
  }
  std::vector<int32_t> summary_tokens;
  std::vector<engine::math::SampledRowRequest> sampled_requests;
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  engine::ForwardResult result;
  // One forward of `tokens` new tokens for each cache; returns its wall time in seconds.
  auto forward = [&](const std::vector<std::unique_ptr<engine::KvCache>>& caches, int64_t tokens,
                     engine::ForwardBatch::Outputs outputs) -> absl::StatusOr<double> {
    engine::ForwardBatch batch;
    std::vector<int32_t> ids;
    for (const auto& c : caches) {
      batch.sequences.push_back({c.get(), tokens});
      for (int64_t i = 0; i < tokens; ++i) ids.push_back(token(rng));
    }
    batch.token_ids = ids;
    batch.outputs = outputs;
    if (!options.full_outputs && outputs == engine::ForwardBatch::Outputs::kAll) {
      // Each row's summary reports the next token's logit, as verification asks for.
      summary_tokens.assign(ids.begin() + 1, ids.end());
      summary_tokens.push_back(-1);
      batch.contents.logits = false;
      batch.contents.hidden = false;
      batch.contents.summaries = true;
      batch.contents.summary_tokens = summary_tokens;
      batch.contents.probe = true;
      if (!options.sampling.greedy()) {
        sampled_requests.clear();
        for (int32_t t : summary_tokens) {
          engine::math::SampledRowRequest r = engine::SampledRowRequestFor(options.sampling);
          r.token = t;
          r.sample_uniform = uniform(rng);
          sampled_requests.push_back(r);
        }
        batch.contents.sampled_requests = sampled_requests;
      }
    }
    const auto start = Clock::now();
    VERDICT_RETURN_IF_ERROR(model.Forward(batch, &result));
    return std::chrono::duration<double>(Clock::now() - start).count();
  };

  DecodeBenchResult out;
  for (int64_t batch : options.batches) {
    if (batch < 1) return absl::InvalidArgumentError("batch sizes must be >= 1");
    std::vector<std::unique_ptr<engine::KvCache>> caches;
    for (int64_t b = 0; b < batch; ++b) {
      VERDICT_ASSIGN_OR_RETURN(auto cache, model.NewKvCache(capacity));
      caches.push_back(std::move(cache));
    }
    if (batch == options.batches.front()) {
      // Prefill of one sequence (best of repeats after a warm-up).
      std::vector<std::unique_ptr<engine::KvCache>> one;
      one.push_back(std::move(caches[0]));
      std::vector<double> times;
      for (int r = 0; r <= options.repeats; ++r) {
        VERDICT_RETURN_IF_ERROR(one[0]->Truncate(0));
        VERDICT_ASSIGN_OR_RETURN(double s, forward(one, options.prompt_tokens,
                                                   engine::ForwardBatch::Outputs::kLastOfEachSequence));
        if (r > 0) times.push_back(s);
      }
      out.prefill_tok_s = options.prompt_tokens / *std::min_element(times.begin(), times.end());
      VERDICT_RETURN_IF_ERROR(one[0]->Truncate(0));
      caches[0] = std::move(one[0]);
    }
    VERDICT_RETURN_IF_ERROR(
        forward(caches, options.prompt_tokens, engine::ForwardBatch::Outputs::kLastOfEachSequence).status());
    VERDICT_RETURN_IF_ERROR(forward(caches, 1, engine::ForwardBatch::Outputs::kAll).status());  // warm-up
    std::vector<double> times;
    for (int64_t i = 0; i < options.decode_tokens; ++i) {
      VERDICT_ASSIGN_OR_RETURN(double s, forward(caches, 1, engine::ForwardBatch::Outputs::kAll));
      times.push_back(s);
    }
    const double step = Median(times);
    out.decode.push_back({batch, step * 1e3, batch / step});
    if (batch == 1) {
      std::vector<std::unique_ptr<engine::KvCache>> one;
      one.push_back(std::move(caches[0]));
      const int64_t base = one[0]->length();
      for (int64_t k : options.ks) {
        VERDICT_RETURN_IF_ERROR(forward(one, k + 1, engine::ForwardBatch::Outputs::kAll).status());
        VERDICT_RETURN_IF_ERROR(one[0]->Truncate(base));
        std::vector<double> verify_times;
        for (int r = 0; r < options.repeats; ++r) {
          VERDICT_ASSIGN_OR_RETURN(double s, forward(one, k + 1, engine::ForwardBatch::Outputs::kAll));
          VERDICT_RETURN_IF_ERROR(one[0]->Truncate(base));
          verify_times.push_back(s);
        }
        const double t = Median(verify_times);
        out.verify.push_back({k, t * 1e3, t / step});
      }
    }
  }
  return out;
}

}  // namespace verdict::cli
