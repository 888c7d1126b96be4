// SPDX-License-Identifier: Apache-2.0
// AVX2 + FMA + F16C matrix-product kernels. This file alone is compiled with -mavx2 -mfma -mf16c;
// nothing here may run before matmul.cc has checked that the CPU supports those extensions.
//
// Weights are converted to f32 in registers: bf16 by one byte shuffle into the high halves of
// 32-bit lanes, f16 with vcvtph2ps, q8_0 by sign-extending int8 to int32, converting to f32 and
// multiplying by the block scale (exact: an 8-bit integer times an 11-bit-mantissa scale fits in
// f32). Activations are never quantized.
//
// Two kernels (see matmul.h for when each runs), both built on a 4-row x 3-token register tile
// (12 accumulators + 3 activation vectors + 1 weight vector = the 16 ymm registers):
//   DirectRows: converts weights in registers for every group of 3 tokens; prefetches the rows two
//     4-row groups ahead into L2. For M = 1 it is the decode GEMV.
//   PanelRows: converts 4 rows x 1024 K once into an f32 panel in L1, then runs the tiles over it.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "common/check.h"
#include "engine/fp8.h"
#include "engine/ggml_quants.h"
#include "engine/kernels/matmul_internal.h"

namespace verdict::engine::matmul_internal {
namespace {

// ---- Loading 8 weights of one row as f32 -------------------------------------------------------

struct NoBlock {};

// Each loader converts 8 consecutive weights of one row to f32. kBytesPer32: bytes of 32 weights.
struct F32Rows {
  using Block = NoBlock;
  static constexpr int64_t kBytesPer32 = 128;
  static Block BeginBlock(const uint8_t*, int64_t) { return {}; }
  static __m256 Load8(const uint8_t* row, int64_t k, const Block&) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k);
  }
};

struct Bf16Rows {
  using Block = NoBlock;
  static constexpr int64_t kBytesPer32 = 64;
  static Block BeginBlock(const uint8_t*, int64_t) { return {}; }
  static __m256 Load8(const uint8_t* row, int64_t k, const Block&) {
    // One in-lane byte shuffle of the 16 bytes broadcast to both lanes: lane 0 takes elements
    // 0..3, lane 1 elements 4..7, each into the high half of a 32-bit lane (low half zeroed).
    // Cheaper than vpmovzxwd + vpslld, which matters when the kernel is compute-bound (M > 1).
    const __m256i v =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
    const __m256i shuffle =
        _mm256_setr_epi8(-1, -1, 0, 1, -1, -1, 2, 3, -1, -1, 4, 5, -1, -1, 6, 7,  //
                         -1, -1, 8, 9, -1, -1, 10, 11, -1, -1, 12, 13, -1, -1, 14, 15);
    return _mm256_castsi256_ps(_mm256_shuffle_epi8(v, shuffle));
  }
};

struct F16Rows {
  using Block = NoBlock;
  static constexpr int64_t kBytesPer32 = 64;
  static Block BeginBlock(const uint8_t*, int64_t) { return {}; }
  static __m256 Load8(const uint8_t* row, int64_t k, const Block&) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * k)));
  }
};

struct Q8Rows {
  struct Block {
    __m256 scale;
    const uint8_t* qs;  // the 32 int8 of the block
  };
  static constexpr int64_t kBytesPer32 = sizeof(BlockQ8_0);
  // REQUIRES: k % 32 == 0.
  static Block BeginBlock(const uint8_t* row, int64_t k) {
    const uint8_t* block = row + (k / kQ8_0BlockSize) * sizeof(BlockQ8_0);
    uint16_t scale_bits;
    std::memcpy(&scale_bits, block, sizeof(scale_bits));
    const __m128 scale = _mm_cvtph_ps(_mm_cvtsi32_si128(scale_bits));
    return {_mm256_broadcastss_ps(scale), block + 2};
  }
  // The 8 int8 at k as f32, not yet scaled.
  static __m256 LoadUnscaled8(int64_t k, const Block& b) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.qs + (k & 31)));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  }
  static __m256 Load8(const uint8_t*, int64_t k, const Block& b) {
    return _mm256_mul_ps(LoadUnscaled8(k, b), b.scale);
  }
};

// FP8 rows (DType::kF8E4M3Block): blocks of 128 E4M3 codes after an f32 scale. An E4M3 code is
// an f16 with the exponent bias 8 lower: (code & 0x7f) << 7 with the sign moved to bit 15 is, as an
// f16, the value / 256 for normal and subnormal codes alike (NaN codes, never in weights, read as
// 480), so one vcvtph2ps decodes 8 codes and the block scale carries the factor 256.
struct Fp8Rows {
  struct Block {
    __m256 scale;           // the block's scale x 256
    const uint8_t* codes;   // the block's first code
  };
  static constexpr int64_t kBytesPer32 = 33;  // 32 codes + a quarter of a scale (prefetch only)
  // REQUIRES: k % 32 == 0 (32 values never straddle a 128-value block).
  static Block BeginBlock(const uint8_t* row, int64_t k) {
    const uint8_t* block = row + Fp8BlockScaleOffset(k);
    float scale;
    std::memcpy(&scale, block, sizeof(scale));
    return {_mm256_set1_ps(scale * 256.0f), block + sizeof(float)};
  }
  // The 8 codes at k as floats / 256, not yet scaled.
  static __m256 LoadUnscaled8(int64_t k, const Block& b) {
    const __m128i q = _mm_cvtepu8_epi16(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.codes + k % kFp8BlockSize)));
    const __m128i sign = _mm_slli_epi16(_mm_and_si128(q, _mm_set1_epi16(0x80)), 8);
    const __m128i magnitude = _mm_slli_epi16(_mm_and_si128(q, _mm_set1_epi16(0x7f)), 7);
    return _mm256_cvtph_ps(_mm_or_si128(sign, magnitude));
  }
  static __m256 Load8(const uint8_t*, int64_t k, const Block& b) {
    return _mm256_mul_ps(LoadUnscaled8(k, b), b.scale);
  }
};

// Types stored in scaled blocks: whole 32-value groups only (no K tail), one scale per block.
template <class L>
constexpr bool kBlocked = std::is_same_v<L, Q8Rows> || std::is_same_v<L, Fp8Rows>;

// The GGML block quantizations (engine/ggml_quants.h) in the panel kernel: each row's blocks are
// unpacked into the f32 panel (the dtype comes from GemmArgs). One token takes the GEMV below.
struct GgmlRows {};

// ---- Small helpers -----------------------------------------------------------------------------

// Local on purpose: an out-of-line instance of a shared inline template (std::min) compiled here
// could be picked by the linker for generic code and execute AVX instructions on an older CPU.
inline int64_t MinI64(int64_t a, int64_t b) { return a < b ? a : b; }

alignas(32) constexpr int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};

// Lanes [0, len) set, 0 <= len <= 8.
inline __m256i TailMask(int64_t len) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - len));
}

// {sum(a0), sum(a1), sum(a2), sum(a3)}.
inline __m128 Reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 t0 = _mm256_hadd_ps(a0, a1);
  const __m256 t1 = _mm256_hadd_ps(a2, a3);
  const __m256 t2 = _mm256_hadd_ps(t0, t1);
  return _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1));
}

// Reduces acc[r] (r < R) and stores (or adds) the R sums into y[0, R).
template <int R>
inline void StoreSums(const __m256* acc, float* y, bool add) {
  const __m256 z = _mm256_setzero_ps();
  const __m128 s = Reduce4(acc[0], R > 1 ? acc[1] : z, R > 2 ? acc[2] : z, R > 3 ? acc[3] : z);
  if constexpr (R == 4) {
    _mm_storeu_ps(y, add ? _mm_add_ps(_mm_loadu_ps(y), s) : s);
  } else {
    alignas(16) float tmp[4];
    _mm_store_ps(tmp, s);
    for (int r = 0; r < R; ++r) y[r] = add ? y[r] + tmp[r] : tmp[r];
  }
}

template <class L>
constexpr int ElemBytes() {
  if constexpr (std::is_same_v<L, F32Rows>) {
    return 4;
  } else {
    return 2;
  }
}

// ---- Direct kernel: R weight rows x T tokens, whole K, weights converted in registers ----------

// Prefetch distance of the direct kernel, in groups of 4 rows. Rows of 2048 bf16 are one page
// long, too short for the hardware prefetcher to ramp up, so the kernel prefetches (into L2) the
// rows it will read two groups later.
constexpr int64_t kDirectPrefetchGroups = 2;

// y[t * ldy + r] (+)= dot(x[t * ldx + :K], w_row_r[:K]) for r < R, t < T. When bit r of
// prefetch_rows is set, the row kDirectPrefetchGroups * 4 rows after row r is prefetched as well.
template <class L, int R, int T>
void DirectTile(const uint8_t* w0, size_t row_bytes, const float* x, int64_t ldx, int64_t k_len,
                float* y, int64_t ldy, bool add, unsigned prefetch_rows) {
  constexpr int U = T == 1 ? 2 : 1;  // independent accumulators per output (FMA latency)
  __m256 acc[T][U][R];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[t][u][r] = _mm256_setzero_ps();
    }
  }
  const uint8_t* rows[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = w0 + r * row_bytes;
  const size_t prefetch_offset = kDirectPrefetchGroups * 4 * row_bytes;

  int64_t k = 0;
  for (; k + 32 <= k_len; k += 32) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      if (prefetch_rows & (1u << r)) {
        _mm_prefetch(
            reinterpret_cast<const char*>(rows[r] + prefetch_offset + k * L::kBytesPer32 / 32),
            _MM_HINT_T1);
      }
    }
    typename L::Block blk[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) blk[r] = L::BeginBlock(rows[r], k);
    if constexpr (kBlocked<L> && T == 1) {
      // GEMV on scaled blocks: dot the unscaled 32 values first, then scale once (one multiply
      // instead of four). Activations stay f32; only the rounding order differs.
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        __m256 part = _mm256_mul_ps(L::LoadUnscaled8(k, blk[r]), _mm256_loadu_ps(x + k));
#pragma GCC unroll 3
        for (int j = 1; j < 4; ++j) {
          part = _mm256_fmadd_ps(L::LoadUnscaled8(k + 8 * j, blk[r]),
                                 _mm256_loadu_ps(x + k + 8 * j), part);
        }
        acc[0][r % U][r] = _mm256_fmadd_ps(part, blk[r].scale, acc[0][r % U][r]);
      }
      continue;
    }
    const auto step = [&](int j) __attribute__((always_inline)) {
      __m256 xv[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k + 8 * j);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m256 wv = L::Load8(rows[r], k + 8 * j, blk[r]);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          acc[t][j % U][r] = _mm256_fmadd_ps(wv, xv[t], acc[t][j % U][r]);
        }
      }
    };
    // Unrolling the four 8-wide steps helps the GEMV (T = 1); with 3 tokens the registers are all
    // taken and unrolling only makes the allocator spill.
    if constexpr (T == 1) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) step(j);
    } else {
#pragma GCC unroll 1
      for (int j = 0; j < 4; ++j) step(j);
    }
  }
  if constexpr (!kBlocked<L>) {
    // K % 32 tail: whole vectors, then a zero-padded partial one.
    for (; k < k_len; k += 8) {
      const int64_t len = MinI64(8, k_len - k);
      __m256 xv[T];
      __m256 wv[R];
      if (len == 8) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) wv[r] = L::Load8(rows[r], k, {});
      } else {
        const __m256i mask = TailMask(len);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) xv[t] = _mm256_maskload_ps(x + t * ldx + k, mask);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          alignas(32) uint8_t tmp[32] = {};
          std::memcpy(tmp, rows[r] + k * ElemBytes<L>(), len * ElemBytes<L>());
          wv[r] = L::Load8(tmp, 0, {});
        }
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[t][0][r] = _mm256_fmadd_ps(wv[r], xv[t], acc[t][0][r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    if constexpr (U == 2) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) acc[t][0][r] = _mm256_add_ps(acc[t][0][r], acc[t][1][r]);
    }
    StoreSums<R>(acc[t][0], y + t * ldy, add);
  }
}

// Groups of 4 weight rows, each streamed from memory once by the first group of <= 3 tokens and
// re-read from L1/L2 by the others (4 rows of K = 8192 bf16 are 64 KiB).
template <class L>
void DirectRows(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  using TileFn = void (*)(const uint8_t*, size_t, const float*, int64_t, int64_t, float*, int64_t,
                          bool, unsigned);
  static constexpr TileFn kTiles[4][3] = {
      {&DirectTile<L, 1, 1>, &DirectTile<L, 1, 2>, &DirectTile<L, 1, 3>},
      {&DirectTile<L, 2, 1>, &DirectTile<L, 2, 2>, &DirectTile<L, 2, 3>},
      {&DirectTile<L, 3, 1>, &DirectTile<L, 3, 2>, &DirectTile<L, 3, 3>},
      {&DirectTile<L, 4, 1>, &DirectTile<L, 4, 2>, &DirectTile<L, 4, 3>},
  };
  const int64_t num_groups = (a.m + 2) / 3;
  for (int64_t n = n_begin; n < n_end; n += 4) {
    const int r = static_cast<int>(MinI64(4, n_end - n));
    // Rows to prefetch: those of the group kDirectPrefetchGroups ahead that lie in this range,
    // spread over the token groups (row i by group i % num_groups) to keep the stream even.
    const int64_t ahead = n_end - (n + kDirectPrefetchGroups * 4);
    const unsigned all_rows = ahead <= 0 ? 0u : (1u << MinI64(r, ahead)) - 1u;
    for (int64_t t = 0, g = 0; t < a.m; t += 3, ++g) {
      const int tt = static_cast<int>(MinI64(3, a.m - t));
      unsigned mask = 0;
      for (int i = 0; i < 4; ++i) {
        if (i % num_groups == g) mask |= 1u << i;
      }
      kTiles[r - 1][tt - 1](a.w + static_cast<size_t>(n) * a.row_bytes, a.row_bytes,
                            a.x + t * a.ldx, a.ldx, a.k, a.y + t * a.ldy + n, a.ldy, a.accumulate,
                            mask & all_rows);
    }
  }
}

// ---- Row conversion ----------------------------------------------------------------------------

template <class L>
void ConvertRowT(const uint8_t* row, int64_t k0, int64_t count, float* out) {
  int64_t k = k0;
  const int64_t end = k0 + count;
  for (; k + 32 <= end; k += 32) {
    const typename L::Block blk = L::BeginBlock(row, k);
    _mm256_storeu_ps(out + (k - k0), L::Load8(row, k, blk));
    _mm256_storeu_ps(out + (k - k0) + 8, L::Load8(row, k + 8, blk));
    _mm256_storeu_ps(out + (k - k0) + 16, L::Load8(row, k + 16, blk));
    _mm256_storeu_ps(out + (k - k0) + 24, L::Load8(row, k + 24, blk));
  }
  if constexpr (!kBlocked<L>) {
    for (; k + 8 <= end; k += 8) _mm256_storeu_ps(out + (k - k0), L::Load8(row, k, {}));
    if (k < end) {
      alignas(32) uint8_t tmp[32] = {};
      std::memcpy(tmp, row + k * ElemBytes<L>(), (end - k) * ElemBytes<L>());
      alignas(32) float f[8];
      _mm256_store_ps(f, L::Load8(tmp, 0, {}));
      std::memcpy(out + (k - k0), f, (end - k) * sizeof(float));
    }
  }
}

// ---- GGML block quantizations: SIMD unpacking of the 4-bit formats ------------------------------
//
// Every block format is unpacked 16 values at a time (nibbles and high bits with byte operations,
// then 8 at a time to f32) instead of through the portable loops (engine/ggml_quants.cc). The
// results must equal
// those loops bit for bit (GatherRows is exact, and the tests compare with them): products and sums
// stay separate roundings, never fused, whatever the compiler's contraction default.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

float F16Scalar(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
}

// The 32 nibbles of 16 bytes as two vectors of 16 bytes: low nibbles (values 0..15 of the group)
// and high nibbles (values 16..31).
inline void SplitNibbles(const uint8_t* qs, __m128i* low, __m128i* high) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  *low = _mm_and_si128(bytes, mask);
  *high = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
}

// 16 unsigned bytes, minus `offset`, as f32, times `scale` plus `bias` (bias applied when `add`).
template <bool kAddBias>
inline void Store16(__m128i q, __m256i offset, __m256 scale, __m256 bias, float* out) {
  const __m256i lo = _mm256_sub_epi32(_mm256_cvtepu8_epi32(q), offset);
  const __m256i hi = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(q, 8)), offset);
  __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), scale);
  __m256 b = _mm256_mul_ps(_mm256_cvtepi32_ps(hi), scale);
  if constexpr (kAddBias) {
    a = _mm256_add_ps(a, bias);
    b = _mm256_add_ps(b, bias);
  }
  _mm256_storeu_ps(out, a);
  _mm256_storeu_ps(out + 8, b);
}

void DequantizeQ4_KAvx2(const uint8_t* block, int64_t blocks, float* out) {
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t b = 0; b < blocks; ++b, block += 144) {
    const float d = F16Scalar(block), dmin = F16Scalar(block + 2);
    const uint8_t* scales = block + 4;
    const uint8_t* q = block + 16;
    for (int is = 0; is < 8; is += 2, q += 32, out += 64) {
      uint8_t sc, m;
      GgmlScaleMinK4(is, scales, &sc, &m);
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 m1 = _mm256_set1_ps(-(dmin * static_cast<float>(m)));  // x - m == x + (-m), exactly
      GgmlScaleMinK4(is + 1, scales, &sc, &m);
      const __m256 d2 = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 m2 = _mm256_set1_ps(-(dmin * static_cast<float>(m)));
      for (int half = 0; half < 2; ++half) {
        __m128i low, high;
        SplitNibbles(q + 16 * half, &low, &high);
        Store16<true>(low, zero, d1, m1, out + 16 * half);
        Store16<true>(high, zero, d2, m2, out + 32 + 16 * half);
      }
    }
  }
}

// 16 bits of `bits` (bit i for value i) as bytes 0x10 (set) or 0 (clear): the fifth bit of Q5_0/Q5_1.
inline __m128i FifthBits16(uint32_t bits) {
  const __m128i spread = _mm_shuffle_epi8(_mm_cvtsi32_si128(static_cast<int>(bits)),
                                          _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  const __m128i bit = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  return _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(spread, bit), bit), _mm_set1_epi8(0x10));
}

// The four formats of 32-value blocks: f16 d; f16 m (Q4_1, Q5_1: w = d*q + m); 32 fifth bits
// (Q5_0, Q5_1); 16 bytes of nibbles (low nibbles values 0..15, high 16..31). Without m the values
// are centred: q - 8 (Q4_0) or q - 16 (Q5_0). The dequantization and the direct kernel share it.
template <bool kFifth, bool kMin>
struct Block32 {
  static constexpr int kQh = kMin ? 4 : 2;
  static constexpr int kQs = kQh + (kFifth ? 4 : 0);
  static constexpr int kBytes = kQs + 16;
  static constexpr int kOffset = kMin ? 0 : kFifth ? 16 : 8;
  // The unsigned values (before the offset) of values 0..15 and 16..31.
  static void Unpack(const uint8_t* b, __m128i* low, __m128i* high) {
    SplitNibbles(b + kQs, low, high);
    if constexpr (kFifth) {
      uint32_t qh;
      std::memcpy(&qh, b + kQh, 4);
      *low = _mm_or_si128(*low, FifthBits16(qh & 0xFFFF));
      *high = _mm_or_si128(*high, FifthBits16(qh >> 16));
    }
  }
};

template <bool kFifth, bool kMin>
void DequantizeBlock32Avx2(const uint8_t* block, int64_t blocks, float* out) {
  using B = Block32<kFifth, kMin>;
  const __m256i offset = _mm256_set1_epi32(B::kOffset);
  for (int64_t i = 0; i < blocks; ++i, block += B::kBytes, out += 32) {
    const __m256 d = _mm256_set1_ps(F16Scalar(block));
    const __m256 m = kMin ? _mm256_set1_ps(F16Scalar(block + 2)) : d;
    __m128i low, high;
    B::Unpack(block, &low, &high);
    Store16<kMin>(low, offset, d, m, out);
    Store16<kMin>(high, offset, d, m, out + 16);
  }
}

// Bytes whose bit `mask` is set in `qh` as 0x10, else 0.
inline __m128i BitAsFifth(__m128i qh, uint8_t mask) {
  const __m128i m = _mm_set1_epi8(static_cast<char>(mask));
  return _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, m), m), _mm_set1_epi8(0x10));
}

void DequantizeQ5_KAvx2(const uint8_t* block, int64_t blocks, float* out) {
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t b = 0; b < blocks; ++b, block += 176) {
    const float d = F16Scalar(block), dmin = F16Scalar(block + 2);
    const uint8_t* scales = block + 4;
    const uint8_t* qh = block + 16;
    const uint8_t* ql = block + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, out += 64, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      GgmlScaleMinK4(is, scales, &sc, &m);
      const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 m1 = _mm256_set1_ps(-(dmin * static_cast<float>(m)));
      GgmlScaleMinK4(is + 1, scales, &sc, &m);
      const __m256 d2 = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 m2 = _mm256_set1_ps(-(dmin * static_cast<float>(m)));
      for (int half = 0; half < 2; ++half) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + 16 * half));
        __m128i low, high;
        SplitNibbles(ql + 16 * half, &low, &high);
        Store16<true>(_mm_or_si128(low, BitAsFifth(h, u1)), zero, d1, m1, out + 16 * half);
        Store16<true>(_mm_or_si128(high, BitAsFifth(h, u2)), zero, d2, m2, out + 32 + 16 * half);
      }
    }
  }
}

void DequantizeQ6_KAvx2(const uint8_t* block, int64_t blocks, float* out) {
  const __m256i thirty_two = _mm256_set1_epi32(32);
  const __m128i low4 = _mm_set1_epi8(0x0F), low2 = _mm_set1_epi8(0x03);
  for (int64_t b = 0; b < blocks; ++b, block += 210) {
    const uint8_t* ql = block;
    const uint8_t* qh = block + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(block + 192);
    const float d = F16Scalar(block + 208);
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8, out += 128) {
      for (int l0 = 0; l0 < 32; l0 += 16) {
        const int is = l0 / 16;
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + l0));
        const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ql + l0 + 32));
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + l0));
        auto high_bits = [&](int shift) {  // ((qh >> shift) & 3) << 4, per byte
          return _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, shift), low2), 4);
        };
        const __m128i q1 = _mm_or_si128(_mm_and_si128(a, low4), high_bits(0));
        const __m128i q2 = _mm_or_si128(_mm_and_si128(c, low4), high_bits(2));
        const __m128i q3 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), low4), high_bits(4));
        const __m128i q4 = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(c, 4), low4), high_bits(6));
        const __m256 none = _mm256_setzero_ps();
        Store16<false>(q1, thirty_two, _mm256_set1_ps(d * sc[is + 0]), none, out + l0);
        Store16<false>(q2, thirty_two, _mm256_set1_ps(d * sc[is + 2]), none, out + 32 + l0);
        Store16<false>(q3, thirty_two, _mm256_set1_ps(d * sc[is + 4]), none, out + 64 + l0);
        Store16<false>(q4, thirty_two, _mm256_set1_ps(d * sc[is + 6]), none, out + 96 + l0);
      }
    }
  }
}


// ---- GGML block quantizations: the direct kernel for 1-3 tokens ---------------------------------
// (Still under fp-contract=off, with the unpacking helpers above it inlines.)
//
// For a few activation rows the weights are streamed once, so converting them to f32 and storing
// them in a panel costs more than it saves. Each block is dotted with x as its small integers
// (nibbles, 5- or 6-bit values, as f32), decoded once for all T tokens, and scaled once per group:
//   sum_j (d*q_j - m) x_j = d * sum_j q_j x_j - m * sum_j x_j,
// the activation sums of each 32-value group computed once per call. Only the rounding order
// differs from dequantize-then-dot (matmul_test bounds it); activations stay f32.

// acc[t] += q[0..16) * x[t][0..16) as 8-lane partial sums, for 16 unsigned (U8) or signed bytes.
template <int T, bool kSigned>
inline void Dot16(__m128i q, const float* x, int64_t ldx, __m256* acc) {
  const __m256 w0 = _mm256_cvtepi32_ps(kSigned ? _mm256_cvtepi8_epi32(q) : _mm256_cvtepu8_epi32(q));
  const __m128i hi = _mm_srli_si128(q, 8);
  const __m256 w1 = _mm256_cvtepi32_ps(kSigned ? _mm256_cvtepi8_epi32(hi) : _mm256_cvtepu8_epi32(hi));
#pragma GCC unroll 3
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * ldx), acc[t]);
    acc[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * ldx + 8), acc[t]);
  }
}

template <int T>
inline void Zero(__m256* v) {
#pragma GCC unroll 3
  for (int t = 0; t < T; ++t) v[t] = _mm256_setzero_ps();
}

// acc[t] += part[t] * scale.
template <int T>
inline void AddScaled(const __m256* part, __m256 scale, __m256* acc) {
#pragma GCC unroll 3
  for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(part[t], scale, acc[t]);
}

// One block of each format: Block<T>(b, x, ldx, xsum, xsum_ld, acc, mins) adds d * sum q x to
// acc[t] and m * sum x to mins[t] for T tokens; x points at the block's first value in token 0,
// xsum at its first 32-value group's sum in token 0 (token t's at + t * xsum_ld; computed only
// when kNeedsSums).
template <bool kFifth, bool kMin>
struct GemvBlock32 {
  static constexpr int64_t kValues = 32;
  static constexpr bool kNeedsSums = kMin;
  template <int T>
  static void Block(const uint8_t* b, const float* x, int64_t ldx, const float* xsum, int64_t xsum_ld, __m256* acc,
                    float* mins) {
    using L = Block32<kFifth, kMin>;
    __m128i low, high;
    L::Unpack(b, &low, &high);
    __m256 part[T];
    Zero<T>(part);
    if constexpr (kMin) {
      Dot16<T, false>(low, x, ldx, part);
      Dot16<T, false>(high, x + 16, ldx, part);
      const float m = F16Scalar(b + 2);
      for (int t = 0; t < T; ++t) mins[t] -= m * xsum[t * xsum_ld];  // these add their m: w = d*q + m
    } else {
      const __m128i offset = _mm_set1_epi8(L::kOffset);
      Dot16<T, true>(_mm_sub_epi8(low, offset), x, ldx, part);
      Dot16<T, true>(_mm_sub_epi8(high, offset), x + 16, ldx, part);
    }
    AddScaled<T>(part, _mm256_set1_ps(F16Scalar(b)), acc);
  }
};

// Q4_K / Q5_K: 8 groups of 32 with 6-bit scales and mins; 32 bytes of nibbles hold two groups
// (low nibbles the first, high nibbles the second), Q5_K's fifth bits come from qh.
template <bool kQ5>
struct GemvK45 {
  static constexpr int64_t kValues = 256;
  static constexpr bool kNeedsSums = true;
  template <int T>
  static void Block(const uint8_t* b, const float* x, int64_t ldx, const float* xsum, int64_t xsum_ld, __m256* acc,
                    float* mins) {
    const float d = F16Scalar(b), dmin = F16Scalar(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* q = b + (kQ5 ? 48 : 16);
    uint8_t u1 = 1, u2 = 2;
    float block_mins[T] = {};
    for (int g = 0; g < 8; g += 2, q += 32, x += 64, u1 <<= 2, u2 <<= 2) {
      uint8_t sc1, m1, sc2, m2;
      GgmlScaleMinK4(g, scales, &sc1, &m1);
      GgmlScaleMinK4(g + 1, scales, &sc2, &m2);
      __m256 p1[T], p2[T];
      Zero<T>(p1);
      Zero<T>(p2);
      for (int half = 0; half < 2; ++half) {
        __m128i low, high;
        SplitNibbles(q + 16 * half, &low, &high);
        if constexpr (kQ5) {
          const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qh + 16 * half));
          low = _mm_or_si128(low, BitAsFifth(h, u1));
          high = _mm_or_si128(high, BitAsFifth(h, u2));
        }
        Dot16<T, false>(low, x + 16 * half, ldx, p1);
        Dot16<T, false>(high, x + 32 + 16 * half, ldx, p2);
      }
      AddScaled<T>(p1, _mm256_set1_ps(d * static_cast<float>(sc1)), acc);
      AddScaled<T>(p2, _mm256_set1_ps(d * static_cast<float>(sc2)), acc);
      for (int t = 0; t < T; ++t) {
        block_mins[t] += static_cast<float>(m1) * xsum[t * xsum_ld + g] + static_cast<float>(m2) * xsum[t * xsum_ld + g + 1];
      }
    }
    for (int t = 0; t < T; ++t) mins[t] += dmin * block_mins[t];
  }
};

// Q6_K: 16 groups of 16 with int8 scales; values (ql nibble | 2 bits of qh << 4) - 32. The bits
// of 32 values are assembled at once in 256-bit registers, then dotted 16 at a time; the 16 scales
// (times d) are converted at once and read back as broadcasts.
struct GemvQ6_K {
  static constexpr int64_t kValues = 256;
  static constexpr bool kNeedsSums = false;
  template <int T>
  static void Block(const uint8_t* b, const float* x, int64_t ldx, const float*, int64_t, __m256* acc, float*) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const __m256 d = _mm256_set1_ps(F16Scalar(b + 208));
    const __m128i sc16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
    alignas(32) float scale[16];
    _mm256_store_ps(scale, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc16))));
    _mm256_store_ps(scale + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc16, 8)))));
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03), thirty_two = _mm256_set1_epi8(32);
    for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, x += 128) {
      const float* s = scale + n / 16;
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh));
      auto value = [&](__m256i nibbles, int shift) {  // (nibbles | ((h >> shift) & 3) << 4) - 32
        const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, shift), low2), 4);
        return _mm256_sub_epi8(_mm256_or_si256(nibbles, high), thirty_two);
      };
      const __m256i q[4] = {value(_mm256_and_si256(a, low4), 0), value(_mm256_and_si256(c, low4), 2),
                            value(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4), 4),
                            value(_mm256_and_si256(_mm256_srli_epi16(c, 4), low4), 6)};
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {  // values 32j .. 32j+31: groups 2j (first 16) and 2j+1
        __m256 p0[T], p1[T];
        Zero<T>(p0);
        Zero<T>(p1);
        Dot16<T, true>(_mm256_castsi256_si128(q[j]), x + 32 * j, ldx, p0);
        Dot16<T, true>(_mm256_extracti128_si256(q[j], 1), x + 32 * j + 16, ldx, p1);
        AddScaled<T>(p0, _mm256_broadcast_ss(s + 2 * j), acc);
        AddScaled<T>(p1, _mm256_broadcast_ss(s + 2 * j + 1), acc);
      }
    }
  }
};

template <class L>
void PanelRows(const GemmArgs& a, int64_t n_begin, int64_t n_end);

// Largest K the direct kernel takes (its activation sums live on the stack); beyond, the panel.
constexpr int64_t kGemvMaxGroups = 4096;  // K <= 131072

// y[t, n] (+)= dot(x[t, :], w[n, :]) for T tokens and rows [n_begin, n_end), two rows at a time
// (independent accumulator chains); xsum[t * groups + g] is token t's sum over group g.
template <class G, int T>
void GemvTile(const GemmArgs& a, const float* x, const float* xsum, int64_t groups, float* y, int64_t n_begin,
              int64_t n_end) {
  const size_t block_bytes = static_cast<size_t>(a.row_bytes / (a.k / G::kValues));
  const int64_t blocks = a.k / G::kValues;
  constexpr int64_t kGroupsPerBlock = G::kValues / 32;
  auto finish = [&](int64_t n, const __m256* acc, const float* mins) {
    alignas(16) float sums[4];
    for (int t = 0; t < T; ++t) {
      _mm_store_ps(sums, Reduce4(acc[t], _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()));
      const float v = sums[0] - mins[t];
      float& out = y[t * a.ldy + n];
      out = a.accumulate ? out + v : v;
    }
  };
  int64_t n = n_begin;
  for (; n + 2 <= n_end; n += 2) {
    const uint8_t* r0 = a.w + static_cast<size_t>(n) * a.row_bytes;
    const uint8_t* r1 = r0 + a.row_bytes;
    // The next pair of rows streams in while this one is computed (rows of a few KiB end before
    // the hardware prefetcher has ramped up).
    const uint8_t* next = n + 4 <= n_end ? r1 + a.row_bytes : nullptr;
    __m256 acc0[T], acc1[T];
    Zero<T>(acc0);
    Zero<T>(acc1);
    float mins0[T] = {}, mins1[T] = {};
    for (int64_t bi = 0; bi < blocks; ++bi) {
      if (next != nullptr) {
        _mm_prefetch(reinterpret_cast<const char*>(next + bi * block_bytes), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(next + a.row_bytes + bi * block_bytes), _MM_HINT_T0);
      }
      const float* xb = x + bi * G::kValues;
      const float* sb = xsum + bi * kGroupsPerBlock;
      G::template Block<T>(r0 + bi * block_bytes, xb, a.ldx, sb, groups, acc0, mins0);
      G::template Block<T>(r1 + bi * block_bytes, xb, a.ldx, sb, groups, acc1, mins1);
    }
    finish(n, acc0, mins0);
    finish(n + 1, acc1, mins1);
  }
  for (; n < n_end; ++n) {
    const uint8_t* r0 = a.w + static_cast<size_t>(n) * a.row_bytes;
    __m256 acc0[T];
    Zero<T>(acc0);
    float mins0[T] = {};
    for (int64_t bi = 0; bi < blocks; ++bi) {
      G::template Block<T>(r0 + bi * block_bytes, x + bi * G::kValues, a.ldx, xsum + bi * kGroupsPerBlock, groups,
                           acc0, mins0);
    }
    finish(n, acc0, mins0);
  }
}

// Tokens in groups of up to 3, each group's weights decoded once.
template <class G>
void GgmlDirectRows(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t groups = a.k / 32;
  // On the stack (no std::vector here: a library template instantiated in this file could be
  // picked by the linker for generic code).
  if (groups > kGemvMaxGroups) return PanelRows<GgmlRows>(a, n_begin, n_end);
  alignas(32) float xsum[3 * kGemvMaxGroups];
  for (int64_t t0 = 0; t0 < a.m; t0 += 3) {
    const int tt = static_cast<int>(MinI64(3, a.m - t0));
    const float* x = a.x + t0 * a.ldx;
    for (int t = 0; t < (G::kNeedsSums ? tt : 0); ++t) {  // only formats with mins use them
      for (int64_t g = 0; g < groups; ++g) {
        const float* xg = x + t * a.ldx + 32 * g;
        const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xg), _mm256_loadu_ps(xg + 8)),
                                       _mm256_add_ps(_mm256_loadu_ps(xg + 16), _mm256_loadu_ps(xg + 24)));
        const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
        xsum[t * groups + g] = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
      }
    }
    float* y = a.y + t0 * a.ldy;
    switch (tt) {
      case 1: GemvTile<G, 1>(a, x, xsum, groups, y, n_begin, n_end); break;
      case 2: GemvTile<G, 2>(a, x, xsum, groups, y, n_begin, n_end); break;
      default: GemvTile<G, 3>(a, x, xsum, groups, y, n_begin, n_end); break;
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

void DequantizeGgmlRowAvx2(DType dtype, const uint8_t* row, int64_t k0, int64_t count, float* out) {
  const int64_t per_block = GgmlBlockValues(dtype);
  const uint8_t* first = row + static_cast<size_t>(k0 / per_block) * GgmlBlockBytes(dtype);
  switch (dtype) {
    case DType::kQ4_0: return DequantizeBlock32Avx2<false, false>(first, count / per_block, out);
    case DType::kQ4_1: return DequantizeBlock32Avx2<false, true>(first, count / per_block, out);
    case DType::kQ4_K: return DequantizeQ4_KAvx2(first, count / per_block, out);
    case DType::kQ5_0: return DequantizeBlock32Avx2<true, false>(first, count / per_block, out);
    case DType::kQ5_1: return DequantizeBlock32Avx2<true, true>(first, count / per_block, out);
    case DType::kQ5_K: return DequantizeQ5_KAvx2(first, count / per_block, out);
    case DType::kQ6_K: return DequantizeQ6_KAvx2(first, count / per_block, out);
    default: return DequantizeGgmlRow(dtype, row, k0, count, out);
  }
}

void ConvertRowAvx2(const uint8_t* row, DType dtype, int64_t k0, int64_t count, float* out) {
  switch (dtype) {
    case DType::kF32:
      ConvertRowT<F32Rows>(row, k0, count, out);
      return;
    case DType::kBF16:
      ConvertRowT<Bf16Rows>(row, k0, count, out);
      return;
    case DType::kF16:
      ConvertRowT<F16Rows>(row, k0, count, out);
      return;
    case DType::kQ8_0:
      ConvertRowT<Q8Rows>(row, k0, count, out);
      return;
    case DType::kF8E4M3Block:  // whole 32-value groups in AVX2, anything else portable
      if (k0 % 32 == 0 && count % 32 == 0) {
        ConvertRowT<Fp8Rows>(row, k0, count, out);
      } else {
        GenericKernels().convert_row(row, dtype, k0, count, out);
      }
      return;
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      DequantizeGgmlRowAvx2(dtype, row, k0, count, out);
      return;
    case DType::kF8E4M3:
    case DType::kI32:
      break;
  }
  VERDICT_CHECK_MSG(false, "unsupported weight dtype");
}

// ---- Panel kernel: 4 weight rows converted to f32 in L1, reused by 4x3 register tiles ----------

// K-slice of the f32 panel: 4 rows x 1024 f32 = 16 KiB, plus 3 activation rows x 4 KiB, fit L1.
constexpr int64_t kPanelK = 1024;  // multiple of 32 (q8_0 blocks) and 256 (k-quant super-blocks)
constexpr int64_t kPanelRows = 4;
// Row stride of the panel: one cache line more than the slice so that the rows do not all map to
// the same L1 sets (a 4 KiB stride would).
constexpr int64_t kPanelStride = kPanelK + 16;
// The weights of the slice this many slices ahead are prefetched into L2 while the tiles run.
constexpr int64_t kPanelPrefetchSlices = 2;

// Weight bytes to prefetch while the tiles of one slice run: `lines` cache lines taken row by row
// from `rows[0..num_rows)`, each row segment `row_len` bytes long.
struct PrefetchCursor {
  const uint8_t* rows[kPanelRows];
  int num_rows = 0;
  int64_t row_len = 0;
  int row = 0;
  int64_t offset = 0;
  int64_t lines = 0;  // still to issue by the current tile

  inline void Step() {
    if (lines <= 0 || row >= num_rows) return;
    const char* p = reinterpret_cast<const char*>(rows[row] + offset);
    _mm_prefetch(p, _MM_HINT_T1);
    --lines;
    offset += 64;
    if (offset >= row_len) {
      offset = 0;
      ++row;
    }
  }
};

// y[t * ldy + r] (+)= dot(x[t * ldx + :k_len], panel[r * kPanelK + :k_len]) for r < R, t < T.
// The panel is zero-padded up to a multiple of 8; x is read with a mask past k_len.
template <int R, int T>
void PanelTile(const float* panel, const float* x, int64_t ldx, int64_t k_len, float* y,
               int64_t ldy, bool add, PrefetchCursor* pf) {
  __m256 acc[T][R];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[t][r] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 8 <= k_len; k += 8) {
    pf->Step();
    __m256 xv[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) xv[t] = _mm256_loadu_ps(x + t * ldx + k);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_load_ps(panel + r * kPanelStride + k);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[t][r] = _mm256_fmadd_ps(wv, xv[t], acc[t][r]);
    }
  }
  if (k < k_len) {
    const __m256i mask = TailMask(k_len - k);
    __m256 xv[T];
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) xv[t] = _mm256_maskload_ps(x + t * ldx + k, mask);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 wv = _mm256_load_ps(panel + r * kPanelStride + k);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[t][r] = _mm256_fmadd_ps(wv, xv[t], acc[t][r]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) StoreSums<R>(acc[t], y + t * ldy, add);
}

template <class L>
void PanelRows(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  using TileFn = void (*)(const float*, const float*, int64_t, int64_t, float*, int64_t, bool,
                          PrefetchCursor*);
  static constexpr TileFn kTiles[4][3] = {
      {&PanelTile<1, 1>, &PanelTile<1, 2>, &PanelTile<1, 3>},
      {&PanelTile<2, 1>, &PanelTile<2, 2>, &PanelTile<2, 3>},
      {&PanelTile<3, 1>, &PanelTile<3, 2>, &PanelTile<3, 3>},
      {&PanelTile<4, 1>, &PanelTile<4, 2>, &PanelTile<4, 3>},
  };
  alignas(64) float panel[kPanelRows * (kPanelK + 64)];
  const int64_t num_slices = (a.k + kPanelK - 1) / kPanelK;
  const int64_t num_groups = (a.m + 2) / 3;
  size_t elem_num = ElemBytes<L>(), elem_den = 1;  // bytes per element, for prefetch addresses
  if constexpr (std::is_same_v<L, Q8Rows>) {
    elem_num = sizeof(BlockQ8_0);
    elem_den = kQ8_0BlockSize;
  } else if constexpr (std::is_same_v<L, GgmlRows>) {
    elem_num = GgmlBlockBytes(a.dtype);
    elem_den = static_cast<size_t>(GgmlBlockValues(a.dtype));
  } else if constexpr (std::is_same_v<L, Fp8Rows>) {
    elem_num = Fp8BlockScaleOffset(kFp8BlockSize);  // bytes of one block
    elem_den = kFp8BlockSize;
  }
  int64_t slice_index = 0;  // over (row group, K-slice) pairs of this range
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanelRows) {
    const int p = static_cast<int>(MinI64(kPanelRows, n_end - n0));
    for (int64_t s = 0; s < num_slices; ++s, ++slice_index) {
      const int64_t k0 = s * kPanelK;
      const int64_t kc = MinI64(kPanelK, a.k - k0);
      const int64_t kc_padded = (kc + 7) & ~int64_t{7};
      for (int r = 0; r < p; ++r) {
        float* dst = panel + r * kPanelStride;
        if constexpr (std::is_same_v<L, GgmlRows>) {
          DequantizeGgmlRowAvx2(a.dtype, a.w + static_cast<size_t>(n0 + r) * a.row_bytes, k0, kc, dst);
        } else {
          ConvertRowT<L>(a.w + static_cast<size_t>(n0 + r) * a.row_bytes, k0, kc, dst);
        }
        for (int64_t i = kc; i < kc_padded; ++i) dst[i] = 0.0f;
      }
      // Prefetch the slice kPanelPrefetchSlices ahead while the tiles run, shared among them.
      PrefetchCursor pf;
      {
        const int64_t target = slice_index + kPanelPrefetchSlices;
        const int64_t pn0 = n_begin + (target / num_slices) * kPanelRows;
        const int64_t pk0 = (target % num_slices) * kPanelK;
        if (pn0 < n_end) {
          pf.num_rows = static_cast<int>(MinI64(kPanelRows, n_end - pn0));
          pf.row_len = static_cast<int64_t>(MinI64(kPanelK, a.k - pk0) * elem_num / elem_den);
          for (int r = 0; r < pf.num_rows; ++r) {
            pf.rows[r] =
                a.w + static_cast<size_t>(pn0 + r) * a.row_bytes + pk0 * elem_num / elem_den;
          }
        }
      }
      const int64_t total_lines = pf.num_rows * ((pf.row_len + 63) / 64);
      const int64_t lines_per_group = (total_lines + num_groups - 1) / num_groups;
      const bool add = a.accumulate || k0 > 0;
      for (int64_t t0 = 0; t0 < a.m; t0 += 3) {
        pf.lines = lines_per_group;
        const int tt = static_cast<int>(MinI64(3, a.m - t0));
        kTiles[p - 1][tt - 1](panel, a.x + t0 * a.ldx + k0, a.ldx, kc, a.y + t0 * a.ldy + n0, a.ldy,
                              add, &pf);
      }
    }
  }
}

// ---- Dispatch on dtype -------------------------------------------------------------------------

void DirectAvx2(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.dtype) {
    case DType::kF32:
      DirectRows<F32Rows>(a, n_begin, n_end);
      return;
    case DType::kBF16:
      DirectRows<Bf16Rows>(a, n_begin, n_end);
      return;
    case DType::kF16:
      DirectRows<F16Rows>(a, n_begin, n_end);
      return;
    case DType::kQ8_0:
      DirectRows<Q8Rows>(a, n_begin, n_end);
      return;
    case DType::kF8E4M3Block:
      if (a.k % 32 == 0) {
        DirectRows<Fp8Rows>(a, n_begin, n_end);
      } else {
        GenericKernels().direct(a, n_begin, n_end);
      }
      return;
    case DType::kQ4_0:  // blocks dotted as small integers, up to 3 tokens per decode
      GgmlDirectRows<GemvBlock32<false, false>>(a, n_begin, n_end);
      return;
    case DType::kQ4_1:
      GgmlDirectRows<GemvBlock32<false, true>>(a, n_begin, n_end);
      return;
    case DType::kQ5_0:
      GgmlDirectRows<GemvBlock32<true, false>>(a, n_begin, n_end);
      return;
    case DType::kQ5_1:
      GgmlDirectRows<GemvBlock32<true, true>>(a, n_begin, n_end);
      return;
    case DType::kQ4_K:
      GgmlDirectRows<GemvK45<false>>(a, n_begin, n_end);
      return;
    case DType::kQ5_K:
      GgmlDirectRows<GemvK45<true>>(a, n_begin, n_end);
      return;
    case DType::kQ6_K:
      GgmlDirectRows<GemvQ6_K>(a, n_begin, n_end);
      return;
    case DType::kF8E4M3:
    case DType::kI32:
      break;
  }
  VERDICT_CHECK_MSG(false, "unsupported weight dtype");
}

void PanelAvx2(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.dtype) {
    case DType::kF32:
      PanelRows<F32Rows>(a, n_begin, n_end);
      return;
    case DType::kBF16:
      PanelRows<Bf16Rows>(a, n_begin, n_end);
      return;
    case DType::kF16:
      PanelRows<F16Rows>(a, n_begin, n_end);
      return;
    case DType::kQ8_0:
      PanelRows<Q8Rows>(a, n_begin, n_end);
      return;
    case DType::kF8E4M3Block:
      if (a.k % 32 == 0) {
        PanelRows<Fp8Rows>(a, n_begin, n_end);
      } else {
        GenericKernels().panel(a, n_begin, n_end);
      }
      return;
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      PanelRows<GgmlRows>(a, n_begin, n_end);
      return;
    case DType::kF8E4M3:
    case DType::kI32:
      break;
  }
  VERDICT_CHECK_MSG(false, "unsupported weight dtype");
}

}  // namespace

const KernelTable* Avx2Kernels() {
  static constexpr KernelTable kTable = {&DirectAvx2, &PanelAvx2, &ConvertRowAvx2};
  return &kTable;
}

}  // namespace verdict::engine::matmul_internal
