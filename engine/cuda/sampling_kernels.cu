// SPDX-License-Identifier: Apache-2.0
// The sampled rule on the device: one block per row finds the temperature/top-k/top-p support by
// radix selection, decides the draft token and draws the replacement or bonus token.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cfloat>
#include <cstdint>

#include "engine/cuda/kernel_util.cuh"
#include "engine/cuda/kernels.h"
#include "engine/kernels/op_math.h"
#include "engine/kernels/sampling_math.h"

namespace verdict::engine::cuda {
namespace {

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

}  // namespace

void LaunchDecideSampled(const float* logits, int64_t stride, int64_t rows, int64_t cols,
                         const math::SampledRowRequest* requests, const int32_t* proposal_ids,
                         const float* proposal_probs, float* out, int64_t out_stride,
                         float* supports, int64_t supports_stride, LaunchStream stream) {
  if (rows == 0) return;
  Launch(DecideSampledKernel, static_cast<unsigned>(rows), kSampleThreads, 0, stream, logits, stride,
         cols, requests, proposal_ids, proposal_probs, out, out_stride, supports, supports_stride);
}

}  // namespace verdict::engine::cuda
