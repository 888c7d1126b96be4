// SPDX-License-Identifier: Apache-2.0
// Tensor parallelism on the CPU: a TensorParallelGroup of 1, 2, 4 and 8 ranks (threads with
// in-process communicators) against the unsplit model on one backend, over a ragged script of
// prefill, decode and verification blocks with a rollback; the divisibility errors; and the failure
// paths (a communicator error, an allocation failure on one rank only).
//
// Tolerance: the split model computes the same products, but the attention output and MLP down
// projections are summed in a different order (W partial dot products of length K/W, then a sum
// over ranks, then the residual add, instead of one fused accumulation). In f32 each such reordering
// changes a value by a few ulps (~1e-7 relative); over 3 layers and the LM head this stays far
// below 1e-4 of the logits' scale (max |logit|). Weights are sliced, never converted, so bf16 and
// q8_0 weights see exactly the same values and get the same bound. The figures measured are printed.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/testing/relative_error.h"
#include "common/testing/status_matchers.h"
#include "engine/communicator.h"
#include "engine/model.h"
#include "engine/random_weights.h"
#include "engine/tensor_parallel.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

using ::testing::HasSubstr;
using ::verdict::testing::StatusIs;

constexpr double kTolerance = 1e-4;  // max |a - b| / max |reference|

// Head counts divisible by 8: at 8 ranks each holds 2 heads and 1 kv head (GQA group of 2).
LlamaConfig TpConfig() {
  LlamaConfig c;
  c.vocab_size = 300;
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_layers = 3;
  c.num_heads = 16;
  c.num_kv_heads = 8;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position_embeddings = 256;
  return c;
}

// A WeightSource that adds f32 biases (q/k/v/o and gate/up/down of every layer) to another one, to
// check that sliced biases (q/k/v/gate/up) and whole ones added once (o/down) are right.
class WithBiases final : public WeightSource {
 public:
  WithBiases(const LlamaConfig& c, std::unique_ptr<WeightSource> base) : base_(std::move(base)) {
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
    for (int64_t i = 0; i < c.num_layers; ++i) {
      for (const auto& [name, size] : std::vector<std::pair<std::string, int64_t>>{
               {"self_attn.q_proj", q_dim},
               {"self_attn.k_proj", kv_dim},
               {"self_attn.v_proj", kv_dim},
               {"self_attn.o_proj", c.hidden_size},
               {"mlp.gate_proj", c.intermediate_size},
               {"mlp.up_proj", c.intermediate_size},
               {"mlp.down_proj", c.hidden_size}}) {
        Bias& b = biases_[absl::StrCat("model.layers.", i, ".", name, ".bias")];
        b.values.resize(size);
        for (float& v : b.values) v = normal(rng);
        b.tensor.dtype = DType::kF32;
        b.tensor.shape = {size};
        b.tensor.data = reinterpret_cast<const uint8_t*>(b.values.data());
        b.tensor.nbytes = size * sizeof(float);
      }
    }
    for (auto& [name, b] : biases_) b.tensor.name = name;
  }
  const WeightTensor* Find(absl::string_view name) const override {
    auto it = biases_.find(std::string(name));
    return it != biases_.end() ? &it->second.tensor : base_->Find(name);
  }
  std::vector<std::string> Names() const override {
    std::vector<std::string> names = base_->Names();
    for (const auto& [name, b] : biases_) names.push_back(name);
    std::sort(names.begin(), names.end());
    return names;
  }
  absl::string_view Format() const override { return base_->Format(); }

 private:
  struct Bias {
    std::vector<float> values;
    WeightTensor tensor;
  };
  std::unique_ptr<WeightSource> base_;
  std::map<std::string, Bias> biases_;
};

// `stacked`: the backends ask for stacked q|k|v and gate|up products (as the CUDA backend does).
TensorParallelGroup::BackendFactory CpuBackends(bool stacked = false) {
  return [stacked](int) -> absl::StatusOr<std::unique_ptr<Backend>> {
    return CreateCpuBackend(CpuBackendOptions{/*num_threads=*/1, /*fuse_projections=*/stacked});
  };
}

using ::verdict::testing::RelativeError;

std::vector<int32_t> Argmax(const std::vector<float>& logits, int64_t vocab) {
  std::vector<int32_t> out;
  for (size_t r = 0; r * vocab < logits.size(); ++r) {
    auto row = logits.begin() + r * vocab;
    out.push_back(static_cast<int32_t>(std::max_element(row, row + vocab) - row));
  }
  return out;
}

// One forward pass of the script: (sequence, new tokens) pairs, after dropping the last
// `rollback` positions of some sequences (rejected draft tokens).
struct Step {
  std::vector<std::pair<int, int64_t>> sequences;
  ForwardBatch::Outputs outputs = ForwardBatch::Outputs::kAll;
  std::vector<std::pair<int, int64_t>> rollback;
};

// Prefill of three prompts of different lengths, decode steps, verification blocks, a rollback and
// a fourth sequence joining the batch later.
std::vector<Step> Script() {
  using O = ForwardBatch::Outputs;
  return {
      {{{0, 7}, {1, 3}, {2, 12}}, O::kAll, {}},
      {{{0, 1}, {1, 1}, {2, 1}}, O::kLastOfEachSequence, {}},
      {{{0, 1}, {1, 1}, {2, 1}}, O::kLastOfEachSequence, {}},
      {{{0, 5}, {1, 4}, {2, 5}}, O::kAll, {}},
      {{{0, 2}, {1, 1}, {2, 5}, {3, 9}}, O::kAll, {{0, 3}, {2, 4}}},
      {{{1, 1}, {3, 1}}, O::kLastOfEachSequence, {}},
      {{{0, 4}, {1, 1}, {2, 3}, {3, 4}}, O::kAll, {{1, 2}, {3, 1}}},
      {{{0, 1}, {1, 1}, {2, 1}, {3, 1}}, O::kLastOfEachSequence, {}},
  };
}
constexpr int kScriptSequences = 4;
constexpr int64_t kCapacity = 64;

// The unsplit model on one backend.
struct Reference {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ModelSlice> slice;
  std::vector<std::unique_ptr<KvCache>> caches;
};

absl::StatusOr<Reference> MakeReference(const LlamaConfig& config, const WeightSource& weights,
                                        SliceRange range = {},
                                        const CpuBackendOptions& backend = {.num_threads = 1}) {
  Reference ref;
  ref.backend = CreateCpuBackend(backend);
  auto slice = ModelSlice::Create(config, weights, range, ref.backend.get());
  if (!slice.ok()) return slice.status();
  ref.slice = *std::move(slice);
  for (int s = 0; s < kScriptSequences; ++s) {
    auto cache = ref.slice->NewKvCache(kCapacity);
    if (!cache.ok()) return cache.status();
    ref.caches.push_back(*std::move(cache));
  }
  return ref;
}

struct Divergence {
  double logits = 0;
  double hidden = 0;
  double activations = 0;
};

// Runs the script on the reference and the group with the same inputs; sets the largest relative
// errors and checks greedy argmax and cache lengths step by step.
void RunScript(const LlamaConfig& config, Reference& ref, TensorParallelGroup& group,
               bool first_slice, Divergence* divergence) {
  Divergence& worst = *divergence;
  std::vector<std::unique_ptr<TensorParallelKvCache>> caches;
  for (int s = 0; s < kScriptSequences; ++s) {
    auto cache = group.NewKvCache(kCapacity);
    ASSERT_OK(cache.status());
    caches.push_back(*std::move(cache));
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size) - 1);
  std::normal_distribution<float> activation(0.0f, 1.0f);
  int step_index = 0;
  for (const Step& step : Script()) {
    SCOPED_TRACE(absl::StrCat("step ", step_index++));
    for (const auto& [s, drop] : step.rollback) {
      ASSERT_OK(ref.caches[s]->Truncate(ref.caches[s]->length() - drop));
      ASSERT_OK(caches[s]->Truncate(caches[s]->length() - drop));
    }
    ForwardBatch ref_batch;
    TensorParallelBatch tp_batch;
    std::vector<int32_t> ids;
    std::vector<float> activations;
    for (const auto& [s, tokens] : step.sequences) {
      ref_batch.sequences.push_back({ref.caches[s].get(), tokens});
      tp_batch.sequences.push_back({caches[s].get(), tokens});
      for (int64_t t = 0; t < tokens; ++t) {
        if (first_slice) {
          ids.push_back(token(rng));
        } else {
          for (int64_t h = 0; h < config.hidden_size; ++h) activations.push_back(activation(rng));
        }
      }
    }
    ref_batch.token_ids = tp_batch.token_ids = ids;
    ref_batch.activations = tp_batch.activations = activations;
    ref_batch.outputs = tp_batch.outputs = step.outputs;
    ForwardResult expected, got;
    ASSERT_OK(ref.slice->Forward(ref_batch, &expected));
    ASSERT_OK(group.Forward(tp_batch, &got));
    ASSERT_EQ(got.output_rows, expected.output_rows);
    ASSERT_EQ(got.logits.size(), expected.logits.size());
    ASSERT_EQ(got.hidden.size(), expected.hidden.size());
    ASSERT_EQ(got.activations.size(), expected.activations.size());
    worst.logits = std::max(worst.logits, RelativeError(got.logits, expected.logits));
    worst.hidden = std::max(worst.hidden, RelativeError(got.hidden, expected.hidden));
    worst.activations =
        std::max(worst.activations, RelativeError(got.activations, expected.activations));
    EXPECT_EQ(Argmax(got.logits, config.vocab_size), Argmax(expected.logits, config.vocab_size));
    for (int s = 0; s < kScriptSequences; ++s) {
      EXPECT_EQ(caches[s]->length(), ref.caches[s]->length());
    }
  }
}

absl::StatusOr<std::unique_ptr<WeightSource>> TestWeights(const LlamaConfig& config, DType dtype,
                                                          bool biases) {
  auto weights = CreateRandomWeights(config, dtype, /*seed=*/42);
  if (!weights.ok() || !biases) return weights;
  return std::unique_ptr<WeightSource>(new WithBiases(config, *std::move(weights)));
}

// The unsplit reference always runs separate q/k/v and gate/up products; the group runs them
// separate or stacked.
class TensorParallelParityTest
    : public ::testing::TestWithParam<std::tuple<int, DType, bool, bool>> {};

TEST_P(TensorParallelParityTest, MatchesUnsplitModel) {
  const auto [world, dtype, biases, stacked] = GetParam();
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, dtype, biases));
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights));
  ASSERT_OK_AND_ASSIGN(auto group, TensorParallelGroup::Create(config, *weights, {}, world,
                                                               CpuBackends(stacked)));
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(group->slice(r).tp_rank(), r);
    EXPECT_EQ(group->slice(r).tp_size(), world);
    EXPECT_EQ(group->slice(r).local_num_heads(), config.num_heads / world);
    EXPECT_EQ(group->slice(r).local_num_kv_heads(), config.num_kv_heads / world);
    EXPECT_EQ(group->slice(r).local_intermediate_size(), config.intermediate_size / world);
  }
  Divergence d;
  ASSERT_NO_FATAL_FAILURE(RunScript(config, ref, *group, /*first_slice=*/true, &d));
  std::printf("[tensor parallel] W=%d %s%s%s: max relative error logits %.3g, hidden %.3g\n",
              world, std::string(DTypeName(dtype)).c_str(), biases ? " with biases" : "",
              stacked ? " stacked" : "", d.logits, d.hidden);
  if (stacked) {
    // Same bytes as separate matrices: the stacked ones replace them.
    ASSERT_OK_AND_ASSIGN(auto separate,
                         TensorParallelGroup::Create(config, *weights, {}, world, CpuBackends()));
    for (int r = 0; r < world; ++r) {
      EXPECT_TRUE(group->slice(r).stacked_projections());
      EXPECT_FALSE(separate->slice(r).stacked_projections());
      EXPECT_EQ(group->slice(r).weight_bytes(), separate->slice(r).weight_bytes());
      EXPECT_EQ(group->slice(r).num_parameters(), separate->slice(r).num_parameters());
    }
  }
  EXPECT_LT(d.logits, kTolerance);
  EXPECT_LT(d.hidden, kTolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Ranks, TensorParallelParityTest,
    ::testing::Combine(::testing::Values(1, 2, 4, 8),
                       ::testing::Values(DType::kF32, DType::kBF16, DType::kQ8_0),
                       ::testing::Values(false, true), ::testing::Values(false, true)),
    [](const ::testing::TestParamInfo<std::tuple<int, DType, bool, bool>>& info) {
      return absl::StrCat("W", std::get<0>(info.param), "_", DTypeName(std::get<1>(info.param)),
                          std::get<2>(info.param) ? "_biases" : "",
                          std::get<3>(info.param) ? "_stacked" : "");
    });

// A middle slice (activations in, activations out) splits the same way.
TEST(TensorParallelTest, MiddleSliceMatchesUnsplit) {
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF32, /*biases=*/true));
  const SliceRange middle{1, 2};
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights, middle));
  ASSERT_OK_AND_ASSIGN(auto group,
                       TensorParallelGroup::Create(config, *weights, middle, 4, CpuBackends()));
  Divergence d;
  ASSERT_NO_FATAL_FAILURE(RunScript(config, ref, *group, /*first_slice=*/false, &d));
  std::printf("[tensor parallel] middle slice W=4: max relative error activations %.3g\n",
              d.activations);
  EXPECT_LT(d.activations, kTolerance);
}

// Each rank holds its share of the layers and of the LM head's rows, and the whole embedding and
// norms.
TEST(TensorParallelTest, SizesAreThisRanksShare) {
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF32, /*biases=*/false));
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights));
  ASSERT_OK_AND_ASSIGN(auto group,
                       TensorParallelGroup::Create(config, *weights, {}, 4, CpuBackends()));
  const int64_t replicated = config.vocab_size * config.hidden_size +
                             (2 * config.num_layers + 1) * config.hidden_size;
  const int64_t split = ref.slice->num_parameters() - replicated;
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(group->slice(r).local_vocab_begin(), r * config.vocab_size / 4);
    EXPECT_EQ(group->slice(r).local_vocab_size(), config.vocab_size / 4);
    EXPECT_EQ(group->slice(r).num_parameters(), replicated + split / 4);
    EXPECT_EQ(group->slice(r).weight_bytes(), sizeof(float) * (replicated + split / 4));
    // The untied input embedding is read one row per token, so not streamed.
    EXPECT_EQ(group->slice(r).streamed_weight_bytes(),
              sizeof(float) * (replicated + split / 4 - config.vocab_size * config.hidden_size));
  }
  ASSERT_OK_AND_ASSIGN(auto cache, group->NewKvCache(16));
  EXPECT_EQ(cache->rank_cache(3)->shape().num_kv_heads, config.num_kv_heads / 4);
}

TEST(TensorParallelTest, RejectsSizesNotDivisibleByRanks) {
  struct Case {
    const char* what;
    LlamaConfig config;
    int world;
    std::string message;
  };
  LlamaConfig gqa = TpConfig();  // 16 heads sharing 4 kv heads: 8 ranks would split a kv head
  gqa.num_kv_heads = 4;
  LlamaConfig heads = TpConfig();
  heads.num_heads = 12;
  heads.num_kv_heads = 6;
  heads.head_dim = 16;
  LlamaConfig mlp = TpConfig();
  mlp.intermediate_size = 500;
  for (const Case& c : std::vector<Case>{
           {"gqa", gqa, 8, "num_kv_heads 4 is not divisible by the tensor-parallel size 8"},
           {"heads", heads, 8, "num_heads 12 is not divisible by the tensor-parallel size 8"},
           {"mlp", mlp, 8, "intermediate_size 500 is not divisible by the tensor-parallel size 8"},
       }) {
    SCOPED_TRACE(c.what);
    ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(c.config, DType::kF32, false));
    EXPECT_THAT(TensorParallelGroup::Create(c.config, *weights, {}, c.world, CpuBackends()),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
    // The same from ModelSlice itself, for any rank.
    auto comms = CreateThreadCommunicators(c.world);
    auto backend = CreateCpuBackend(CpuBackendOptions{1});
    EXPECT_THAT(ModelSlice::Create(c.config, *weights, {}, backend.get(),
                                   TensorParallelConfig{comms[c.world - 1].get()}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
  EXPECT_THAT(TensorParallelGroup::Create(TpConfig(), *CreateRandomWeights(TpConfig(), DType::kF32, 1).value(),
                                          {}, 0, CpuBackends()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// q8_0 rows are 34-byte blocks of 32 values: a column slice must fall on block boundaries.
TEST(TensorParallelTest, RejectsQ8_0ColumnSliceInsideABlock) {
  LlamaConfig config = TpConfig();
  config.intermediate_size = 544;  // 17 blocks: 2 ranks would split the 9th
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kQ8_0, false));
  EXPECT_THAT(TensorParallelGroup::Create(config, *weights, {}, 2, CpuBackends()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not fall on 32-value block boundaries")));
  // f32 has no blocks: the same split is fine.
  ASSERT_OK_AND_ASSIGN(auto f32_weights, TestWeights(config, DType::kF32, false));
  EXPECT_OK(TensorParallelGroup::Create(config, *f32_weights, {}, 2, CpuBackends()).status());
}

// FP8 rows are blocks of 128 values with a scale each: a model whose per-rank columns are whole
// blocks splits like any other (checkpoint FP8 and FP8 quantized at load, separate and stacked);
// a column slice inside a block is refused.
LlamaConfig Fp8TpConfig() {
  LlamaConfig c = TpConfig();
  c.hidden_size = 512;
  c.intermediate_size = 1024;
  c.head_dim = 32;  // 16 heads x 32 = 512
  return c;
}

TEST(TensorParallelTest, Fp8SplitsOnBlockBoundaries) {
  const LlamaConfig config = Fp8TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF8E4M3Block, /*biases=*/true));
  for (int world : {2, 4}) {
    for (bool stacked : {false, true}) {
      ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights));  // fresh caches
      ASSERT_OK_AND_ASSIGN(auto group, TensorParallelGroup::Create(config, *weights, {}, world,
                                                                   CpuBackends(stacked)));
      Divergence d;
      ASSERT_NO_FATAL_FAILURE(RunScript(config, ref, *group, /*first_slice=*/true, &d));
      std::printf("[tensor parallel] W=%d fp8%s: max relative error logits %.3g, hidden %.3g\n",
                  world, stacked ? " stacked" : "", d.logits, d.hidden);
      EXPECT_LT(d.logits, kTolerance);
      EXPECT_LT(d.hidden, kTolerance);
    }
  }
  LlamaConfig narrow = config;
  narrow.intermediate_size = 512;  // 4 ranks: 128 columns each; 8 ranks: 64, inside a block
  ASSERT_OK_AND_ASSIGN(auto narrow_weights, TestWeights(narrow, DType::kF8E4M3Block, false));
  EXPECT_THAT(TensorParallelGroup::Create(narrow, *narrow_weights, {}, 8, CpuBackends()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not fall on 128-value block boundaries")));
}

TEST(TensorParallelTest, Fp8QuantizedAtLoadSplitsLikeTheUnsplitModel) {
  const LlamaConfig config = Fp8TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kBF16, /*biases=*/false));
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights, {},
                                                    {.num_threads = 1, .fp8_projections = true}));
  ASSERT_OK_AND_ASSIGN(auto group, TensorParallelGroup::Create(
      config, *weights, {}, 2, [](int) -> absl::StatusOr<std::unique_ptr<Backend>> {
        return CreateCpuBackend({.num_threads = 1, .fuse_projections = true, .fp8_projections = true});
      }));
  Divergence d;
  ASSERT_NO_FATAL_FAILURE(RunScript(config, ref, *group, /*first_slice=*/true, &d));
  EXPECT_LT(d.logits, kTolerance);
  EXPECT_LT(d.hidden, kTolerance);
}

// A rank's slice takes only caches of its own kv heads (a whole-model cache is another shape).
TEST(TensorParallelTest, RankSliceRejectsUnsplitCache) {
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF32, false));
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights));
  auto comms = CreateThreadCommunicators(2);
  auto backend = CreateCpuBackend(CpuBackendOptions{1});
  ASSERT_OK_AND_ASSIGN(auto slice, ModelSlice::Create(config, *weights, {}, backend.get(),
                                                      TensorParallelConfig{comms[0].get()}));
  std::vector<int32_t> ids = {1, 2, 3};
  ForwardBatch batch;
  batch.sequences.push_back({ref.caches[0].get(), 3});
  batch.token_ids = ids;
  ForwardResult result;
  EXPECT_THAT(slice->Forward(batch, &result),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("another model slice")));
}

// Shared by the communicators of one group: which call (the same count on every rank) fails.
struct FailurePlan {
  std::atomic<int64_t> fail_call{-1};
};

// Passes calls to a real communicator, but fails the planned one (on every rank alike, so that
// no rank waits for another) with kUnavailable.
class FailingCommunicator final : public Communicator {
 public:
  FailingCommunicator(std::unique_ptr<Communicator> inner, FailurePlan* plan)
      : inner_(std::move(inner)), plan_(plan) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  absl::Status AllReduceSum(absl::Span<float> data) override {
    if (calls_++ == plan_->fail_call.load()) return absl::UnavailableError("injected: peer lost");
    return inner_->AllReduceSum(data);
  }
  absl::Status AllGather(absl::Span<const float> send, absl::Span<float> recv) override {
    return inner_->AllGather(send, recv);
  }
  int64_t calls() const { return calls_; }

 private:
  std::unique_ptr<Communicator> inner_;
  FailurePlan* plan_;
  int64_t calls_ = 0;
};

TEST(TensorParallelTest, CommunicatorErrorIsForwardsStatusAndCachesKeepTheirLength) {
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF32, false));
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights));
  FailurePlan plan;
  std::vector<FailingCommunicator*> comms;
  ASSERT_OK_AND_ASSIGN(
      auto group,
      TensorParallelGroup::Create(
          config, *weights, {}, 4, CpuBackends(),
          [&](int n) -> absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> {
            std::vector<std::unique_ptr<Communicator>> out;
            for (auto& inner : CreateThreadCommunicators(n)) {
              auto comm = std::make_unique<FailingCommunicator>(std::move(inner), &plan);
              comms.push_back(comm.get());
              out.push_back(std::move(comm));
            }
            return out;
          }));
  ASSERT_OK_AND_ASSIGN(auto cache, group->NewKvCache(32));
  std::vector<int32_t> prompt = {5, 17, 250, 3, 99};
  TensorParallelBatch batch;
  batch.sequences = {{cache.get(), 5}};
  batch.token_ids = prompt;
  ForwardResult result;
  ASSERT_OK(group->Forward(batch, &result));
  ForwardBatch ref_batch;
  ref_batch.sequences = {{ref.caches[0].get(), 5}};
  ref_batch.token_ids = prompt;
  ForwardResult expected;
  ASSERT_OK(ref.slice->Forward(ref_batch, &expected));

  // Fail the MLP all-reduce of the second layer of the next (decode) step: no buffer grows, so
  // the calls are 2 per layer.
  std::vector<int32_t> next = {42};
  batch.sequences = {{cache.get(), 1}};
  batch.token_ids = next;
  plan.fail_call = comms[0]->calls() + 3;
  EXPECT_THAT(group->Forward(batch, &result),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_EQ(cache->length(), 5);
  for (int r = 0; r < 4; ++r) EXPECT_EQ(cache->rank_cache(r)->length(), 5);

  // The same step again succeeds and matches the reference.
  ASSERT_OK(group->Forward(batch, &result));
  ref_batch.sequences = {{ref.caches[0].get(), 1}};
  ref_batch.token_ids = next;
  ASSERT_OK(ref.slice->Forward(ref_batch, &expected));
  EXPECT_LT(RelativeError(result.logits, expected.logits), kTolerance);
  EXPECT_EQ(cache->length(), 6);
}

// A backend whose Allocate fails while `fail_allocate` is set; everything else is the CPU
// backend's.
class FlakyBackend final : public Backend {
 public:
  explicit FlakyBackend(std::atomic<bool>* fail_allocate)
      : inner_(CreateCpuBackend(CpuBackendOptions{1})), fail_allocate_(fail_allocate) {}
  absl::string_view name() const override { return "flaky"; }
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(size_t bytes) override {
    if (fail_allocate_->load()) return absl::ResourceExhaustedError("injected: out of memory");
    return inner_->Allocate(bytes);
  }
  absl::StatusOr<std::unique_ptr<DeviceWeight>> UploadWeight(const WeightTensor& t, int64_t rows,
                                                             int64_t cols) override {
    return inner_->UploadWeight(t, rows, cols);
  }
  absl::StatusOr<std::unique_ptr<KvStorage>> AllocateKv(const KvShape& shape,
                                                        int64_t capacity) override {
    return inner_->AllocateKv(shape, capacity);
  }
  void CopyToDevice(const float* host, TensorView dst) override { inner_->CopyToDevice(host, dst); }
  void CopyToHost(TensorView src, float* host) override { inner_->CopyToHost(src, host); }
  absl::Status Synchronize() override { return inner_->Synchronize(); }
  void Embed(const DeviceWeight& table, absl::Span<const int32_t> ids, TensorView out) override {
    inner_->Embed(table, ids, out);
  }
  void RmsNorm(TensorView x, const DeviceWeight& w, float eps, TensorView out) override {
    inner_->RmsNorm(x, w, eps, out);
  }
  void MatMul(TensorView x, const DeviceWeight& w, TensorView out, bool accumulate) override {
    inner_->MatMul(x, w, out, accumulate);
  }
  void AddBias(TensorView x, const DeviceWeight& bias) override { inner_->AddBias(x, bias); }
  void Rope(TensorView x, int64_t heads, int64_t head_dim, absl::Span<const int32_t> positions,
            const RopeParams& rope) override {
    inner_->Rope(x, heads, head_dim, positions, rope);
  }
  void Attention(TensorView q, TensorView k, TensorView v, int64_t layer,
                 absl::Span<const AttentionSequence> sequences, int64_t heads, int64_t kv_heads,
                 int64_t head_dim, TensorView out) override {
    inner_->Attention(q, k, v, layer, sequences, heads, kv_heads, head_dim, out);
  }
  void SiluMul(TensorView gate, TensorView up, TensorView out) override {
    inner_->SiluMul(gate, up, out);
  }
  void Add(TensorView x, TensorView y) override { inner_->Add(x, y); }
  void GatherRows(TensorView src, absl::Span<const int32_t> rows, TensorView dst) override {
    inner_->GatherRows(src, rows, dst);
  }
  void AddRmsNorm(TensorView residual, TensorView x, const DeviceWeight& weight, float eps,
                  TensorView out) override {
    inner_->AddRmsNorm(residual, x, weight, eps, out);
  }
  void SummarizeLogits(TensorView logits, absl::Span<const int32_t> tokens, TensorView out) override {
    inner_->SummarizeLogits(logits, tokens, out);
  }
  void DecideSampled(TensorView logits, absl::Span<const math::SampledRowRequest> requests,
                     absl::Span<const int32_t> ids, absl::Span<const float> probs, TensorView out,
                     TensorView supports) override {
    inner_->DecideSampled(logits, requests, ids, probs, out, supports);
  }
  void CopyKv(const KvStorage& from, KvStorage& to, int64_t count) override {
    inner_->CopyKv(from, to, count);
  }
  absl::Status AllReduceSum(TensorView x, Communicator& comm) override {
    return inner_->AllReduceSum(x, comm);
  }

 private:
  std::unique_ptr<Backend> inner_;
  std::atomic<bool>* fail_allocate_;
};

// One rank failing to grow its activation buffers must not leave the others waiting in an
// all-reduce: every rank returns kResourceExhausted, and the group works again afterwards.
TEST(TensorParallelTest, AllocationFailureOnOneRankFailsEveryRank) {
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF32, false));
  ASSERT_OK_AND_ASSIGN(Reference ref, MakeReference(config, *weights));
  std::atomic<bool> fail_allocate{false};
  ASSERT_OK_AND_ASSIGN(
      auto group,
      TensorParallelGroup::Create(config, *weights, {}, 2,
                                  [&](int rank) -> absl::StatusOr<std::unique_ptr<Backend>> {
                                    if (rank == 1) return std::make_unique<FlakyBackend>(&fail_allocate);
                                    return CreateCpuBackend(CpuBackendOptions{1});
                                  }));
  ASSERT_OK_AND_ASSIGN(auto cache, group->NewKvCache(32));
  std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};
  TensorParallelBatch batch;
  batch.sequences = {{cache.get(), 2}};
  batch.token_ids = absl::MakeConstSpan(ids).subspan(0, 2);
  ForwardResult result;
  ASSERT_OK(group->Forward(batch, &result));

  fail_allocate = true;  // the next, longer batch needs bigger buffers
  batch.sequences = {{cache.get(), 6}};
  batch.token_ids = absl::MakeConstSpan(ids).subspan(2, 6);
  EXPECT_THAT(group->Forward(batch, &result), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(cache->length(), 2);

  fail_allocate = false;
  ASSERT_OK(group->Forward(batch, &result));
  ForwardBatch ref_batch;
  ref_batch.sequences = {{ref.caches[0].get(), 8}};
  ref_batch.token_ids = ids;
  ForwardResult expected;
  ASSERT_OK(ref.slice->Forward(ref_batch, &expected));
  const std::vector<float> last_rows(expected.logits.end() - 6 * config.vocab_size,
                                     expected.logits.end());
  EXPECT_LT(RelativeError(result.logits, last_rows), kTolerance);
}

TEST(TensorParallelTest, RejectsCacheOfAnotherGroupAndBadTruncate) {
  const LlamaConfig config = TpConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, TestWeights(config, DType::kF32, false));
  ASSERT_OK_AND_ASSIGN(auto a, TensorParallelGroup::Create(config, *weights, {}, 2, CpuBackends()));
  ASSERT_OK_AND_ASSIGN(auto b, TensorParallelGroup::Create(config, *weights, {}, 2, CpuBackends()));
  ASSERT_OK_AND_ASSIGN(auto cache_of_b, b->NewKvCache(8));
  std::vector<int32_t> ids = {1};
  TensorParallelBatch batch;
  batch.sequences = {{cache_of_b.get(), 1}};
  batch.token_ids = ids;
  ForwardResult result;
  EXPECT_THAT(a->Forward(batch, &result), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(a->Forward(TensorParallelBatch{}, &result),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cache_of_b->Truncate(1), StatusIs(absl::StatusCode::kInvalidArgument));
  // Errors of the slices come back from every rank alike (here: validation, before any collective).
  batch.sequences = {{cache_of_b.get(), 1}};
  ids = {static_cast<int32_t>(config.vocab_size)};
  batch.token_ids = ids;
  EXPECT_THAT(b->Forward(batch, &result),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out of range")));
  EXPECT_EQ(cache_of_b->length(), 0);
}

}  // namespace
}  // namespace verdict::engine
