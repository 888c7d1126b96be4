// SPDX-License-Identifier: Apache-2.0
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/cuda/cuda_backend.h"

namespace verdict::engine {

absl::StatusOr<DeviceName> ParseDeviceName(absl::string_view name) {
  if (name == "cpu") return DeviceName{};
  absl::string_view rest = name;
  if (!absl::ConsumePrefix(&rest, "cuda")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device '", name, "': expected cpu, cuda or cuda:N"));
  }
  DeviceName device{true, 0};
  if (!rest.empty() && (!absl::ConsumePrefix(&rest, ":") || !absl::SimpleAtoi(rest, &device.index) ||
                        device.index < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad device '", name, "': expected cpu, cuda or cuda:N"));
  }
  return device;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackendForDevice(const std::string& device,
                                                                int cpu_threads,
                                                                const CudaBackendOptions& cuda,
                                                                bool fp8_projections,
                                                                KvCacheType kv_cache) {
  absl::StatusOr<DeviceName> name = ParseDeviceName(device);
  if (!name.ok()) return name.status();
  if (!name->cuda) {
    return CreateCpuBackend(
        {.num_threads = cpu_threads, .fp8_projections = fp8_projections, .kv_cache = kv_cache});
  }
  if (kv_cache != KvCacheType::kAuto) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache type ", KvCacheTypeName(kv_cache), " is for the CPU backend; ", device,
        " keeps its KV cache in bf16 (f32 for f32 weights): use auto"));
  }
  CudaBackendOptions options = cuda;
  options.device = name->index;
  if (fp8_projections) options.weight_dtype = DType::kF8E4M3Block;
  return CreateCudaBackend(options);
}

}  // namespace verdict::engine
