// SPDX-License-Identifier: Apache-2.0
#include "engine/cuda/lt_matmul.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/cuda_status.h"

namespace verdict::engine::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;
constexpr int kCandidates = 8;

cudaDataType_t CudaType(StorageType type) {
  switch (type) {
    case StorageType::kBF16:
      return CUDA_R_16BF;
    case StorageType::kF16:
      return CUDA_R_16F;
    case StorageType::kF32:
      break;
  }
  return CUDA_R_32F;
}

absl::StatusOr<cublasLtMatmulDesc_t> MakeDesc() {
  cublasLtMatmulDesc_t desc = nullptr;
  VERDICT_RETURN_IF_ERROR(CublasStatus(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                                       "cublasLtMatmulDescCreate"));
  // Row-major out = x . w^T is column-major out^T = w . x^T: op(A) = w^T viewed column-major, i.e.
  // A = w with transpose, B = x without.
  const cublasOperation_t transpose = CUBLAS_OP_T;
  const cublasOperation_t none = CUBLAS_OP_N;
  VERDICT_RETURN_IF_ERROR(CublasStatus(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)),
      "set TRANSA"));
  VERDICT_RETURN_IF_ERROR(CublasStatus(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)),
      "set TRANSB"));
  return desc;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LtMatMul>> LtMatMul::Create(DevicePool* pool, cudaStream_t stream,
                                                           bool autotune) {
  std::unique_ptr<LtMatMul> mm(new LtMatMul(pool, stream, autotune));
  VERDICT_RETURN_IF_ERROR(CublasStatus(cublasLtCreate(&mm->handle_), "cublasLtCreate"));
  VERDICT_ASSIGN_OR_RETURN(mm->desc_, MakeDesc());
  VERDICT_ASSIGN_OR_RETURN(mm->workspace_, pool->Allocate(kWorkspaceBytes));
  return mm;
}

LtMatMul::~LtMatMul() {
  for (auto& [key, plan] : plans_) {
    if (plan.a) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.b) cublasLtMatrixLayoutDestroy(plan.b);
    if (plan.d) cublasLtMatrixLayoutDestroy(plan.d);
  }
  if (desc_) cublasLtMatmulDescDestroy(desc_);
  if (handle_) cublasLtDestroy(handle_);
}

absl::StatusOr<LtMatMul::Plan*> LtMatMul::GetPlan(const Key& key, const void* x, const void* w) {
  if (auto it = plans_.find(key); it != plans_.end()) return &it->second;
  const auto [m, n, k, ldx, ldout, type_int, align_x, align_w, align_out] = key;
  const StorageType type = static_cast<StorageType>(type_int);
  Plan plan;
  struct LayoutGuard {  // destroys the layouts unless the plan is stored
    Plan* plan;
    ~LayoutGuard() {
      if (plan == nullptr) return;
      if (plan->a) cublasLtMatrixLayoutDestroy(plan->a);
      if (plan->b) cublasLtMatrixLayoutDestroy(plan->b);
      if (plan->d) cublasLtMatrixLayoutDestroy(plan->d);
    }
  } guard{&plan};
  const cudaDataType_t operand = CudaType(type);
  // Column-major views: A = w as [k, n] (ld k), B = x as [k, m] (ld ldx), D = out as [n, m].
  VERDICT_RETURN_IF_ERROR(CublasStatus(cublasLtMatrixLayoutCreate(&plan.a, operand, k, n, k), "layout A"));
  VERDICT_RETURN_IF_ERROR(CublasStatus(cublasLtMatrixLayoutCreate(&plan.b, operand, k, m, ldx), "layout B"));
  VERDICT_RETURN_IF_ERROR(CublasStatus(cublasLtMatrixLayoutCreate(&plan.d, CUDA_R_32F, n, m, ldout), "layout D"));
  cublasLtMatmulPreference_t preference = nullptr;
  VERDICT_RETURN_IF_ERROR(CublasStatus(cublasLtMatmulPreferenceCreate(&preference), "preference"));
  const uint64_t workspace = kWorkspaceBytes;
  const uint32_t alignments[4] = {static_cast<uint32_t>(align_w), static_cast<uint32_t>(align_x),
                                  static_cast<uint32_t>(align_out), static_cast<uint32_t>(align_out)};
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspace, sizeof(workspace));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                       &alignments[0], sizeof(uint32_t));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                       &alignments[1], sizeof(uint32_t));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                       &alignments[2], sizeof(uint32_t));
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                       &alignments[3], sizeof(uint32_t));
  cublasLtMatmulHeuristicResult_t results[kCandidates];
  int found = 0;
  const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(
      handle_, desc_, plan.a, plan.b, plan.d, plan.d, preference, kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  VERDICT_RETURN_IF_ERROR(
      CublasStatus(heuristic, absl::StrCat("no cuBLASLt algorithm for m=", m, " n=", n, " k=", k)));
  if (found == 0) {
    return absl::InvalidArgumentError(absl::StrCat("no cuBLASLt algorithm for m=", m, " n=", n, " k=", k));
  }
  Plan& stored = plans_[key] = plan;
  guard.plan = nullptr;
  stored.algo = results[0].algo;
  if (autotune_ && m <= kTuneMaxRows && found > 1) {
    VERDICT_RETURN_IF_ERROR(Tune(&stored, results, found, x, w, m, n, ldout));
  }
  return &stored;
}

absl::Status LtMatMul::Tune(Plan* plan, const cublasLtMatmulHeuristicResult_t* candidates,
                            int count, const void* x, const void* w, int64_t m, int64_t n,
                            int64_t ldout) {
  // Time each candidate into scratch (the real output may be an accumulation target). The scratch
  // has the output's layout: m rows `ldout` apart (a column view of a wider buffer writes past
  // m * n floats).
  const size_t scratch_floats = static_cast<size_t>((m - 1) * ldout + n);
  VERDICT_ASSIGN_OR_RETURN(auto scratch, pool_->Allocate(scratch_floats * sizeof(float)));
  cudaEvent_t start, stop;
  VERDICT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start), "event");
  VERDICT_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop), "event");
  const float alpha = 1.0f, beta = 0.0f;
  float best_ms = std::numeric_limits<float>::infinity();
  float first_ms = 0;
  int best = 0;
  for (int c = 0; c < count; ++c) {
    constexpr int kRuns = 5;
    bool ok = true;
    for (int r = 0; r <= kRuns && ok; ++r) {  // the first run warms up
      if (r == 1) cudaEventRecord(start, stream_);
      ok = cublasLtMatmul(handle_, desc_, &alpha, w, plan->a, x, plan->b, &beta, scratch->get(),
                          plan->d, scratch->get(), plan->d, &candidates[c].algo, workspace_->get(),
                          kWorkspaceBytes, stream_) == CUBLAS_STATUS_SUCCESS;
    }
    if (!ok) continue;
    cudaEventRecord(stop, stream_);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (c == 0) first_ms = ms;
    if (ms < best_ms) {
      best_ms = ms;
      best = c;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  plan->algo = candidates[best].algo;
  ++shapes_tuned_;
  if (std::getenv("VERDICT_LOG_MATMUL_TUNING") != nullptr) {
    std::fprintf(stderr,
                 "[cublaslt] m=%lld n=%lld: %d candidates, heuristic's first %.1f us, best #%d %.1f us\n",
                 (long long)m, (long long)n, count, first_ms * 1e3 / 5, best, best_ms * 1e3 / 5);
  }
  return CudaStatus(cudaGetLastError(), "tuning cuBLASLt algorithms");
}

int LtMatMul::Alignment(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  int alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

absl::Status LtMatMul::Run(const void* x, int64_t ldx, const void* w, StorageType type, float* out,
                           int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate) {
  if (m == 0) return absl::OkStatus();
  const Key key{m, n, k, ldx, ldout, static_cast<int>(type), Alignment(x), Alignment(w), Alignment(out)};
  VERDICT_ASSIGN_OR_RETURN(Plan * plan, GetPlan(key, x, w));
  const float alpha = 1.0f;
  const float beta = accumulate ? 1.0f : 0.0f;
  return CublasStatus(cublasLtMatmul(handle_, desc_, &alpha, w, plan->a, x, plan->b, &beta,
                                     out, plan->d, out, plan->d, &plan->algo, workspace_->get(),
                                     kWorkspaceBytes, stream_),
                      absl::StrCat("cublasLtMatmul m=", m, " n=", n, " k=", k));
}

}  // namespace verdict::engine::cuda
