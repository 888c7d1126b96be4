// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's entry points in a build without CUDA (VERDICT_CUDA=OFF or no toolkit).
#include "engine/cuda/cuda_backend.h"

namespace verdict::engine {

bool CudaBackendCompiled() { return false; }

int CudaDeviceCount(std::string* why) {
  if (why != nullptr) *why = "this build of Verdict has no CUDA support (VERDICT_CUDA=OFF)";
  return 0;
}

absl::StatusOr<std::string> CudaDeviceDescription(int) {
  return absl::UnimplementedError("this build of Verdict has no CUDA support");
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions&) {
  return absl::UnimplementedError(
      "this build of Verdict has no CUDA support: rebuild with the CUDA toolkit and VERDICT_CUDA=ON");
}

absl::StatusOr<double> MeasureCudaCopyBandwidth(int) {
  return absl::UnimplementedError("this build of Verdict has no CUDA support");
}

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateNcclCommunicators(
    const std::vector<int>&) {
  return absl::UnimplementedError("this build of Verdict has no CUDA support");
}

CudaBackendStats GetCudaBackendStats(const Backend&) { return {}; }
CudaBackendStats GetCudaBackendStatsSnapshot(const Backend&) { return {}; }

}  // namespace verdict::engine
