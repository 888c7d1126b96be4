// SPDX-License-Identifier: Apache-2.0
// CUDA graphs for repeated steps (internal to engine/cuda). The backend records the GPU work of one
// step (everything between two Synchronize() calls) as closures, together with a signature of every
// argument that reaches the GPU: kernel and shape parameters, device pointers, and the addresses of
// the staging buffers that carry per-step data (token ids, positions). At the end of the step:
//   - a signature seen for the first time runs eagerly (and creates whatever per-shape state the
//     work needs, e.g. cuBLASLt plans and autotuning);
//   - the second time it is captured into a CUDA graph, which is launched;
//   - afterwards the graph is replayed: one launch instead of hundreds.
// Decode and verification steps of a fixed batch composition repeat exactly (the per-step data lives
// at the same staging addresses with new contents), so they run as graphs; a step whose shape
// changed (a new KV block, another batch) has another signature and falls back to eager execution.
// Not thread-safe: owned by the backend's engine thread.
#ifndef VERDICT_ENGINE_CUDA_STEP_GRAPHS_H_
#define VERDICT_ENGINE_CUDA_STEP_GRAPHS_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"

namespace verdict::engine::cuda {

class StepGraphs {
 public:
  StepGraphs(cudaStream_t stream, bool enabled) : stream_(stream), enabled_(enabled) {}
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  // Appends values to the current step's signature (their bytes, padding included: zero it).
  template <typename... Args>
  void Sign(const Args&... args) {
    static_assert((std::is_trivially_copyable_v<Args> && ...), "signatures hold plain bytes");
    (signature_.append(reinterpret_cast<const char*>(&args), sizeof(args)), ...);
  }
  // Adds work to the current step; it runs, in order, at Run().
  void Record(std::function<absl::Status()> work) { work_.push_back(std::move(work)); }
  bool empty() const { return work_.empty(); }

  // Enqueues the step's work on the stream (eagerly, by capturing a graph, or by replaying one) and
  // starts a new step. Returns the first error of the work or of the graph machinery.
  absl::Status Run();
  // Drops the recorded work (after an error while recording).
  void Discard();

  int64_t eager_steps() const { return eager_steps_; }
  int64_t graphs_captured() const { return graphs_captured_; }
  int64_t graph_replays() const { return graph_replays_; }

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    bool uncapturable = false;
  };
  absl::Status RunEager();
  absl::Status Capture(Entry& entry);
  void Clear();

  static constexpr size_t kMaxEntries = 256;
  cudaStream_t stream_;
  bool enabled_;
  std::vector<std::function<absl::Status()>> work_;
  std::string signature_;
  std::unordered_map<std::string, Entry> cache_;  // by signature
  int64_t eager_steps_ = 0;
  int64_t graphs_captured_ = 0;
  int64_t graph_replays_ = 0;
};

}  // namespace verdict::engine::cuda

#endif  // VERDICT_ENGINE_CUDA_STEP_GRAPHS_H_
