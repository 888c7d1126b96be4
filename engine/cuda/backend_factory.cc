// SPDX-License-Identifier: Apache-2.0
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/cuda/cuda_backend.h"

namespace verdict::engine {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackendForDevice(const std::string& device,
                                                                int cpu_threads,
                                                                const CudaBackendOptions& cuda) {
  if (device == "cpu") return CreateCpuBackend({cpu_threads});
  absl::string_view rest = device;
  if (absl::ConsumePrefix(&rest, "cuda")) {
    CudaBackendOptions options = cuda;
    options.device = 0;
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":") || !absl::SimpleAtoi(rest, &options.device) ||
          options.device < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad device '", device, "': expected cpu, cuda or cuda:N"));
      }
    }
    return CreateCudaBackend(options);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", device, "': expected cpu, cuda or cuda:N"));
}

}  // namespace verdict::engine
