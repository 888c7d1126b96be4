// SPDX-License-Identifier: Apache-2.0
// CUDA runtime and cuBLAS errors as absl::Status (internal to engine/cuda).
#ifndef VERDICT_ENGINE_CUDA_CUDA_STATUS_H_
#define VERDICT_ENGINE_CUDA_CUDA_STATUS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace verdict::engine::cuda {

inline absl::Status CudaStatus(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

inline absl::Status CublasStatus(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": cuBLAS status ", static_cast<int>(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE) {
    return absl::InvalidArgumentError(message);
  }
  return absl::InternalError(message);
}

}  // namespace verdict::engine::cuda

#define VERDICT_CUDA_RETURN_IF_ERROR(expr, what)                                   \
  do {                                                                             \
    ::absl::Status _verdict_cuda_status = ::verdict::engine::cuda::CudaStatus((expr), (what)); \
    if (!_verdict_cuda_status.ok()) return _verdict_cuda_status;                   \
  } while (0)

#endif  // VERDICT_ENGINE_CUDA_CUDA_STATUS_H_
