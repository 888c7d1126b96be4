// SPDX-License-Identifier: Apache-2.0
#include "engine/ready_model.h"

#include <set>

#include "absl/strings/match.h"
#include "common/status_macros.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/tensor_parallel.h"

namespace verdict::engine {
namespace {

// The device indices of `devices` when every one is "cuda:N" and no N repeats (NCCL's case), else
// an empty list.
std::vector<int> DistinctCudaDevices(const std::vector<std::string>& devices) {
  std::vector<int> indices;
  std::set<int> seen;
  for (const std::string& device : devices) {
    const absl::StatusOr<DeviceName> name = ParseDeviceName(device);
    if (!absl::StartsWith(device, "cuda:") || !name.ok() || !seen.insert(name->index).second) return {};
    indices.push_back(name->index);
  }
  return indices;
}

}  // namespace

absl::StatusOr<ReadyModel> OpenModel(const std::string& path, int threads, const std::string& device, bool fp8,
                                     KvCacheType kv_cache) {
  ReadyModel ready;
  VERDICT_ASSIGN_OR_RETURN(ready.loaded, LoadModel(path));
  VERDICT_ASSIGN_OR_RETURN(ready.backend, CreateBackendForDevice(device, threads, {}, fp8, kv_cache));
  VERDICT_ASSIGN_OR_RETURN(ready.model, ModelSlice::Create(ready.loaded.config, *ready.loaded.weights, {},
                                                           ready.backend.get()));
  return ready;
}

absl::StatusOr<ReadySlice> OpenSliceRunner(const LoadedModel& loaded, SliceRange range,
                                           const std::vector<std::string>& devices, int threads, bool fp8,
                                           KvCacheType kv_cache) {
  if (devices.empty()) return absl::InvalidArgumentError("a slice needs at least one device");
  ReadySlice ready;
  if (devices.size() == 1) {
    VERDICT_ASSIGN_OR_RETURN(ready.backend, CreateBackendForDevice(devices[0], threads, {}, fp8, kv_cache));
    VERDICT_ASSIGN_OR_RETURN(ready.slice, ModelSlice::Create(loaded.config, *loaded.weights, range, ready.backend.get()));
    ready.runner = RunSingleSlice(ready.slice.get());
    ready.rank_backends.push_back(ready.backend.get());
    return ready;
  }
  TensorParallelGroup::CommunicatorFactory communicators;  // default: in-process threads
  if (std::vector<int> cuda = DistinctCudaDevices(devices); !cuda.empty()) {
    communicators = [cuda](int) { return CreateNcclCommunicators(cuda); };
  }
  const int ranks = static_cast<int>(devices.size());
  VERDICT_ASSIGN_OR_RETURN(
      std::unique_ptr<TensorParallelGroup> group,
      TensorParallelGroup::Create(
          loaded.config, *loaded.weights, range, ranks,
          [&devices, threads, fp8, kv_cache](int rank) {
            return CreateBackendForDevice(devices[rank], threads, {}, fp8, kv_cache);
          },
          std::move(communicators)));
  for (int r = 0; r < ranks; ++r) ready.rank_backends.push_back(&group->backend(r));
  ready.runner = RunTensorParallel(std::move(group));
  return ready;
}

}  // namespace verdict::engine
