// SPDX-License-Identifier: Apache-2.0
// The CUDA backend against the CPU backend (op by op, whole fixture models) and against the
// Hugging Face transformers logits stored with the fixtures. Inputs are fresh random values each run
// (the seed is printed); outputs are poisoned before each op. Without a GPU the GPU tests skip with
// the reason (any error from cudaGetDeviceCount means no GPU); the CPU-side tests run everywhere.
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/testing/status_matchers.h"
#include "engine/testing/backend_checks.h"
#include "engine/tensor_parallel.h"
#include "engine/io/safetensors.h"
#include "engine/model.h"
#include "engine/model_loader.h"
#include "engine/random_weights.h"
#include "gtest/gtest.h"

namespace verdict::engine {
namespace {

const std::string kFixtures = std::string(VERDICT_SOURCE_DIR) + "/tests/fixtures/models/";

uint64_t FreshSeed() {
  const uint64_t seed = std::random_device{}();
  std::printf("random seed for this run: %llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

void ExpectAllPassed(const std::vector<CheckResult>& results) {
  ASSERT_FALSE(results.empty());
  for (const CheckResult& r : results) {
    std::printf("  %-60s rel.err %.3g (tol %.1g) %s %s\n", r.name.c_str(), r.relative_error,
                r.tolerance, r.passed ? "ok" : "FAIL", r.detail.c_str());
    EXPECT_TRUE(r.passed) << r.name << ": relative error " << r.relative_error << " > "
                          << r.tolerance << " " << r.detail;
  }
}

// ---- everywhere ------------------------------------------------------------------------------

// The comparison harness itself, CPU against CPU (different thread counts): it must pass at a tight
// tolerance, so a GPU failure means the GPU differs, not that the harness is broken.
TEST(BackendChecksTest, CpuAgainstCpuPasses) {
  auto a = CreateCpuBackend({1});
  auto b = CreateCpuBackend({2});
  CheckOptions options;
  options.seed = FreshSeed();
  options.tolerance = 1e-5;
  ExpectAllPassed(CheckBackendOps(*a, *b, options));
}

TEST(BackendChecksTest, ModelCpuAgainstCpuPasses) {
  auto a = CreateCpuBackend({1});
  auto b = CreateCpuBackend({2});
  CheckOptions options;
  options.seed = FreshSeed();
  options.tolerance = 1e-5;
  for (const char* fixture : {"llama3_gqa", "odd_tied"}) {
    ASSERT_OK_AND_ASSIGN(LoadedModel model, LoadModel(kFixtures + fixture));
    ExpectAllPassed(CheckModel(*a, *b, model.config, *model.weights, options));
  }
}

TEST(BackendChecksTest, TensorParallelCpuAgainstCpuPasses) {
  const LlamaConfig config = TensorParallelCheckConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, CreateRandomWeights(config, DType::kF32, FreshSeed()));
  auto reference = CreateCpuBackend({1});
  CheckOptions options;
  options.tolerance = 1e-5;
  for (int world : {2, 4}) {
    ExpectAllPassed(CheckTensorParallel(
        *reference, [](int) -> absl::StatusOr<std::unique_ptr<Backend>> { return CreateCpuBackend({1}); },
        nullptr, world, config, *weights, options));
  }
}

TEST(BackendFactoryTest, NamesDevices) {
  ASSERT_OK_AND_ASSIGN(auto cpu, CreateBackendForDevice("cpu", 1));
  EXPECT_EQ(cpu->name(), "cpu");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cudax"}) {
    auto b = CreateBackendForDevice(bad, 1);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(b.status().message().find(bad), std::string::npos) << b.status();
  }
}

TEST(BackendFactoryTest, KvCacheChoiceIsForTheCpuBackendOnly) {
  // Refused before any device is touched, so this runs without a GPU (and without CUDA).
  for (KvCacheType type : {KvCacheType::kF32, KvCacheType::kF16, KvCacheType::kBf16}) {
    for (const char* device : {"cuda", "cuda:1"}) {
      auto b = CreateBackendForDevice(device, 1, {}, /*fp8_projections=*/false, type);
      ASSERT_FALSE(b.ok()) << device;
      EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
      EXPECT_NE(b.status().message().find(KvCacheTypeName(type)), std::string::npos) << b.status();
      EXPECT_NE(b.status().message().find("use auto"), std::string::npos) << b.status();
    }
    ASSERT_OK_AND_ASSIGN(auto cpu, CreateBackendForDevice("cpu", 1, {}, false, type));
    EXPECT_EQ(cpu->name(), "cpu");
  }
}

TEST(CudaBackendTest, MissingDeviceIsAClearError) {
  CudaBackendOptions options;
  options.device = 99;
  auto backend = CreateCudaBackend(options);
  ASSERT_FALSE(backend.ok());
  if (CudaBackendCompiled()) {
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition) << backend.status();
    EXPECT_NE(backend.status().message().find("CUDA device 99"), std::string::npos);
  } else {
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnimplemented);
  }
  options.device = 0;
  options.weight_dtype = DType::kQ8_0;
  EXPECT_FALSE(CreateCudaBackend(options).ok());
}

// ---- on a GPU --------------------------------------------------------------------------------

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no CUDA GPU: " << why;
    std::printf("%s\n", CudaDeviceDescription(0).value_or("?").c_str());
    cpu_ = CreateCpuBackend({0});
  }
  // `unverified`: with the paths prepared since the last measured run (UnverifiedPaths).
  std::unique_ptr<Backend> Cuda(DType weights, bool unverified = false) {
    CudaBackendOptions options;
    options.weight_dtype = weights;
    if (unverified) options = options.UnverifiedPaths();
    auto backend = CreateCudaBackend(options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }
  std::unique_ptr<Backend> cpu_;
};

// bf16/f16 storage: products of operands rounded to 16 bits (1e-2). f32 storage: only summation
// order differs from the CPU (16-bit checkpoint weights widen exactly; q8_0 dequantises exactly).
struct OpsCase {
  DType weights;
  double tolerance;
  bool unverified = false;  // CudaBackendOptions::UnverifiedPaths
};
class GpuOpsTest : public GpuTest, public ::testing::WithParamInterface<OpsCase> {};

TEST_P(GpuOpsTest, MatchCpu) {
  auto cuda = Cuda(GetParam().weights, GetParam().unverified);
  ASSERT_NE(cuda, nullptr);
  CheckOptions options;
  options.seed = FreshSeed();
  options.tolerance = GetParam().tolerance;
  ExpectAllPassed(CheckBackendOps(*cpu_, *cuda, options));
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, GpuOpsTest,
                         ::testing::Values(OpsCase{DType::kBF16, 1e-2}, OpsCase{DType::kF16, 1e-2},
                                           OpsCase{DType::kF32, 1e-4},
                                           OpsCase{DType::kBF16, 1e-2, true},
                                           OpsCase{DType::kF32, 1e-4, true}),
                         [](const auto& info) {
                           return absl::StrCat(DTypeName(info.param.weights),
                                               info.param.unverified ? "_unverified" : "");
                         });

// Both backends read the same checkpoint: 16-bit checkpoints for the bf16 mode (the GPU then differs
// from the CPU only by rounding activations to bf16 for the products and by its bf16 KV cache),
// f32 checkpoints for the f32 mode.
TEST_F(GpuTest, FixtureModelsMatchCpu) {
  struct Case {
    const char* path;
    DType weights;
    double tolerance;
  };
  for (const Case& c : {Case{"llama3_gqa", DType::kF32, 1e-4}, Case{"llama2_mha", DType::kF32, 1e-4},
                        Case{"odd_tied", DType::kF32, 1e-4},
                        Case{"llama3_gqa/llama3_gqa-q8_0.gguf", DType::kF32, 1e-4},
                        Case{"llama3_gqa/bf16", DType::kBF16, 1e-2},
                        Case{"llama2_mha/llama2_mha-bf16.gguf", DType::kBF16, 1e-2},
                        Case{"odd_tied/odd_tied-bf16.gguf", DType::kBF16, 1e-2},
                        Case{"llama3_gqa/llama3_gqa-f16.gguf", DType::kF16, 1e-2},
                        // FP8 checkpoints: kept FP8 on the GPU (bf16 mode), widened in f32 mode.
                        Case{"llama3_gqa/fp8", DType::kBF16, 1e-2},
                        Case{"llama3_gqa/fp8_block", DType::kBF16, 1e-2},
                        Case{"llama3_gqa/fp8", DType::kF32, 1e-4}}) {
    ASSERT_OK_AND_ASSIGN(LoadedModel model, LoadModel(kFixtures + c.path));
    for (const bool unverified : {false, true}) {
      SCOPED_TRACE(absl::StrCat(c.path, " ", DTypeName(c.weights), unverified ? " unverified" : ""));
      auto cuda = Cuda(c.weights, unverified);
      ASSERT_NE(cuda, nullptr);
      CheckOptions options;
      options.seed = FreshSeed();
      options.tolerance = c.tolerance;
      std::printf("%s, %s weights on the GPU, %s paths:\n", c.path,
                  std::string(DTypeName(c.weights)).c_str(), unverified ? "unverified" : "measured");
      ExpectAllPassed(CheckModel(*cpu_, *cuda, model.config, *model.weights, options));
    }
  }
}

// Our skinny-product kernels on every product they can run, not only where they time faster than
// cuBLASLt: the op checks' products (16-bit weights with m <= 8; FP8 weights with m <= 64, the
// tensor-core kernel's verification shapes included) and a whole fixture model (decode steps and
// the output projections' residual accumulation).
TEST_F(GpuTest, OwnSkinnyKernelMatchesCpu) {
  ASSERT_OK_AND_ASSIGN(LoadedModel model, LoadModel(kFixtures + "llama3_gqa/bf16"));
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    CudaBackendOptions cuda_options;
    cuda_options.weight_dtype = dtype;
    cuda_options.own_gemv = OwnGemv::kAlways;
    ASSERT_OK_AND_ASSIGN(auto cuda, CreateCudaBackend(cuda_options));
    CheckOptions options;
    options.seed = FreshSeed();
    options.tolerance = 1e-2;
    std::printf("own skinny-product kernel, %s weights:\n", std::string(DTypeName(dtype)).c_str());
    ExpectAllPassed(CheckBackendOps(*cpu_, *cuda, options));
    ExpectAllPassed(CheckModel(*cpu_, *cuda, model.config, *model.weights, options));
    EXPECT_GT(GetCudaBackendStats(*cuda).matmul_shapes_on_own_gemv, 0);
  }
}

// Prefill attention on the tensor cores (off by default): the attention cases, whose prefill and
// chunked-prefill steps (64+ rows per sequence) take it and whose mixed step splits into runs for
// both kernels, against the CPU backend; then a small random bf16 model (head_dim 64) prefilling
// 64+ tokens per sequence. Both must have taken that path.
TEST_F(GpuTest, TensorCorePrefillMatchesCpu) {
  CudaBackendOptions cuda_options;
  cuda_options.tensor_core_prefill = true;
  ASSERT_OK_AND_ASSIGN(auto cuda, CreateCudaBackend(cuda_options));
  CheckOptions options;
  options.seed = FreshSeed();
  options.tolerance = 1e-2;
  ExpectAllPassed(CheckAttentionOps(*cpu_, *cuda, options));
  const int64_t after_ops = GetCudaBackendStats(*cuda).tensor_core_prefills;
  EXPECT_GE(after_ops, 16);  // per case: prefill, chunked prefill, the two prompts of step 4
  LlamaConfig config = TensorParallelCheckConfig();  // with head_dim 64 and GQA
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_dim = 64;
  ASSERT_OK_AND_ASSIGN(auto weights, CreateRandomWeights(config, DType::kBF16, FreshSeed()));
  options.prefill_min_tokens = 64;
  ExpectAllPassed(CheckModel(*cpu_, *cuda, config, *weights, options));
  EXPECT_GT(GetCudaBackendStats(*cuda).tensor_core_prefills, after_ops);
}

// FP8: our kernels on every product they can run (m <= 64: up to 8 rows per warp, 9+ rows on the
// tensor cores where k is a multiple of 128) for an FP8 checkpoint,
// and projections quantized at load (weight_dtype fp8) against the CPU backend quantizing the same
// f32 checkpoint the same way.
TEST_F(GpuTest, Fp8WeightsMatchCpu) {
  ASSERT_OK_AND_ASSIGN(LoadedModel fp8_model, LoadModel(kFixtures + "llama3_gqa/fp8"));
  for (OwnGemv own : {OwnGemv::kAlways, OwnGemv::kNever}) {
    CudaBackendOptions cuda_options;
    cuda_options.own_gemv = own;
    ASSERT_OK_AND_ASSIGN(auto cuda, CreateCudaBackend(cuda_options));
    CheckOptions options;
    options.seed = FreshSeed();
    options.tolerance = 1e-2;
    std::printf("FP8 checkpoint, own kernel %s:\n", own == OwnGemv::kAlways ? "always" : "never");
    ExpectAllPassed(CheckModel(*cpu_, *cuda, fp8_model.config, *fp8_model.weights, options));
    if (own == OwnGemv::kAlways) {
      EXPECT_GT(GetCudaBackendStats(*cuda).matmul_shapes_on_own_gemv, 0);
    }
  }
  ASSERT_OK_AND_ASSIGN(LoadedModel model, LoadModel(kFixtures + "llama3_gqa"));
  auto cpu_fp8 = CreateCpuBackend({.num_threads = 0, .fp8_projections = true});
  auto cuda = Cuda(DType::kF8E4M3Block);
  ASSERT_NE(cuda, nullptr);
  EXPECT_TRUE(cuda->QuantizesProjectionsToFp8());
  CheckOptions options;
  options.seed = FreshSeed();
  options.tolerance = 1e-2;
  std::printf("f32 checkpoint quantized to FP8 at load:\n");
  ExpectAllPassed(CheckModel(*cpu_fp8, *cuda, model.config, *model.weights, options));
}

// Independent reference: the transformers logits committed with the fixtures.
TEST_F(GpuTest, FixtureLogitsMatchTransformers) {
  for (const char* fixture : {"llama3_gqa", "llama2_mha", "odd_tied"}) {
    ASSERT_OK_AND_ASSIGN(LoadedModel model, LoadModel(kFixtures + fixture));
    ASSERT_OK_AND_ASSIGN(auto reference, OpenSafetensors(kFixtures + fixture + "/reference.safetensors"));
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      auto cuda = Cuda(dtype);
      ASSERT_NE(cuda, nullptr);
      ASSERT_OK_AND_ASSIGN(auto slice, ModelSlice::Create(model.config, *model.weights, {}, cuda.get()));
      for (int i = 0; i < 3; ++i) {
        const WeightTensor* tokens_t = reference->Find("tokens_" + std::to_string(i));
        const WeightTensor* logits_t = reference->Find("logits_" + std::to_string(i));
        ASSERT_NE(tokens_t, nullptr);
        ASSERT_NE(logits_t, nullptr);
        const auto* tp = reinterpret_cast<const int32_t*>(tokens_t->data);
        std::vector<int32_t> tokens(tp, tp + tokens_t->num_elements());
        const auto* lp = reinterpret_cast<const float*>(logits_t->data);
        std::vector<float> expected(lp, lp + logits_t->num_elements());
        ASSERT_OK_AND_ASSIGN(auto cache, slice->NewKvCache(static_cast<int64_t>(tokens.size())));
        ForwardBatch batch;
        batch.sequences = {{cache.get(), static_cast<int64_t>(tokens.size())}};
        batch.token_ids = tokens;
        ForwardResult result;
        ASSERT_OK(slice->Forward(batch, &result));
        double max_diff = 0, max_ref = 0;
        for (size_t j = 0; j < expected.size(); ++j) {
          ASSERT_TRUE(std::isfinite(result.logits[j]));
          max_diff = std::max(max_diff, std::fabs(double{result.logits[j]} - expected[j]));
          max_ref = std::max(max_ref, std::fabs(double{expected[j]}));
        }
        const double tolerance = dtype == DType::kF32 ? 1e-4 : 1e-2;
        std::printf("  %s %s sequence %d: relative error vs transformers %.3g\n", fixture,
                    std::string(DTypeName(dtype)).c_str(), i, max_diff / max_ref);
        EXPECT_LE(max_diff / max_ref, tolerance) << fixture << " " << DTypeName(dtype) << " sequence " << i;
      }
    }
  }
}

// Steady-state decoding allocates nothing: the pool's reservation is flat after a warm-up step,
// and destroyed caches give every KV block back.
TEST_F(GpuTest, DecodeStepsDoNotGrowMemory) {
  auto cuda = Cuda(DType::kBF16);
  ASSERT_NE(cuda, nullptr);
  ASSERT_OK_AND_ASSIGN(LlamaConfig config, PresetConfig("tiny"));
  ASSERT_OK_AND_ASSIGN(auto weights, CreateRandomWeights(config, DType::kBF16, 3));
  ASSERT_OK_AND_ASSIGN(auto slice, ModelSlice::Create(config, *weights, {}, cuda.get()));
  {
    std::vector<std::unique_ptr<KvCache>> caches;
    for (int s = 0; s < 4; ++s) {
      ASSERT_OK_AND_ASSIGN(auto c, slice->NewKvCache(1024));
      caches.push_back(std::move(c));
    }
    auto step = [&](int64_t tokens) {
      ForwardBatch batch;
      std::vector<int32_t> ids;
      for (auto& c : caches) {
        batch.sequences.push_back({c.get(), tokens});
        for (int64_t i = 0; i < tokens; ++i) ids.push_back(static_cast<int32_t>(ids.size() % 100));
      }
      batch.token_ids = ids;
      batch.outputs = ForwardBatch::Outputs::kLastOfEachSequence;
      ForwardResult result;
      return slice->Forward(batch, &result);
    };
    ASSERT_OK(step(100));  // prefill
    ASSERT_OK(step(1));    // warm-up decode
    const CudaBackendStats before = GetCudaBackendStats(*cuda);
    for (int i = 0; i < 50; ++i) ASSERT_OK(step(1));  // KV blocks come from the pool's first chunk
    const CudaBackendStats after = GetCudaBackendStats(*cuda);
    EXPECT_EQ(after.device_bytes_reserved, before.device_bytes_reserved);
    EXPECT_GT(after.kv_blocks_in_use, 0);
  }
  EXPECT_EQ(GetCudaBackendStats(*cuda).kv_blocks_in_use, 0);
}

// Decode steps of a fixed batch repeat exactly and run as CUDA graphs from the second step on; the
// graph replays give bit-identical logits to op-by-op execution (same kernels and cuBLASLt
// algorithms: autotuning off on both sides so the choice cannot differ).
// Runs the same prefill + 59 greedy decode steps of two sequences on two CUDA backends and expects
// bit-identical logits and hidden states at every step (the same kernels in the same order, however
// they are launched). Returns both backends' statistics.
void ExpectIdenticalSteps(const CudaBackendOptions (&options)[2], CudaBackendStats (&stats)[2]) {
  ASSERT_OK_AND_ASSIGN(LlamaConfig config, PresetConfig("tiny"));
  ASSERT_OK_AND_ASSIGN(auto weights, CreateRandomWeights(config, DType::kBF16, FreshSeed()));
  std::unique_ptr<Backend> backends[2];
  std::unique_ptr<ModelSlice> slices[2];
  std::vector<std::unique_ptr<KvCache>> caches[2];
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(backends[i], CreateCudaBackend(options[i]));
    ASSERT_OK_AND_ASSIGN(slices[i], ModelSlice::Create(config, *weights, {}, backends[i].get()));
    for (int s = 0; s < 2; ++s) {
      ASSERT_OK_AND_ASSIGN(auto c, slices[i]->NewKvCache(512));
      caches[i].push_back(std::move(c));
    }
  }
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37) % static_cast<int>(config.vocab_size));
  int64_t tokens = 20;  // prefill 20 per sequence, then decode one at a time
  for (int step = 0; step < 60; ++step) {
    ForwardResult results[2];
    for (int i = 0; i < 2; ++i) {
      ForwardBatch batch;
      batch.sequences = {{caches[i][0].get(), tokens}, {caches[i][1].get(), tokens}};
      batch.token_ids = absl::MakeConstSpan(ids).subspan(0, 2 * tokens);
      batch.outputs = ForwardBatch::Outputs::kLastOfEachSequence;
      ASSERT_OK(slices[i]->Forward(batch, &results[i]));
    }
    ASSERT_EQ(results[0].logits, results[1].logits) << "step " << step;
    ASSERT_EQ(results[0].hidden, results[1].hidden) << "step " << step;
    // Next tokens: the argmax of each sequence.
    for (int s = 0; s < 2; ++s) {
      const float* row = &results[0].logits[s * config.vocab_size];
      ids[s] = static_cast<int32_t>(std::max_element(row, row + config.vocab_size) - row);
    }
    tokens = 1;
  }
  for (int i = 0; i < 2; ++i) stats[i] = GetCudaBackendStats(*backends[i]);
}

TEST_F(GpuTest, GraphReplayMatchesEagerExactly) {
  CudaBackendOptions options[2];
  for (int i = 0; i < 2; ++i) {
    options[i].autotune_matmul = false;
    options[i].cuda_graphs = i == 0;
  }
  CudaBackendStats stats[2];
  ExpectIdenticalSteps(options, stats);
  std::printf("graphs: %lld captured, %lld replays, %lld eager steps\n",
              (long long)stats[0].graphs_captured, (long long)stats[0].graph_replays,
              (long long)stats[0].eager_steps);
  EXPECT_GT(stats[0].graph_replays, 30);  // 59 decode steps; a new KV block every 16 runs eagerly
  EXPECT_EQ(stats[1].graph_replays, 0);
}

// Programmatic dependent launch only lets a kernel be scheduled early; each waits for its
// predecessor before touching memory, so results are bit-identical to plain launches, in graphs too.
TEST_F(GpuTest, ProgrammaticLaunchMatchesPlainLaunchExactly) {
  CudaBackendOptions options[2];
  for (int i = 0; i < 2; ++i) {
    options[i].autotune_matmul = false;  // the same products on both
    options[i].own_gemv = OwnGemv::kAlways;  // our kernel launches programmatically too
    options[i].programmatic_launch = i == 0;
  }
  CudaBackendStats stats[2];
  ExpectIdenticalSteps(options, stats);
  EXPECT_GT(stats[0].graph_replays, 30);
}

// Megatron splitting with CUDA backends: W ranks sharing this GPU (host thread communicators), and
// one rank over NCCL, against the unsplit model on a CUDA backend of the same weight type.
TEST_F(GpuTest, TensorParallelRanksSharingTheGpuMatchUnsplit) {
  const LlamaConfig config = TensorParallelCheckConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, CreateRandomWeights(config, DType::kF32, FreshSeed()));
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const bool unverified : {false, true}) {  // the fused add+RMSNorm is among them
      auto reference = Cuda(dtype, unverified);
      ASSERT_NE(reference, nullptr);
      for (int world : {2, 4}) {
        CheckOptions options;
        options.tolerance = dtype == DType::kF32 ? 1e-4 : 1e-2;
        std::printf("%s weights, %s paths:\n", std::string(DTypeName(dtype)).c_str(),
                    unverified ? "unverified" : "measured");
        ExpectAllPassed(CheckTensorParallel(
            *reference,
            [dtype, unverified](int) {
              CudaBackendOptions o;
              o.weight_dtype = dtype;
              if (unverified) o = o.UnverifiedPaths();
              return CreateCudaBackend(o);
            },
            nullptr, world, config, *weights, options));
      }
    }
  }
}

TEST_F(GpuTest, TensorParallelOverNcclMatchesUnsplit) {
  auto probe = CreateNcclCommunicators({0});
  if (!probe.ok()) GTEST_SKIP() << "NCCL unavailable: " << probe.status();
  probe->clear();
  const LlamaConfig config = TensorParallelCheckConfig();
  ASSERT_OK_AND_ASSIGN(auto weights, CreateRandomWeights(config, DType::kF32, FreshSeed()));
  auto reference = Cuda(DType::kF32);
  ASSERT_NE(reference, nullptr);
  CheckOptions options;
  options.tolerance = 1e-5;
  ExpectAllPassed(CheckTensorParallel(
      *reference,
      [](int) {
        CudaBackendOptions o;
        o.weight_dtype = DType::kF32;
        return CreateCudaBackend(o);
      },
      [](int world) { return CreateNcclCommunicators(std::vector<int>(world, 0)); }, 1, config,
      *weights, options));
}

TEST_F(GpuTest, UnsupportedHeadDimIsRejected) {
  auto cuda = Cuda(DType::kBF16);
  ASSERT_NE(cuda, nullptr);
  auto kv = cuda->AllocateKv(KvShape{1, 1, 512}, 16);
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace verdict::engine
