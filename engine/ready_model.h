// SPDX-License-Identifier: Apache-2.0
// Models placed on backends, what every binary that runs one starts from: a whole model, loaded
// (Hugging Face directory or GGUF file, with its tokenizer) on one backend (the `verdict` commands,
// verdict-draft), and a target shard's layer range as a SliceRunner: one slice on one backend, or a
// tensor-parallel group with one backend per rank (verdict-shard). Not thread-safe.
#ifndef VERDICT_ENGINE_READY_MODEL_H_
#define VERDICT_ENGINE_READY_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model.h"
#include "engine/model_loader.h"
#include "engine/slice_runner.h"

namespace verdict::engine {

struct ReadyModel {
  LoadedModel loaded;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ModelSlice> model;  // every layer, over `backend`
};

// Loads `path` and builds the whole model on `device` ("cpu", "cuda" or "cuda:N") with `threads`
// CPU threads (0: all cores). `fp8`: quantize the layers' projections to FP8 at load. Errors: those
// of LoadModel, CreateBackendForDevice and ModelSlice::Create (each names the file or device).
// `kv_cache`: the KV cache's element type (CreateBackendForDevice).
absl::StatusOr<ReadyModel> OpenModel(const std::string& path, int threads, const std::string& device = "cpu",
                                     bool fp8 = false, KvCacheType kv_cache = KvCacheType::kAuto);

// A layer range of a loaded model, ready to run.
struct ReadySlice {
  std::unique_ptr<Backend> backend;  // one rank only
  std::unique_ptr<ModelSlice> slice;  // one rank only
  std::unique_ptr<SliceRunner> runner;
  std::vector<const Backend*> rank_backends;  // one per rank (status and GPU figures)
};
// Builds `range` of `loaded` over `devices.size()` ranks, one backend per device ("cpu", "cuda",
// "cuda:N"), each with `threads` CPU threads; more than one rank splits every layer (tensor
// parallelism: ranks on distinct "cuda:N" devices all-reduce with NCCL, others through host
// memory). `loaded` must outlive the result. Errors: kInvalidArgument for no devices; those of the
// backends and of ModelSlice::Create / TensorParallelGroup::Create.
absl::StatusOr<ReadySlice> OpenSliceRunner(const LoadedModel& loaded, SliceRange range,
                                           const std::vector<std::string>& devices, int threads, bool fp8,
                                           KvCacheType kv_cache = KvCacheType::kAuto);

// The help text of every binary's --fp8 flag (OpenModel's `fp8`).
inline constexpr const char* kFp8FlagHelp =
    "Quantize the layers' linear projections of a 16/32-bit checkpoint to FP8 E4M3 at load (one "
    "f32 scale per 128 values of a row; embeddings and the LM head keep their precision): half the "
    "weight bytes of bf16. FP8 checkpoints load as FP8 without it";

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_READY_MODEL_H_
