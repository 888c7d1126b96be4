// SPDX-License-Identifier: Apache-2.0
// The CUDA backend: the engine's Backend interface (engine/backend.h) on one NVIDIA GPU.
//   - Weights live on the device as bf16 (default), f16 or f32 (q8_0 and other checkpoint dtypes are
//     converted once at upload), FP8 weights (engine/fp8.h) as E4M3 codes + per-(row, 128 values)
//     f32 scales; norms and biases as f32. Activations stay f32 between ops.
//   - Matrix products go through cuBLASLt with 16-bit inputs and f32 accumulation and output (the
//     activation is rounded to the weight dtype first, by the op that produced it). For each new
//     (m, n, k) with m <= 64 (decode and verification shapes) the candidate algorithms, and for
//     m <= 8 (m <= 64 for FP8 weights) our own kernel (warp per column; FP8 verification blocks on
//     the tensor cores), are timed once (cold L2) and the fastest is cached.
//   - The KV cache is paged: fixed-size blocks from one pool per cache shape, a block table per
//     sequence, blocks taken as a sequence grows and returned when its cache is destroyed;
//     truncation stays a metadata operation (engine/kv_cache.h).
//   - Memory comes from a caching device pool, small per-op metadata (token ids, positions, sequence
//     descriptors) from per-step arenas, host copies go through pinned staging buffers: after the
//     first steps of a shape nothing is allocated on the hot path.
//   - Ops record their GPU work; Synchronize() enqueues the step on one stream — op by op the first
//     time a step's exact shape is seen, as a captured CUDA graph from the second time on
//     (engine/cuda/step_graphs.h) — waits, and delivers host copies.
// A backend belongs to one engine thread (it makes its device current on every call).
//
// This header has no CUDA dependency: without a CUDA toolkit at build time (VERDICT_CUDA=OFF)
// CreateCudaBackend returns kUnimplemented and CudaDeviceCount() is 0.
#ifndef VERDICT_ENGINE_CUDA_CUDA_BACKEND_H_
#define VERDICT_ENGINE_CUDA_CUDA_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backend.h"
#include "engine/communicator.h"
#include "engine/dtype.h"

namespace verdict::engine {

// Whether skinny products (m <= 8 with 16-bit weights, m <= 64 with FP8) may run on our own kernel
// instead of cuBLASLt.
enum class OwnGemv : uint8_t {
  kTimed,   // where it is faster than cuBLASLt's candidates (needs autotune_matmul)
  kNever,
  kAlways,  // wherever it applies (tests: a deterministic choice)
};

struct CudaBackendOptions {
  int device = 0;
  // Storage of weight matrices: kBF16 (default), kF16 or kF32 (exact reference mode: f32 products
  // without TF32 and an f32 KV cache; for checks, not for speed). FP8 checkpoint matrices stay FP8
  // in the 16-bit modes. kF8E4M3Block: bf16, and the layers' projections quantized to FP8 at load
  // (Backend::QuantizesProjectionsToFp8).
  DType weight_dtype = DType::kBF16;
  // Time cuBLASLt's candidate algorithms for skinny shapes (m <= 64) at first use.
  bool autotune_matmul = true;
  // Positions per KV block.
  int64_t kv_block_positions = 16;
  // Replay repeated steps (same shapes and buffers: decode, verification) as CUDA graphs.
  bool cuda_graphs = true;
  // Stacked q|k|v and gate|up matrices: one product each instead of three and two.
  bool fuse_projections = true;
  OwnGemv own_gemv = OwnGemv::kTimed;
  // Programmatic dependent launch of our kernels (Hopper): each is scheduled while the previous
  // kernel finishes and waits for it on the device, hiding the launch latency between them. Off
  // until it has been measured on a GPU (docs/gpu-notes.md).
  bool programmatic_launch = false;
  // Prefill attention on the tensor cores (batches whose sequences all have 64+ new rows, bf16 KV
  // cache, head_dim 64 or 128): FlashAttention-style tiles instead of the chunk kernel's CUDA-core
  // arithmetic, which bounds long prompts. Off until it has been checked and measured on a GPU.
  bool tensor_core_prefill = false;
  // Paths prepared without a GPU since the last measured run (run 10, docs/gpu-notes.md), off
  // until a GPU run has verified them; the defaults are the measured path. `verdict selftest --gpu`
  // and `bench/gpu/run_gpu_checks.sh` run both. UnverifiedPaths() turns all three on.
  // Attention in one launch per layer (RoPE, KV write and merge inside the chunk kernel) instead
  // of four (RoPE, KV write, chunk kernel, combine).
  bool one_launch_attention = false;
  // The sampled rule decided on the device (Backend::DecidesSampledOnDevice) instead of copying
  // the logits rows to the host and deciding there.
  bool device_sampling = false;
  // Tensor parallelism: the all-reduced output's residual add fused into the next RMSNorm instead
  // of an Add launch before it.
  bool fused_add_rms_norm = false;

  // These options with every unverified path on.
  CudaBackendOptions UnverifiedPaths() const {
    CudaBackendOptions o = *this;
    o.one_launch_attention = o.device_sampling = o.fused_add_rms_norm = true;
    return o;
  }
};

// True when this build contains the CUDA backend.
bool CudaBackendCompiled();

// Number of usable CUDA devices; 0 when there is no GPU, no driver, or any error (the error text,
// if any, is stored in *why when why != nullptr).
int CudaDeviceCount(std::string* why = nullptr);

// A one-line description of device `device` (name, memory, SMs, compute capability, driver).
absl::StatusOr<std::string> CudaDeviceDescription(int device);

// Errors: kUnimplemented without CUDA support in the build, kFailedPrecondition when the device
// does not exist or cannot be initialised, kInvalidArgument for an unsupported weight dtype.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options);

// Statistics a CUDA backend reports (for benchmarks and the admin endpoint); zeros elsewhere.
struct CudaBackendStats {
  size_t device_bytes_reserved = 0;  // held by the caching pool (in use + cached)
  size_t device_bytes_in_use = 0;
  int64_t kv_blocks_in_use = 0;
  int64_t kv_blocks_total = 0;
  int64_t matmul_shapes_tuned = 0;
  int64_t matmul_shapes_on_own_gemv = 0;  // shapes our skinny-product kernel runs
  int64_t eager_steps = 0;      // steps launched op by op
  int64_t graphs_captured = 0;  // distinct step shapes captured as CUDA graphs
  int64_t graph_replays = 0;    // steps launched as one graph
  int64_t tensor_core_prefills = 0;  // attention ops recorded on the tensor-core prefill path
};
// Live figures; call from the backend's engine thread.
CudaBackendStats GetCudaBackendStats(const Backend& backend);
// The figures as of the backend's last Synchronize(); safe from any thread (admin endpoints).
CudaBackendStats GetCudaBackendStatsSnapshot(const Backend& backend);

// Device-to-device copy bandwidth of `device` in bytes per second, counting bytes read and written
// (best of several 1 GiB copies): the memory floor of decoding is this / weight bytes per token.
absl::StatusOr<double> MeasureCudaCopyBandwidth(int device);

// Tensor parallelism over NCCL: one communicator per entry of `devices` (rank i on devices[i]),
// from ncclCommInitAll, for the CUDA backends of one process. NCCL is loaded at run time.
// Errors: kFailedPrecondition when NCCL cannot be loaded or initialised (the message says why),
// kInvalidArgument for an empty or repeated device list, kUnimplemented without CUDA support.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> CreateNcclCommunicators(
    const std::vector<int>& devices);

// A device name as users write it: "cpu", "cuda" (device 0) or "cuda:N".
struct DeviceName {
  bool cuda = false;
  int index = 0;  // CUDA device index
};
// Errors: kInvalidArgument naming the text and the accepted forms.
absl::StatusOr<DeviceName> ParseDeviceName(absl::string_view name);

// Creates a backend by device name: "cpu" or "cuda" / "cuda:N" (N = device index).
// `cpu_threads` applies to "cpu" (0: all hardware threads); `cuda` (device ignored) to CUDA.
// `fp8_projections`: the backend asks for the layers' projections quantized to FP8 at load
// (Backend::QuantizesProjectionsToFp8; on CUDA weight_dtype fp8, on the CPU fp8_projections).
// `kv_cache`: the KV cache's element type; CUDA keeps its own (bf16, f32 for f32 weights) and
// refuses any other choice than kAuto with kInvalidArgument.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackendForDevice(
    const std::string& device, int cpu_threads, const CudaBackendOptions& cuda = {},
    bool fp8_projections = false, KvCacheType kv_cache = KvCacheType::kAuto);

}  // namespace verdict::engine

#endif  // VERDICT_ENGINE_CUDA_CUDA_BACKEND_H_
