// SPDX-License-Identifier: Apache-2.0
#include "engine/cuda/nccl_communicator.h"

#include <dlfcn.h>
#include <nccl.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_status.h"

namespace verdict::engine::cuda {
namespace {

// The NCCL entry points Verdict uses, resolved from libnccl.so.2 once.
struct NcclApi {
  decltype(&ncclCommInitAll) comm_init_all = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclAllGather) all_gather = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  std::string error;  // why loading failed
};

const NcclApi& Nccl() {
  static const NcclApi* api = [] {
    auto* a = new NcclApi;
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      a->error = absl::StrCat("cannot load libnccl.so.2 (", dlerror(), "); install NCCL or set LD_LIBRARY_PATH");
      return a;
    }
    a->comm_init_all = reinterpret_cast<decltype(a->comm_init_all)>(dlsym(lib, "ncclCommInitAll"));
    a->comm_destroy = reinterpret_cast<decltype(a->comm_destroy)>(dlsym(lib, "ncclCommDestroy"));
    a->all_reduce = reinterpret_cast<decltype(a->all_reduce)>(dlsym(lib, "ncclAllReduce"));
    a->all_gather = reinterpret_cast<decltype(a->all_gather)>(dlsym(lib, "ncclAllGather"));
    a->error_string = reinterpret_cast<decltype(a->error_string)>(dlsym(lib, "ncclGetErrorString"));
    if (!a->comm_init_all || !a->comm_destroy || !a->all_reduce || !a->all_gather || !a->error_string) {
      a->error = "libnccl.so.2 lacks an expected symbol (NCCL too old?)";
    }
    return a;
  }();
  return *api;
}

absl::Status NcclStatus(ncclResult_t result, const char* what) {
  if (result == ncclSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": NCCL error ", static_cast<int>(result), " (",
                                             Nccl().error_string(result), ")"));
}

class NcclRank final : public NcclCommunicator {
 public:
  NcclRank(ncclComm_t comm, int rank, int size, int device, cudaStream_t stream)
      : comm_(comm), rank_(rank), size_(size), device_(device), stream_(stream) {}
  ~NcclRank() override {
    (void)cudaSetDevice(device_);
    Nccl().comm_destroy(comm_);
    (void)cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const override { return device_; }

  absl::Status AllReduceSumOnStream(float* data, size_t count, cudaStream_t stream) override {
    return NcclStatus(Nccl().all_reduce(data, data, count, ncclFloat, ncclSum, comm_, stream),
                      "ncclAllReduce");
  }
  absl::Status AllReduceSum(absl::Span<float> data) override {
    (void)cudaSetDevice(device_);
    if (absl::Status s = AllReduceSumOnStream(data.data(), data.size(), stream_); !s.ok()) return s;
    return CudaStatus(cudaStreamSynchronize(stream_), "NCCL all-reduce");
  }
  absl::Status AllGather(absl::Span<const float> send, absl::Span<float> recv) override {
    if (recv.size() != send.size() * size_) {
      return absl::InvalidArgumentError(absl::StrCat("all-gather receive buffer has ", recv.size(),
                                                     " values, expected ", send.size() * size_));
    }
    (void)cudaSetDevice(device_);
    absl::Status s = NcclStatus(Nccl().all_gather(send.data(), recv.data(), send.size(), ncclFloat,
                                                  comm_, stream_),
                                "ncclAllGather");
    if (!s.ok()) return s;
    return CudaStatus(cudaStreamSynchronize(stream_), "NCCL all-gather");
  }

 private:
  ncclComm_t comm_;
  int rank_;
  int size_;
  int device_;
  cudaStream_t stream_;
};

}  // namespace
}  // namespace verdict::engine::cuda

namespace verdict::engine {

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateNcclCommunicators(
    const std::vector<int>& devices) {
  using cuda::CudaStatus;
  using cuda::Nccl;
  using cuda::NcclApi;
  using cuda::NcclRank;
  if (devices.empty()) return absl::InvalidArgumentError("no devices for the NCCL communicators");
  std::vector<int> sorted = devices;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return absl::InvalidArgumentError("NCCL needs one GPU per rank; a device is listed twice");
  }
  const NcclApi& api = Nccl();
  if (!api.error.empty()) return absl::FailedPreconditionError(api.error);
  std::vector<ncclComm_t> comms(devices.size());
  if (ncclResult_t r = api.comm_init_all(comms.data(), static_cast<int>(devices.size()), devices.data());
      r != ncclSuccess) {
    return absl::FailedPreconditionError(
        absl::StrCat("ncclCommInitAll over ", devices.size(), " GPU(s): ", api.error_string(r)));
  }
  std::vector<std::unique_ptr<Communicator>> out;
  for (size_t i = 0; i < devices.size(); ++i) {
    cudaStream_t stream = nullptr;
    (void)cudaSetDevice(devices[i]);
    if (absl::Status s = CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                    "NCCL stream");
        !s.ok()) {
      for (size_t j = i; j < comms.size(); ++j) api.comm_destroy(comms[j]);
      return s;
    }
    out.push_back(std::make_unique<NcclRank>(comms[i], static_cast<int>(i),
                                             static_cast<int>(devices.size()), devices[i], stream));
  }
  return out;
}

}  // namespace verdict::engine
