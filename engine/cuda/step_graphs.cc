// SPDX-License-Identifier: Apache-2.0
#include "engine/cuda/step_graphs.h"

#include "engine/cuda/cuda_status.h"

namespace verdict::engine::cuda {

StepGraphs::~StepGraphs() {
  for (auto& [signature, entry] : cache_) {
    if (entry.exec != nullptr) (void)cudaGraphExecDestroy(entry.exec);
  }
}

void StepGraphs::Clear() {
  work_.clear();
  signature_.clear();
}

void StepGraphs::Discard() { Clear(); }

absl::Status StepGraphs::RunEager() {
  ++eager_steps_;
  absl::Status status;
  for (auto& work : work_) {
    status = work();
    if (!status.ok()) break;
  }
  return status;
}

absl::Status StepGraphs::Capture(Entry& entry) {
  absl::Status status = CudaStatus(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                                   "beginning a CUDA graph capture");
  for (size_t i = 0; status.ok() && i < work_.size(); ++i) status = work_[i]();
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  if (status.ok()) status = CudaStatus(end, "ending a CUDA graph capture");
  if (status.ok()) {
    status = CudaStatus(cudaGraphInstantiate(&entry.exec, graph, 0), "instantiating a CUDA graph");
  }
  if (graph != nullptr) (void)cudaGraphDestroy(graph);
  if (!status.ok()) {
    (void)cudaGetLastError();
    entry.exec = nullptr;
  } else {
    ++graphs_captured_;
  }
  return status;
}

absl::Status StepGraphs::Run() {
  if (work_.empty()) return absl::OkStatus();
  absl::Status status;
  if (!enabled_) {
    status = RunEager();
    Clear();
    return status;
  }
  auto it = cache_.find(signature_);
  if (it == cache_.end()) {
    if (cache_.size() >= kMaxEntries) {  // forget one-off shapes, keep captured graphs
      for (auto e = cache_.begin(); e != cache_.end();) {
        e = e->second.exec == nullptr ? cache_.erase(e) : std::next(e);
      }
    }
    if (cache_.size() < kMaxEntries) cache_.emplace(signature_, Entry{});
    status = RunEager();
  } else if (it->second.exec != nullptr) {
    ++graph_replays_;
    status = CudaStatus(cudaGraphLaunch(it->second.exec, stream_), "launching a CUDA graph");
  } else if (it->second.uncapturable) {
    status = RunEager();
  } else if (Capture(it->second).ok()) {
    status = CudaStatus(cudaGraphLaunch(it->second.exec, stream_), "launching a CUDA graph");
  } else {
    it->second.uncapturable = true;  // e.g. work that cannot be captured: run it as it is
    status = RunEager();
  }
  Clear();
  return status;
}

}  // namespace verdict::engine::cuda
