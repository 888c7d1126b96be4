// SPDX-License-Identifier: Apache-2.0
// Collectives among the ranks of one tensor-parallel group (the GPUs of one target shard): the
// interface Megatron-style layer splitting needs (one all-reduce after the attention output
// projection, one after the MLP down projection). Implementations: threads of one process
// (CreateThreadCommunicators: CPU tests of the splitting math for any rank count, and CPU tensor
// parallelism) and NCCL (the CUDA backend, one GPU per rank).
//
// Every rank must make the same sequence of calls with equal lengths; a call blocks until all ranks
// made it. Each Communicator is used by one thread (its rank's engine thread).
#ifndef VERDICT_ENGINE_COMMUNICATOR_H_
#define VERDICT_ENGINE_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace verdict::engine {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: data = sum over ranks of data. The result is bit-identical on every rank (ranks are
  // summed in rank order). kInvalidArgument (on every rank) if the lengths differ.
  virtual absl::Status AllReduceSum(absl::Span<float> data) = 0;
  // recv = concatenation of every rank's send, in rank order (recv.size() == size() * send.size()).
  // kInvalidArgument on every rank for send lengths that differ, on the rank with a wrong recv size.
  virtual absl::Status AllGather(absl::Span<const float> send, absl::Span<float> recv) = 0;
};

// `size` communicators (ranks 0..size-1) sharing one in-process group; hand one to each thread.
// REQUIRES: size >= 1.
std::vector<std::unique_ptr<Communicator>> CreateThreadCommunicators(int size);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_COMMUNICATOR_H_
