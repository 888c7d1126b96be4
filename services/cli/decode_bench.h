// SPDX-License-Identifier: Apache-2.0
// Timing of a model's forward passes as serving uses them: prefill, decode steps of B concurrent
// sequences, and verification passes (k draft tokens + the last committed one, rolled back after,
// as speculation does). Shared by `verdict bench` and `verdict selftest`.
#ifndef VERDICT_SERVICES_CLI_DECODE_BENCH_H_
#define VERDICT_SERVICES_CLI_DECODE_BENCH_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"

namespace verdict::cli {

struct DecodeBenchOptions {
  int64_t prompt_tokens = 128;
  int64_t decode_tokens = 32;  // timed decode steps per batch size
  int repeats = 5;
  std::vector<int64_t> batches = {1};
  std::vector<int64_t> ks = {1, 2, 4, 8, 16, 32};
  // What each output row returns, as the runtime asks for it: false: logits summaries and the judge
  // probe computed by the backend (greedy drafts, the last shard's greedy/judge verification);
  // true: every logits row and hidden state copied to the host (sampling, KL, scoring).
  bool full_outputs = false;
  // Temperature > 0 (with summaries): every output row is also sampled on the backend
  // (Backend::DecideSampled with these parameters), as sampled generation and the sampled
  // verification rule (greedy drafts: one-hot proposals) ask for them.
  engine::SamplingParams sampling;
};

struct DecodeBenchResult {
  double prefill_tok_s = 0;  // one sequence of prompt_tokens
  struct DecodeRow {
    int64_t batch;
    double step_ms;  // median
    double tok_s;    // batch / step
  };
  std::vector<DecodeRow> decode;
  struct VerifyRow {
    int64_t k;
    double ms;        // median
    double ratio;     // to a batch-1 decode step
  };
  std::vector<VerifyRow> verify;  // batch 1
};

// Errors: those of ModelSlice::Forward; kInvalidArgument when the run does not fit the context.
absl::StatusOr<DecodeBenchResult> RunDecodeBench(engine::ModelSlice& model,
                                                 const DecodeBenchOptions& options);

}  // namespace verdict::cli

#endif  // VERDICT_SERVICES_CLI_DECODE_BENCH_H_
