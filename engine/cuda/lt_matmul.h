// SPDX-License-Identifier: Apache-2.0
// out[m, n] (+)= x[m, k] . w[n, k]^T through cuBLASLt (internal to engine/cuda).
// Operands: w is the weight as stored on the device (bf16, f16 or f32, row-major [n, k]; or FP8
// codes with their scales, see kernels.h); x is the activation already in the same type (bf16 for
// FP8 weights; row-major, leading dimension ldx); out is f32 row-major with leading dimension
// ldout. Accumulation is f32 (no TF32 for f32 operands). cuBLASLt multiplies FP8 weights after
// dequantizing them to bf16 into the caller's scratch (prefill, where the product is compute-bound);
// skinny shapes can run our FP8 kernels instead, which read each weight byte once per pass (up to
// 8 rows, or 32 on the tensor cores).
// The algorithm for each shape comes from cuBLASLt's heuristic; for m <= kTuneMaxRows the top
// candidates, and our own skinny-product kernel where it applies (kernels.h, m <= kGemvMaxRows),
// are timed once on the stream and the fastest is cached (decode and verification run the same few
// shapes millions of times). Each timed run starts with the L2 cache flushed, as in a real step,
// where the weights stream from memory. Not thread-safe: owned by the backend's engine thread.
#ifndef VERDICT_ENGINE_CUDA_LT_MATMUL_H_
#define VERDICT_ENGINE_CUDA_LT_MATMUL_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/status.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernels.h"

namespace verdict::engine::cuda {

class LtMatMul {
 public:
  static constexpr int64_t kTuneMaxRows = 64;

  // `pool` provides the workspace and tuning scratch; it must outlive this object.
  static absl::StatusOr<std::unique_ptr<LtMatMul>> Create(DevicePool* pool, LaunchStream stream,
                                                          bool autotune, OwnGemv own_gemv);
  ~LtMatMul();

  // `scales` and `dequant` (bf16 [n, k] scratch) for FP8 weights only, else nullptr.
  absl::Status Run(const void* x, int64_t ldx, const void* w, StorageType type,
                   const float* scales, void* dequant, float* out, int64_t ldout, int64_t m,
                   int64_t n, int64_t k, bool accumulate);

  int64_t shapes_tuned() const { return shapes_tuned_; }
  int64_t shapes_on_own_gemv() const { return shapes_on_own_gemv_; }

 private:
  struct Plan {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo;
    bool use_gemv = false;  // our skinny-product kernel runs this shape
  };
  // (m, n, k, ldx, ldout, operand type, alignment of x, of w, of out): cuBLASLt's heuristic assumes
  // 256-byte aligned pointers unless told otherwise, and views into activation buffers need not be.
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int, int>;

  LtMatMul(DevicePool* pool, LaunchStream stream, bool autotune, OwnGemv own_gemv)
      : pool_(pool), stream_(stream.stream), launch_(stream), autotune_(autotune),
        own_gemv_(own_gemv) {}
  // The FP8-specific operands of one product.
  struct Fp8Operands {
    const float* scales = nullptr;
    void* dequant = nullptr;
  };
  absl::StatusOr<Plan*> GetPlan(const Key& key, const void* x, const void* w, Fp8Operands fp8);
  static int Alignment(const void* p);
  absl::Status Tune(Plan* plan, const cublasLtMatmulHeuristicResult_t* candidates, int count,
                    const Key& key, const void* x, const void* w, Fp8Operands fp8, bool try_gemv);
  // cuBLASLt's product with `algo` (after dequantizing FP8 weights into fp8.dequant).
  absl::Status LaunchCublas(const cublasLtMatmulAlgo_t& algo, const Plan& plan, const void* x, const void* w,
                    StorageType type, Fp8Operands fp8, float* out, int64_t n, int64_t k,
                    float beta);

  DevicePool* pool_;
  cudaStream_t stream_;
  LaunchStream launch_;  // for our skinny-product kernel
  bool autotune_;
  OwnGemv own_gemv_;
  cublasLtHandle_t handle_ = nullptr;
  // f32 compute and scale (no TF32) for every operand type: the operand types live in the layouts.
  cublasLtMatmulDesc_t desc_ = nullptr;
  std::unique_ptr<PoolAllocation> workspace_;
  size_t flush_bytes_ = 0;  // written between timed tuning runs: 2 x the L2 cache
  std::map<Key, Plan> plans_;
  int64_t shapes_tuned_ = 0;
  int64_t shapes_on_own_gemv_ = 0;
};

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_LT_MATMUL_H_
