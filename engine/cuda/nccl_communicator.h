// SPDX-License-Identifier: Apache-2.0
// The NCCL communicators' interface inside the CUDA backend (CreateNcclCommunicators, declared in
// engine/cuda/cuda_backend.h, makes them). Communicators over NCCL serve tensor parallelism across the GPUs of one process (one rank per
// device; engine/tensor_parallel.h drives one backend per rank on its own thread). NCCL is loaded at
// run time (libnccl.so.2), so binaries start on machines without it and report a clear error only
// when tensor parallelism over NCCL is asked for.
//
// Spans passed to these communicators are device memory of the rank's GPU. The CUDA backend's
// AllReduceSum op enqueues the collective on its own stream (AllReduceSumOnStream), ordered with
// its other work and capturable into CUDA graphs; the Communicator methods run on an internal
// stream and wait for it.
#ifndef VERDICT_ENGINE_CUDA_NCCL_COMMUNICATOR_H_
#define VERDICT_ENGINE_CUDA_NCCL_COMMUNICATOR_H_

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/communicator.h"

namespace verdict::engine::cuda {

class NcclCommunicator : public Communicator {
 public:
  // data = sum over ranks, enqueued on `stream` (device memory; returns once enqueued).
  virtual absl::Status AllReduceSumOnStream(float* data, size_t count, cudaStream_t stream) = 0;
  virtual int device() const = 0;
};

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_NCCL_COMMUNICATOR_H_
