// SPDX-License-Identifier: Apache-2.0
// The judge head's cost per draft token next to the LM head's, single thread. The judge reads the
// target's final hidden state h (the LM head's input, which verification computes anyway) and
// adds one dot product of hidden_size plus a few scalars; the LM head turns the same h into
// vocabulary logits, a [vocab, hidden] GEMV. The judge must be negligible next to it.
//
//   JudgeHead/hidden:H          JudgeHead::Probability for H = 4096 (8B), 8192 (70B), 16384 (405B)
//                               with 3 extra features; weights and h are cache-resident, as in a
//                               verification pass that judges k tokens in a row.
//   LmHead/vocab:V/hidden:H     engine::MatMul of one row against a bf16 [V, H] LM head
//                               (pool = nullptr: the calling thread only). DRAM-bound.
//
//   SamplingDistribution/...     engine::SamplingDistribution of one 128256-wide row of logits
//                               (what sampled verification computes per draft token on the host):
//                               plain softmax, top-p 0.9, top-k 50.
//
//   build-jtrain/bench/judge_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/dtype.h"
#include "engine/kernels/matmul.h"
#include "engine/sampler.h"
#include "judge/judge_head.h"

namespace verdict {
namespace {

std::vector<float> RandomVector(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void BM_JudgeHead(benchmark::State& state) {
  const int64_t hidden = state.range(0);
  judge::JudgeHead head;
  head.weight = RandomVector(hidden, 1);
  for (float& w : head.weight) w *= 0.01f;
  head.bias = 0.1f;
  head.extra_features = {judge::JudgeFeature::kTargetLogprob, judge::JudgeFeature::kTargetEntropy,
                         judge::JudgeFeature::kDraftLogprob};
  head.extra_weight = {0.5f, -0.2f, 0.1f};
  const std::vector<float> h = RandomVector(hidden, 2);
  const float extras[] = {-0.7f, 1.9f, -1.2f};
  for (auto _ : state) {
    float p = head.Probability(h, extras);
    benchmark::DoNotOptimize(p);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * hidden * static_cast<double>(state.iterations()) * 1e-9,
                                                 benchmark::Counter::kIsRate);
}
BENCHMARK(BM_JudgeHead)->ArgName("hidden")->Arg(4096)->Arg(8192)->Arg(16384);

void BM_LmHead(benchmark::State& state) {
  const int64_t vocab = state.range(0);
  const int64_t hidden = state.range(1);
  // Values do not change the timing: one random row is tiled over the matrix (fast to build).
  std::vector<uint16_t> weights(static_cast<size_t>(vocab) * hidden);
  const std::vector<float> row = RandomVector(hidden, 3);
  for (int64_t k = 0; k < hidden; ++k) weights[k] = engine::F32ToBf16(row[k]);
  for (int64_t n = 1; n < vocab; ++n) std::memcpy(&weights[n * hidden], weights.data(), hidden * 2);
  const engine::MatMulWeight w = {weights.data(), engine::DType::kBF16, vocab, hidden};
  const std::vector<float> x = RandomVector(hidden, 4);
  std::vector<float> logits(vocab);
  for (auto _ : state) {
    engine::MatMul(x.data(), 1, hidden, w, logits.data(), vocab, /*pool=*/nullptr);
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(2.0 * vocab * hidden * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_LmHead)
    ->ArgNames({"vocab", "hidden"})
    ->Args({32000, 4096})
    ->Args({128256, 4096})
    ->Unit(benchmark::kMillisecond);

void BM_SamplingDistribution(benchmark::State& state) {
  // Logits shaped like an LM's: a few likely tokens, a long tail.
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(128256);
  for (float& l : logits) l = normal(rng);
  for (int i = 0; i < 20; ++i) logits[rng() % logits.size()] += 12.0f;
  const engine::SamplingParams params{0.8f, state.range(0), state.range(1) / 100.0f, 0};
  std::vector<float> probs;
  for (auto _ : state) {
    engine::SamplingDistribution(logits, params, &probs);
    benchmark::DoNotOptimize(probs.data());
  }
}
BENCHMARK(BM_SamplingDistribution)
    ->ArgNames({"top_k", "top_p_percent"})
    ->Args({0, 100})
    ->Args({0, 90})
    ->Args({50, 100})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace verdict

BENCHMARK_MAIN();
