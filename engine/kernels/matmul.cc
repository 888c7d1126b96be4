// SPDX-License-Identifier: Apache-2.0
// MatMul dispatch (algorithm by M, ISA at run time, threads over N), the portable generic kernels
// and the OpenBLAS path.
#include "engine/kernels/matmul.h"

#include "engine/ggml_quants.h"

#include <cblas.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

#if defined(VERDICT_KERNELS_HAVE_AVX2)
#include <cpuid.h>
#endif

#include "common/check.h"
#include "engine/fp8.h"
#include "engine/kernels/matmul_internal.h"

namespace verdict::engine {
namespace matmul_internal {
namespace {

// ---- Generic (portable) kernels --------------------------------------------------------------

void ConvertRowGeneric(const uint8_t* row, DType dtype, int64_t k0, int64_t count, float* out) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(out, row + k0 * 4, static_cast<size_t>(count) * 4);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, row + (k0 + i) * 2, 2);
        out[i] = Bf16ToF32(v);
      }
      return;
    case DType::kF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, row + (k0 + i) * 2, 2);
        out[i] = F16ToF32(v);
      }
      return;
    case DType::kQ8_0: {
      const uint8_t* block = row + (k0 / kQ8_0BlockSize) * sizeof(BlockQ8_0);
      for (int64_t b = 0; b < count / kQ8_0BlockSize; ++b, block += sizeof(BlockQ8_0)) {
        uint16_t scale_bits;
        std::memcpy(&scale_bits, block, 2);
        const float scale = F16ToF32(scale_bits);
        const int8_t* qs = reinterpret_cast<const int8_t*>(block + 2);
        for (int i = 0; i < kQ8_0BlockSize; ++i) {
          out[b * kQ8_0BlockSize + i] = scale * static_cast<float>(qs[i]);
        }
      }
      return;
    }
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      DequantizeGgmlRow(dtype, row, k0, count, out);
      return;
    case DType::kF8E4M3Block: {
      static const std::array<float, 256> kValues = [] {
        std::array<float, 256> values;
        for (int code = 0; code < 256; ++code) values[code] = Fp8E4M3ToF32(static_cast<uint8_t>(code));
        return values;
      }();
      for (int64_t i = 0; i < count;) {
        const int64_t col = k0 + i;
        const int64_t block_end = std::min(count, i + kFp8BlockSize - col % kFp8BlockSize);
        float scale;
        std::memcpy(&scale, row + Fp8BlockScaleOffset(col), sizeof(scale));
        const uint8_t* codes = row + Fp8BlockValueOffset(col);
        for (; i < block_end; ++i) out[i] = kValues[*codes++] * scale;
      }
      return;
    }
    case DType::kF8E4M3:
    case DType::kI32:
      break;
  }
  VERDICT_CHECK_MSG(false, "unsupported weight dtype");
}

float DotGeneric(const float* a, const float* b, int64_t n) {
  // Eight independent partial sums: lets the compiler vectorize and keeps the error growth low.
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) s[i & 7] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Converts each weight row a K-slice at a time and dots it with every token.
void RowsGeneric(const GemmArgs& a, int64_t n_begin, int64_t n_end) {
  constexpr int64_t kSlice = 512;  // multiple of 32 (q8_0 blocks) and 256 (k-quant super-blocks)
  float buf[kSlice];
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = a.w + static_cast<size_t>(n) * a.row_bytes;
    for (int64_t k0 = 0; k0 < a.k; k0 += kSlice) {
      const int64_t kc = std::min(kSlice, a.k - k0);
      ConvertRowGeneric(row, a.dtype, k0, kc, buf);
      const bool add = a.accumulate || k0 > 0;
      for (int64_t t = 0; t < a.m; ++t) {
        const float d = DotGeneric(buf, a.x + t * a.ldx + k0, kc);
        float& out = a.y[t * a.ldy + n];
        out = add ? out + d : d;
      }
    }
  }
}

// ---- OpenBLAS path -----------------------------------------------------------------------------

// Weight rows are converted to f32 in blocks of about this many bytes, then multiplied with sgemm.
constexpr int64_t kBlasBlockBytes = int64_t{2} << 20;

void EnsureOpenBlasSingleThreaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void BlasRows(const GemmArgs& a, const KernelTable& kernels, int64_t n_begin, int64_t n_end) {
  const float beta = a.accumulate ? 1.0f : 0.0f;
  const int m = static_cast<int>(a.m);
  const int k = static_cast<int>(a.k);
  if (a.dtype == DType::kF32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, static_cast<int>(n_end - n_begin), k,
                1.0f, a.x, static_cast<int>(a.ldx),
                reinterpret_cast<const float*>(a.w + static_cast<size_t>(n_begin) * a.row_bytes), k,
                beta, a.y + n_begin, static_cast<int>(a.ldy));
    return;
  }
  thread_local std::vector<float> scratch;
  const int64_t block_rows =
      std::max<int64_t>(16, kBlasBlockBytes / (a.k * static_cast<int64_t>(sizeof(float))));
  const int64_t rows = std::min(block_rows, n_end - n_begin);
  if (scratch.size() < static_cast<size_t>(rows * a.k)) scratch.resize(rows * a.k);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += block_rows) {
    const int64_t nb = std::min(block_rows, n_end - n0);
    for (int64_t r = 0; r < nb; ++r) {
      kernels.convert_row(a.w + static_cast<size_t>(n0 + r) * a.row_bytes, a.dtype, 0, a.k,
                          scratch.data() + r * a.k);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, static_cast<int>(nb), k, 1.0f, a.x,
                static_cast<int>(a.ldx), scratch.data(), k, beta, a.y + n0,
                static_cast<int>(a.ldy));
  }
}

// ---- ISA selection -----------------------------------------------------------------------------

#if !defined(VERDICT_KERNELS_HAVE_AVX2)
bool CpuHasAvx2() { return false; }
#else
// F16C through cpuid: clang 14's __builtin_cpu_supports does not know "f16c" (a compile error).
bool CpuHasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
bool CpuHasAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CpuHasF16c();
}
#endif

KernelIsa InitialIsa() {
  const char* env = std::getenv("VERDICT_KERNEL_ISA");
  if (env != nullptr && std::strcmp(env, "generic") == 0) return KernelIsa::kGeneric;
  return BestSupportedKernelIsa();
}

std::atomic<KernelIsa>& IsaState() {
  static std::atomic<KernelIsa> isa{InitialIsa()};
  return isa;
}

}  // namespace

Algo ChooseAlgo(DType dtype, int64_t m) {
  if (m >= kMatMulBlasMinRows) return Algo::kBlas;
  // Up to this many tokens, converting the weights in registers for every group of 3 tokens costs
  // less than converting them once into an f32 panel (bench/kernels_bench.cc, 2 threads, Zen 4).
  int64_t direct_max = 16;                    // bf16
  if (dtype == DType::kF16) direct_max = 24;  // vcvtph2ps is cheap
  if (dtype == DType::kF32) direct_max = 8;   // twice the bytes to re-read per token group
  if (dtype == DType::kQ8_0 || dtype == DType::kF8E4M3Block) direct_max = 4;  // scaled blocks
  // The block quantizations: blocks dotted as small integers, decoded once for 1-2 tokens and
  // scaled once per group (1.1-1.9x the panel's speed); from 3 tokens on (register spills) the
  // tokens share each unpacked panel slice.
  if (IsGgmlBlockQuant(dtype)) direct_max = 2;
  return m <= direct_max ? Algo::kDirect : Algo::kPanel;
}

const KernelTable& GenericKernels() {
  static constexpr KernelTable kTable = {&RowsGeneric, &RowsGeneric, &ConvertRowGeneric};
  return kTable;
}

#if !defined(VERDICT_KERNELS_HAVE_AVX2)
const KernelTable* Avx2Kernels() { return nullptr; }
#endif

const KernelTable& ActiveKernels() {
  if (IsaState().load(std::memory_order_relaxed) == KernelIsa::kAvx2) return *Avx2Kernels();
  return GenericKernels();
}

size_t WeightRowBytes(DType dtype, int64_t cols) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<size_t>(cols) * 4;
    case DType::kF16:
    case DType::kBF16:
      return static_cast<size_t>(cols) * 2;
    case DType::kQ8_0:
      return static_cast<size_t>(cols / kQ8_0BlockSize) * sizeof(BlockQ8_0);
    case DType::kF8E4M3Block:
      return static_cast<size_t>(Fp8BlockRowBytes(cols));
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return static_cast<size_t>(cols / GgmlBlockValues(dtype)) * GgmlBlockBytes(dtype);
    case DType::kF8E4M3:
    case DType::kI32:
      break;
  }
  VERDICT_CHECK_MSG(false, "unsupported weight dtype");
  return 0;
}

void MatMulWithAlgo(Algo algo, const float* x, int64_t m, int64_t ldx, const MatMulWeight& w,
                    float* y, int64_t ldy, ThreadPool* pool, bool accumulate) {
  VERDICT_CHECK(m >= 0 && w.rows >= 0 && w.cols >= 0);
  VERDICT_CHECK(ldx >= w.cols && ldy >= w.rows);
  VERDICT_CHECK_MSG(w.dtype == DType::kF32 || w.dtype == DType::kF16 || w.dtype == DType::kBF16 ||
                        w.dtype == DType::kQ8_0 || w.dtype == DType::kF8E4M3Block || IsGgmlBlockQuant(w.dtype),
                    "MatMul weights must be f32, f16, bf16, q8_0, fp8 or a GGML block quantization");
  VERDICT_CHECK_MSG(w.dtype != DType::kQ8_0 || w.cols % kQ8_0BlockSize == 0,
                    "q8_0 weights need K % 32 == 0");
  VERDICT_CHECK_MSG(!IsGgmlBlockQuant(w.dtype) || w.cols % GgmlBlockValues(w.dtype) == 0,
                    "GGML block-quantized weights need K to be a multiple of their block");
  if (m == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    if (!accumulate) {
      for (int64_t t = 0; t < m; ++t) std::fill_n(y + t * ldy, w.rows, 0.0f);
    }
    return;
  }
  if (algo == Algo::kAuto) algo = ChooseAlgo(w.dtype, m);
  const KernelTable& kernels = ActiveKernels();
  const GemmArgs args = {x,
                         m,
                         ldx,
                         static_cast<const uint8_t*>(w.data),
                         w.dtype,
                         w.cols,
                         WeightRowBytes(w.dtype, w.cols),
                         y,
                         ldy,
                         accumulate};
  int64_t grain = 16;
  std::function<void(int64_t, int64_t)> body;
  switch (algo) {
    case Algo::kDirect:
      grain = 4;
      body = [&](int64_t b, int64_t e) { kernels.direct(args, b, e); };
      break;
    case Algo::kPanel:
      body = [&](int64_t b, int64_t e) { kernels.panel(args, b, e); };
      break;
    case Algo::kBlas:
    case Algo::kAuto:
      EnsureOpenBlasSingleThreaded();
      body = [&](int64_t b, int64_t e) { BlasRows(args, kernels, b, e); };
      break;
  }
  if (pool != nullptr && pool->num_threads() > 1) {
    pool->ParallelFor(w.rows, grain, body);
  } else {
    body(0, w.rows);
  }
}

}  // namespace matmul_internal

void MatMul(const float* x, int64_t m, int64_t ldx, const MatMulWeight& w, float* y, int64_t ldy,
            ThreadPool* pool, bool accumulate) {
  matmul_internal::MatMulWithAlgo(matmul_internal::Algo::kAuto, x, m, ldx, w, y, ldy, pool,
                                  accumulate);
}

void GatherRows(const MatMulWeight& table, absl::Span<const int32_t> ids, float* out) {
  VERDICT_CHECK_MSG(table.dtype == DType::kF32 || table.dtype == DType::kF16 ||
                        table.dtype == DType::kBF16 || table.dtype == DType::kQ8_0 ||
                        table.dtype == DType::kF8E4M3Block || IsGgmlBlockQuant(table.dtype),
                    "GatherRows table must be f32, f16, bf16, q8_0, fp8 or a GGML block quantization");
  VERDICT_CHECK(table.dtype != DType::kQ8_0 || table.cols % kQ8_0BlockSize == 0);
  VERDICT_CHECK(!IsGgmlBlockQuant(table.dtype) || table.cols % GgmlBlockValues(table.dtype) == 0);
  const matmul_internal::KernelTable& kernels = matmul_internal::ActiveKernels();
  const size_t row_bytes = matmul_internal::WeightRowBytes(table.dtype, table.cols);
  const auto* base = static_cast<const uint8_t*>(table.data);
  for (size_t i = 0; i < ids.size(); ++i) {
    VERDICT_CHECK_MSG(ids[i] >= 0 && ids[i] < table.rows, "GatherRows: id out of range");
    kernels.convert_row(base + static_cast<size_t>(ids[i]) * row_bytes, table.dtype, 0, table.cols,
                        out + static_cast<int64_t>(i) * table.cols);
  }
}

KernelIsa BestSupportedKernelIsa() {
  return matmul_internal::CpuHasAvx2() ? KernelIsa::kAvx2 : KernelIsa::kGeneric;
}

KernelIsa ActiveKernelIsa() { return matmul_internal::IsaState().load(std::memory_order_relaxed); }

absl::Status SetKernelIsa(KernelIsa isa) {
  if (isa == KernelIsa::kAvx2 && BestSupportedKernelIsa() != KernelIsa::kAvx2) {
    return absl::FailedPreconditionError("this CPU (or build) lacks AVX2/FMA/F16C kernels");
  }
  matmul_internal::IsaState().store(isa, std::memory_order_relaxed);
  return absl::OkStatus();
}

}  // namespace verdict::engine
