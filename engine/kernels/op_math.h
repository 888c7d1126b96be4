// SPDX-License-Identifier: Apache-2.0
// The per-element and per-row math of the decoder's small ops, written once so that a CPU executor
// and a CUDA kernel (engine/cuda/, a later backend) share it: everything here is a pure inline
// function marked VERDICT_HOST_DEVICE. Launch geometry, tiling and reductions stay outside.
#ifndef VERDICT_ENGINE_KERNELS_OP_MATH_H_
#define VERDICT_ENGINE_KERNELS_OP_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define VERDICT_HOST_DEVICE __host__ __device__
#else
#define VERDICT_HOST_DEVICE
#endif

namespace verdict::engine::math {

// The f32 with these bits, and back.
VERDICT_HOST_DEVICE inline float FloatFromBits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}
VERDICT_HOST_DEVICE inline uint32_t BitsFromFloat(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
#endif
}

// SiLU(g) * u, as Llama's SwiGLU MLP computes it in f32.
VERDICT_HOST_DEVICE inline float SiluMul(float gate, float up) {
  return gate / (1.0f + expf(-gate)) * up;
}

// 1 / sqrt(mean(x^2) + eps) given the sum of squares of n values.
VERDICT_HOST_DEVICE inline float RmsInverse(float sum_squares, int64_t n, float eps) {
  return 1.0f / sqrtf(sum_squares / static_cast<float>(n) + eps);
}

// One element of a rotated pair from its value and its partner's: the first of the pair becomes
// x cos - partner sin, the second x cos + partner sin.
VERDICT_HOST_DEVICE inline float RotatedElement(float x, float partner, bool first, float cos_v,
                                                float sin_v) {
  return first ? x * cos_v - partner * sin_v : x * cos_v + partner * sin_v;
}

// Rotates the pair (a, b) by angle with precomputed cos/sin: (a cos - b sin, b cos + a sin).
VERDICT_HOST_DEVICE inline void RotatePair(float& a, float& b, float cos_v, float sin_v) {
  const float a0 = a;
  const float b0 = b;
  a = RotatedElement(a0, b0, true, cos_v, sin_v);
  b = RotatedElement(b0, a0, false, cos_v, sin_v);
}

// Indices of the i-th rotated pair within a head of `head_dim` (i < head_dim / 2).
VERDICT_HOST_DEVICE inline void RopePairIndices(int64_t i, int64_t head_dim, bool interleaved,
                                                int64_t& first, int64_t& second) {
  if (interleaved) {
    first = 2 * i;
    second = 2 * i + 1;
  } else {
    first = i;
    second = i + head_dim / 2;
  }
}

// The pair holding element e of a head (the inverse of RopePairIndices): its index, the other
// element's index, and whether e is the pair's first.
VERDICT_HOST_DEVICE inline void RopePairOfElement(int64_t e, int64_t head_dim, bool interleaved,
                                                  int64_t& pair, int64_t& partner, bool& first) {
  if (interleaved) {
    pair = e / 2;
    first = e % 2 == 0;
    partner = first ? e + 1 : e - 1;
  } else {
    const int64_t half = head_dim / 2;
    first = e < half;
    pair = first ? e : e - half;
    partner = first ? e + half : e - half;
  }
}

// Rotation angle of pair i at `position`, computed in f32 as Hugging Face does (position * inv_freq).
VERDICT_HOST_DEVICE inline float RopeAngle(int64_t position, float inv_freq) {
  return static_cast<float>(position) * inv_freq;
}

// ---- logits summaries --------------------------------------------------------------------------
// Running statistics of a row of logits, accumulated element by element (in any order) and merged
// across threads: the argmax (first index among equal maxima; NaN never wins), and, relative to the
// running maximum m, sum = sum_j e^(x_j - m) and weighted = sum_j e^(x_j - m) (x_j - m), from which
// the log-sum-exp and the entropy of softmax(x) follow. One accumulator serves the CPU executor
// (sequential) and the CUDA kernel (per thread, then warp/block merges).
struct LogitStats {
  float max;        // running maximum (-inf while empty)
  float sum;        // sum of e^(x - max)
  float weighted;   // sum of e^(x - max) (x - max)
  float best;       // value of the argmax so far
  int32_t best_index;  // argmax so far; kNoLogitIndex while empty or all NaN
};

inline constexpr int32_t kNoLogitIndex = 0x7fffffff;

VERDICT_HOST_DEVICE inline LogitStats EmptyLogitStats() {
  return LogitStats{-INFINITY, 0.0f, 0.0f, -INFINITY, kNoLogitIndex};
}

// Whether (value, index) beats the current best: larger, or equal with a smaller index.
VERDICT_HOST_DEVICE inline bool BeatsArgmax(float value, int32_t index, float best, int32_t best_index) {
  return value > best || (value == best && index < best_index);
}

// e^z for z <= 0 (a logit minus the row maximum), 0 below -87 (where f32 underflows) and NaN for
// NaN: Cephes' range reduction and degree-6 polynomial (relative error ~2e-7), branch-free so a
// CPU loop over a row vectorizes; the CUDA kernel uses the same function.
VERDICT_HOST_DEVICE inline float ExpNonPositive(float z) {
  const float zc = z < -87.0f ? -87.0f : z;  // also maps -inf (masked tokens) into range
  // n = round(z / ln2) (z <= 0, so truncating z / ln2 - 1/2 rounds; a plain conversion keeps the
  // loop vectorizable without SSE4's rounding instructions).
  const float n = static_cast<float>(static_cast<int32_t>(zc * 1.44269504088896341f - 0.5f));
  const float r = (zc - n * 0.693359375f) + n * 2.12194440e-4f;  // z - n ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  const float scale = FloatFromBits(static_cast<uint32_t>(bits));
  const float e = z < -87.0f ? 0.0f : p * scale;
  return z != z ? z : e;
}

VERDICT_HOST_DEVICE inline void MergeLogitStats(LogitStats& a, const LogitStats& b) {
  if (BeatsArgmax(b.best, b.best_index, a.best, a.best_index)) {
    a.best = b.best;
    a.best_index = b.best_index;
  }
  if (b.sum == 0.0f) return;  // b is empty (or saw only -inf)
  if (a.sum == 0.0f) {
    a.max = b.max;
    a.sum = b.sum;
    a.weighted = b.weighted;
    return;
  }
  const float m = fmaxf(a.max, b.max);
  // Moving a term from maximum m_old to m scales it by s = e^(m_old - m) and shifts its offset by
  // d = m_old - m: e^(x-m)(x-m) = s (e^(x-m_old)(x-m_old) + d e^(x-m_old)).
  const float da = a.max - m;
  const float db = b.max - m;
  const float sa = ExpNonPositive(da);
  const float sb = ExpNonPositive(db);
  a.weighted = sa * (a.weighted + da * a.sum) + sb * (b.weighted + db * b.sum);
  a.sum = sa * a.sum + sb * b.sum;
  a.max = m;
}

VERDICT_HOST_DEVICE inline void AddLogit(LogitStats& a, float value, int32_t index) {
  if (BeatsArgmax(value, index, a.best, a.best_index)) {
    a.best = value;
    a.best_index = index;
  }
  if (value != value || value == -INFINITY) {
    if (value != value) a.sum = a.sum + value;  // NaN poisons the sums, as it would a softmax
    return;
  }
  if (a.sum == 0.0f || value > a.max) {
    const float d = a.sum == 0.0f ? 0.0f : a.max - value;  // <= 0
    const float s = ExpNonPositive(d);
    a.weighted = s * (a.weighted + d * a.sum);
    a.sum = s * a.sum + 1.0f;
    a.max = value;
  } else {
    const float z = value - a.max;
    const float e = ExpNonPositive(z);
    a.sum += e;
    a.weighted += e * z;
  }
}

// The statistics of x[0..n) (indices first_index + i) in two passes, maximum then sums: what a CPU
// thread runs over a cache-sized chunk of a row (the sums in 8 independent lanes, which the
// compiler vectorizes); equal to AddLogit over the same elements up to summation order.
VERDICT_HOST_DEVICE inline LogitStats ChunkLogitStats(const float* x, int64_t n, int32_t first_index) {
  constexpr int kLanes = 8;
  LogitStats a = EmptyLogitStats();
  float lane_max[kLanes] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                            -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lane_max[l] = x[i + l] > lane_max[l] ? x[i + l] : lane_max[l];
  }
  for (; i < n; ++i) lane_max[0] = x[i] > lane_max[0] ? x[i] : lane_max[0];  // NaN never wins
  float m = lane_max[0];
  for (int l = 1; l < kLanes; ++l) m = lane_max[l] > m ? lane_max[l] : m;
  for (i = 0; i < n; ++i) {
    if (x[i] == m) {  // the first index of the maximum
      a.best = m;
      a.best_index = first_index + static_cast<int32_t>(i);
      break;
    }
  }
  if (a.best_index == kNoLogitIndex || a.best == -INFINITY) {
    // Only NaN and -inf: the sums are NaN if any NaN was seen, else the row is empty.
    for (int64_t i = 0; i < n; ++i) {
      if (x[i] != x[i]) a.sum = x[i];
    }
    return a;
  }
  float sum[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  float weighted[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (i = 0; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float z = x[i + l] - m;
      const float e = ExpNonPositive(z);
      sum[l] += e;
      weighted[l] += z == -INFINITY ? 0.0f : e * z;
    }
  }
  for (; i < n; ++i) {
    const float z = x[i] - m;
    const float e = ExpNonPositive(z);
    sum[0] += e;
    weighted[0] += z == -INFINITY ? 0.0f : e * z;
  }
  a.max = m;
  a.sum = 0.0f;
  a.weighted = 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    a.sum += sum[l];
    a.weighted += weighted[l];
  }
  return a;
}

// log(sum_j e^x_j) and the entropy -sum_j p_j log p_j (nats) of p = softmax(x). An empty row, or
// one of only -inf, has log-sum-exp -inf and entropy NaN.
VERDICT_HOST_DEVICE inline float LogSumExp(const LogitStats& a) { return a.max + logf(a.sum); }
VERDICT_HOST_DEVICE inline float Entropy(const LogitStats& a) {
  return logf(a.sum) - a.weighted / a.sum;
}

// A row's summary as the backends write it (engine::LogitSummary reads it back): the raw
// statistics, so that summaries of parts of a row (a vocab-parallel LM head's shards) merge
// exactly: [argmax as an exact float (0 for a row of NaN), max logit, sum base, sum, weighted, the
// logit of the row's token].
inline constexpr int kLogitSummaryWidth = 6;
VERDICT_HOST_DEVICE inline void WriteLogitSummary(const LogitStats& a, float token_logit, float* out) {
  out[0] = a.best_index == kNoLogitIndex ? 0.0f : static_cast<float>(a.best_index);
  out[1] = a.best;
  out[2] = a.max;
  out[3] = a.sum;
  out[4] = a.weighted;
  out[5] = token_logit;
}
// The statistics of a written summary, with its argmax moved by `index_offset` (the first column of
// the part of the row it summarized).
VERDICT_HOST_DEVICE inline LogitStats ReadLogitStats(const float* row, int32_t index_offset) {
  return LogitStats{row[2], row[3], row[4], row[1], static_cast<int32_t>(row[0]) + index_offset};
}

}  // namespace verdict::engine::math

#endif  // VERDICT_ENGINE_KERNELS_OP_MATH_H_
