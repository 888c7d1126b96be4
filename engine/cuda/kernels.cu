// SPDX-License-Identifier: Apache-2.0
// The CUDA backend's kernels. Launch geometry, loads/stores and reductions live here; the math of
// each element comes from engine/kernels/op_math.h and engine/cuda/attention_math.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>

#include "engine/cuda/kernels.h"
#include "engine/cuda/fp8_mma_math.h"
#include "engine/fp8.h"
#include "engine/kernels/op_math.h"
#include "engine/kernels/sampling_math.h"

namespace verdict::engine::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float Load(const float* p) { return *p; }
__device__ __forceinline__ float Load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float Load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void Store(__half* p, float v) { *p = __float2half_rn(v); }
// First statement of every kernel: under programmatic dependent launch the kernel may start while
// the previous one on the stream still runs; this waits for it (a no-op otherwise).
__device__ __forceinline__ void WaitForPredecessor() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cudaGridDependencySynchronize();
#endif
}

template <typename... Params, typename... Args>
void Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            LaunchStream stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream.stream;
  cudaLaunchAttribute attribute[1] = {};
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = stream.programmatic ? 1 : 0;
  config.attrs = attribute;
  config.numAttrs = 1;
  (void)cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);  // errors: cudaGetLastError
}

// Element i of a 16-bit operand copy (a uniform branch on the type).
__device__ __forceinline__ void StoreCopy(const Copy16& copy, int64_t i, float v) {
  if (copy.type == StorageType::kBF16) {
    Store(static_cast<__nv_bfloat16*>(copy.data) + i, v);
  } else {
    Store(static_cast<__half*>(copy.data) + i, v);
  }
}

struct SumOp {
  __device__ float operator()(float a, float b) const { return a + b; }
  static constexpr float kIdentity = 0.0f;
};
struct MaxOp {  // warp reductions only (BlockReduce would need a kIdentity)
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Reduction over aligned groups of kLanes lanes (the whole warp by default; 4: an mma quad, which
// holds one accumulator row); every lane of a group gets its group's result.
template <typename Op, int kLanes = 32>
__device__ __forceinline__ float WarpReduce(float v) {
  for (int offset = kLanes / 2; offset > 0; offset >>= 1) {
    v = Op()(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}
__device__ __forceinline__ float WarpSum(float v) { return WarpReduce<SumOp>(v); }

// Block-wide reduction (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Each instantiation has its own shared scratch.
template <typename Op>
__device__ float BlockReduce(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = WarpReduce<Op>(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : Op::kIdentity;
    w = WarpReduce<Op>(w);
    if (lane == 0) total = w;
  }
  __syncthreads();
  return total;
}
__device__ float BlockSum(float v) { return BlockReduce<SumOp>(v); }

// ---- logits summaries -------------------------------------------------------------------------

__device__ __forceinline__ void MergeWithLane(math::LogitStats& s, int offset) {
  math::LogitStats o;
  o.max = __shfl_xor_sync(0xffffffffu, s.max, offset);
  o.sum = __shfl_xor_sync(0xffffffffu, s.sum, offset);
  o.weighted = __shfl_xor_sync(0xffffffffu, s.weighted, offset);
  o.best = __shfl_xor_sync(0xffffffffu, s.best, offset);
  o.best_index = __shfl_xor_sync(0xffffffffu, s.best_index, offset);
  math::MergeLogitStats(s, o);
}

__device__ __forceinline__ void WarpMergeStats(math::LogitStats& s) {
  for (int offset = 16; offset > 0; offset >>= 1) MergeWithLane(s, offset);
}

// Block-wide merge of every thread's statistics; thread 0 gets the result.
__device__ math::LogitStats BlockMergeStats(math::LogitStats s) {
  WarpMergeStats(s);
  __shared__ math::LogitStats warp_stats[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_stats[warp] = s;
  __syncthreads();
  s = lane < static_cast<int>(blockDim.x / 32) ? warp_stats[lane] : math::EmptyLogitStats();
  WarpMergeStats(s);
  return s;
}

// A row of 128k logits is too long for one block (one SM, a long chain of loads per thread): first
// one block per (chunk of columns, row) writes the chunk's statistics, then one warp per row merges
// the chunks (exact for the argmax; only the order of the sums differs).
constexpr int kSummaryThreads = 256;
constexpr int kSummaryPerThread = 8;
constexpr int64_t kSummaryChunk = int64_t{kSummaryThreads} * kSummaryPerThread;

__global__ void SummarizeChunksKernel(const float* logits, int64_t stride, int64_t cols,
                                      math::LogitStats* chunk_stats) {
  WaitForPredecessor();
  const int64_t chunk = blockIdx.x;
  const int64_t row = blockIdx.y;
  const float* x = logits + row * stride;
  const int64_t end = (chunk + 1) * kSummaryChunk < cols ? (chunk + 1) * kSummaryChunk : cols;
  math::LogitStats s = math::EmptyLogitStats();
#pragma unroll
  for (int i = 0; i < kSummaryPerThread; ++i) {
    const int64_t c = chunk * kSummaryChunk + i * int64_t{kSummaryThreads} + threadIdx.x;
    if (c < end) math::AddLogit(s, x[c], static_cast<int32_t>(c));
  }
  s = BlockMergeStats(s);
  if (threadIdx.x == 0) chunk_stats[row * gridDim.x + chunk] = s;
}

__global__ void MergeSummaryChunksKernel(const math::LogitStats* chunk_stats, int64_t chunks,
                                         const float* logits, int64_t stride,
                                         const int32_t* tokens, float* out, int64_t out_stride) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  math::LogitStats s = math::EmptyLogitStats();
  for (int64_t c = threadIdx.x; c < chunks; c += 32) {
    math::MergeLogitStats(s, chunk_stats[row * chunks + c]);
  }
  WarpMergeStats(s);
  if (threadIdx.x != 0) return;
  const int32_t token = tokens != nullptr ? tokens[row] : -1;
  const float token_logit =
      token >= 0 ? logits[row * stride + token] : __int_as_float(0x7fc00000);  // quiet NaN
  math::WriteLogitSummary(s, token_logit, out + row * out_stride);
}

// ---- sampled verification ----------------------------------------------------------------------
// One block per row decides the sampled rule (engine/kernels/sampling_math.h) where the logits are:
// the row's support under temperature/top-k/top-p by radix selection on the logits' ordered keys
// (four passes of 8 bits instead of a sort), p(token), and a draw from max(0, p - q) by inverse CDF
// in id order. Every sum is reduced in a fixed order (top-p histograms in 2^-36 fixed point, whose
// integer atomics commute), so a row's decision does not change from run to run.
constexpr int kSampleThreads = 1024;
constexpr int kSampleWarps = kSampleThreads / 32;
constexpr double kMassScale = 68719476736.0;  // 2^36: a 2^24-token row of weights <= 1 fits 2^60

struct SampleShared {
  uint32_t counts[256];
  unsigned long long masses[256];
  double partial[kSampleWarps];
  int32_t ints[kSampleWarps];
  float best[kSampleWarps];
  int32_t best_index[kSampleWarps];
  uint32_t digit;
  int64_t remaining;
  double above;
  int32_t found;
};

__device__ double SampleBlockSum(double v, SampleShared& sh) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) sh.partial[warp] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kSampleWarps; ++w) total += sh.partial[w];  // same order in every thread
  __syncthreads();
  return total;
}

__device__ int32_t SampleBlockMaxInt(int32_t v, SampleShared& sh) {
  for (int offset = 16; offset > 0; offset >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  if (threadIdx.x % 32 == 0) sh.ints[threadIdx.x / 32] = v;
  __syncthreads();
  int32_t m = sh.ints[0];
  for (int w = 1; w < kSampleWarps; ++w) m = max(m, sh.ints[w]);
  __syncthreads();
  return m;
}

// Exclusive prefix sum over the threads in thread order (each thread owns a contiguous chunk of the
// row, so this orders the chunks by id); `total` gets the sum of all.
template <typename T>
__device__ T SampleBlockExclusiveScan(T v, T* warp_totals, T* total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  T inclusive = v;
  for (int offset = 1; offset < 32; offset <<= 1) {
    const T up = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += up;
  }
  T exclusive = __shfl_up_sync(0xffffffffu, inclusive, 1);
  if (lane == 0) exclusive = 0;
  if (lane == 31) warp_totals[warp] = inclusive;
  __syncthreads();
  T before = 0;
  T all = 0;
  for (int w = 0; w < kSampleWarps; ++w) {
    if (w < warp) before += warp_totals[w];
    all += warp_totals[w];
  }
  __syncthreads();
  *total = all;
  return before + exclusive;
}

// The row's argmax (first index among equal maxima; NaN never wins), for every thread.
__device__ void SampleBlockArgmax(const float* x, int64_t cols, SampleShared& sh, float* best,
                                  int32_t* best_index) {
  float b = -INFINITY;
  int32_t bi = math::kNoLogitIndex;
  for (int64_t j = threadIdx.x; j < cols; j += kSampleThreads) {
    if (math::BeatsArgmax(x[j], static_cast<int32_t>(j), b, bi)) {
      b = x[j];
      bi = static_cast<int32_t>(j);
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, b, offset);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, offset);
    if (math::BeatsArgmax(ob, oi, b, bi)) {
      b = ob;
      bi = oi;
    }
  }
  if (threadIdx.x % 32 == 0) {
    sh.best[threadIdx.x / 32] = b;
    sh.best_index[threadIdx.x / 32] = bi;
  }
  __syncthreads();
  b = sh.best[0];
  bi = sh.best_index[0];
  for (int w = 1; w < kSampleWarps; ++w) {
    if (math::BeatsArgmax(sh.best[w], sh.best_index[w], b, bi)) {
      b = sh.best[w];
      bi = sh.best_index[w];
    }
  }
  __syncthreads();
  *best = b;
  *best_index = bi;
}

// The chunk [begin, end) of the row this thread owns for order-dependent walks.
__device__ __forceinline__ void SampleChunk(int64_t cols, int64_t* begin, int64_t* end) {
  const int64_t per = (cols + kSampleThreads - 1) / kSampleThreads;
  *begin = min(cols, per * threadIdx.x);
  *end = min(cols, *begin + per);
}

// Whether token j is a candidate of top-p: kept by the top-k cut (all tokens without top-k).
__device__ __forceinline__ bool SampleCandidate(const math::SamplingSupport& topk, float logit, int32_t j) {
  return math::Kept(topk, logit, j);
}

// The index of the n-th (1-based) token in id order with ordered key `key` among the candidates of
// `within`, for every thread; kNoLogitIndex if there are fewer.
__device__ int32_t SampleNthWithKey(const float* x, int64_t cols, uint32_t key, int64_t n,
                                    const math::SamplingSupport& within, SampleShared& sh) {
  int64_t begin, end;
  SampleChunk(cols, &begin, &end);
  int32_t count = 0;
  for (int64_t j = begin; j < end; ++j) {
    const float v = x[j];
    count += v == v && math::LogitKey(v) == key && SampleCandidate(within, v, static_cast<int32_t>(j));
  }
  int32_t total;
  const int32_t before = SampleBlockExclusiveScan<int32_t>(count, sh.ints, &total);
  if (threadIdx.x == 0) sh.found = math::kNoLogitIndex;
  __syncthreads();
  if (n > before && n <= before + count) {
    int64_t seen = before;
    for (int64_t j = begin; j < end; ++j) {
      const float v = x[j];
      if (v == v && math::LogitKey(v) == key && SampleCandidate(within, v, static_cast<int32_t>(j)) &&
          ++seen == n) {
        sh.found = static_cast<int32_t>(j);
        break;
      }
    }
  }
  __syncthreads();
  const int32_t found = sh.found;
  __syncthreads();
  return found;
}

// The cut after the top_k-th candidate in the order of math::SampledBefore.
__device__ void SampleTopKCut(const float* x, int64_t cols, int64_t top_k, SampleShared& sh,
                              math::SamplingSupport* s) {
  uint32_t prefix = 0;
  uint32_t mask = 0;
  if (threadIdx.x == 0) sh.remaining = top_k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kSampleThreads) sh.counts[b] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < cols; j += kSampleThreads) {
      const float v = x[j];
      const uint32_t key = math::LogitKey(v);
      if (v == v && (key & mask) == prefix) atomicAdd(&sh.counts[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // the bucket holding the remaining-th largest, from the top
      uint32_t digit = 0;
      for (int b = 255; b >= 0; --b) {
        if (sh.counts[b] >= sh.remaining) {
          digit = static_cast<uint32_t>(b);
          break;
        }
        sh.remaining -= sh.counts[b];
      }
      sh.digit = digit;
    }
    __syncthreads();
    prefix |= sh.digit << shift;
    mask |= 255u << shift;
    __syncthreads();
  }
  const int64_t nth = sh.remaining;  // among the tokens with this key, in id order
  const int32_t index = SampleNthWithKey(x, cols, prefix, nth, math::SamplingSupport{}, sh);
  s->cut_logit = math::LogitFromKey(prefix);
  s->cut_index = index;  // kNoLogitIndex (keep all equal ones) only for rows with NaN
}

// The cut of the smallest prefix of the candidates whose mass reaches top_p of theirs.
__device__ void SampleTopPCut(const float* x, int64_t cols, float top_p, SampleShared& sh,
                              math::SamplingSupport* s) {
  const math::SamplingSupport within = *s;
  auto fixed_weight = [&](float v) {
    return static_cast<unsigned long long>(math::SamplingWeight(v, s->max_logit, s->temperature) * kMassScale);
  };
  double local = 0;
  for (int64_t j = threadIdx.x; j < cols; j += kSampleThreads) {
    const float v = x[j];
    if (SampleCandidate(within, v, static_cast<int32_t>(j))) local += static_cast<double>(fixed_weight(v));
  }
  const double target = static_cast<double>(top_p) * SampleBlockSum(local, sh);  // exact integers
  uint32_t prefix = 0;
  uint32_t mask = 0;
  if (threadIdx.x == 0) sh.above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kSampleThreads) {
      sh.counts[b] = 0;
      sh.masses[b] = 0;
    }
    __syncthreads();
    for (int64_t j = threadIdx.x; j < cols; j += kSampleThreads) {
      const float v = x[j];
      const uint32_t key = math::LogitKey(v);
      if ((key & mask) == prefix && SampleCandidate(within, v, static_cast<int32_t>(j))) {
        const uint32_t b = (key >> shift) & 255u;
        atomicAdd(&sh.counts[b], 1u);
        atomicAdd(&sh.masses[b], fixed_weight(v));
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) {  // the bucket where the mass from the top reaches the target
      int selected = -1;
      int lowest = -1;
      for (int b = 255; b >= 0; --b) {
        if (sh.counts[b] == 0) continue;
        lowest = b;
        if (sh.above + static_cast<double>(sh.masses[b]) >= target) {
          selected = b;
          break;
        }
        sh.above += static_cast<double>(sh.masses[b]);
      }
      if (selected < 0 && lowest >= 0) {  // rounding: every candidate is in the nucleus
        selected = lowest;
        sh.above -= static_cast<double>(sh.masses[lowest]);
      }
      sh.digit = static_cast<uint32_t>(selected < 0 ? 0 : selected);
    }
    __syncthreads();
    prefix |= sh.digit << shift;
    mask |= 255u << shift;
    __syncthreads();
  }
  // Tokens with the cut's key all weigh the same: take as many (in id order) as reach the target.
  const float cut = math::LogitFromKey(prefix);
  const double weight = static_cast<double>(fixed_weight(cut));
  int64_t count = 1;
  if (weight > 0) count = max(int64_t{1}, static_cast<int64_t>(ceil((target - sh.above) / weight)));
  int32_t index = SampleNthWithKey(x, cols, prefix, count, within, sh);
  if (index == math::kNoLogitIndex) {  // fewer than that (rounding): the last of them
    int32_t last = -1;
    for (int64_t j = threadIdx.x; j < cols; j += kSampleThreads) {
      const float v = x[j];
      if (v == v && math::LogitKey(v) == prefix && SampleCandidate(within, v, static_cast<int32_t>(j))) {
        last = max(last, static_cast<int32_t>(j));
      }
    }
    index = SampleBlockMaxInt(last, sh);
  }
  s->cut_logit = cut;
  s->cut_index = index;
}

// The residual (or p) element j of a row: q merged in from the id-sorted proposal by the caller.
__device__ __forceinline__ float SampleResidual(const math::SamplingSupport& s, const float* x, int64_t j,
                                                float q, bool use_p) {
  const float p = math::SampledProb(s, x[j], static_cast<int32_t>(j));
  return use_p ? p : math::ResidualProb(p, q);
}

__global__ void __launch_bounds__(kSampleThreads) DecideSampledKernel(const float* logits, int64_t stride, int64_t cols,
                                    const math::SampledRowRequest* requests, const int32_t* proposal_ids,
                                    const float* proposal_probs, float* out, int64_t out_stride,
                                    float* supports, int64_t supports_stride) {
  WaitForPredecessor();
  __shared__ SampleShared sh;
  const int64_t row = blockIdx.x;
  const float* x = logits + row * stride;
  const math::SampledRowRequest r = requests[row];
  float* o = out + row * out_stride;
  float max_logit;
  int32_t argmax;
  SampleBlockArgmax(x, cols, sh, &max_logit, &argmax);
  if (argmax == math::kNoLogitIndex) argmax = 0;
  float* support = supports != nullptr ? supports + row * supports_stride : nullptr;
  if (r.temperature <= 0.0f) {  // greedy: one-hot on the argmax
    if (threadIdx.x == 0) {
      o[0] = r.token == argmax ? 1.0f : 0.0f;
      o[1] = static_cast<float>(argmax);
      o[2] = x[argmax];
      o[3] = 0.0f;
      if (support != nullptr) {
        support[0] = static_cast<float>(argmax);
        support[cols] = 1.0f;
        o[3] = 1.0f;
      }
    }
    return;
  }
  math::SamplingSupport s;
  s.max_logit = max_logit;
  s.temperature = r.temperature;
  if (r.top_k > 0 && r.top_k < cols) SampleTopKCut(x, cols, r.top_k, sh, &s);
  if (r.top_p < 1.0f) SampleTopPCut(x, cols, r.top_p, sh, &s);
  double kept = 0;
  for (int64_t j = threadIdx.x; j < cols; j += kSampleThreads) {
    const float v = x[j];
    if (math::Kept(s, v, static_cast<int32_t>(j))) kept += math::SamplingWeight(v, s.max_logit, s.temperature);
  }
  s.mass = SampleBlockSum(kept, sh);

  int64_t begin, end;
  SampleChunk(cols, &begin, &end);
  int32_t support_size = 0;
  if (support != nullptr) {  // the tokens with p > 0, compacted in id order
    int32_t count = 0;
    for (int64_t j = begin; j < end; ++j) count += math::SampledProb(s, x[j], static_cast<int32_t>(j)) > 0.0f;
    int32_t total;
    int64_t at = SampleBlockExclusiveScan<int32_t>(count, sh.ints, &total);
    for (int64_t j = begin; j < end && count > 0; ++j) {
      const float p = math::SampledProb(s, x[j], static_cast<int32_t>(j));
      if (p > 0.0f) {
        support[at] = static_cast<float>(j);
        support[cols + at] = p;
        ++at;
      }
    }
    support_size = total;
  }

  // The draw: this thread's chunk of the residual in id order, q from the proposal's entries that
  // fall in the chunk (found by binary search; ids are strictly ascending).
  const int32_t* q_ids = proposal_ids + r.proposal_begin;
  const float* q_probs = proposal_probs + r.proposal_begin;
  int32_t q_first = 0;
  {
    int32_t lo = 0;
    int32_t hi = r.proposal_count;
    while (lo < hi) {
      const int32_t mid = (lo + hi) / 2;
      if (q_ids[mid] < begin) lo = mid + 1; else hi = mid;
    }
    q_first = lo;
  }
  auto q_at = [&](int64_t j, int32_t& cursor) -> float {
    if (r.token < 0) return 0.0f;
    if (r.proposal_count == 0) return j == r.token ? 1.0f : 0.0f;
    if (cursor < r.proposal_count && q_ids[cursor] == j) return q_probs[cursor++];
    return 0.0f;
  };
  bool use_p = r.token < 0;
  double chunk_mass = 0;
  int32_t last_positive = -1;
  for (int pass = 0; pass < 2; ++pass) {
    chunk_mass = 0;
    last_positive = -1;
    int32_t cursor = q_first;
    for (int64_t j = begin; j < end; ++j) {
      const float v = SampleResidual(s, x, j, q_at(j, cursor), use_p);
      if (v > 0.0f) {
        chunk_mass += v;
        last_positive = static_cast<int32_t>(j);
      }
    }
    const double total = SampleBlockSum(chunk_mass, sh);
    if (total > 0 || use_p) break;
    use_p = true;  // p == q: the token could not have been rejected; draw from p
  }
  double total;
  const double before = SampleBlockExclusiveScan<double>(chunk_mass, sh.partial, &total);
  const int32_t fallback = max(0, SampleBlockMaxInt(last_positive, sh));  // the last token with mass
  if (threadIdx.x == 0) sh.found = fallback;
  __syncthreads();
  const double target = r.sample_uniform * total;
  if (chunk_mass > 0 && target >= before && target < before + chunk_mass) {
    double cumulative = before;
    int32_t cursor = q_first;
    int32_t chosen = last_positive;
    for (int64_t j = begin; j < end; ++j) {
      const float v = SampleResidual(s, x, j, q_at(j, cursor), use_p);
      if (v <= 0.0f) continue;
      cumulative += v;
      if (target < cumulative) {
        chosen = static_cast<int32_t>(j);
        break;
      }
    }
    sh.found = chosen;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    o[0] = r.token >= 0 ? math::SampledProb(s, x[r.token], r.token) : 0.0f;
    o[1] = static_cast<float>(sh.found);
    o[2] = x[sh.found];
    o[3] = static_cast<float>(support_size);
  }
}

int Blocks(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

// ---- skinny products ---------------------------------------------------------------------------

constexpr int kGemvThreads = 256;

// 8 consecutive elements (16-byte aligned for 16-bit types, 32-byte for f32) as floats.
__device__ __forceinline__ void Load8(const float* p, float* out) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
  out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}
__device__ __forceinline__ float2 ToFloat2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
__device__ __forceinline__ float2 ToFloat2(__half2 v) { return __half22float2(v); }
// 8 16-bit values (one 16-byte load) as four pairs of type Pair.
template <typename Pair>
__device__ __forceinline__ void Load8Pairs(const void* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const auto* pairs = reinterpret_cast<const Pair*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = ToFloat2(pairs[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void Load8(const __nv_bfloat16* p, float* out) {
  Load8Pairs<__nv_bfloat162>(p, out);
}
__device__ __forceinline__ void Load8(const __half* p, float* out) { Load8Pairs<__half2>(p, out); }

// One warp per output column: the lanes stream the column's weight row in 16-byte loads (several
// in flight per lane), each against the m activation rows (L1-resident), then reduce.
template <typename T, int M>
__global__ void GemvKernel(const T* x, int64_t ldx, const T* w, float* out, int64_t ldout,
                           int64_t n, int64_t k, bool accumulate) {
  WaitForPredecessor();
  const int lane = threadIdx.x % 32;
  const int64_t column = blockIdx.x * int64_t{kGemvThreads / 32} + threadIdx.x / 32;
  if (column >= n) return;
  const T* row = w + column * k;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
#pragma unroll 4
  for (int64_t i = lane * 8; i < k; i += 32 * 8) {
    float wf[8];
    Load8(row + i, wf);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float xf[8];
      Load8(x + r * ldx + i, xf);
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[r] += wf[j] * xf[j];
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float sum = WarpSum(acc[r]);
    if (lane == 0) {
      float* o = out + r * ldout + column;
      *o = accumulate ? *o + sum : sum;
    }
  }
}

template <typename T>
void GemvTyped(const void* x, int64_t ldx, const void* w, float* out, int64_t ldout, int64_t m,
               int64_t n, int64_t k, bool accumulate, LaunchStream stream) {
  const unsigned blocks = static_cast<unsigned>((n + kGemvThreads / 32 - 1) / (kGemvThreads / 32));
  const T* xt = static_cast<const T*>(x);
  const T* wt = static_cast<const T*>(w);
  switch (m) {
#define VERDICT_GEMV_CASE(M)                                                                     \
  case M:                                                                                        \
    Launch(GemvKernel<T, M>, blocks, kGemvThreads, 0, stream, xt, ldx, wt, out, ldout, n, k, \
           accumulate);                                                                          \
    break;
    VERDICT_GEMV_CASE(1)
    VERDICT_GEMV_CASE(2)
    VERDICT_GEMV_CASE(3)
    VERDICT_GEMV_CASE(4)
    VERDICT_GEMV_CASE(5)
    VERDICT_GEMV_CASE(6)
    VERDICT_GEMV_CASE(7)
    VERDICT_GEMV_CASE(8)
#undef VERDICT_GEMV_CASE
    default:
      break;
  }
}

// 16 E4M3 codes (one 16-byte load) as floats, through the hardware's e4m3x2 -> f16x2 conversion
// (exact: every E4M3 value is an f16 value).
__device__ __forceinline__ void Load16Fp8(const uint8_t* p, float* out) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const auto* pairs = reinterpret_cast<const __nv_fp8x2_storage_t*>(&raw);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(pairs[i], __NV_E4M3);
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// As GemvKernel for FP8 weights and bf16 activations: each lane takes 16 codes per step (inside one
// 128-value scale block), sums their products with each activation row, then applies the scale.
// A warp computes C adjacent columns: with several rows (M > 2) the activation loads, served from
// L1, would otherwise outweigh the weight bytes streamed from memory (per 512 codes of a column,
// M x 1 KiB of activations), so C = 4 reads each activation fragment once for four columns.
template <int M, int C>
__global__ void GemvFp8Kernel(const __nv_bfloat16* x, int64_t ldx, const uint8_t* w,
                              const float* scales, float* out, int64_t ldout, int64_t n, int64_t k,
                              bool accumulate) {
  WaitForPredecessor();
  const int lane = threadIdx.x % 32;
  const int64_t first_column = (blockIdx.x * int64_t{kGemvThreads / 32} + threadIdx.x / 32) * C;
  if (first_column >= n) return;
  const int columns = n - first_column < C ? static_cast<int>(n - first_column) : C;  // warp-uniform
  const int64_t blocks_per_row = (k + kFp8BlockSize - 1) / kFp8BlockSize;
  float acc[C][M];
#pragma unroll
  for (int c = 0; c < C; ++c) {
#pragma unroll
    for (int r = 0; r < M; ++r) acc[c][r] = 0.0f;
  }
#pragma unroll 2
  for (int64_t i = lane * 16; i < k; i += 32 * 16) {
    float wf[C][16];
    float scale[C] = {};
#pragma unroll
    for (int c = 0; c < C; ++c) {
      if (c < columns) {
        Load16Fp8(w + (first_column + c) * k + i, wf[c]);
        scale[c] = scales[(first_column + c) * blocks_per_row + i / kFp8BlockSize];
      }
    }
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float xf[16];
      Load8(x + r * ldx + i, xf);
      Load8(x + r * ldx + i + 8, xf + 8);
#pragma unroll
      for (int c = 0; c < C; ++c) {
        if (c < columns) {
          float partial = 0.0f;
#pragma unroll
          for (int j = 0; j < 16; ++j) partial += wf[c][j] * xf[j];
          acc[c][r] += partial * scale[c];
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < C; ++c) {
    if (c >= columns) break;
#pragma unroll
    for (int r = 0; r < M; ++r) {
      const float sum = WarpSum(acc[c][r]);
      if (lane == 0) {
        float* o = out + r * ldout + first_column + c;
        *o = accumulate ? *o + sum : sum;
      }
    }
  }
}

template <int C>
void GemvFp8Group(const __nv_bfloat16* x, int64_t ldx, const uint8_t* codes, const float* scales,
                  float* out, int64_t ldout, int64_t rows, int64_t n, int64_t k, bool accumulate,
                  LaunchStream stream) {
  const int64_t columns_per_block = (kGemvThreads / 32) * C;
  const unsigned blocks = static_cast<unsigned>((n + columns_per_block - 1) / columns_per_block);
  switch (rows) {
#define VERDICT_GEMV_FP8_CASE(M)                                                                 \
  case M:                                                                                        \
    Launch(GemvFp8Kernel<M, C>, blocks, kGemvThreads, 0, stream, x, ldx, codes, scales, out,     \
           ldout, n, k, accumulate);                                                             \
    break;
    VERDICT_GEMV_FP8_CASE(1)
    VERDICT_GEMV_FP8_CASE(2)
    VERDICT_GEMV_FP8_CASE(3)
    VERDICT_GEMV_FP8_CASE(4)
    VERDICT_GEMV_FP8_CASE(5)
    VERDICT_GEMV_FP8_CASE(6)
    VERDICT_GEMV_FP8_CASE(7)
    VERDICT_GEMV_FP8_CASE(8)
#undef VERDICT_GEMV_FP8_CASE
    default:
      break;
  }
}

// ---- FP8 tensor-core products (verification blocks) --------------------------------------------

// A block takes 16 weight rows; its warps split k (warp w takes steps w, w + kFp8MmaWarps, ...) and
// sum their accumulators in shared memory at the end. 16 rows per block keep the grid several
// blocks per SM deep for the smallest projections (4096 rows: 256 blocks).
constexpr int kFp8MmaWarps = 8;
// Tokens per pass: up to 4 token tiles of 8 (more would not fit the accumulators in registers).
constexpr int kFp8MmaMaxTiles = 4;
constexpr int64_t kFp8MmaTokensPerPass = 8 * kFp8MmaMaxTiles;

// Two floats rounded to bf16 as one mma operand register, `low` in the lower half.
__device__ __forceinline__ uint32_t PackBf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// Two E4M3 codes (the low 16 bits) as a bf16 pair, lower code in the lower half (exact: every E4M3
// value is a bf16 value).
__device__ __forceinline__ uint32_t Fp8PairToBf16x2(uint32_t codes) {
  const __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(codes & 0xffffu), __NV_E4M3);
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h));
  return PackBf16x2(f.x, f.y);
}

// d += a . b for one 16 x 16 (weights) by 16 x 8 (tokens) tile, bf16 in, f32 accumulate.
__device__ __forceinline__ void MmaBf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t Word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// out[token, row] (+)= x[token, :] . dequantized w[row, :] for up to 8 * T tokens, on the tensor
// cores: operand placement in fp8_mma_math.h. Each 128-value step's partial sums take the rows'
// scales (as GemvFp8Kernel does). REQUIRES: k a multiple of 128; x rows 16-byte aligned.
template <int T>
__global__ void __launch_bounds__(kFp8MmaWarps * 32)
    Fp8MmaKernel(const __nv_bfloat16* x, int64_t ldx, const uint8_t* w, const float* scales,
                 float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate) {
  WaitForPredecessor();
  constexpr int kValues = T * 4;  // accumulator registers per lane
  __shared__ float warp_sums[kFp8MmaWarps][32][kValues + 1];  // padded: lanes hit distinct banks
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int group = cuda_math::MmaGroup(lane);
  const int64_t first_row = blockIdx.x * int64_t{16};
  const int64_t steps = k / cuda_math::kMmaStepK;
  const int64_t lane_k = cuda_math::MmaLaneFirstK(lane);
  // The lane's weight rows g and g + 8, its token g of each tile: clamped into the matrices (rows
  // and tokens past the end are computed and never stored).
  int64_t rows[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t r = first_row + group + 8 * h;
    rows[h] = r < n ? r : n - 1;
  }
  const __nv_bfloat16* x_lane[T];
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const int64_t token = 8 * t + group;
    x_lane[t] = x + (token < m ? token : m - 1) * ldx + lane_k;
  }
  float acc[T][4] = {};
#pragma unroll 2
  for (int64_t step = warp; step < steps; step += kFp8MmaWarps) {
    const int64_t k0 = step * cuda_math::kMmaStepK;
    uint4 codes[2][2];  // [row g, g + 8][16 codes]: the lane's 32 codes of each row
    float scale[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const auto* p = reinterpret_cast<const uint4*>(w + rows[h] * k + k0 + lane_k);
      codes[h][0] = p[0];
      codes[h][1] = p[1];
      scale[h] = scales[rows[h] * steps + step];
    }
    float partial[T][4] = {};
#pragma unroll
    for (int pair_of_steps = 0; pair_of_steps < cuda_math::kMmaSubSteps / 2; ++pair_of_steps) {
      uint4 values[T];  // 8 activations of each token: two sub-steps
#pragma unroll
      for (int t = 0; t < T; ++t) {
        values[t] = *reinterpret_cast<const uint4*>(x_lane[t] + k0 + 8 * pair_of_steps);
      }
#pragma unroll
      for (int sub = 0; sub < 2; ++sub) {
        const int s = 2 * pair_of_steps + sub;
        uint32_t a[4];
#pragma unroll
        for (int reg = 0; reg < 4; ++reg) {
          const int offset = cuda_math::MmaPairOffset(s, cuda_math::MmaAPair(reg));  // code index
          const int h = (cuda_math::MmaARow(lane, reg) - group) / 8;  // row g or g + 8
          const uint32_t word = Word(codes[h][offset / 16], (offset % 16) / 4);
          a[reg] = Fp8PairToBf16x2(word >> (8 * (offset % 4)));
        }
#pragma unroll
        for (int t = 0; t < T; ++t) {
          const int offset0 = cuda_math::MmaPairOffset(s, cuda_math::MmaBPair(0)) % 8;
          const int offset1 = cuda_math::MmaPairOffset(s, cuda_math::MmaBPair(1)) % 8;
          MmaBf16(partial[t], a, Word(values[t], offset0 / 2), Word(values[t], offset1 / 2));
        }
      }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        acc[t][reg] += partial[t][reg] * scale[(cuda_math::MmaAccRow(lane, reg) - group) / 8];
      }
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) warp_sums[warp][lane][4 * t + reg] = acc[t][reg];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 32 * kValues; i += blockDim.x) {
    const int source_lane = i / kValues;
    const int t = (i % kValues) / 4;
    const int reg = i % 4;
    float sum = 0.0f;
#pragma unroll
    for (int v = 0; v < kFp8MmaWarps; ++v) sum += warp_sums[v][source_lane][i % kValues];
    const int64_t row = first_row + cuda_math::MmaAccRow(source_lane, reg);
    const int64_t token = 8 * t + cuda_math::MmaAccCol(source_lane, reg);
    if (row < n && token < m) {
      float* o = out + token * ldout + row;
      *o = accumulate ? *o + sum : sum;
    }
  }
}

// Tokens in passes of up to 32 (each pass streams the weights again).
void Fp8Mma(const __nv_bfloat16* x, int64_t ldx, const uint8_t* codes, const float* scales,
            float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate,
            LaunchStream stream) {
  const unsigned blocks = static_cast<unsigned>((n + 15) / 16);
  for (int64_t first = 0; first < m; first += kFp8MmaTokensPerPass) {
    const int64_t tokens = m - first < kFp8MmaTokensPerPass ? m - first : kFp8MmaTokensPerPass;
    const __nv_bfloat16* xt = x + first * ldx;
    float* o = out + first * ldout;
    switch ((tokens + 7) / 8) {
#define VERDICT_FP8_MMA_CASE(T)                                                                 \
  case T:                                                                                       \
    Launch(Fp8MmaKernel<T>, blocks, kFp8MmaWarps * 32, 0, stream, xt, ldx, codes, scales, o,     \
           ldout, tokens, n, k, accumulate);                                                    \
    break;
      VERDICT_FP8_MMA_CASE(1)
      VERDICT_FP8_MMA_CASE(2)
      VERDICT_FP8_MMA_CASE(3)
      VERDICT_FP8_MMA_CASE(4)
#undef VERDICT_FP8_MMA_CASE
      default:
        break;
    }
  }
}
static_assert(kFp8MmaMaxTiles == 4, "Fp8Mma's cases cover every tile count");

// Verification blocks and other m > 8 products run on the tensor cores (k a multiple of 128).
// Otherwise rows go in groups of 8: each group streams the weights again (from L2 when they fit).
// One or two rows keep a column per warp (a decode step needs every warp it can get to saturate
// memory).
void GemvFp8(const void* x, int64_t ldx, const void* w, const float* scales, float* out,
             int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate, LaunchStream stream) {
  const uint8_t* codes = static_cast<const uint8_t*>(w);
  if (m > 8 && k % cuda_math::kMmaStepK == 0) {
    Fp8Mma(static_cast<const __nv_bfloat16*>(x), ldx, codes, scales, out, ldout, m, n, k,
           accumulate, stream);
    return;
  }
  for (int64_t first = 0; first < m; first += 8) {
    const auto* xt = static_cast<const __nv_bfloat16*>(x) + first * ldx;
    float* o = out + first * ldout;
    const int64_t rows = m - first < 8 ? m - first : 8;
    if (rows <= 2) {
      GemvFp8Group<1>(xt, ldx, codes, scales, o, ldout, rows, n, k, accumulate, stream);
    } else {
      GemvFp8Group<4>(xt, ldx, codes, scales, o, ldout, rows, n, k, accumulate, stream);
    }
  }
}

__global__ void DequantizeFp8Kernel(const uint8_t* codes, const float* scales, int64_t rows,
                                    int64_t cols, __nv_bfloat16* out) {
  WaitForPredecessor();
  const int64_t blocks_per_row = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    out[i] = __float2bfloat16_rn(Fp8E4M3ToF32(codes[i]) * scales[r * blocks_per_row + c / kFp8BlockSize]);
  }
}

// ---- elementwise ------------------------------------------------------------------------------

template <typename T>
__global__ void ConvertRowsKernel(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                                  T* out) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    Store(out + i, x[r * x_stride + c]);
  }
}

template <typename T>
__global__ void EmbedKernel(const T* table, int64_t cols, const int32_t* ids, float* out,
                            int64_t out_stride) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[row]) * cols;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) out[row * out_stride + c] = Load(src + c);
}

__global__ void EmbedFp8Kernel(const uint8_t* table, const float* scales, int64_t cols,
                               const int32_t* ids, float* out, int64_t out_stride) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const int64_t id = ids[row];
  const int64_t blocks_per_row = (cols + kFp8BlockSize - 1) / kFp8BlockSize;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    out[row * out_stride + c] =
        Fp8E4M3ToF32(table[id * cols + c]) * scales[id * blocks_per_row + c / kFp8BlockSize];
  }
}

// One block per row, sized so that each thread loads a few elements (all in flight at once: a
// single row is latency-bound, not bandwidth-bound); the second pass reads them again from L1.
// With `residual` (else nullptr): x += residual first (each thread updates the elements it later
// normalizes, so the row needs no second pass).
__global__ void RmsNormKernel(float* x, int64_t x_stride, int64_t cols, const float* residual,
                              int64_t residual_stride, const float* w, float eps, float* out,
                              int64_t out_stride, Copy16 copy16) {
  WaitForPredecessor();
  float* xr = x + blockIdx.x * x_stride;
  float* yr = out + blockIdx.x * out_stride;
  float sum = 0.0f;
  if (residual != nullptr) {
    const float* rr = residual + blockIdx.x * residual_stride;
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const float v = xr[c] + rr[c];
      xr[c] = v;
      sum += v * v;
    }
  } else {
#pragma unroll 4
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c] * xr[c];
  }
  const float inv = math::RmsInverse(BlockSum(sum), cols, eps);
#pragma unroll 4
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float y = w[c] * (xr[c] * inv);
    yr[c] = y;
    if (copy16.data != nullptr) StoreCopy(copy16, blockIdx.x * cols + c, y);
  }
}

__global__ void AddBiasKernel(float* x, int64_t x_stride, int64_t rows, int64_t cols,
                              const float* bias) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[(i / cols) * x_stride + i % cols] += bias[i % cols];
  }
}

__global__ void AddKernel(const float* x, int64_t x_stride, float* y, int64_t y_stride,
                          int64_t rows, int64_t cols) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    y[r * y_stride + c] += x[r * x_stride + c];
  }
}

__global__ void SiluMulKernel(const float* gate, int64_t gate_stride, const float* up,
                              int64_t up_stride, float* out, int64_t out_stride, int64_t rows,
                              int64_t cols, Copy16 copy16) {
  WaitForPredecessor();
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / cols;
    const int64_t c = i % cols;
    const float y = math::SiluMul(gate[r * gate_stride + c], up[r * up_stride + c]);
    out[r * out_stride + c] = y;
    if (copy16.data != nullptr) StoreCopy(copy16, i, y);
  }
}

__global__ void GatherRowsKernel(const float* src, int64_t src_stride, int64_t cols,
                                 const int32_t* rows, float* dst, int64_t dst_stride) {
  WaitForPredecessor();
  const float* s = src + static_cast<int64_t>(rows[blockIdx.x]) * src_stride;
  float* d = dst + blockIdx.x * dst_stride;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) d[c] = s[c];
}

// One block per (row, head of either tensor), one thread per rotated pair: every load in flight.
__global__ void RopeKernel(RopeTarget first, RopeTarget second, int64_t head_dim,
                           const int32_t* positions, const float* inv_freq, bool interleaved) {
  WaitForPredecessor();
  const bool in_first = blockIdx.y < first.heads;
  const RopeTarget& x = in_first ? first : second;
  const int64_t head = in_first ? blockIdx.y : blockIdx.y - first.heads;
  float* h = x.data + blockIdx.x * x.stride + head * head_dim;
  const int64_t half = head_dim / 2;
  const int64_t position = positions[blockIdx.x];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = math::RopeAngle(position, inv_freq[i]);
    const float cos_v = cosf(angle);
    const float sin_v = sinf(angle);
    int64_t a, b;
    math::RopePairIndices(i, head_dim, interleaved, a, b);
    math::RotatePair(h[a], h[b], cos_v, sin_v);
  }
}

// ---- attention ---------------------------------------------------------------------------------

// v as the cache stores it.
template <typename KvT>
__device__ __forceinline__ float RoundedTo(float v) {
  KvT stored;
  Store(&stored, v);
  return Load(&stored);
}

// cos and sin of rotary pair `pair` at batch row `row`'s position (as RopeKernel computes them).
__device__ __forceinline__ void RopeCosSin(const AttentionLaunch& a, int64_t row, int64_t pair,
                                           float& cos_v, float& sin_v) {
  const float angle = math::RopeAngle(a.rope_positions[row], a.rope_inv_freq[pair]);
  cos_v = cosf(angle);
  sin_v = sinf(angle);
}

// Element d of batch row `row` of x (the queries or the keys) in the head at `head_offset`, rotated
// if the launch rotates.
__device__ __forceinline__ float RotatedInput(const AttentionLaunch& a, const float* x,
                                              int64_t x_stride, int64_t row, int64_t head_offset,
                                              int64_t d) {
  const float* h = x + row * x_stride + head_offset;
  if (a.rope_positions == nullptr) return h[d];
  int64_t pair, partner;
  bool first;
  math::RopePairOfElement(d, a.head_dim, a.rope_interleaved, pair, partner, first);
  float cos_v, sin_v;
  RopeCosSin(a, row, pair, cos_v, sin_v);
  return math::RotatedElement(h[d], h[partner], first, cos_v, sin_v);
}
// The key's element (the same value whichever block computes it: stored into the cache by one,
// read from the batch by the others).
__device__ __forceinline__ float BatchKey(const AttentionLaunch& a, int64_t row, int64_t head_offset,
                                          int64_t d) {
  return RotatedInput(a, a.k, a.k_stride, row, head_offset, d);
}

constexpr int kAttentionThreads = 128;
constexpr int kAttentionWarps = kAttentionThreads / 32;
// Queries (rows x heads of one kv head) sharing each key/value tile a block loads.
constexpr int kMaxTileQueries = 8;
// Accumulator groups of 4 dims (float4) a thread holds: queries x head_dim / 4 / threads.
constexpr int kMaxAccGroups = kMaxTileQueries * kMaxAttentionHeadDim / 4 / kAttentionThreads;

// Positions per key/value tile: two tiles of f32 [positions][head_dim] stay under 48 KiB of shared
// memory with the queries beside them.
__host__ __device__ constexpr int64_t TilePositions(int64_t head_dim) {
  return head_dim <= 128 ? 32 : 16;
}

// Shared-memory layout of the chunk kernel, in floats (block addresses after it, 8-byte aligned).
struct ChunkSharedLayout {
  int64_t tile, key_stride, q, keys, values, weights, stats, floats;
  __host__ __device__ explicit ChunkSharedLayout(int64_t head_dim) {
    tile = TilePositions(head_dim);
    // Padded by 4: float4 reads of consecutive keys by 8 lanes (one shared-memory phase) fall in
    // distinct banks, and rows stay 16-byte aligned.
    key_stride = head_dim + 4;
    q = 0;
    keys = q + kMaxTileQueries * head_dim;
    values = keys + tile * key_stride;
    weights = values + tile * head_dim;
    stats = weights + kMaxTileQueries * tile;  // running max, sum, correction per query
    floats = stats + 3 * kMaxTileQueries;
  }
};

// The last chunk of a run of rows to finish merges the chunks' partials of its queries into the
// output: a warp per query reads the chunks' maxima and sums (a lane per chunk), then every dim sums
// over the chunks. `split_weight`: kAttentionWarps x kMaxAttentionSplits floats of shared memory.
__device__ void MergeChunks(const AttentionLaunch& a, int64_t row, int64_t row_offset, int64_t queries,
                            int64_t first_head, int64_t heads_per_block, float* split_weight) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t head_dim = a.head_dim;
  const int64_t entry = head_dim + 2;
  float* weights = split_weight + warp * kMaxAttentionSplits;
  for (int64_t query = warp; query < queries; query += kAttentionWarps) {
    const int64_t out_row = row + query / heads_per_block;
    const int64_t head = first_head + query % heads_per_block;
    // Written by other blocks of this launch: read through L2 (__ldcg), never a stale L1 line.
    const float* partials =
        a.partials + ((out_row - row_offset) * a.num_heads + head) * a.num_splits * entry;
    float local_max = -INFINITY;
    for (int64_t s = lane; s < a.num_splits; s += 32) {
      local_max = fmaxf(local_max, __ldcg(partials + s * entry + head_dim));
    }
    const float global_max = WarpReduce<MaxOp>(local_max);
    float local_sum = 0.0f;
    for (int64_t s = lane; s < a.num_splits; s += 32) {
      const float w = cuda_math::ChunkWeight(__ldcg(partials + s * entry + head_dim), global_max);
      weights[s] = w;
      local_sum += w * __ldcg(partials + s * entry + head_dim + 1);
    }
    const float denominator = WarpSum(local_sum);
    __syncwarp();
    float* out = a.out + out_row * a.out_stride + head * head_dim;
    const int64_t copy_offset = (out_row * a.num_heads + head) * head_dim;  // the copy is dense
    for (int64_t d = lane; d < head_dim; d += 32) {
      float acc = 0.0f;
#pragma unroll 4
      for (int64_t s = 0; s < a.num_splits; ++s) acc += weights[s] * __ldcg(partials + s * entry + d);
      const float y = acc / denominator;
      out[d] = y;
      if (a.out_copy16.data != nullptr) StoreCopy(a.out_copy16, copy_offset + d, y);
    }
    __syncwarp();  // weights are rewritten for the warp's next query
  }
}

// One block per (group of query heads of one kv head, chunk of keys, group of rows): every key and
// value of the chunk is read from the paged cache once per block and used by all its queries (the
// heads of a GQA group x consecutive rows of one sequence: a verification block's rows share it).
// Keys go through shared memory in tiles, with an online softmax across tiles; the result is the
// chunk's partial (unnormalised accumulation, max, sum) per (row, head), which the last chunk of
// the run to finish merges (MergeChunks). Partial layout: [row][head][split] x (head_dim + 2)
// floats. The kernel also stores the rows' own keys and values into the cache (see
// cuda_math::StoresKeysAndValues) and reads them from the batch, not from the cache; with
// rope_positions it rotates the queries and those keys as it loads them.
static_assert(kAttentionWarps * kMaxAttentionSplits <= TilePositions(8) * (8 + 4),
              "MergeChunks' weights fit in the smallest key tile (head_dim 8)");
template <typename KvT>
__global__ void AttentionChunkKernel(AttentionLaunch a, int64_t row_offset, int64_t row_end,
                                     int64_t heads_per_block, int64_t rows_per_block) {
  WaitForPredecessor();
  extern __shared__ float shared[];
  __shared__ bool last_chunk;
  const int64_t head_dim = a.head_dim;
  const ChunkSharedLayout layout(head_dim);
  float* q_s = shared + layout.q;
  float* keys = shared + layout.keys;
  float* values = shared + layout.values;
  float* weights = shared + layout.weights;
  float* running_max = shared + layout.stats;
  float* running_sum = running_max + kMaxTileQueries;
  float* correction = running_sum + kMaxTileQueries;
  auto* blocks = reinterpret_cast<const KvT**>(
      (reinterpret_cast<uintptr_t>(shared + layout.floats) + 7) & ~uintptr_t{7});

  const int64_t first_head = blockIdx.x * heads_per_block;
  const int64_t split = blockIdx.y;
  const int64_t kv_offset = cuda_math::KvHeadOf(first_head, a.num_heads, a.num_kv_heads) * head_dim;
  const float scale = cuda_math::AttentionScale(head_dim);
  const int64_t tile = layout.tile;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int64_t row = row_offset + blockIdx.z * rows_per_block;
  const int64_t rows_end = row + rows_per_block < row_end ? row + rows_per_block : row_end;

  // Rows of different sequences see different caches: one segment per sequence in the range.
  while (row < rows_end) {
    const DeviceSequence seq = a.sequences[a.row_sequence[row]];
    const int64_t seq_end = seq.row_begin + seq.num_tokens;
    const int64_t rows = (seq_end < rows_end ? seq_end : rows_end) - row;
    const int64_t queries = rows * heads_per_block;  // query i: row i / heads, head i % heads
    const int64_t first_position = seq.start_pos + (row - seq.row_begin);
    int64_t begin, end;  // keys the last row sees in this chunk (earlier rows see a prefix)
    cuda_math::SplitRange(split, a.split_positions, first_position + rows, begin, end);

    if (cuda_math::StoresKeysAndValues(first_head, split, a.num_heads, a.num_kv_heads)) {
      for (int64_t i = threadIdx.x; i < rows * head_dim; i += blockDim.x) {
        const int64_t r = row + i / head_dim;
        const int64_t position = first_position + i / head_dim;
        const int64_t d = i % head_dim;
        KvT* block = reinterpret_cast<KvT*>(seq.block_table[a.layout.BlockIndex(position)]);
        Store(block + a.layout.KeyOffset(a.layer, position) + kv_offset + d, BatchKey(a, r, kv_offset, d));
        Store(block + a.layout.ValueOffset(a.layer, position) + kv_offset + d,
              a.v[r * a.v_stride + kv_offset + d]);
      }
    }

    if (a.rope_positions == nullptr) {
      for (int64_t i = threadIdx.x; i < queries * head_dim; i += blockDim.x) {
        const int64_t query = i / head_dim;
        const int64_t r = row + query / heads_per_block;
        q_s[i] = a.q[r * a.q_stride + (first_head + query % heads_per_block) * head_dim + i % head_dim];
      }
    } else {  // a thread per rotated pair
      const int64_t half = head_dim / 2;
      for (int64_t i = threadIdx.x; i < queries * half; i += blockDim.x) {
        const int64_t query = i / half;
        const int64_t pair = i % half;
        const int64_t r = row + query / heads_per_block;
        const float* q = a.q + r * a.q_stride + (first_head + query % heads_per_block) * head_dim;
        int64_t first, second;
        math::RopePairIndices(pair, head_dim, a.rope_interleaved, first, second);
        float x0 = q[first], x1 = q[second];
        float cos_v, sin_v;
        RopeCosSin(a, r, pair, cos_v, sin_v);
        math::RotatePair(x0, x1, cos_v, sin_v);
        q_s[query * head_dim + first] = x0;
        q_s[query * head_dim + second] = x1;
      }
    }
    if (threadIdx.x < queries) {
      running_max[threadIdx.x] = -INFINITY;
      running_sum[threadIdx.x] = 0.0f;
    }
    const int64_t first_block = begin < end ? a.layout.BlockIndex(begin) : 0;
    const int64_t num_blocks = begin < end ? a.layout.BlockIndex(end - 1) - first_block + 1 : 0;
    for (int64_t i = threadIdx.x; i < num_blocks; i += blockDim.x) {
      blocks[i] = reinterpret_cast<const KvT*>(seq.block_table[first_block + i]);
    }
    const int64_t head_groups = head_dim / 4;
    float4 acc[kMaxAccGroups];
#pragma unroll
    for (int j = 0; j < kMaxAccGroups; ++j) acc[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

    for (int64_t tile_begin = begin; tile_begin < end; tile_begin += tile) {
      const int64_t count = end - tile_begin < tile ? end - tile_begin : tile;
      __syncthreads();  // q, stats and block addresses written; the previous tile fully used
      // Load the tile's keys and values, 8 elements per thread and step (16-byte loads: head_dim is
      // a multiple of 8, so rows are 16-byte aligned in the pool).
      const int64_t groups = head_dim / 8;
      for (int64_t i = threadIdx.x; i < count * groups; i += blockDim.x) {
        const int64_t t = i / groups;
        const int64_t d = (i % groups) * 8;
        const int64_t p = tile_begin + t;
        float k8[8], v8[8];
        const int64_t batch_row =
            cuda_math::BatchRowOfPosition(p, seq.start_pos, seq.row_begin, row_offset);
        if (batch_row >= 0) {
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            k8[j] = RoundedTo<KvT>(BatchKey(a, batch_row, kv_offset, d + j));
            v8[j] = RoundedTo<KvT>(a.v[batch_row * a.v_stride + kv_offset + d + j]);
          }
        } else {
          const KvT* base = blocks[a.layout.BlockIndex(p) - first_block];
          Load8(base + a.layout.KeyOffset(a.layer, p) + kv_offset + d, k8);
          Load8(base + a.layout.ValueOffset(a.layer, p) + kv_offset + d, v8);
        }
        auto* key4 = reinterpret_cast<float4*>(keys + t * layout.key_stride + d);
        auto* value4 = reinterpret_cast<float4*>(values + t * head_dim + d);
        key4[0] = make_float4(k8[0], k8[1], k8[2], k8[3]);
        key4[1] = make_float4(k8[4], k8[5], k8[6], k8[7]);
        value4[0] = make_float4(v8[0], v8[1], v8[2], v8[3]);
        value4[1] = make_float4(v8[4], v8[5], v8[6], v8[7]);
      }
      __syncthreads();
      // Scores, causal per row: query i's row sees positions <= its own.
      for (int64_t i = threadIdx.x; i < queries * tile; i += blockDim.x) {
        const int64_t query = i / tile;
        const int64_t t = i % tile;
        const int64_t p = tile_begin + t;
        float score = -INFINITY;
        if (t < count && p <= first_position + query / heads_per_block) {
          const auto* qv = reinterpret_cast<const float4*>(q_s + query * head_dim);
          const auto* kv = reinterpret_cast<const float4*>(keys + t * layout.key_stride);
          float dot = 0.0f;
#pragma unroll 4
          for (int64_t d = 0; d < head_dim / 4; ++d) {
            const float4 x = qv[d];
            const float4 y = kv[d];
            dot += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
          }
          score = dot * scale;
        }
        weights[i] = score;
      }
      __syncthreads();
      // Online softmax: one warp per query (tile <= 32 positions: one per lane).
      for (int64_t query = warp; query < queries; query += kAttentionWarps) {
        float* w = weights + query * tile;
        const float score = lane < tile ? w[lane] : -INFINITY;
        const float tile_max = WarpReduce<MaxOp>(score);
        const float old_max = running_max[query];
        const float new_max = cuda_math::NewMax(old_max, tile_max);
        const float weight = cuda_math::ScoreWeight(score, new_max);
        const float tile_sum = WarpSum(weight);
        if (lane < tile) w[lane] = weight;
        if (lane == 0) {
          const float c = cuda_math::ChunkWeight(old_max, new_max);
          correction[query] = c;
          running_sum[query] = running_sum[query] * c + tile_sum;
          running_max[query] = new_max;
        }
      }
      __syncthreads();
      // Accumulate: thread owns 4-dim groups threadIdx.x + j * blockDim.x of [queries][head_dim].
#pragma unroll
      for (int j = 0; j < kMaxAccGroups; ++j) {
        const int64_t g = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
        if (g < queries * head_groups) {
          const int64_t query = g / head_groups;
          const auto* v4 = reinterpret_cast<const float4*>(values) + g % head_groups;
          const float* w = weights + query * tile;
          float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
          for (int64_t t = 0; t < count; ++t) {
            const float wt = w[t];
            const float4 v = v4[t * head_groups];
            sum.x += wt * v.x;
            sum.y += wt * v.y;
            sum.z += wt * v.z;
            sum.w += wt * v.w;
          }
          const float c = correction[query];
          acc[j] = make_float4(acc[j].x * c + sum.x, acc[j].y * c + sum.y, acc[j].z * c + sum.z,
                               acc[j].w * c + sum.w);
        }
      }
    }
    __syncthreads();  // running stats final
#pragma unroll
    for (int j = 0; j < kMaxAccGroups; ++j) {
      const int64_t g = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (g < queries * head_groups) {
        const int64_t query = g / head_groups;
        const int64_t d = (g % head_groups) * 4;
        const int64_t local_row = row + query / heads_per_block - row_offset;
        const int64_t head = first_head + query % heads_per_block;
        float* partial = a.partials + ((local_row * a.num_heads + head) * a.num_splits + split) * (head_dim + 2);
        partial[d] = acc[j].x;  // (head_dim + 2)-float entries: not 16-byte aligned
        partial[d + 1] = acc[j].y;
        partial[d + 2] = acc[j].z;
        partial[d + 3] = acc[j].w;
        if (d == 0) {
          partial[head_dim] = running_max[query];
          partial[head_dim + 1] = running_sum[query];
        }
      }
    }
    // Count this chunk done (partials visible device-wide first); the last one merges.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      int* counter = a.chunk_counters +
                     cuda_math::ChunkCounterIndex(row - row_offset, blockIdx.x, gridDim.x);
      last_chunk = atomicAdd(counter, 1) == static_cast<int>(gridDim.y) - 1;
      if (last_chunk) *counter = 0;  // every chunk has counted: ready for the next launch
    }
    __syncthreads();
    if (last_chunk) {
      __threadfence();
      MergeChunks(a, row, row_offset, queries, first_head, heads_per_block, keys);
    }
    row += rows;
    __syncthreads();  // before the next segment overwrites q, the stats and the key tile
  }
}

template <typename KvT>
void AttentionTyped(const AttentionLaunch& a, LaunchStream stream) {
  const int64_t heads = cuda_math::HeadsPerBlock(a.num_heads, a.num_kv_heads, kMaxTileQueries);
  const int64_t rows_per_block = cuda_math::RowsPerBlock(heads, kMaxTileQueries);
  const int64_t max_blocks = a.split_positions / a.layout.block_positions + 2;
  const size_t shared_bytes =
      ChunkSharedLayout(a.head_dim).floats * sizeof(float) + 8 + max_blocks * sizeof(void*);
  for (int64_t offset = 0; offset < a.rows; offset += a.partial_rows) {
    const int64_t rows = a.rows - offset < a.partial_rows ? a.rows - offset : a.partial_rows;
    const dim3 grid(static_cast<unsigned>(a.num_heads / heads), static_cast<unsigned>(a.num_splits),
                    static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block));
    Launch(AttentionChunkKernel<KvT>, grid, kAttentionThreads, shared_bytes, stream, a, offset,
           offset + rows, heads, rows_per_block);
  }
}

// ---- tensor-core prefill attention ----------------------------------------------------------

// Stores the batch's keys (rotated where the launch rotates) and values into the paged cache, a
// block per row: the prefill kernel then reads every key from the cache.
template <typename KvT>
__global__ void StoreBatchKeysValuesKernel(AttentionLaunch a) {
  WaitForPredecessor();
  const int64_t row = blockIdx.x;
  const DeviceSequence seq = a.sequences[a.row_sequence[row]];
  const int64_t position = seq.start_pos + (row - seq.row_begin);
  KvT* block = reinterpret_cast<KvT*>(seq.block_table[a.layout.BlockIndex(position)]);
  KvT* keys = block + a.layout.KeyOffset(a.layer, position);
  KvT* values = block + a.layout.ValueOffset(a.layer, position);
  for (int64_t i = threadIdx.x; i < a.layout.kv_dim; i += blockDim.x) {
    const int64_t head_offset = i / a.head_dim * a.head_dim;
    Store(keys + i, BatchKey(a, row, head_offset, i - head_offset));
    Store(values + i, a.v[row * a.v_stride + i]);
  }
}

// Two consecutive bf16 values of shared memory as one mma operand register.
__device__ __forceinline__ uint32_t SharedPair(const __nv_bfloat16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Eight bf16 elements, from `offset` on, of position p's key (or value) row in the cache as one
// 16-byte load; zeros from key_end on.
__device__ __forceinline__ uint4 CachedEights(const AttentionLaunch& a, const DeviceSequence& seq,
                                              int64_t p, int64_t key_end, bool values,
                                              int64_t offset) {
  if (p >= key_end) return make_uint4(0, 0, 0, 0);
  const auto* block = reinterpret_cast<const __nv_bfloat16*>(seq.block_table[a.layout.BlockIndex(p)]);
  const int64_t row = values ? a.layout.ValueOffset(a.layer, p) : a.layout.KeyOffset(a.layer, p);
  return *reinterpret_cast<const uint4*>(block + row + offset);
}

// Causal attention of one tile of a sequence's rows (cuda_math::kFlashTileRows, a warp per 16)
// for one query head, on the tensor cores: per key tile, S = Q K^T (m16n8k16, bf16 in, f32
// accumulate), the mask and the online softmax on S's registers, then O += P V with P taken from
// those registers as the A operand (operand placement: mma_layout.h; emulated on the CPU in
// attention_math_test). Keys come from the bf16 cache; values are stored transposed in shared
// memory so each B register is one 32-bit read. Rows are padded by 8 elements: a quad's reads of
// 8 keys (or 8 dims) then fall in 32 distinct banks.
template <int D>
__global__ void __launch_bounds__(cuda_math::kFlashWarps * 32)
    FlashPrefillKernel(AttentionLaunch a) {
  WaitForPredecessor();
  using cuda_math::kFlashTileKeys;
  constexpr int kKeys = static_cast<int>(kFlashTileKeys);
  constexpr int kKeyStride = D + 8;
  constexpr int kValueStride = kKeys + 8;
  __shared__ __align__(16) __nv_bfloat16 keys[kKeys * kKeyStride];
  __shared__ __align__(16) __nv_bfloat16 values_t[D * kValueStride];  // [dim][key]
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int32_t sequence = a.flash_tiles[2 * blockIdx.x];
  const int64_t tile_row = a.flash_tiles[2 * blockIdx.x + 1];
  const DeviceSequence seq = a.sequences[sequence];
  const int64_t sequence_end = seq.row_begin + seq.num_tokens;
  const int64_t head = blockIdx.y;
  const int64_t kv_offset = cuda_math::KvHeadOf(head, a.num_heads, a.num_kv_heads) * D;
  const int64_t key_end =
      cuda_math::FlashKeyEnd(tile_row, seq.row_begin, seq.num_tokens, seq.start_pos);
  const float scale = cuda_math::AttentionScale(D) * cuda_math::kLog2e;

  // The warp's query rows as A operands (rotated, rounded to bf16), and the lane's two rows'
  // positions (accumulator element e belongs to row half e / 2).
  uint32_t q_frag[D / 16][4];
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const int64_t row =
          cuda_math::FlashRowOf(tile_row, warp * 16 + cuda_math::MmaARow(lane, reg), sequence_end);
      const int64_t d = 16 * kc + cuda_math::MmaACol(lane, reg, 0);
      q_frag[kc][reg] = PackBf16x2(RotatedInput(a, a.q, a.q_stride, row, head * D, d),
                                   RotatedInput(a, a.q, a.q_stride, row, head * D, d + 1));
    }
  }
  int64_t positions[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row =
        cuda_math::FlashRowOf(tile_row, warp * 16 + cuda_math::MmaAccRow(lane, 2 * h), sequence_end);
    positions[h] = seq.start_pos + (row - seq.row_begin);
  }

  float o[D / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};  // over this lane's columns; the quad's sum at the end
  for (int64_t tile_begin = 0; tile_begin < key_end; tile_begin += kKeys) {
    __syncthreads();  // every warp is done with the previous tile
    // Keys row by row (consecutive threads along a key: coalesced); values key by key (consecutive
    // threads on consecutive keys: their transposed 2-byte stores hit distinct banks). Keys past
    // the tile's end are zeros (masked, and 0 x 0 in P V).
    for (int i = threadIdx.x; i < kKeys * (D / 8); i += blockDim.x) {
      const int key = i / (D / 8);
      const int d = i % (D / 8) * 8;
      *reinterpret_cast<uint4*>(keys + key * kKeyStride + d) =
          CachedEights(a, seq, tile_begin + key, key_end, /*values=*/false, kv_offset + d);
    }
    for (int i = threadIdx.x; i < kKeys * (D / 8); i += blockDim.x) {
      const int key = i % kKeys;
      const int d = i / kKeys * 8;
      const uint4 v8 = CachedEights(a, seq, tile_begin + key, key_end, /*values=*/true, kv_offset + d);
      const auto* v = reinterpret_cast<const __nv_bfloat16*>(&v8);
#pragma unroll
      for (int j = 0; j < 8; ++j) values_t[(d + j) * kValueStride + key] = v[j];
    }
    __syncthreads();

    // S = Q K^T for the warp's 16 rows x the tile's keys, 8 keys per accumulator tile.
    float s[kKeys / 8][4] = {};
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      const __nv_bfloat16* key_row = keys + (8 * j + cuda_math::MmaBCol(lane)) * kKeyStride;
#pragma unroll
      for (int kc = 0; kc < D / 16; ++kc) {
        MmaBf16(s[j], q_frag[kc], SharedPair(key_row + 16 * kc + cuda_math::MmaBRow(lane, 0, 0)),
                SharedPair(key_row + 16 * kc + cuda_math::MmaBRow(lane, 1, 0)));
      }
    }
    // Causal mask and scale; each row's max over the tile (its scores sit in one quad).
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = tile_begin + 8 * j + cuda_math::MmaAccCol(lane, e);
        const float score = key <= positions[e / 2] ? s[j][e] * scale : -INFINITY;
        s[j][e] = score;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], score);
      }
    }
    float correction[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float new_max = cuda_math::NewMax(row_max[h], WarpReduce<MaxOp, 4>(tile_max[h]));
      correction[h] = cuda_math::Exp2Weight(row_max[h], new_max);
      row_max[h] = new_max;
      row_sum[h] *= correction[h];
    }
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[jd][e] *= correction[e / 2];
    }
    // Weights, rounded to bf16 as the product sees them (the sums use the same values).
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float rounded =
            RoundedTo<__nv_bfloat16>(cuda_math::Exp2Weight(s[j][e], row_max[e / 2]));
        s[j][e] = rounded;
        row_sum[e / 2] += rounded;
      }
    }
    // O += P V, 16 keys per product: P from two accumulator tiles, V^T rows from shared memory.
#pragma unroll
    for (int i = 0; i < kKeys / 16; ++i) {
      uint32_t p_frag[4];
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        const float* tile = s[2 * i + cuda_math::AccTileOfA(reg)];
        p_frag[reg] = PackBf16x2(tile[cuda_math::AccElementOfA(reg, 0)],
                                 tile[cuda_math::AccElementOfA(reg, 1)]);
      }
#pragma unroll
      for (int jd = 0; jd < D / 8; ++jd) {
        const __nv_bfloat16* value_row =
            values_t + (8 * jd + cuda_math::MmaBCol(lane)) * kValueStride + 16 * i;
        MmaBf16(o[jd], p_frag, SharedPair(value_row + cuda_math::MmaBRow(lane, 0, 0)),
                SharedPair(value_row + cuda_math::MmaBRow(lane, 1, 0)));
      }
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) row_sum[h] = WarpReduce<SumOp, 4>(row_sum[h]);
#pragma unroll
  for (int jd = 0; jd < D / 8; ++jd) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = tile_row + warp * 16 + cuda_math::MmaAccRow(lane, e);
      if (row >= sequence_end) continue;
      const int64_t d = 8 * jd + cuda_math::MmaAccCol(lane, e);
      const float y = o[jd][e] / row_sum[e / 2];
      a.out[row * a.out_stride + head * D + d] = y;
      if (a.out_copy16.data != nullptr) {
        StoreCopy(a.out_copy16, (row * a.num_heads + head) * D + d, y);
      }
    }
  }
}

void FlashPrefill(const AttentionLaunch& a, LaunchStream stream) {
  Launch(StoreBatchKeysValuesKernel<__nv_bfloat16>, dim3(static_cast<unsigned>(a.rows)), 128, 0,
         stream, a);
  const dim3 grid(static_cast<unsigned>(a.num_flash_tiles), static_cast<unsigned>(a.num_heads));
  if (a.head_dim == 64) {
    Launch(FlashPrefillKernel<64>, grid, cuda_math::kFlashWarps * 32, 0, stream, a);
  } else {
    Launch(FlashPrefillKernel<128>, grid, cuda_math::kFlashWarps * 32, 0, stream, a);
  }
}

}  // namespace

bool FlashPrefillApplies(StorageType kv_type, int64_t head_dim) {
  return kv_type == StorageType::kBF16 && (head_dim == 64 || head_dim == 128);
}

bool GemvApplies(StorageType type, int64_t m, int64_t k, const void* x, int64_t ldx, const void* w) {
  const bool fp8 = type == StorageType::kF8E4M3;
  const int64_t max_rows = fp8 ? kGemvMaxRowsFp8 : kGemvMaxRows;
  const int64_t multiple = fp8 ? 16 : 8;
  return type != StorageType::kF32 && m >= 1 && m <= max_rows && k % multiple == 0 &&
         ldx % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

void LaunchGemv(const void* x, int64_t ldx, const void* w, StorageType type, const float* scales,
                float* out, int64_t ldout, int64_t m, int64_t n, int64_t k, bool accumulate,
                LaunchStream stream) {
  if (type == StorageType::kBF16) {
    GemvTyped<__nv_bfloat16>(x, ldx, w, out, ldout, m, n, k, accumulate, stream);
  } else if (type == StorageType::kF16) {
    GemvTyped<__half>(x, ldx, w, out, ldout, m, n, k, accumulate, stream);
  } else if (type == StorageType::kF8E4M3) {
    GemvFp8(x, ldx, w, scales, out, ldout, m, n, k, accumulate, stream);
  }
}

void LaunchDequantizeFp8(const uint8_t* codes, const float* scales, int64_t rows, int64_t cols,
                         void* out, LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(DequantizeFp8Kernel, Blocks(rows * cols), kThreads, 0, stream, codes, scales, rows, cols,
         static_cast<__nv_bfloat16*>(out));
}

void LaunchConvertRows(const float* x, int64_t rows, int64_t cols, int64_t x_stride,
                       StorageType type, void* out, LaunchStream stream) {
  const int blocks = Blocks(rows * cols);
  switch (type) {
    case StorageType::kBF16:
      Launch(ConvertRowsKernel<__nv_bfloat16>, blocks, kThreads, 0, stream, x, rows, cols, x_stride,
             static_cast<__nv_bfloat16*>(out));
      break;
    case StorageType::kF16:
      Launch(ConvertRowsKernel<__half>, blocks, kThreads, 0, stream, x, rows, cols, x_stride,
             static_cast<__half*>(out));
      break;
    case StorageType::kF32:
      Launch(ConvertRowsKernel<float>, blocks, kThreads, 0, stream, x, rows, cols, x_stride,
             static_cast<float*>(out));
      break;
    case StorageType::kF8E4M3:  // weights only: never an activation operand
      break;
  }
}

void LaunchEmbed(const void* table, StorageType type, const float* scales, int64_t cols,
                 const int32_t* ids, int64_t n, float* out, int64_t out_stride, LaunchStream stream) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(n);
  switch (type) {
    case StorageType::kBF16:
      Launch(EmbedKernel<__nv_bfloat16>, blocks, kThreads, 0, stream,
             static_cast<const __nv_bfloat16*>(table), cols, ids, out, out_stride);
      break;
    case StorageType::kF16:
      Launch(EmbedKernel<__half>, blocks, kThreads, 0, stream, static_cast<const __half*>(table),
             cols, ids, out, out_stride);
      break;
    case StorageType::kF32:
      Launch(EmbedKernel<float>, blocks, kThreads, 0, stream, static_cast<const float*>(table),
             cols, ids, out, out_stride);
      break;
    case StorageType::kF8E4M3:
      Launch(EmbedFp8Kernel, blocks, kThreads, 0, stream, static_cast<const uint8_t*>(table),
             scales, cols, ids, out, out_stride);
      break;
  }
}

void LaunchRmsNorm(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* residual,
                   int64_t residual_stride, const float* w, float eps, float* out,
                   int64_t out_stride, Copy16 copy16, LaunchStream stream) {
  if (rows == 0) return;
  // About four elements per thread: 1024 threads for a 4096-wide row, 2 passes of 4 for 8192.
  int64_t threads = (cols / 4 + 31) / 32 * 32;
  threads = threads < 64 ? 64 : (threads > 1024 ? 1024 : threads);
  Launch(RmsNormKernel, static_cast<unsigned>(rows), static_cast<unsigned>(threads), 0, stream, x,
         x_stride, cols, residual, residual_stride, w, eps, out, out_stride, copy16);
}

void LaunchAddBias(float* x, int64_t x_stride, int64_t rows, int64_t cols, const float* bias,
                   LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(AddBiasKernel, Blocks(rows * cols), kThreads, 0, stream, x, x_stride, rows, cols, bias);
}

void LaunchAdd(const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t rows,
               int64_t cols, LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(AddKernel, Blocks(rows * cols), kThreads, 0, stream, x, x_stride, y, y_stride, rows, cols);
}

void LaunchSiluMul(const float* gate, int64_t gate_stride, const float* up, int64_t up_stride,
                   float* out, int64_t out_stride, int64_t rows, int64_t cols, Copy16 copy16,
                   LaunchStream stream) {
  if (rows * cols == 0) return;
  Launch(SiluMulKernel, Blocks(rows * cols), kThreads, 0, stream, gate, gate_stride, up, up_stride,
         out, out_stride, rows, cols, copy16);
}

void LaunchGatherRows(const float* src, int64_t src_stride, int64_t cols, const int32_t* rows,
                      int64_t n, float* dst, int64_t dst_stride, LaunchStream stream) {
  if (n == 0) return;
  Launch(GatherRowsKernel, static_cast<unsigned>(n), kThreads, 0, stream, src, src_stride, cols,
         rows, dst, dst_stride);
}

int64_t SummaryScratchBytes(int64_t rows, int64_t cols) {
  return rows * ((cols + kSummaryChunk - 1) / kSummaryChunk) * static_cast<int64_t>(sizeof(math::LogitStats));
}

void LaunchSummarizeLogits(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                           const int32_t* tokens, float* out, int64_t out_stride, void* scratch,
                           LaunchStream stream) {
  if (rows == 0) return;
  const int64_t chunks = cols > 0 ? (cols + kSummaryChunk - 1) / kSummaryChunk : 1;
  auto* chunk_stats = static_cast<math::LogitStats*>(scratch);
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(rows));
  Launch(SummarizeChunksKernel, grid, kSummaryThreads, 0, stream, logits, stride, cols, chunk_stats);
  Launch(MergeSummaryChunksKernel, static_cast<unsigned>(rows), 32, 0, stream, chunk_stats, chunks,
         logits, stride, tokens, out, out_stride);
}

void LaunchDecideSampled(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                         const math::SampledRowRequest* requests, const int32_t* proposal_ids,
                         const float* proposal_probs, float* out, int64_t out_stride,
                         float* supports, int64_t supports_stride, LaunchStream stream) {
  if (rows == 0) return;
  Launch(DecideSampledKernel, static_cast<unsigned>(rows), kSampleThreads, 0, stream, logits, stride,
         cols, requests, proposal_ids, proposal_probs, out, out_stride, supports, supports_stride);
}

void LaunchRope(RopeTarget first, RopeTarget second, int64_t rows, int64_t head_dim,
                const int32_t* positions, const float* inv_freq, bool interleaved,
                LaunchStream stream) {
  const int64_t num_heads = first.heads + second.heads;
  if (rows == 0 || num_heads == 0) return;
  const int64_t half = head_dim / 2;
  const unsigned threads = static_cast<unsigned>(half < 32 ? 32 : (half > 256 ? 256 : (half + 31) / 32 * 32));
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(num_heads));
  Launch(RopeKernel, grid, threads, 0, stream, first, second, head_dim, positions, inv_freq, interleaved);
}

int64_t AttentionCounters(int64_t partial_rows, int64_t num_heads, int64_t num_kv_heads) {
  return partial_rows * (num_heads / cuda_math::HeadsPerBlock(num_heads, num_kv_heads, kMaxTileQueries));
}

void LaunchAttention(const AttentionLaunch& a, LaunchStream stream) {
  if (a.flash_tiles != nullptr) {
    FlashPrefill(a, stream);
    return;
  }
  if (a.rows == 0) return;
  switch (a.kv_type) {
    case StorageType::kBF16:
      AttentionTyped<__nv_bfloat16>(a, stream);
      break;
    case StorageType::kF16:
      AttentionTyped<__half>(a, stream);
      break;
    case StorageType::kF32:
      AttentionTyped<float>(a, stream);
      break;
    case StorageType::kF8E4M3:  // the KV cache is never FP8
      break;
  }
}

}  // namespace verdict::engine::cuda
