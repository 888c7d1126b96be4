// SPDX-License-Identifier: Apache-2.0
// Comparisons of a candidate backend (the CUDA backend) with the reference CPU backend: every op on
// fresh random inputs, then whole models. Outputs are poisoned (NaN) before each op so an element
// the candidate never writes fails the check. Used by the GPU tests (cuda_backend_test) and by
// `verdict selftest --gpu`; plain C++, so the CPU suite also runs it CPU-vs-CPU.
//
// Error measure of one comparison: max |candidate - reference| / max |reference| over the output
// (a relative error at the scale of the output, robust to elements near zero).
#ifndef VERDICT_ENGINE_TESTING_BACKEND_CHECKS_H_
#define VERDICT_ENGINE_TESTING_BACKEND_CHECKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/io/weight_source.h"
#include "engine/model_config.h"
#include "engine/tensor_parallel.h"

namespace verdict::engine {

struct CheckResult {
  std::string name;
  double relative_error = 0;  // see the file comment
  double tolerance = 0;
  bool passed = false;
  std::string detail;  // what failed, or extra figures (argmax agreement, ...)
};

struct CheckOptions {
  uint64_t seed = 1;
  // Largest accepted relative error: ~1e-2 for bf16 weights (products of bf16-rounded operands),
  // ~1e-4 for an f32 candidate (only summation order differs).
  double tolerance = 1e-2;
  // Greedy generation: a different token is accepted only where the reference's top two logits
  // are closer than this (a near-tie the candidate's rounding may flip); comparison stops there.
  float greedy_tie_margin = 0.05f;
  int64_t greedy_tokens = 24;
  // CheckModel's prompt lengths: at least this many tokens each (0: 5, 33 and 70, a ragged mix).
  int64_t prefill_min_tokens = 0;
};

// Every backend op (matrix products for each weight dtype and skinny/square shapes, accumulate and
// strided outputs; embedding; RMSNorm; RoPE in both pair layouts with llama3 scaling; SwiGLU; adds;
// row gathers; attention over ragged prefill/decode/verification batches with GQA and multi-chunk
// contexts; KV forks).
std::vector<CheckResult> CheckBackendOps(Backend& reference, Backend& candidate,
                                         const CheckOptions& options);

// The attention cases of CheckBackendOps alone (e.g. for a candidate with another attention path).
std::vector<CheckResult> CheckAttentionOps(Backend& reference, Backend& candidate,
                                           const CheckOptions& options);

// A whole model on both backends: logits and final hidden states of a ragged batch through prefill,
// decode, a verification block and a rollback; then greedy generation token for token.
std::vector<CheckResult> CheckModel(Backend& reference, Backend& candidate,
                                    const LlamaConfig& config, const WeightSource& weights,
                                    const CheckOptions& options);

// The model split over `world_size` ranks (TensorParallelGroup with the given factories;
// `communicators` nullptr: in-process threads) against the unsplit model on `reference`: logits of
// one sequence through prefill and three decode steps, then a verification block returning only
// logits summaries (merged across the ranks' vocabulary shares) and a hidden-state probe, each
// step compared.
// `config` needs head, kv-head and intermediate counts divisible by world_size.
std::vector<CheckResult> CheckTensorParallel(Backend& reference,
                                             TensorParallelGroup::BackendFactory backends,
                                             TensorParallelGroup::CommunicatorFactory communicators,
                                             int world_size, const LlamaConfig& config,
                                             const WeightSource& weights,
                                             const CheckOptions& options);

// A small config (hidden 256, 8 heads, 8 kv heads, intermediate 512, 3 layers, vocab 300) that
// splits over 1, 2, 4 and 8 ranks.
LlamaConfig TensorParallelCheckConfig();

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_TESTING_BACKEND_CHECKS_H_
